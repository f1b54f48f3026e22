"""MLflow tracking, written from the driver only: params, metrics, curves, the fused model.

Honours ``MLFLOW_TRACKING_URI``; without it, a SQLite database ``mlflow.db`` and an artifact
folder ``mlartifacts/`` in the working directory (both absolute, so Ray's per-process working
folders never receive artifacts).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.entities import Metric, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature, infer_signature
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags

import trainers
from orchestrator.config import RedblueConfig
from orchestrator.environment import package_versions, state_root
from trainers.export.runtime import ONNX_FILE
from trainers.spec import FINAL_MODEL_DIR, LABEL_ISSUES_FILE
from trainers.tasks import as_output, input_schema
from trainers.tasks.base import DataReport

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
MODEL_NAME = "model"
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")  # logged as code, not pickled


def ray_run_name(experiment: str, run_id: str) -> str:
    """A training's name, in MLflow and as its Ray Train folder: ``digits-1a2b3c4d``."""
    return f"{experiment}-{run_id[:8]}"


def tracking_uri() -> str:
    """The tracking URI in force: ``MLFLOW_TRACKING_URI`` or the local SQLite default."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{state_root() / DEFAULT_DB}"


def ui_command(uri: str) -> str:
    """How to open the MLflow UI for ``uri``."""
    if uri.startswith("sqlite:"):
        return f"redblue ui   (or: mlflow ui --backend-store-uri {uri} --host 127.0.0.1)"
    return (
        f"open {uri} in a browser"
        if uri.startswith("http")
        else f"mlflow ui --backend-store-uri {uri}"
    )


def ensure_experiment(client: MlflowClient, name: str, uri: str) -> str:
    """The experiment's id, creating it with an absolute artifact location when local."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if uri.startswith("sqlite:///"):  # artifacts beside the database, never in a Ray temp folder
        database = Path(uri.removeprefix("sqlite:///")).resolve()
        location = (database.parent / DEFAULT_ARTIFACTS / name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by a concurrent run
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def curve_colour(key: str) -> str:
    """The red replica's curves in red, the blue one's in blue, the fused model's in black."""
    if key.startswith("red/"):
        return "tab:red"
    if key.startswith("blue/"):
        return "tab:blue"
    return "black"


class TrackedRun:
    """One MLflow run, written through the client API (safe from any thread)."""

    def __init__(self, run_id: str, experiment_name: str) -> None:
        """Attach to an existing run."""
        self.uri = tracking_uri()
        mlflow.set_tracking_uri(self.uri)
        self.client = MlflowClient(self.uri)
        self.run_id = run_id
        self.experiment_name = experiment_name

    @classmethod
    def start(
        cls,
        cfg: RedblueConfig,
        tags: dict[str, str],
        *,
        parent_run_id: str | None = None,
        run_name: str | None = None,
    ) -> TrackedRun:
        """A new run in experiment ``cfg.name`` with the resolved config as params and artifact;
        nested under ``parent_run_id`` when given."""
        uri = tracking_uri()
        client = MlflowClient(uri)
        experiment_id = ensure_experiment(client, cfg.name, uri)
        versions = {f"redblue.version.{k}": v for k, v in package_versions().items()}
        extra = {"mlflow.parentRunId": parent_run_id} if parent_run_id else {}
        # MLflow's own context tags, as mlflow.start_run sets them: mlflow.user,
        # mlflow.source.name and .type, mlflow.source.git.commit in a git checkout.
        context = resolve_tags({**tags, **versions, **extra})
        run = client.create_run(experiment_id, tags=context, run_name=run_name)
        if run_name is None:  # named as its Ray Train folder is (training.run)
            client.update_run(run.info.run_id, name=ray_run_name(cfg.name, run.info.run_id))
        tracked = cls(run.info.run_id, cfg.name)
        params = [mlflow.entities.Param(k, str(v)) for k, v in cfg.flat().items()]
        tracked.client.log_batch(tracked.run_id, params=params)
        tracked.client.log_text(
            tracked.run_id,
            yaml.safe_dump(cfg.training_dump(), sort_keys=False),
            "config.yaml",
        )
        return tracked

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        stamp = int(time.time() * 1000)
        batch = [
            Metric(key, float(value), stamp, step)
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and np.isfinite(value)
        ]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_learning_curve(self, history: list[dict[str, float]]) -> None:
        """A plot of the training and validation losses per round."""
        if not history:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(7, 4))
        keys = [k for k in history[-1] if k.endswith(("train_loss", "val_loss", "holdout_loss"))]
        for key in sorted(keys):
            points = [(h["round"], h[key]) for h in history if key in h]
            axis.plot(
                *zip(*points, strict=True),
                label=key,
                linestyle="-" if key == "val_loss" else "--",
                color=curve_colour(key),
            )
        axis.set(xlabel="round", ylabel="loss", yscale="log", title=self.experiment_name)
        axis.legend(fontsize=8)
        figure.tight_layout()
        self.client.log_figure(self.run_id, figure, "learning_curve.png")
        plt.close(figure)

    def log_model(self, final_model_dir: Path, sample: pd.DataFrame | np.ndarray) -> str:
        """Log the fused model as a pyfunc (weights + config as artifacts); returns its URI.
        ``sample``: a few raw input rows, for the signature and the input example."""
        from trainers.models import load_model, predict  # torch: not before Ray starts

        model, spec = load_model(final_model_dir)
        schema = input_schema(spec)
        labels, _ = predict(model, spec, schema.rows(sample))
        signature = model_signature(list(schema.feature_names), sample, as_output(spec, labels))
        with self.active():
            example = input_example(sample, list(schema.feature_names))
            info = self._log_pyfunc(signature, final_model_dir, example)
        return info.model_uri

    def log_data(self, report: DataReport) -> None:
        """How the data was read (its task's ``describe``): params, and JSON artifacts such as
        a table's ``preprocessing.json`` (the fitted transformation, as the model stores it)."""
        for name, document in report.artifacts.items():
            self.client.log_dict(self.run_id, document, name)
        self.log_params(report.params)

    def log_params(self, params: dict[str, str]) -> None:
        if params:
            batch = [mlflow.entities.Param(k, v) for k, v in params.items()]
            self.client.log_batch(self.run_id, params=batch)

    @contextmanager
    def active(self) -> Iterator[None]:
        """This run as MLflow's active run (for APIs that log into it), quietly, keeping the
        status and end time it had (leaving ``start_run`` would end it now)."""
        before = self.client.get_run(self.run_id).info
        with warnings.catch_warnings():  # MLflow nudges towards type hints and input examples
            warnings.simplefilter("ignore", UserWarning)
            with mlflow.start_run(run_id=self.run_id):
                yield
        if before.end_time:
            self.client.set_terminated(self.run_id, before.status, end_time=before.end_time)
        else:
            self.client.update_run(self.run_id, status=before.status)

    def _log_pyfunc(
        self, signature: ModelSignature, final_model_dir: Path, example: list | None = None
    ):
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(PYFUNC_CODE),
            artifacts={FINAL_MODEL_DIR: str(final_model_dir)},
            code_paths=[str(Path(trainers.__file__).parent)],
            signature=signature,
            input_example=example,
            pip_requirements=self._requirements(final_model_dir),
        )

    def log_exported_model(self, final_model_dir: Path, signature: ModelSignature) -> str:
        """Log an exported model (its folder holds ``model.onnx`` beside the weights) as a pyfunc
        that runs the graph in ONNX Runtime, with the original's ``signature``; its URI."""
        with self.active():
            info = self._log_pyfunc(signature, final_model_dir)
        return info.model_uri

    @staticmethod
    def _requirements(final_model_dir: Path) -> list[str]:
        """What the pyfunc model needs: torch and safetensors for weights, onnxruntime (and no
        torch) for an exported graph."""
        versions = package_versions()
        runtime = (
            [f"onnxruntime=={metadata.version('onnxruntime')}"]
            if (final_model_dir / ONNX_FILE).is_file()
            else [
                f"torch=={versions['torch'].split('+')[0]}",
                f"safetensors=={metadata.version('safetensors')}",
            ]
        )
        return [
            f"mlflow=={versions['mlflow']}",
            *runtime,
            f"numpy=={metadata.version('numpy')}",
            f"pandas=={metadata.version('pandas')}",
        ]

    def finish(self, status: str = "FINISHED") -> None:
        """End the run as FINISHED (or KILLED, for a trial stopped early)."""
        self.client.set_terminated(self.run_id, status)

    def fail(self, message: str, details: str = "", status: str = "FAILED") -> None:
        """Mark the run FAILED (or KILLED, when stopped) and keep the error on it (``details``,
        e.g. a traceback, go to the ``error.txt`` artifact only)."""
        self.set_tag("redblue.error", message[:5000])
        self.client.log_text(self.run_id, f"{message}\n\n{details}".strip(), "error.txt")
        self.client.set_terminated(self.run_id, status)


