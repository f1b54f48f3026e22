"""Small real models for the serving tests: built and saved by trainers, no training needed."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import torch

from trainers.data.drift import summarize
from trainers.families import family_of
from trainers.models import build_model, save_model
from trainers.spec import ModelSpec


def saved_model(
    directory: Path, *, seed: int, features: int = 8, hidden: int = 16, kind: str = "mlp"
) -> Path:
    """A 3-class model of family ``kind`` (an MLP of one ``hidden`` layer by default) with random
    weights (by ``seed``) and fitted input scaling, saved to disk."""
    torch.manual_seed(seed)
    spec = ModelSpec(
        kind,
        "classification",
        features,
        3,
        {"kind": kind, "hidden": [hidden]} if kind == "mlp" else {"kind": kind},
        feature_names=[f"f{i}" for i in range(features)],
        classes=["a", "b", "c"],
    )
    data = np.random.default_rng(seed).normal(2.0, 3.0, size=(256, features)).astype(np.float32)
    spec.input_summary = summarize(data, spec.feature_names)  # what training stores, for drift
    model = build_model(spec)
    family_of(kind).fit(model, data, None)
    return save_model(directory, model, spec)


def saved_sequence_model(directory: Path, kind: str, task: str, **options) -> Path:
    """A ``kind`` (rnn, lstm, gru) model of sequences of two features, up to 9 steps, for
    ``task`` (classification of x, y, z or regression), with random weights (seed 0) and its
    scaling fitted on 40 random sequences, saved; ``options``: the model section's."""
    from dataclasses import asdict

    from trainers.data.sequences import SequenceInput

    torch.manual_seed(0)
    schema = SequenceInput(("a", "b"), "id", "t", 9)
    classes = ["x", "y", "z"] if task == "classification" else []
    spec = ModelSpec(kind, task, 2, len(classes) or 1, {"kind": kind, "hidden": 6, **options})
    spec.feature_names, spec.classes = ["a", "b"], classes
    spec.preprocessing = {"sequence": asdict(schema)}
    model = build_model(spec)
    sequences = np.random.default_rng(0).normal(3.0, 2.0, size=(40, 9, 2)).tolist()
    targets = np.random.default_rng(1).normal(5.0, 2.0, size=40) if task == "regression" else None
    family_of(kind).fit(model, schema.rows(sequences), targets)
    return save_model(directory, model, spec)


def saved_gan(directory: Path, epochs: float = 2) -> Path:
    """A conditional GAN of the penguins table (categories and gaps), trained ``epochs`` on the
    real loop with plain engines: its final model's folder."""
    from trainers.spec import FINAL_MODEL_DIR

    report = Recorder(directory)
    plain_trainer(
        report,
        data={"source": "penguins", "label": "species"},
        model={"kind": "gan"},
        optim={"epochs": epochs, "batch_size": 32},
    ).run()
    return report.checkpoints[-1] / FINAL_MODEL_DIR


def saved_table_model(directory: Path, *, seed: int = 0) -> tuple[Path, pd.DataFrame]:
    """A 3-class MLP with random weights on the bundled penguins table (string categories and
    gaps), its preprocessing fitted on every row; returns the folder and the raw feature rows."""
    from trainers.config import DataConfig
    from trainers.data.tables import encode, load_table

    dataset = encode(load_table(DataConfig(source="penguins")), np.arange(344))
    fitted = dataset.preprocessing
    assert fitted is not None and dataset.raw is not None
    torch.manual_seed(seed)
    dense = dataset.features[:, : len(fitted.dense_names)]
    spec = ModelSpec(
        "mlp",
        "classification",
        fitted.width,
        3,
        {"kind": "mlp", "hidden": [16]},
        feature_names=list(dataset.feature_names),
        classes=list(dataset.classes),
        input_summary=summarize(dense, fitted.dense_names),
        preprocessing=fitted.to_dict(),
    )
    model = build_model(spec)
    family_of("mlp").fit(model, dataset.features, None)
    return save_model(directory, model, spec), dataset.raw


