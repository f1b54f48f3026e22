"""``model.init_from``: a run that starts from a registered or logged model's weights instead of
a random initialization. Checked on the driver before Ray starts (and in each sweep trial): the
model must be of the config's family and architecture, trained on the same inputs (feature
names, their encoding) and classes; its weights (standardization included) become both
replicas' starting point, and the config is pinned to the version it resolved to."""

from __future__ import annotations

import dataclasses
import json

from trainers.errors import DataError
from trainers.loop.plan import RunPlan
from trainers.spec import ModelSpec


class WarmStartError(DataError):
    """``model.init_from`` names a model this run cannot start from."""


def warm_start(cfg, plan: RunPlan) -> RunPlan:
    """``plan`` with ``cfg.model.init_from``'s weights as its initial state (and
    ``cfg.model.init_from`` set to the version it resolved to); ``plan`` itself without it.
    Imports torch only with it: a run without it checks its config before Ray starts, and torch
    (about a second) is imported beside Ray's start instead."""
    uri = cfg.model.init_from
    if not uri:
        return plan
    from safetensors.torch import load as load_safetensors_bytes

    from orchestrator.serving.model_source import ModelSourceError, parse_model_uri, resolve_bundle

    try:
        bundle = resolve_bundle(parse_model_uri(uri))
    except ModelSourceError as exc:
        raise WarmStartError(f"model.init_from: {exc}") from None
    state = load_safetensors_bytes(bundle.weights)
    problem = mismatch(bundle.spec, plan, {k: tuple(v.shape) for k, v in state.items()})
    if problem:
        raise WarmStartError(f"model.init_from {bundle.label} cannot start this run: {problem}")
    if bundle.version:  # an alias moves: the run records (and a --resume reads) the version
        cfg.model.init_from = f"models:/{bundle.name}/{bundle.version}"
    weights = {name: tensor.numpy() for name, tensor in state.items()}
    return dataclasses.replace(plan, initial_state=weights)


def mismatch(source: ModelSpec, plan: RunPlan, shapes: dict[str, tuple[int, ...]]) -> str:
    """Why a model of ``source``'s spec, with weights of ``shapes``, cannot start ``plan``'s
    model; empty when it can."""
    target = plan.spec
    if source.kind != target.kind:
        return f"it is a {source.kind} model and this config trains a {target.kind}"
    if source.task != target.task:
        return f"it does {source.task} and this run {target.task}"
    for field, what in (("feature_names", "input columns"), ("classes", "classes")):
        theirs, ours = _as_json(getattr(source, field)), _as_json(getattr(target, field))
        if theirs != ours:
            return f"its {what} differ: {_short(theirs)} against this data's {_short(ours)}"
    if _encoding(source) != _encoding(target):
        return (
            "its inputs are encoded otherwise (column types, categories or the gaps seen in "
            "training differ from this data's)"
        )
    expected = _parameter_shapes(plan)
    for name in sorted(set(expected) | set(shapes)):
        if expected.get(name) != shapes.get(name):
            return (
                f"its architecture differs ({name}: {shapes.get(name, 'absent')} against "
                f"{expected.get(name, 'absent')} here); set the model section as it was trained"
            )
    return ""


def _parameter_shapes(plan: RunPlan) -> dict[str, tuple[int, ...]]:
    model = plan.family.build(plan.spec)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def _encoding(spec: ModelSpec) -> object:
    """A table's preprocessing without its fill values (fitted numbers a warm start may
    refit); other data kinds' as it is. None stored: numbers as they are."""
    from trainers.data.preprocessing import Preprocessing

    stored = spec.preprocessing or Preprocessing.numeric(list(spec.feature_names)).to_dict()
    document = _as_json(stored)
    if isinstance(document, dict) and isinstance(document.get("columns"), list):
        columns = [{k: v for k, v in c.items() if k != "fill"} for c in document["columns"]]
        document = {**document, "columns": columns}
    return document


def _as_json(value: object) -> object:
    """As stored in a model config (tuples as lists), so a logged spec and a planned one
    compare."""
    return json.loads(json.dumps(value, default=str))


def _short(values: object) -> str:
    listed = list(values) if isinstance(values, (list, tuple)) else [values]
    shown = ", ".join(str(v) for v in listed[:6])
    return f"[{shown}{', ...' if len(listed) > 6 else ''}] ({len(listed)})"
