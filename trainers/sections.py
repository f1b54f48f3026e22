"""The base of every config section: a pydantic v2 model that forbids unknown keys."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MODEL_URI_PATTERN = r"^(models:/[^\s]+|runs:/[^\s]+)$"


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def init_from_field() -> Any:
    """``model.init_from``, the last key of every family's ``model:`` section: a warm start,
    never part of the trained model's own options."""
    return Field(
        None,
        pattern=MODEL_URI_PATTERN,
        description="Start from a registered or logged model's weights (models:/NAME/VERSION, "
        "models:/NAME@ALIAS or runs:/RUN_ID/model) instead of a random initialization; it must "
        "be the same family and architecture, trained on the same inputs and classes "
        "(checked before Ray starts). The run logs the version it started from.",
    )