def forecaster_config(kind: str = "lstm", **data: Any):
    """The config of a small ``kind`` forecaster on the bundled co2 series (24 months of
    history, 12 ahead); ``data`` overrides ``data.*`` settings."""
    from orchestrator.config import validate

    settings = {"kind": "series", "source": "co2", "window": 24, "horizon": 12, "season": 12}
    return validate(
        {
            "data": {**settings, **data},
            "model": {"kind": kind, "hidden": 8},
            "strategy": {"val_fraction": 0.15},
        }
    )


def forecaster_plan(kind: str = "lstm", **data: Any):
    """The plan of :func:`forecaster_config`."""
    from trainers.loop.plan import plan_run

    return plan_run(forecaster_config(kind, **data))


def saved_forecaster(
    directory: Path, *, seed: int = 0, kind: str = "lstm"
) -> tuple[Path, pd.DataFrame]:
    """A ``kind`` forecaster with random weights on the bundled co2 series, fitted on its
    training blocks; returns the folder and the series (month, co2)."""
    plan = forecaster_plan(kind)
    torch.manual_seed(seed)
    model = build_model(plan.spec)
    family_of(kind).fit(model, plan.dataset.features[plan.split.train], None)
    assert plan.dataset.raw is not None
    return save_model(directory, model, plan.spec), plan.dataset.raw


@contextlib.contextmanager
def served(model_uri: str, name: str, port: int, key: str, runtime: str = "auto"):
    """``model_uri`` deployed on the session's Serve (one replica, ``serve.runtime``) under
    ``name``, answering ``key``; yields the deployment and deletes it after."""
    from ray import serve

    from orchestrator.serving.application import DeployArgs
    from orchestrator.serving.model_source import parse_model_uri, resolve_bundle
    from orchestrator.serving.rollout import start
    from serve_apps.guard import key_digest
    from serve_apps.settings import ServeSection

    settings = ServeSection(port=port, num_replicas=1, cpus_per_replica=0.25, runtime=runtime)
    args = DeployArgs(
        model=model_uri, name=name, serve=settings, key_digests=[key_digest(key)], audit_log=None
    )
    bundle = resolve_bundle(parse_model_uri(model_uri)).for_runtime(runtime)
    deployment = start(args, bundle, None)
    try:
        yield deployment
    finally:
        serve.delete(name)


def children(client, parent_run_id: str) -> list:
    """The MLflow runs nested under ``parent_run_id`` (a sweep's trials)."""
    parent = client.get_run(parent_run_id)
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
    )


