"""Owned documents revised the way gofannon revises them (`_rev`): agents and demo apps.

A revision is `{generation}-{random}`; every write makes a new one. A client
that sends the `_rev` it read gets a 409 when the document changed since;
one that sends none overwrites (the gofannon UI does not always send it).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from shared.platform.errors import Conflict


def next_rev(rev: str | None) -> str:
    """Return the revision that follows `rev` (the first one for None)."""
    generation = int(rev.split("-", 1)[0]) + 1 if rev else 1
    return f"{generation}-{uuid.uuid4().hex}"


def new_owned(owner: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Return a new document of `owner` with its first revision and timestamps."""
    now = datetime.now(UTC)
    return {**fields, "ownerId": owner, "rev": next_rev(None), "createdAt": now, "updatedAt": now}


def revise(
    record: dict[str, Any], sent_rev: str | None, changes: dict[str, Any], what: str
) -> dict[str, Any]:
    """Return `changes` with the next revision, refusing a stale `_rev`.

    Args:
        record: The stored document.
        sent_rev: The `_rev` the client read, if it sent one.
        changes: The fields to write.
        what: The document's kind, for the message.

    Raises:
        Conflict: The document changed since the client read it.
    """
    if sent_rev is not None and sent_rev != record["rev"]:
        raise Conflict(f"The {what} was changed meanwhile; reload it and retry")
    return {**changes, "rev": next_rev(record["rev"]), "updatedAt": datetime.now(UTC)}
