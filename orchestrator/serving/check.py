"""What a deploy prints and tries: the summary table, a ready-to-paste curl line, and the
requests ``--check`` sends (a few rows, every key, no key)."""

from __future__ import annotations

import json
import shlex

from orchestrator import console
from orchestrator.serving.api_keys import ApiKeys
from orchestrator.serving.rollout import Deployment
from orchestrator.serving.tls import client_verify, is_self_signed
from serve_apps.model_bundle import ModelBundle
from serve_apps.requests.base import RequestForm, per_target
from trainers.tasks import task_for
from trainers.tasks.base import CheckInputs

CHECK_ROWS = 3


def summary_rows(
    deployment: Deployment, keys: ApiKeys, show_key: bool = False, route: str = "/v1/predict"
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
    ]
    canary = deployment.canary
    if canary is not None:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in sorted(canary.test_metrics.items()))
        share = f"{args.canary_percent:g}% of the requests"
        rows.append(("canary", f"{canary.label}  ({canary.uri}), {share}; {scores or '-'}"))
    rows += [
        ("endpoint", f"{deployment.url}{route}"),
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


def curl_line(
    deployment: Deployment, keys: ApiKeys, request: dict, route: str = "/v1/predict"
) -> str:
    """A ready-to-paste curl command sending ``request``; the key is read from where it lives,
    never inlined."""
    secret = keys.shell_reference()
    body = json.dumps(request)
    cert = deployment.args.serve.tls_cert
    trust = f"--cacert {shlex.quote(cert)} " if cert and is_self_signed(cert) else ""
    return (
        f"curl -s {trust}-H \"Authorization: Bearer {secret}\" -H 'Content-Type: application/json' "
        f"-d '{body}' {deployment.url}{route}"
    )


def check_requests(
    deployment: Deployment, keys: ApiKeys, form: RequestForm, sample: CheckInputs
) -> bool:
    """Send a few authenticated requests in the model's ``form`` (single inputs, then all at
    once unless the model takes one a request) and print the answers; check that every key is
    accepted and that a request without one is refused."""
    import httpx

    inputs, truth = sample.inputs, sample.truth
    headers = {"Authorization": f"Bearer {keys.first}"}
    cert = deployment.args.serve.tls_cert
    verify = client_verify(cert) if cert else True
    ok = True
    with httpx.Client(
        base_url=deployment.url, headers=headers, timeout=30, verify=verify
    ) as client:
        for index in range(len(inputs)):
            response = client.post(form.route, json=form.body(inputs[index : index + 1], None))
            ok &= response.status_code == 200
            shown = describe_answer(form, response)
            console.out.print(f"{form.noun} {index}: HTTP {response.status_code}  {shown}")
        if not form.one_per_request:
            response = client.post(form.route, json=form.body(inputs, None))
            ok &= response.status_code == 200
            answer = describe_answer(form, response)
            console.out.print(f"all {len(inputs)} rows: HTTP {response.status_code}  {answer}")
        if isinstance(truth, dict):  # a forecaster's: {target: the values that followed}
            console.out.print(f"true values that followed: {per_target(truth)}")
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


def describe_answer(form: RequestForm, response) -> str:
    """A checked request's answer, and the model that gave it."""
    body = response.json()
    if response.status_code != 200:
        return str(body)
    model = body["model"]  # a registered version, or a run's model (as ModelBundle.label says)
    which = f"v{model['version']}" if model["version"] else f"(run {(model['run_id'] or '?')[:8]})"
    return f"{form.describe(body)}  (model {model['name']} {which})"


def check_inputs(bundle: ModelBundle, count: int = CHECK_ROWS) -> CheckInputs:
    """What ``--check`` sends: a few inputs of the data set the model was trained on when it is
    bundled, with their true answers; else the task's example input (``trainers.tasks``)."""
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking import tracking_uri

    spec = bundle.spec
    params = (
        MlflowClient(tracking_uri()).get_run(bundle.run_id).data.params if bundle.run_id else {}
    )
    return task_for(spec).check_inputs(spec, params.get("data.source"), count)