def sample_rows(count: int, features: int = 8, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(2.0, 3.0, size=(count, features)).astype(np.float32)


DEPLOY_SCRIPT = """
import json, sys
from typer.testing import CliRunner
from orchestrator.cli import app
results = {}
for name, (env, args) in json.loads(sys.argv[1]).items():
    r = CliRunner().invoke(app, ["deploy", "models:/x/1", *args], env=env)
    results[name] = [r.exit_code, r.output]
results["ray imported"] = "ray" in sys.modules
results["mlflow imported"] = "mlflow.tracking" in sys.modules
print(json.dumps(results))
"""


def deploy_in_a_new_process(cases: dict[str, tuple[dict, list[str]]], home: Path) -> dict:
    """Run ``redblue deploy models:/x/1 ARGS`` with extra ENV for each ``{name: (ENV, ARGS)}`` in
    one new Python process (its imports are its own; HOME is ``home``, MLflow unreachable).

    Returns ``{name: [exit code, output], "ray imported": bool, "mlflow imported": bool}``.
    """
    env = {**os.environ, "HOME": str(home), "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    out = subprocess.run(
        [sys.executable, "-c", DEPLOY_SCRIPT, json.dumps(cases)],
        capture_output=True,
        text=True,
        cwd=home,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


class Recorder:
    """A training loop's ``report`` callable that keeps every metrics dict and a copy of every
    checkpoint."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.metrics: list[dict[str, float]] = []
        self.checkpoints: list[Path] = []

    def __call__(self, metrics: dict[str, float], checkpoint: Path | None) -> None:
        self.metrics.append(metrics)
        if checkpoint is not None:
            copy = self.tmp_path / f"ckpt{len(self.checkpoints)}"
            shutil.copytree(checkpoint, copy)
            self.checkpoints.append(copy)


def plain_trainer(
    report,
    spec_changes: dict[str, Any] | None = None,
    plan_changes: dict[str, Any] | None = None,
    **sections,
):
    """The real loop on plain PyTorch engines, one process, for the config ``sections`` (one
    worker); ``spec_changes`` edit the planned model spec (a family registered by a test),
    ``plan_changes`` the plan (a teacher to distill, initial weights)."""
    from orchestrator.config import RedblueConfig
    from trainers.engine.plain import PlainEngine
    from trainers.loop.plan import plan_run
    from trainers.loop.trainer import Trainer, build_replicas

    cfg = RedblueConfig.model_validate({"scaling": {"num_workers": 1}, **sections})
    plan = plan_run(cfg)
    if spec_changes:
        plan = dataclasses.replace(plan, spec=dataclasses.replace(plan.spec, **spec_changes))
    if plan_changes:
        plan = dataclasses.replace(plan, **plan_changes)

    def make(model, name, clock, optim):
        return PlainEngine(model, optim=optim, grad_accum_steps=1, clock=clock)

    return Trainer(plan, build_replicas(plan, make), report)


TIMING = ("train_seconds",)


def without_timing(metrics: dict[str, float]) -> dict[str, float]:
    """Final metrics but the wall times, which differ between two runs of the same work."""
    return {key: value for key, value in metrics.items() if key not in TIMING}


def start_until_a_trial_finished(
    command: list[str], folder: Path, env: dict[str, str], mlflow_client, experiment_name: str
) -> tuple[subprocess.Popen, dict[str, int]]:
    """Start ``command`` (a sweep or a comparison) in ``folder`` with ``env`` and wait until one
    of its trials finished and Tune saved that: (the running driver, {run id: end time} of the
    finished trials). Fails with the log's tail when none finished in time."""
    import time

    log_path = folder / "first.log"
    with log_path.open("w") as log:
        driver = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=log)
    deadline = time.time() + 400
    while time.time() < deadline and driver.poll() is None:
        time.sleep(2)
        experiment = mlflow_client.get_experiment_by_name(experiment_name)
        if experiment is None:
            continue
        done = mlflow_client.search_runs(
            [experiment.experiment_id],
            filter_string="tags.`redblue.kind` = 'trial' and attributes.status = 'FINISHED'",
        )
        if done:
            time.sleep(4)  # let Tune save its experiment state
            return driver, {r.info.run_id: r.info.end_time for r in done}
    driver.kill()
    raise AssertionError(log_path.read_text()[-3000:])


@contextlib.contextmanager
def loopback_s3(bucket: str):
    """An S3-compatible object store on 127.0.0.1 (moto's server) holding ``bucket``: yields the
    environment that reaches it, as a cloud node's would (pyarrow and boto3 read these)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "redblue-test",
        "AWS_SECRET_ACCESS_KEY": "redblue-test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    ).create_bucket(Bucket=bucket)
    try:
        yield env
    finally:
        server.stop()


def folded_in_one_process(pending, sample_rows: int):
    """A streamed table's statistics (``pending``: an ``orchestrator.streaming.choice.
    PendingStream``) folded batch by batch in this process: what the Ray Data pass computes."""
    from orchestrator.streaming.plan import fold

    return fold(pending.parts, pending.layout, pending.parts.paths, sample_rows)


def write_partitioned_table(folder: Path, rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    """A hive-partitioned Parquet folder (year=2024/, year=2025/; row groups smaller than a read
    batch): numbers with gaps, a category with gaps, a boolean, and a 3-class label that the
    numbers decide. Returns the rows written, in order."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, 4)), columns=["a", "b", "c", "d"])
    frame.loc[rng.random(rows) < 0.1, "c"] = np.nan
    frame["color"] = rng.choice(["red", "green", "blue", None], rows)
    frame["flag"] = rng.random(rows) < 0.3
    frame["label"] = np.where(frame["a"] + frame["b"] > 0.5, "hi", "lo")
    frame.loc[frame["d"] > 1.2, "label"] = "mid"
    half = rows // 2
    for year, part in ((2024, frame.iloc[:half]), (2025, frame.iloc[half:])):
        (folder / f"year={year}").mkdir(parents=True, exist_ok=True)
        part.to_parquet(folder / f"year={year}" / "part-0.parquet", row_group_size=700)
    return frame


