"""The config's ``serve`` section: where and how ``redblue deploy`` serves a model.

It lives beside the Serve app that reads it; ``orchestrator.config.RedblueConfig`` composes it
with the other sections, so it is loaded, overridden (``--set serve.port=9000``) and validated
like every other key.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from serve_apps.proxies import LOOPBACK, networks
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
    route_prefix: str = Field(
        "/",
        pattern=r"^/$|^(/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)+$",
        description="Path under which the API is served (the Serve application's route prefix), "
        "e.g. /digits serves /digits/v1/predict; give each model on one cluster its own. '/' or "
        "'/'-separated segments of letters, digits and . _ ~ - (no trailing '/').",
    )
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
        0.5,
        gt=0.0,
        description="CPUs reserved per replica (its torch or ONNX Runtime intra-op thread count, "
        "rounded up).",
    )
    runtime: Literal["auto", "torch", "onnxruntime"] = Field(
        "auto",
        description="What runs the model in each replica. auto: an exported model (redblue "
        "export) in ONNX Runtime, any other in torch. onnxruntime: a model that was not exported "
        "is exported (fp32) when deployed and checked against its weights. torch: the weights "
        "(refused for an int8 export).",
    )
    max_parameters: int = Field(
        100_000_000,
        ge=1,
        description="The most parameters (weights and buffers) a served model may have, checked "
        "from its model_config.json before anything is allocated, at deploy and on --reload.",
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
        description="Environment variable holding the API key(s) clients send as a Bearer token: "
        "one key, or several separated by commas (rotation); or NAME_FILE (REDBLUE_API_KEY_FILE) "
        "naming a file with one key per line. Each key needs at least 128 bits: 32+ hex digits, "
        "or 22+ characters of base64/base64url.",
    )
    audit_log: str = Field(
        "logs/serve-audit.jsonl",
        description="JSON-lines audit log, one line per request (time, request id, key id, "
        "model version, peer and client address, rows, status, latency; never the payload; each "
        "line hash-chained, checked by redblue audit verify), or off. Relative paths are taken "
        "from the working directory of a local deploy, and from ~/.redblue on the node of each "
        "replica when deploying to a cluster (--address).",
    )

    audit_log_max_bytes: int = Field(
        50 * MIB,
        ge=1024,
        description="The audit log is rotated when it grows past this size (FILE -> FILE.1 ...).",
    )
    audit_log_backups: int = Field(
        5, ge=1, le=100, description="Rotated audit logs kept (FILE.1 is the newest)."
    )
    audit_refusal_interval_s: float = Field(
        60.0,
        ge=1.0,
        le=86400.0,
        description="Requests without an accepted key (401s, /healthz) are not written one line "
        "each: per client and interval of this many seconds the first is, the rest are counted in "
        "one summary line when the interval ends.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=lambda: list(LOOPBACK),
        description="Peers whose X-Forwarded-For is believed (IP addresses or CIDR networks): "
        "the audit log's client is then the right-most forwarded address that is not one of "
        "them; from any other peer it is the peer. Loopback by default, where Redblue's own "
        "HAProxy and Serve's proxy connect from; [] believes no header.",
    )
    monitor_window: int = Field(
        1000,
        ge=10,
        le=1_000_000,
        description="GET /v1/monitor compares the inputs of the last N rows a replica predicted "
        "with the training inputs.",
    )
    drift_threshold: float = Field(
        0.2,
        gt=0.0,
        description="A feature whose population stability index over the window passes this "
        "counts as drifted (PSI below 0.1: no change; 0.1-0.25: some; above 0.25: a lot).",
    )
    reload_interval_s: float = Field(
        10.0, gt=0.0, description="With --reload: how often the model alias is checked."
    )
    tls_cert: str | None = Field(
        None,
        description="PEM certificate file (the server's certificate first, then any "
        "intermediates): with tls_key, the endpoint serves HTTPS only. Relative paths are taken "
        "from the working directory.",
    )
    tls_key: str | None = Field(
        None, description="PEM private key file of tls_cert (not encrypted; keep it mode 600)."
    )
    allow_plaintext: bool = Field(
        False,
        description="Serve plain HTTP on a serve.host that is not loopback (e.g. behind a load "
        "balancer that terminates TLS). Without it, such a host needs tls_cert and tls_key.",
    )

    @property
    def tls(self) -> bool:
        """Whether the endpoint serves HTTPS."""
        return bool(self.tls_cert and self.tls_key)

    @model_validator(mode="after")
    def _tls_or_loopback(self) -> ServeSection:
        if bool(self.tls_cert) != bool(self.tls_key):
            given, missing = ("tls_cert", "tls_key") if self.tls_cert else ("tls_key", "tls_cert")
            raise ValueError(
                f"serve.{given} is set but serve.{missing} is not: give both (HTTPS) or neither"
            )
        if not self.tls and not self.allow_plaintext and not is_loopback(self.host):
            raise ValueError(
                f"serve.host {self.host} is not a loopback address, and without TLS the API key "
                "would cross the network in clear: set serve.tls_cert and serve.tls_key (HTTPS), "
                "or serve.allow_plaintext=true if something in front terminates TLS"
            )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies_are_networks(cls, value: list[str]) -> list[str]:
        networks(value)  # ValueError naming the value that is neither an address nor a network
        return [entry.strip() for entry in value]

    @field_validator("audit_log")
    @classmethod
    def _audit_log_is_a_file(cls, value: str) -> str:
        value = value.strip()
        if not value or value.endswith("/") or value in (".", ".."):
            raise ValueError("give the audit log's file path, or off")
        return value


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine: ``localhost`` or a loopback address."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False
