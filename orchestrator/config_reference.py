"""The configuration reference, rendered as markdown from the pydantic schema.

``python -m orchestrator.config_reference > docs/configuration.md`` regenerates the page;
``tests/unit/test_docs.py`` fails when the page and the schema disagree. Every section of
``RedblueConfig`` gets a table of its keys (type, default, description); a section that is a union
of sections (a discriminated union on ``kind``) gets one table per variant.
"""

from __future__ import annotations

import json
import sys
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from orchestrator.config import RedblueConfig

COMMAND = "python -m orchestrator.config_reference > docs/configuration.md"

INTRO = f"""\
# Configuration reference

<!-- Generated from orchestrator.config.RedblueConfig; do not edit by hand. -->

Generated from the pydantic schema (`orchestrator.config.RedblueConfig`, whose compute sections
live in `trainers/config.py` and `trainers/data_config.py`, and whose `serve` section lives in
`serve_apps/settings.py`).
Regenerate after changing the schema (a unit test fails until you do):

```bash
{COMMAND}
```

A run config is one YAML file (see `configs/`); every key has the default below when left out.
`--set dotted.key=value` overrides a key on the command line, the value parsed as YAML
(`--set model.hidden=[256,128]`). Unknown keys are errors with a "did you mean"; every problem is
reported in one message, with exit code 2, before Ray starts.

Rules across keys, checked with the rest: `optim.batch_size` is a multiple of
`scaling.num_workers` x `deepspeed.grad_accum_steps`; `deepspeed.precision: fp16` needs
`scaling.use_gpu: true`; `deepspeed.offload: cpu` needs `deepspeed.zero_stage` >= 1;
`serve.tls_cert` and `serve.tls_key` come together; a `serve.host` that is not loopback needs
them or `serve.allow_plaintext: true`; `serve.autoscaling.min_replicas` <= `max_replicas`.
`redblue sweep` also checks the `sweep` section: `sweep.scheduler: pbt` needs `sweep.search:
random` and one of `optim.lr`, `optim.weight_decay`, `optim.grad_clip`, `model.dropout` in
`sweep.space`; `sweep.metric` is never a test metric; `sweep.search: optuna` takes no `grid`; and
every value a space can produce is validated against this schema. `redblue train` does not use
the `sweep` section: a sweep section that a sweep would refuse gets a one-line warning.
"""

NAMES = {int: "integer", float: "number", str: "string", bool: "boolean"}


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _union_args(annotation: Any) -> tuple[Any, ...]:
    """The arms of a union (each without its ``Annotated`` tag, as a discriminated union has)."""
    if get_origin(annotation) in (Union, types.UnionType):
        return tuple(
            get_args(arg)[0] if get_origin(arg) is Annotated else arg
            for arg in get_args(annotation)
        )
    return ()


def _sections_in(annotation: Any) -> list[type[BaseModel]]:
    """The sections a field holds: itself, the arms of a union, or a mapping's values."""
    if _is_section(annotation):
        return [annotation]
    args = [arg for arg in _union_args(annotation) if arg is not type(None)]
    if args and all(_is_section(arg) for arg in args):
        return list(args)
    if get_origin(annotation) is dict and _is_section(get_args(annotation)[1]):
        return [get_args(annotation)[1]]
    return []


def type_name(annotation: Any) -> str:
    """A reader's name for a field's type."""
    if annotation in NAMES:
        return NAMES[annotation]
    if annotation is Any:
        return "any"
    if annotation is type(None):
        return "null"
    if _is_section(annotation):
        return "section"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(f"`{value}`" for value in args)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in _union_args(annotation))
    if origin is list:
        return f"list of {type_name(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(type_name(arg) for arg in args) + "]"
    if origin is dict:
        return f"mapping of {type_name(args[0])} to {type_name(args[1])}"
    return getattr(annotation, "__name__", str(annotation))


