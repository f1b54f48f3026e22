"""The config's ``serve`` section: where and how ``redblue deploy`` serves a model.

It lives beside the Serve app that reads it; ``orchestrator.config.RedblueConfig`` composes it
with the other sections, so it is loaded, overridden (``--set serve.port=9000``) and validated
like every other key.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from trainers.config import Section

MIB = 1024 * 1024


class AutoscalingSection(Section):
    min_replicas: int = Field(1, ge=0, description="Fewest replicas kept running.")
    max_replicas: int = Field(4, ge=1, description="Most replicas started under load.")
    target_ongoing_requests: float = Field(
        8.0, gt=0.0, description="Requests in flight per replica that autoscaling aims for."
    )

    @model_validator(mode="after")
    def _ordered(self) -> AutoscalingSection:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})"
            )
        return self


class ServeSection(Section):
    host: str = Field(
        "127.0.0.1",
        description="Interface the HTTP endpoint binds to. Loopback by default; 0.0.0.0 exposes "
        "it to the network (keep the API key secret).",
    )
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    ingress: Literal["haproxy", "proxy"] = Field(
        "haproxy",
        description="How requests reach the replicas when redblue deploy starts the local Ray. "
        "haproxy: Ray Serve's HAProxy ingress, straight to each replica's own HTTP server (about "
        "1 ms added per request here). proxy: Serve's Python proxy (about 8 ms added, a tenth "
        "to a third of the throughput). On a cluster, the cluster's own setting applies "
        "(RAY_SERVE_ENABLE_HA_PROXY=1 in each node's environment at ray start).",
    )
    num_replicas: int = Field(
        2, ge=1, description="Fixed replica count; ignored when autoscaling is set."
    )
    autoscaling: AutoscalingSection | None = Field(
        None, description="Scale replicas with load between min_replicas and max_replicas."
    )
    cpus_per_replica: float = Field(
        0.5, gt=0.0, description="CPUs reserved per replica (its torch thread count, rounded up)."
    )
    max_batch_size: int = Field(
        64,
        ge=1,
        description="Most rows one forward pass takes; requests from different clients are "
        "batched together up to this. 1 turns batching off.",
    )
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="How long a batch waits for more requests once the first arrived. 0 takes "
        "whatever is queued at once: no added latency, and batches grow by themselves under load.",
    )
    max_ongoing_requests: int = Field(
        64, ge=1, description="Requests one replica accepts at once (more wait in the proxy)."
    )
    max_body_bytes: int = Field(
        8 * MIB, ge=1024, description="Largest request body accepted; larger gets 413."
    )
    max_rows: int = Field(1024, ge=1, description="Most rows one request may carry.")
    api_key_env: str = Field(
        "REDBLUE_API_KEY",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the API key clients send as a Bearer token.",
    )
    audit_log: str = Field(
        "logs/serve-audit.jsonl",
        description="JSON-lines audit log, one line per request (time, key id, rows, status, "
        "latency; never the payload). Relative paths are taken from the working directory.",
    )
    reload_interval_s: float = Field(
        10.0, gt=0.0, description="With --reload: how often the model alias is checked."
    )
