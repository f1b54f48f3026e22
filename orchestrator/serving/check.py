"""What a deploy prints and tries: the summary table, a ready-to-paste curl line, and the
requests ``--check`` sends (a few rows, every key, no key)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

import numpy as np

from orchestrator import console
from orchestrator.serving.api_keys import ApiKeys
from orchestrator.serving.rollout import Deployment
from orchestrator.serving.tls import client_verify, is_self_signed
from serve_apps.model_bundle import ModelBundle

CHECK_ROWS = 3


def summary_rows(
    deployment: Deployment, keys: ApiKeys, show_key: bool = False
) -> list[tuple[str, str]]:
    args, bundle = deployment.args, deployment.bundle
    replicas = (
        f"autoscaling {args.serve.autoscaling.min_replicas}-{args.serve.autoscaling.max_replicas}"
        if args.serve.autoscaling
        else str(args.serve.num_replicas)
    )
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(bundle.test_metrics.items()))
    rows = [
        ("model", f"{bundle.label}  ({bundle.uri})"),
        ("run_id", bundle.run_id or "-"),
        ("test metrics", metrics or "-"),
        ("endpoint", f"{deployment.url}/v1/predict"),
        ("openapi", f"{deployment.url}/openapi.json (key required; /docs too)"),
        ("health", f"{deployment.url}/healthz (the only route without a key)"),
        ("replicas", replicas),
        ("api key", keys.describe()),
        ("audit log", args.audit_log or "off"),
    ]
    cert = args.serve.tls_cert
    if cert:
        trust = " (self-signed: clients trust this file)" if is_self_signed(cert) else ""
        rows.append(("tls", f"HTTPS, certificate {cert}{trust}"))
    if show_key and keys.source in ("generated", "file"):
        rows.append(("the key", keys.first))
    return rows


@dataclass(frozen=True)
class Histories:
    """A forecaster's histories, each a list of steps (lists of numbers) and sent alone, as
    ``{"history": steps}``."""

    steps: list[list[list[float]]]

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, index: slice) -> Histories:
        return Histories(self.steps[index])


# Rows of numbers ("inputs"), raw "records", "sequences" of steps, or a forecaster's histories.
Rows = np.ndarray | list | Histories


def request_body(rows: Rows, digits: int | None = None) -> dict[str, list]:
    """``inputs`` for rows of numbers, ``records`` for objects, ``sequences`` for lists, and a
    forecaster's first ``history``."""
    if isinstance(rows, Histories):
        history = rows.steps[0]
        return {"history": history if digits is None else np.round(history, digits).tolist()}
    if isinstance(rows, np.ndarray):
        return {"inputs": (rows if digits is None else rows.round(digits)).tolist()}
    if rows and isinstance(rows[0], list):
        return {"sequences": list(rows)}
    return {"records": list(rows)}


def curl_line(deployment: Deployment, keys: ApiKeys, rows: Rows) -> str:
    """A ready-to-paste curl command; the key is read from where it lives, never inlined."""
    secret = keys.shell_reference()
    body = json.dumps(request_body(rows[:1], digits=4))
    cert = deployment.args.serve.tls_cert
    trust = f"--cacert {shlex.quote(cert)} " if cert and is_self_signed(cert) else ""
    return (
        f"curl -s {trust}-H \"Authorization: Bearer {secret}\" -H 'Content-Type: application/json' "
        f"-d '{body}' {deployment.url}/v1/predict"
    )


