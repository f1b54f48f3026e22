"""The one run config: a pydantic v2 schema loaded from YAML with ``--set dotted.key=value``.

The compute sections (data, model, optim, strategy, deepspeed) are owned by ``trainers.config``,
the sweep section by ``orchestrator.sweeps.config``, the serve section by ``serve_apps.settings``;
this module adds the other control-plane sections, the loader and the resolution of the config's
paths. Every user mistake becomes a single ``ConfigError`` whose message names the key.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, ValidationInfo, model_validator

from orchestrator import storage
from orchestrator.run_sections import CheckpointSection, RunSection, ScalingSection
from orchestrator.sweeps.config import SweepSection
from orchestrator.worker_shape import WorkerChoice, settle
from serve_apps.settings import ServeSection
from trainers.compress.settings import CompressionSection
from trainers.config import DataConfig, DeepSpeedConfig, OptimConfig, Section, StrategyConfig
from trainers.families import DEFAULT_KIND, FAMILIES, ModelConfig, family_of
from trainers.families.mlp import MLPConfig
from trainers.loop.rounds import micro_batch_size


class ConfigError(ValueError):
    """The config cannot be used; the message names the offending key."""


class RedblueConfig(Section):
    """Everything one training run needs."""

    name: str = Field(
        "digits",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        max_length=100,
        description="MLflow experiment and registered-model name.",
    )
    seed: int = Field(0, ge=0, description="Seed for splits, initialization and batch order.")
    data: DataConfig = Field(default_factory=DataConfig, description="The data set.")
    model: ModelConfig = Field(
        default_factory=MLPConfig,
        description="The model: a family's section, chosen by model.kind (mlp, linear; rnn, "
        "lstm, gru for data.kind sequence).",
    )
    optim: OptimConfig = Field(default_factory=OptimConfig, description="Optimizer and budget.")
    strategy: StrategyConfig = Field(
        default_factory=StrategyConfig, description="Training strategy (red-blue or standard)."
    )
    scaling: ScalingSection = Field(default_factory=ScalingSection, description="Workers.")
    deepspeed: DeepSpeedConfig = Field(
        default_factory=DeepSpeedConfig, description="DeepSpeed engine settings."
    )
    checkpoint: CheckpointSection = Field(
        default_factory=CheckpointSection, description="Checkpoint cadence and retention."
    )
    run: RunSection = Field(default_factory=RunSection, description="Failure handling, storage.")
    sweep: SweepSection = Field(
        default_factory=SweepSection, description="Hyperparameter sweep (redblue sweep)."
    )
    serve: ServeSection = Field(
        default_factory=ServeSection, description="HTTP serving of a model (redblue deploy)."
    )
    compression: CompressionSection = Field(
        default_factory=CompressionSection, description="Pruning or distillation (compress)."
    )

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> RedblueConfig:
        choice = (info.context or {}).get("workers") or WorkerChoice()
        shards = self.optim.batch_size // self.deepspeed.grad_accum_steps
        settle(self.scaling, self.sweep.max_concurrent, shards, choice)  # auto: chosen here
        micro_batch_size(
            self.optim.batch_size, self.scaling.num_workers, self.deepspeed.grad_accum_steps
        )
        if self.deepspeed.precision == "fp16" and not self.scaling.use_gpu:
            raise ValueError("deepspeed.precision fp16 needs scaling.use_gpu: true")
        defaults = family_of(str(self.model.model_dump()["kind"])).optim_defaults
        unset = {k: v for k, v in defaults.items() if k not in self.optim.model_fields_set}
        if unset:
            self.optim = self.optim.model_copy(update=unset)
        return self

    def flat(self) -> dict[str, Any]:
        """The resolved training settings as ``{"dotted.key": value}`` (MLflow params)."""
        return flatten(self.training_dump())

    def training_dump(self) -> dict[str, Any]:
        """The config without the sections that do not shape a training run (sweep, serve,
        compression: ``redblue compress`` logs its own)."""
        return self.model_dump(exclude={"sweep", "serve", "compression"})

    def with_values(self, values: Mapping[str, Any]) -> RedblueConfig:
        """A copy with ``{"dotted.key": value}`` applied and the whole config validated again."""
        tree = self.model_dump()
        for key, value in values.items():
            node = tree
            parts = key.split(".")
            for part in parts[:-1]:
                node = node[part]
            _assign(node, parts, value)
        return RedblueConfig.model_validate(tree)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """Apply one ``dotted.key=value`` (value parsed as YAML) to a raw config tree."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects dotted.key=value, got {assignment!r}")
    key = key.strip()  # a sweep-space key is one key, dots and all: sweep.space.optim.lr
    parts = key.split(".", 2 if key.startswith("sweep.space.") else -1)
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {part!r} is a value, not a section")
        node = child
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {exc}") from exc
    _assign(node, parts, value)


def _assign(section: dict[str, Any], parts: list[str], value: Any) -> None:
    """``section[leaf] = value``, ``section`` being the dict at ``parts[:-1]``. Setting
    ``model.kind`` to another family starts that family's section from its defaults (the other
    family's keys do not apply to it)."""
    if parts == ["model", "kind"] and section.get("kind", DEFAULT_KIND) != value:
        section.clear()
    section[parts[-1]] = value


