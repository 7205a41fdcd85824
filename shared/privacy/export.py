"""`GET /users/me/export`: everything stored about the caller, as one JSON archive.

Each owner module exports its own collections; this module puts them
together and makes every value JSON-safe (datetimes as ISO-8601, bytes as
base64, references as paths, non-finite numbers as null). Each list holds
at most `EXPORT_MAX_ITEMS` items (ledger entries and messages: the newest);
`truncated` names the lists that held more (each owner is asked for one
item over the cap). Photos come with signed GET
URLs valid for `SIGNED_URL_MINUTES`. Phone session tokens and code hashes
are never exported (only when sessions were made and until when they last).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from shared.agents import accounts, agents, chat, data_store, demos
from shared.platform.auth import Principal
from shared.platform.config import get_settings
from shared.platform.errors import NotFound
from shared.privacy.api import ExportQuery, PersonalDataExport
from shared.social import augment, imessage, matches, phone_auth, photos, user_store


def _utc(value: datetime) -> str:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


_SCALARS: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    ((str, int, bool, type(None)), lambda value: value),
    (float, lambda value: value if math.isfinite(value) else None),
    (datetime, _utc),
    (date, lambda value: value.isoformat()),
    (bytes, lambda value: base64.b64encode(value).decode()),
)


def portable(value: Any) -> Any:
    """Return `value` with every part made JSON-safe (see the module docstring)."""
    if isinstance(value, dict):
        return {str(key): portable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [portable(item) for item in value]
    for kinds, convert in _SCALARS:
        if isinstance(value, kinds):
            return convert(value)
    if hasattr(value, "latitude") and hasattr(value, "longitude"):  # a GeoPoint
        return {"latitude": value.latitude, "longitude": value.longitude}
    path = getattr(value, "path", None)  # a DocumentReference
    return path if isinstance(path, str) else str(value)


def _cap(archive: dict[str, Any], limit: int) -> list[str]:
    """Cut every list of the archive to `limit` items; return the names of those cut.

    Each list keeps its first items (the ledger is newest first), except a
    conversation's messages, which are oldest first and keep their newest.
    """
    cut: list[str] = []

    def keep(name: str, items: list[Any], *, oldest_first: bool = False) -> list[Any]:
        if len(items) <= limit:
            return items
        cut.append(name)
        return items[-limit:] if oldest_first else items[:limit]

    for name, value in archive.items():
        if isinstance(value, list):
            archive[name] = keep(name, value)
    for name, value in archive["dataStore"].items():
        archive["dataStore"][name] = keep(f"dataStore.{name}", value)
    for conversation in archive["conversations"]:
        messages = conversation.get("messages") or []
        label = f"conversations.{conversation.get('contact')}.messages"
        conversation["messages"] = keep(label, messages, oldest_first=True)
    return sorted(cut)


def export_me(principal: Principal, query: ExportQuery) -> PersonalDataExport:
    """Export everything stored about the caller.

    Args:
        principal: The caller.
        query: At most how many items per list (never above `EXPORT_MAX_ITEMS`).

    Raises:
        NotFound: The caller has no user yet (a phone session before `POST /users`).
    """
    user_id = principal.user_id
    if user_id is None:
        raise NotFound("User not found")
    limit = min(query.maxItems or get_settings().export_max_items, get_settings().export_max_items)
    probe = limit + 1  # one more than the cap tells a complete list from a cut one
    social = user_store.export_user_data(user_id, probe)
    profile = social["profile"] or {}
    phone = profile.get("phone") or principal.phone
    # Only contacts proven to be the caller's: an unverified Firebase email may be anyone's.
    verified_email = principal.email if principal.email_verified else None
    contacts = sorted({c for c in (phone, profile.get("email"), verified_email) if c})
    pending_keys = phone_auth.session_keys(user_id, phone, probe)
    account = accounts.export_user_data(user_id, probe)
    chats = chat.export_user_data(user_id, probe)
    owned = agents.export_user_data(user_id, probe)
    sessions = phone_auth.export_user_data(user_id, phone, probe)
    matched = matches.export_user_data(user_id, phone, probe)
    archive: dict[str, Any] = {
        "profile": social["profile"],
        "archetypes": social["archetypes"],
        "account": account["account"],
        "usage": account["usage"],
        "phoneSessions": sessions["phoneSessions"],
        "phoneCode": sessions["phoneCode"],
        "tickets": chats["tickets"],
        "sessions": chats["sessions"],
        "agents": owned["agents"],
        "deployments": owned["deployments"],
        "chosenDeployments": owned["chosenDeployments"],
        "demos": demos.export_user_data(user_id, probe),
        "dataStore": data_store.export_user_data(user_id, probe),
        "conversations": imessage.export_user_data(user_id, contacts, probe),
        "matches": matched["matches"],
        "notifications": matched["notifications"],
        "augmentationResults": augment.export_user_data(user_id, probe),
        "photos": photos.export_user_data(user_id, pending_keys, probe),
    }
    truncated = _cap(archive, limit)
    return PersonalDataExport.model_validate(
        {
            "userId": user_id,
            "exportedAt": datetime.now(UTC).isoformat(),
            "maxItems": limit,
            "truncated": truncated,
            **portable(archive),
        }
    )
