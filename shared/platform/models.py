"""The base of every pydantic model of ours: validators are built on first use, not at import.

A function imports the models of all its routes; building their validators
at import time would cost every cold start for routes the first request
does not touch (and would import `email_validator` for any `EmailStr`).
`defer_build` moves that work to the first validation of each model.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """A pydantic model whose validator is built when first used."""

    model_config = ConfigDict(defer_build=True)