def _section_model(path: tuple, kind: str = "mlp") -> type[BaseModel] | None:
    """The schema section at ``path`` (a tuple of keys), or None where there is no section;
    ``model`` is the section of the family ``kind``."""
    model: type[BaseModel] = RedblueConfig
    for part in path:
        if model is RedblueConfig and part == "model":
            family = FAMILIES.get(kind)
            if family is None:
                return None
            model = family.config
            continue
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _describe(error: Mapping[str, Any]) -> str:
    location, kind = tuple(error["loc"]), "mlp"
    if location[:1] == ("model",) and len(location) > 1 and location[1] in FAMILIES:
        kind, location = str(location[1]), location[:1] + location[2:]  # pydantic's union tag
    dotted = ".".join(str(part) for part in location)
    if error["type"] == "union_tag_invalid":
        tag = (error.get("ctx") or {}).get("tag")
        return f"{dotted}.kind: {tag!r} is not a model family; known: {', '.join(FAMILIES)}"
    if error["type"] == "extra_forbidden":
        section = _section_model(location[:-1], kind)
        known = list(section.model_fields) if section else []
        hint = difflib.get_close_matches(str(location[-1]), known, n=1)
        fix = f" (did you mean {'.'.join(map(str, location[:-1] + (hint[0],)))}?)" if hint else ""
        return f"{dotted}: unknown key{fix}; known keys here: {', '.join(known)}"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    shown = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{dotted}: {message}{shown}" if dotted else message


def validate(
    tree: dict[str, Any],
    origin: str = "config",
    for_sweep: bool = False,
    warn: Callable[[str], None] | None = None,
    workers: WorkerChoice | None = None,
) -> RedblueConfig:
    """Validate a raw tree; all problems are listed in one ConfigError. Auto workers are chosen
    by ``workers`` (default: for this machine; for trials when ``for_sweep``), which is told the
    choice.

    The sweep section (its own rules, and ``sweep.space`` against the schema) is checked only
    ``for_sweep``; training does not use it, so otherwise its problems go to ``warn`` in one line
    and a section that does not validate is left at its defaults.
    """
    workers = workers or WorkerChoice(for_trials=for_sweep)
    try:
        cfg = RedblueConfig.model_validate(tree, context={"workers": workers})
    except ValidationError as exc:
        errors = exc.errors()
        if for_sweep or not any(e["loc"][:1] == ("sweep",) for e in errors):
            problems = "\n  ".join(_describe(e) for e in errors)
            raise ConfigError(f"invalid {origin}:\n  {problems}") from None
        cfg = validate({k: v for k, v in tree.items() if k != "sweep"}, origin, workers=workers)
        sweep = [_describe(e) for e in errors if e["loc"][:1] == ("sweep",)]
    else:
        sweep = space_problems(cfg)
    if sweep and for_sweep:
        raise ConfigError(f"invalid {origin}:\n  " + "\n  ".join(sweep))
    if sweep and warn:
        more = f" (and {len(sweep) - 1} more)" if len(sweep) > 1 else ""
        warn(f"{origin}: `redblue sweep` would refuse the sweep section: {sweep[0]}{more}")
    return cfg


def _leaf_annotation(dotted: str, kind: str) -> Any:
    """The schema's type at a dotted key (``model.*``: of family ``kind``), or None when the key
    is not a setting."""
    *sections, leaf = dotted.split(".")
    section = _section_model(tuple(sections), kind)
    field = section.model_fields.get(leaf) if section else None
    return field.annotation if field else None


def space_problems(cfg: RedblueConfig) -> list[str]:
    """Every way ``sweep.space`` disagrees with the schema: unknown keys, values it rejects."""
    known = list(cfg.flat())
    problems: list[str] = []
    for key, spec in cfg.sweep.space.items():
        where = f"sweep.space.{key}"
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            suggestion = f" (did you mean {hint[0]}?)" if hint else ""
            problems.append(f"{where}: not a config key{suggestion}")
            continue
        if key.startswith("model.") and cfg.model.init_from:
            problems.append(f"{where}: model.init_from fixes the model; sweep other sections")
            continue
        if spec.kind in ("uniform", "loguniform") and _leaf_annotation(key, cfg.model.kind) is int:
            problems.append(f"{where}: {key} takes integers; use randint or choice")
            continue
        for value in spec.candidates():
            try:
                cfg.with_values({key: value})
            except ValidationError as exc:
                reason = "; ".join(_describe(e) for e in exc.errors())
                problems.append(f"{where}: value {value!r} is rejected: {reason}")
    return problems


def read_tree(path: Path) -> dict[str, Any]:
    """Read a YAML config file into a raw tree."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return tree


def load_config(
    path: Path | str | None,
    overrides: list[str] | tuple[str, ...] = (),
    for_sweep: bool = False,
    warn: Callable[[str], None] | None = None,
    workers: WorkerChoice | None = None,
) -> RedblueConfig:
    """Load a YAML config (the defaults without one), apply ``--set`` overrides in order, and
    validate (see ``validate``)."""
    tree = read_tree(Path(path)) if path is not None else {}
    for assignment in overrides:
        apply_override(tree, assignment)
    origin = f"config {path}" if path is not None else "--set overrides"
    return validate(tree, origin, for_sweep, warn, workers)


def defaults_with(overrides: list[str] | tuple[str, ...]) -> RedblueConfig:
    """The default config with ``--set`` overrides applied (a command run without a file)."""
    return load_config(None, overrides)


def resolve_paths(cfg: RedblueConfig) -> None:
    """Make the config's paths absolute, since trials and workers run in other folders: a local
    ``run.storage_path`` from the state root (the working directory; ``~/.redblue`` inside a Ray
    job), a local data path from the working directory (a URI stays as it is). Raises
    ``storage.StorageError`` when the storage cannot be reached."""
    from orchestrator.environment import state_root
    from trainers.data.sources import BUNDLED, is_uri

    cfg.run.storage_path = storage.absolute(cfg.run.storage_path, state_root())
    storage.check_reachable(cfg.run.storage_path)
    if cfg.data.source not in BUNDLED and not is_uri(cfg.data.source):
        cfg.data.source = str(Path(cfg.data.source).expanduser().resolve())
