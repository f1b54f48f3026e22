"""The model families, by ``model.kind``. Adding one: its module here and a line below.

Each family module declares everything about it in one place (``trainers.families.base.Family``):
its ``model:`` config section, how to build its network(s), its objective and score, the input
schema that pyfunc and serving check, and an example input.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Tag

from trainers.families import gan, linear, mlp, recurrent
from trainers.families.base import Family

FAMILIES: dict[str, Family] = {
    family.kind: family
    for family in (
        mlp.FAMILY,
        linear.FAMILY,
        recurrent.RNN,
        recurrent.LSTM,
        recurrent.GRU,
        gan.FAMILY,
    )
}

DEFAULT_KIND = "mlp"


def _kind(value: Any) -> Any:
    if isinstance(value, dict):
        return value.get("kind", DEFAULT_KIND)
    return getattr(value, "kind", None)


# The ``model:`` section: one family's section, chosen by its ``kind`` (mlp when unset).
ModelConfig = Annotated[
    Annotated[mlp.MLPConfig, Tag("mlp")]
    | Annotated[linear.LinearConfig, Tag("linear")]
    | Annotated[recurrent.RecurrentConfig, Tag("rnn")]
    | Annotated[recurrent.RecurrentConfig, Tag("lstm")]
    | Annotated[recurrent.RecurrentConfig, Tag("gru")]
    | Annotated[gan.GANConfig, Tag("gan")],
    Discriminator(_kind),
]


def family_of(kind: str) -> Family:
    """The registered family ``kind``; a ValueError names the known ones otherwise."""
    try:
        return FAMILIES[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; known: {sorted(FAMILIES)}") from None