def breaking(to_onnx: Callable) -> Callable:
    """``to_onnx`` whose graphs have their largest weight scaled by 1.5: an export that answers
    otherwise than its model (what the numeric check must refuse)."""
    import onnx
    from onnx import numpy_helper

    def broken(model, spec):
        graph = to_onnx(model, spec)
        proto = onnx.load_from_string(graph.data)
        largest = max(proto.graph.initializer, key=lambda tensor: np.prod(tensor.dims))
        values = (numpy_helper.to_array(largest) * 1.5).astype(np.float32)
        largest.CopyFrom(numpy_helper.from_array(values, largest.name))
        return dataclasses.replace(graph, data=proto.SerializeToString())

    return broken


def alive(process) -> bool:
    """Whether a ``psutil.Process`` still runs (a zombie does not)."""
    import psutil

    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def left_after(processes: list, signalled: float, within_s: float = 15) -> list[tuple[int, str]]:
    """(pid, name) of ``processes`` still alive ``within_s`` after ``signalled`` (a monotonic
    time), waiting until then at most."""
    import time

    while time.monotonic() < signalled + within_s and any(alive(p) for p in processes):
        time.sleep(0.25)
    return [(p.pid, p.name()) for p in processes if alive(p)]


def default_test_part() -> tuple[np.ndarray, np.ndarray]:
    """The test part T of the tests' digits runs (default split, seed 0)."""
    from orchestrator.config import RedblueConfig
    from trainers.loop.plan import plan_run

    plan = plan_run(RedblueConfig())
    return plan.dataset.features[plan.split.test], plan.dataset.labels[plan.split.test]


def descendants(pid: int) -> list:
    """The processes below ``pid`` (none once it exited)."""
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


def haproxies_of(folders: set[Path]) -> list:
    """Every HAProxy running from one of ``folders`` (a reload starts a new one)."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        text = " ".join(process.info["cmdline"] or [])
        if process.info["name"] == "haproxy" and any(str(f) in text for f in folders):
            found.append(process)
    return [p for p in found if alive(p)]


def haproxy_folders(process) -> set[Path]:
    """The ``redblue-haproxy-*`` folder of a running HAProxy's config; none for another process
    or once it exited."""
    try:
        command = process.cmdline() if process.name() == "haproxy" else []
    except psutil.Error:
        return set()
    if "-f" not in command:
        return set()
    config = Path(command[command.index("-f") + 1])
    return {f for f in config.parents if f.name.startswith("redblue-haproxy-")}


def train_workers() -> list[psutil.Process]:
    found = []
    for process in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    return found


def kill_a_worker_after_first_checkpoint(storage: Path, name: str, killed: list) -> None:
    deadline = time.time() + 240
    while time.time() < deadline:
        if list(storage.glob(f"{name}-*/checkpoint_*")) and train_workers():
            time.sleep(1.0)  # let the checkpoint's upload and registration complete
            victim = train_workers()[-1]
            victim.send_signal(signal.SIGKILL)
            killed.append(victim.pid)
            return
        time.sleep(0.2)
