"""Users' own LLM API keys (`/users/me/api-keys`), as the gofannon web UI manages them.

A key is sealed with envelope encryption (`shared.platform.envelope`: a
data key per secret, wrapped by Cloud KMS in production) bound to its owner
and provider, and stored in the owner's account (`accounts`). It is never
answered whole (the UI gets a masked form), never logged, and leaves the
account only as the secret of the one model call it pays for. Only the
owner reaches their keys; admins see none of them.

The LLM gateway uses the payer's own key for a provider before the
platform's; such calls are recorded in the ledger with `keySource: user` and
not charged to the allowance. A provider the user has a key for is usable
by them even when the platform has no key for it. Keys are taken for the
providers the gateway speaks to (`gateway.OWN_KEY_PROVIDERS`); the UI's
other slots answer 400.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import ConfigDict, Field

from shared.agents import accounts
from shared.llm import gateway
from shared.platform import envelope
from shared.platform.auth import Principal
from shared.platform.config import get_settings
from shared.platform.errors import BadRequest, Forbidden
from shared.platform.models import Model

_SHOWN_CHARS = 4
_SHOWN_FROM = 16  # keys shorter than this show none of their characters


class ApiKeyBody(Model):
    """`PUT /users/me/api-keys`: `{provider, api_key}` as the UI sends it."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1, max_length=32)
    api_key: str = Field(
        min_length=1,
        max_length=4096,
        pattern=r"^[\x21-\x7e]+$",
        description="The key (printable ASCII, no spaces); stored sealed, never answered",
    )


class EffectiveKey(Model):
    """Whether a model call for `provider` would find a key, and whose."""

    provider: str
    has_key: bool
    source: Literal["user", "env"] | None = Field(
        description="`user`: the caller's own key; `env`: the platform's; null: none"
    )


def _context(user_id: str, provider: str) -> str:
    return f"accounts/{user_id}/ownApiKeys/{provider}"


def _user_id(principal: Principal) -> str:
    if not principal.user_id:
        raise Forbidden("Create your user first")
    return principal.user_id


def _usable_provider(provider: str) -> str:
    if provider not in accounts.API_KEY_SLOTS:
        raise BadRequest(f"Unknown provider: {provider}")
    if provider not in gateway.OWN_KEY_PROVIDERS:
        usable = ", ".join(gateway.OWN_KEY_PROVIDERS)
        raise BadRequest(f"Keys for {provider} are not used here; keys are taken for {usable}")
    return provider


def masked(principal: Principal) -> accounts.ApiKeys:
    """The caller's keys, masked (null where they have none)."""
    return accounts.get_account(principal).apiKeys


def put(principal: Principal, body: ApiKeyBody) -> accounts.Account:
    """Seal and store the caller's key for a provider, replacing any earlier one.

    Raises:
        BadRequest: A provider the UI does not know, or whose keys are not used here.
        Unavailable: The key service did not wrap the data key (nothing is stored).
    """
    provider = _usable_provider(body.provider)
    user_id = _user_id(principal)
    secret = body.api_key
    sealed = {
        **envelope.seal(secret, _context(user_id, provider)),
        "last4": secret[-_SHOWN_CHARS:] if len(secret) >= _SHOWN_FROM else "",
        "updatedAt": datetime.now(UTC),
    }
    return accounts.with_recent_usage(accounts.set_own_api_key(principal, provider, dict(sealed)))


def delete(principal: Principal, provider: str) -> accounts.Account:
    """Remove the caller's key for a provider (nothing to remove is not an error).

    Raises:
        BadRequest: A provider the UI does not know.
    """
    if provider not in accounts.API_KEY_SLOTS:
        raise BadRequest(f"Unknown provider: {provider}")
    _user_id(principal)
    return accounts.with_recent_usage(accounts.set_own_api_key(principal, provider, None))


def effective(principal: Principal, provider: str) -> EffectiveKey:
    """Whether the caller's model calls to `provider` have a key: their own, or the platform's."""
    if provider in keyed_providers(_user_id(principal)):
        return EffectiveKey(provider=provider, has_key=True, source="user")
    if provider in get_settings().configured_llm_providers():
        return EffectiveKey(provider=provider, has_key=True, source="env")
    return EffectiveKey(provider=provider, has_key=False, source=None)


def keyed_providers(user_id: str | None) -> list[str]:
    """The providers a user's own keys can pay for (no decryption: one document read)."""
    if not user_id:
        return []
    stored = accounts.sealed_api_keys(user_id)
    return [provider for provider in gateway.OWN_KEY_PROVIDERS if stored.get(provider)]


def own_key(user_id: str, provider: str) -> gateway.OwnKey | None:
    """A user's own key for `provider`, opened for one model call, or None.

    Raises:
        Unavailable: The key could not be opened (the key service failed).
    """
    if provider not in gateway.OWN_KEY_PROVIDERS:
        return None
    sealed = accounts.sealed_api_keys(user_id).get(provider)
    if not sealed:
        return None
    return gateway.OwnKey(provider, envelope.open_sealed(sealed, _context(user_id, provider)))
