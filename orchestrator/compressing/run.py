"""``redblue compress``: check the teacher against the config's data before Ray starts, plan the
student (the pruned teacher, or the config's model taught by the teacher), train it as
``redblue train`` does (red-blue or standard, DeepSpeed, Ray Train, an MLflow run), then measure
it against its teacher and log the trade-off to its run."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from orchestrator import console
from orchestrator.config import RedblueConfig
from orchestrator.exit_codes import EXIT_INVALID, EXIT_OK
from serve_apps.model_bundle import ModelBundle
from trainers.loop.plan import RunPlan


class CompressionError(ValueError):
    """The teacher cannot be compressed with this config."""


def data_differences(teacher: ModelBundle, plan: RunPlan) -> list[str]:
    """How the teacher's data differs from the config's (a student must read the same encoded
    rows as its teacher): empty when they agree."""
    stored = teacher.model_config  # as JSON holds it (lists for tuples), so compared as JSON
    ours = json.loads(json.dumps(plan.spec.to_dict(), default=str))
    fields = ("task", "feature_names", "classes", "in_features", "preprocessing")
    return [what.replace("_", " ") for what in fields if stored.get(what) != ours.get(what)]


def student_plan(cfg: RedblueConfig, plan: RunPlan, teacher: ModelBundle) -> RunPlan:
    """The plan of the student: the pruned teacher as the starting point (and the model section
    set to its architecture), or the config's model with the teacher to learn from."""
    from trainers.compress.settings import Teacher
    from trainers.families import family_of
    from trainers.tasks import task_for

    settings = cfg.compression
    if task_for(teacher.spec).asks_requests or plan.task.asks_requests:
        raise CompressionError("a generative model cannot be compressed (only exported)")
    differences = data_differences(teacher, plan)
    if differences:
        raise CompressionError(
            f"the teacher {teacher.label} was trained on other data than this config's "
            f"(its {', '.join(differences)} differ): a student reads the rows its teacher read"
        )
    if settings.method == "distill":
        if cfg.strategy.clean != "off":
            raise CompressionError("strategy.clean with distillation: set strategy.clean: off")
        taught = Teacher(
            teacher.weights, teacher.model_config, settings.temperature, settings.alpha
        )
        return dataclasses.replace(plan, teacher=taught)
    from trainers.compress.pruning import GATES, prune

    if teacher.spec.kind != "mlp" and teacher.spec.kind not in GATES:
        raise CompressionError(
            f"compression.method prune takes an mlp, rnn, lstm or gru teacher; {teacher.label} "
            f"is a {teacher.spec.kind} (distill it instead: compression.method: distill)"
        )
    model, spec = teacher.load()
    pruned, state = prune(model, spec, settings.prune_fraction)
    section: Any = family_of(spec.kind).config.model_validate(pruned.options)
    cfg.model = section  # the run logs the architecture it trains
    return dataclasses.replace(plan, spec=pruned, initial_state=state)


def compress(cfg: RedblueConfig, plan: RunPlan, teacher_uri: str, address: str | None) -> int:
    """The whole command; its exit code."""
    from orchestrator.serving.model_source import ModelSourceError, parse_model_uri, resolve_bundle

    try:
        teacher = resolve_bundle(parse_model_uri(teacher_uri))
        plan = student_plan(cfg, plan, teacher)
    except (ModelSourceError, CompressionError) as exc:
        console.print_error(str(exc))
        return EXIT_INVALID
    method = cfg.compression.method
    what = (
        f"{teacher.label} pruned by {cfg.compression.prune_fraction:.0%} to hidden "
        f"{plan.spec.options['hidden']}"
        if method == "prune"
        else f"a {plan.spec.kind} student of {teacher.label} (temperature "
        f"{cfg.compression.temperature:g}, alpha {cfg.compression.alpha:g})"
    )
    console.err.print(f"compress: {what}")
    from orchestrator.training.run import train

    tags = {
        "redblue.kind": "compress",
        "redblue.compression": method,
        "redblue.teacher": teacher.uri,
    }
    code, summary = train(cfg, plan, address, tags=tags)
    if code != EXIT_OK or summary is None:
        return code
    from orchestrator.compressing.tradeoff import log_tradeoff

    log_tradeoff(cfg, plan, teacher, summary)
    return EXIT_OK
