"""An export in MLflow: a run of its own in the source model's experiment (params, the trade-off
metrics, ``export.json``), the exported model logged as a pyfunc with the original's signature,
and optionally a version of the same registered model, tagged, through the champion gate."""

from __future__ import annotations

from pathlib import Path

from serve_apps.model_bundle import ModelBundle


def run_name(bundle: ModelBundle, quantized: str) -> str:
    """``digits-v3-onnx-int8``, ``digits-run1a2b3c4d-onnx``."""
    source = f"v{bundle.version}" if bundle.version else f"run{(bundle.run_id or '?')[:8]}"
    suffix = "" if quantized == "none" else f"-{quantized}"
    return f"{bundle.name}-{source}-onnx{suffix}"


def source_tags(bundle: ModelBundle, quantized: str) -> dict[str, str]:
    """The tags of the export's run and registered version: format, quantization, source."""
    return {
        "redblue.format": "onnx",
        "redblue.quantized": quantized,
        "redblue.source_version": bundle.version or "none",
        "redblue.source_uri": bundle.uri,
        "redblue.source_run_id": bundle.run_id or "none",
    }


def log_export(
    bundle: ModelBundle,
    folder: Path,
    info: dict,
    params: dict[str, str],
    metrics: dict[str, float],
) -> tuple[str, str]:
    """Log the export as a new run; returns (run id, the logged model's URI)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from orchestrator.tracking import TrackedRun, tracking_uri

    quantized = str(info["quantized"])
    client = MlflowClient(tracking_uri())
    experiment_id = client.get_run(str(bundle.run_id)).info.experiment_id
    experiment = client.get_experiment(experiment_id).name
    run = client.create_run(
        experiment_id,
        run_name=run_name(bundle, quantized),
        tags={**source_tags(bundle, quantized), "redblue.kind": "export"},
    )
    tracked = TrackedRun(run.info.run_id, experiment)
    try:
        client.log_batch(
            tracked.run_id, params=[mlflow.entities.Param(k, v) for k, v in params.items()]
        )
        tracked.log_metrics(metrics)
        client.log_dict(tracked.run_id, info, "export.json")
        signature = mlflow.models.get_model_info(bundle.uri).signature
        model_uri = tracked.log_exported_model(folder, signature)
    except BaseException as exc:
        tracked.fail(f"export failed: {exc}")
        raise
    tracked.finish()
    return tracked.run_id, model_uri