def model_signature(
    feature_names: list[str], sample: pd.DataFrame | np.ndarray, labels: np.ndarray | pd.DataFrame
) -> ModelSignature:
    """The logged model's signature: one column per feature, named as in training and typed as
    in ``sample`` (``double`` for numbers, ``string`` for categories); the outputs as inferred
    from ``labels`` (the predictions for ``sample``).

    MLflow checks a column signature before the model sees the data, and its rules refuse what
    users have: int64 columns (only ints of up to 32 bits widen to double) and any numpy array or
    list of rows (columns are matched by name). So the signature carries MLflow's flag for models
    that check their own input (set for signatures inferred from type hints; stored in the MLmodel
    file as ``is_signature_from_type_hint``): MLflow passes the input through and
    ``pyfunc_model.features_from`` checks it. Under ``mlflow models serve`` a JSON request then
    carries its data under ``inputs`` (a list of rows, records, or columns); CSV is unchanged.
    """
    frame = sample_frame(sample, feature_names)
    with warnings.catch_warnings():  # a forecast's ``step`` column is an integer, never a gap
        warnings.filterwarnings("ignore", message=".*integer column", category=UserWarning)
        signature = infer_signature(frame, labels)
    signature._is_signature_from_type_hint = True
    return signature


def input_example(sample: pd.DataFrame | np.ndarray, feature_names: list[str]) -> list:
    """A logged model's input example: ``sample``'s rows as records (gaps as null; an array's
    columns named ``feature_names``), which MLflow stores as ``{"inputs": [...]}``, the request
    body its scoring server takes for the signature's flag (see :func:`model_signature`), and
    checks against the model as it logs."""
    frame = sample_frame(sample, feature_names)
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def sample_frame(sample: pd.DataFrame | np.ndarray, feature_names: list[str]) -> pd.DataFrame:
    """``sample`` as the signature and the input example type it: its raw columns (a sequence
    model's long format: id and time too; an array's named ``feature_names``), integers as
    doubles (a gap would make them floats), and float32 columns (a Parquet file's) as doubles:
    an input example's numbers come back from JSON as doubles, which MLflow will not narrow."""
    if not isinstance(sample, pd.DataFrame):
        return pd.DataFrame(np.asarray(sample, dtype=np.float64), columns=feature_names)
    numbers = sample.select_dtypes(["integer", "floating"]).columns
    return sample.astype({c: "float64" for c in numbers})


