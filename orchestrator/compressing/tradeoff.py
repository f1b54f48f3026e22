"""A compressed model against its teacher, measured in one process on one thread each: parameters,
file size, p50 latency at batch 1 and 64 and rows per second in PyTorch and in ONNX Runtime, and
the test metric on T; printed, and logged to the student's run (``teacher_*``, ``student_*``)."""

from __future__ import annotations

from orchestrator import console
from orchestrator.config import RedblueConfig
from orchestrator.exporting.measure import TABLE_HEADER, Footprint, measured, table_rows
from serve_apps.model_bundle import ModelBundle
from trainers.loop.plan import RunPlan


def footprints(bundle: ModelBundle, who: str, plan: RunPlan) -> tuple[list[Footprint], int]:
    """The model's figures in torch and in ONNX Runtime (fp32), and its parameter count."""
    from trainers.compress.pruning import parameter_count
    from trainers.export.onnx_graph import to_onnx
    from trainers.export.runtime import OnnxModel
    from trainers.models import predict

    model, spec = bundle.load()
    graph = to_onnx(model, spec).data
    figures = [
        measured(
            f"{who} torch",
            lambda rows: predict(model, spec, rows),
            len(bundle.weights),
            spec,
            plan.dataset,
            plan.split,
        ),
        measured(
            f"{who} onnx",
            OnnxModel(graph, spec).predict,
            len(graph),
            spec,
            plan.dataset,
            plan.split,
        ),
    ]
    return figures, parameter_count(model)


def log_tradeoff(cfg: RedblueConfig, plan: RunPlan, teacher: ModelBundle, summary) -> None:
    """Measure teacher and student, print the table, log params and metrics to the run."""
    import torch

    from orchestrator.serving.model_source import parse_model_uri, resolve_bundle
    from orchestrator.tracking import TrackedRun

    torch.set_num_threads(1)
    student = resolve_bundle(parse_model_uri(summary.model_uri))
    console.err.print("measuring the student against its teacher ...")
    teacher_figures, teacher_parameters = footprints(teacher, "teacher", plan)
    student_figures, student_parameters = footprints(student, "student", plan)
    metric = plan.task.score(plan.spec).metric
    header = [h.format(metric=metric) for h in TABLE_HEADER]
    console.print_table(
        header,
        table_rows([*teacher_figures, *student_figures], metric),
        title=f"parameters: teacher {teacher_parameters:,}, student {student_parameters:,} "
        f"({student_parameters / teacher_parameters:.2f}x)",
    )
    metrics: dict[str, float] = {
        "teacher_parameters": float(teacher_parameters),
        "student_parameters": float(student_parameters),
    }
    for figure, prefix in zip(
        [*teacher_figures, *student_figures],
        ("teacher_torch", "teacher_onnx", "student_torch", "student_onnx"),
        strict=True,
    ):
        metrics |= figure.as_metrics(prefix) | {f"{prefix}_{metric}": figure.metric}
    tracked = TrackedRun(summary.run_id, cfg.name)
    tracked.log_metrics(metrics)
    import mlflow

    params = {f"compression.{k}": str(v) for k, v in cfg.compression.model_dump().items()}
    params["compression.teacher"] = teacher.uri
    tracked.client.log_batch(
        summary.run_id, params=[mlflow.entities.Param(k, v) for k, v in params.items()]
    )