def check_requests(
    deployment: Deployment, keys: ApiKeys, rows: Rows, truth: list | dict | None
) -> bool:
    """Send a few authenticated requests (single rows, then all at once; a forecaster's
    histories one by one) and print the answers; check that every key is accepted and that a
    request without one is refused."""
    import httpx

    headers = {"Authorization": f"Bearer {keys.first}"}
    cert = deployment.args.serve.tls_cert
    verify = client_verify(cert) if cert else True
    ok = True
    forecaster = isinstance(rows, Histories)
    name = "history" if forecaster else "row"
    with httpx.Client(
        base_url=deployment.url, headers=headers, timeout=30, verify=verify
    ) as client:
        for index in range(len(rows)):
            response = client.post("/v1/predict", json=request_body(rows[index : index + 1]))
            ok &= response.status_code == 200
            console.out.print(f"{name} {index}: HTTP {response.status_code}  {_answer(response)}")
        if not forecaster:  # a forecaster takes one history a request
            response = client.post("/v1/predict", json=request_body(rows))
            ok &= response.status_code == 200
            answer = _answer(response)
            console.out.print(f"all {len(rows)} rows: HTTP {response.status_code}  {answer}")
        if isinstance(truth, dict):  # a forecaster's: {target: the values that followed}
            console.out.print(f"true values that followed: {_per_target(truth)}")
        elif truth is not None:
            console.out.print(f"true labels of these rows: {truth}")
        for value, ident in zip(keys.values, keys.ids, strict=True):
            info = client.get("/v1/model", headers={"Authorization": f"Bearer {value}"})
            ok &= info.status_code == 200
            console.out.print(f"key {ident}: HTTP {info.status_code} for /v1/model")
        anonymous = httpx.get(f"{deployment.url}/v1/model", timeout=30, verify=verify)
        ok &= anonymous.status_code == 401
        console.out.print(f"no key: HTTP {anonymous.status_code} for /v1/model")
    return ok


def _answer(response) -> str:
    body = response.json()
    if "forecast" in body:
        values = dict(zip(body["targets"], body["forecast"], strict=True))
        shown = f"forecast of the next {body['horizon']} steps: {_per_target(values)}"
    elif "predictions" in body:
        shown = f"predictions {body['predictions']}"
    else:
        return str(body)
    model = body["model"]
    return f"{shown}  (model {model['name']} v{model['version']})"


def _per_target(values: dict[str, list[float]]) -> str:
    return "; ".join(f"{name} {np.round(steps, 3).tolist()}" for name, steps in values.items())


def sample_rows(bundle: ModelBundle, count: int = CHECK_ROWS) -> tuple[Rows, list | dict | None]:
    """Rows to try the model on and their true labels: from its bundled data set when it has
    one, else the model family's example input (no labels). Rows of numbers for a model of
    number columns, else records of raw values. A forecaster's: one history, the bundled
    series' first window, and the values of each target that followed it ({target: values})."""
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking import tracking_uri
    from trainers.config import DataConfig
    from trainers.data import BUNDLED, load_table, read_table
    from trainers.families import family_of
    from trainers.inputs import TabularInput
    from trainers.sequences import SequenceInput, prepare_sequences
    from trainers.series import BUNDLED_SERIES, SeriesInput
    from trainers.spec import ModelSpec

    spec = ModelSpec.from_dict(bundle.model_config)
    params = (
        MlflowClient(tracking_uri()).get_run(bundle.run_id).data.params if bundle.run_id else {}
    )
    source = params.get("data.source")
    schema = family_of(spec.kind).input_schema(spec)
    names = list(schema.feature_names)
    if isinstance(schema, SeriesInput):
        if source not in BUNDLED_SERIES:
            return Histories(family_of(spec.kind).example_input(spec, 1)), None
        values = schema.from_frame(read_table(source))  # by time, the value columns in order
        window, horizon = schema.window, schema.horizon
        following = values[window : window + horizon, schema.target_index]
        followed = dict(zip(schema.targets, following.T.tolist(), strict=True))
        return Histories([values[:window].tolist()]), followed
    if source in BUNDLED and isinstance(schema, SequenceInput):
        dataset = prepare_sequences(read_table(source), DataConfig(kind="sequence", source=source))
        sequences = [steps[steps[:, -1] > 0][:, :-1].tolist() for steps in dataset.features[:count]]
        labels = dataset.labels[:count]
        return sequences, np.asarray(dataset.classes)[labels].tolist()
    if source in BUNDLED:
        table = load_table(DataConfig(source=source))
        if set(names) <= set(table.frame.columns):
            labels = table.labels[:count]
            truth = np.asarray(table.classes)[labels] if table.classes else labels
            rows = table.frame[names].head(count)
            numeric = isinstance(schema, TabularInput) and schema.preprocessing.all_numeric
            if numeric and rows.notna().all().all():
                return rows.to_numpy(dtype=np.float32), truth.tolist()
            records = rows.astype(object).where(rows.notna(), None).to_dict("records")
            return records, truth.tolist()
    return family_of(spec.kind).example_input(spec, count), None