def node_tags(node_ids: list[str]) -> dict[str, str]:
    """Where a run's workers ran: how many distinct Ray nodes, and their ids."""
    return {"redblue.num_nodes": str(len(node_ids)), "redblue.node_ids": ",".join(node_ids)}


@functools.cache
def scratch_root() -> Path:
    """One temporary folder per process for downloaded models, removed when the process exits."""
    folder = tempfile.TemporaryDirectory(prefix="redblue-model-")
    atexit.register(folder.cleanup)
    return Path(folder.name)


def download_final_model(checkpoint, into: Path | None = None) -> Path:
    """Copy ``final_model/`` out of a Ray checkpoint into a local folder (by default one in
    :func:`scratch_root`), and beside it the run's ``label_issues.csv`` when it has one
    (``strategy.clean``)."""
    target = Path(into or tempfile.mkdtemp(dir=scratch_root()))
    with checkpoint.as_directory() as directory:
        shutil.copytree(
            Path(directory) / FINAL_MODEL_DIR, target / FINAL_MODEL_DIR, dirs_exist_ok=True
        )
        issues = Path(directory) / LABEL_ISSUES_FILE
        if issues.exists():
            shutil.copy(issues, target / LABEL_ISSUES_FILE)
    return target / FINAL_MODEL_DIR


def fetch_final_model(model_uri: str, into: Path | None = None) -> Path:
    """Download a logged model (into a new folder in :func:`scratch_root` by default) and return
    its ``final_model/`` (weights + model config)."""
    mlflow.set_tracking_uri(tracking_uri())
    target = Path(into or tempfile.mkdtemp(dir=scratch_root()))
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(target)))
    return local / "artifacts" / FINAL_MODEL_DIR