def _constraints(field: FieldInfo) -> str:
    parts = []
    for item in field.metadata:
        for kind, attribute, sign in (
            (annotated_types.Ge, "ge", ">="),
            (annotated_types.Gt, "gt", ">"),
            (annotated_types.Le, "le", "<="),
            (annotated_types.Lt, "lt", "<"),
        ):
            if isinstance(item, kind):
                parts.append(f"{sign} {getattr(item, attribute)}")
        if isinstance(item, annotated_types.MinLen):
            parts.append(f"length >= {item.min_length}")
        if isinstance(item, annotated_types.MaxLen):
            parts.append(f"length <= {item.max_length}")
        pattern = getattr(item, "pattern", None)
        if pattern:
            parts.append(f"matching `{pattern}`")
    return ", ".join(parts)


def _default(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return None if field.default is PydanticUndefined else field.default


def _show(value: Any) -> str:
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, str):
        return f"`{value}`"
    return f"`{json.dumps(value)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(model: type[BaseModel], prefix: str) -> list[str]:
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        kind = type_name(field.annotation)
        constraints = _constraints(field)
        if constraints:
            kind = f"{kind}, {constraints}"
        default = "required" if field.is_required() else _show(_default(field))
        description = field.description or ""
        if _sections_in(field.annotation) and not _is_section(field.annotation):
            description += f" See `{prefix}{name}` below."
        cells = (f"`{prefix}{name}`", kind, default, description)
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return lines


def _variant(section: type[BaseModel]) -> str | None:
    """The ``kind`` value of one arm of a discriminated union, if it is one."""
    field = section.model_fields.get("kind")
    if field is not None and get_origin(field.annotation) is Literal:
        values = [f"`{value}`" for value in get_args(field.annotation)]
        return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]
    return None


def _render_section(
    title: str, dotted: str, sections: list[type[BaseModel]], description: str, level: int
) -> list[str]:
    lines: list[str] = []
    sections = list(dict.fromkeys(sections))  # one family's section may serve several kinds
    for section in sections:
        heading = f"`{title}`"
        variant = _variant(section) if len(sections) > 1 else None
        if variant is not None:
            heading += f" with `kind:` {variant}"
        lines += ["", f"{'#' * level} {heading}", ""]
        own = (section.__doc__ or "").strip()
        text = own if variant is not None and own else description or own
        if text:
            lines += [_cell(text), ""]
        lines += _table(section, dotted)
        for name, field in section.model_fields.items():
            inner = _sections_in(field.annotation)
            if not inner:
                continue
            if get_origin(field.annotation) is dict:
                key_title, key_prefix = f"{dotted}{name}.KEY", f"{dotted}{name}.KEY."
            else:
                key_title, key_prefix = f"{dotted}{name}", f"{dotted}{name}."
            lines += _render_section(
                key_title, key_prefix, inner, (inner[0].__doc__ or "").strip(), level + 1
            )
    return lines


def render(model: type[BaseModel] = RedblueConfig) -> str:
    """The whole reference page for ``model`` as markdown."""
    top = [name for name, f in model.model_fields.items() if not _sections_in(f.annotation)]
    lines = [INTRO.rstrip(), "", "## Top level", ""]
    rows = _table(model, "")
    lines += rows[:2] + [row for row in rows[2:] if row.split("`")[1] in top]
    for name, field in model.model_fields.items():
        sections = _sections_in(field.annotation)
        if sections:
            lines += _render_section(name, f"{name}.", sections, field.description or "", 2)
    return "\n".join(lines) + "\n"


def json_schema() -> str:
    """The JSON Schema of a run config (``redblue schema``): for editors' YAML language servers
    and for checks in CI; unknown keys are refused, as ``redblue validate`` refuses them."""
    schema = RedblueConfig.model_json_schema()
    header = {"$schema": "https://json-schema.org/draft/2020-12/schema"}
    return json.dumps({**header, **schema, "title": "redblue run config"}, indent=2)


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
