"""The base class of every schema model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SchemaModel(BaseModel):
    """A value that crosses a topic or a phase boundary.

    Frozen, because a phase that is retried after a crash must see the value it saw the first
    time; extra fields are refused, so a typo fails loudly instead of vanishing on the way to
    Avro; NaN and infinities are refused because they compare unequal to themselves and make
    no sense as scores or timings. Derive changed copies with ``model_copy(update=...)``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)
