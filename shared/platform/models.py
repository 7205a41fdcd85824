"""The base of every pydantic model of ours: validators are built on first use, not at import.

A function imports the models of all its routes; building their validators
at import time would cost every cold start for routes the first request
does not touch (and would import `email_validator` for any `EmailStr`).
`defer_build` moves that work to the first validation of each model.

Numbers are finite everywhere: pydantic reads the strings `"1e999"` and
`"Infinity"` (query strings, forms, JSON strings in lax mode) as floats
infinity and NaN, which JSON cannot carry back; `allow_inf_nan=False`
refuses them with a 422 in every model.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class Model(BaseModel):
    """A pydantic model whose validator is built when first used."""

    model_config = ConfigDict(defer_build=True, allow_inf_nan=False)


class NoNulls(Model):
    """A request model that refuses an explicit null for every field not in `nullable`.

    A partial update may leave a field out; a null would store a value the
    stored document's model cannot read back (a 500 on every later read).
    """

    nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable:
            raise ValueError("may not be null")
        return value
