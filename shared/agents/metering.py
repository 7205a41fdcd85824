"""A model call charged to a user: reserve the estimate, call, settle the real cost.

Used by every caller that is not a chat ticket (code generation, model
calls from agent code); chat tickets do the same in steps, because each step
is also written to the ticket for a retried worker to resume.

A call the payer's own API key pays for (`api_keys.own_key`) is made with
that key, recorded in the ledger with `keySource: user` and charged nothing;
every other call has `keySource: platform`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from shared.agents import accounts, api_keys
from shared.llm import gateway
from shared.platform.auth import Principal
from shared.platform.errors import DomainError, PaymentRequired


def charged_completion(
    principal: Principal, payer: str, request: gateway.LlmRequest, source: str
) -> gateway.LlmResult:
    """Call the model for `payer`, charging the real cost once with a ledger entry.

    The estimate is reserved first, so parallel calls cannot overspend; a
    failed call releases the reservation and charges nothing.

    A run token's call (`principal.run`) never creates an account: it is
    refused once the run's user is gone or revoked, and is also held to the
    run's budget (`accounts.reserve_for_run`).

    Args:
        principal: The caller (their account is created on first use, unless a run).
        payer: The user charged.
        request: The validated model request.
        source: What the ledger entry says the charge was for.

    Returns:
        The model's answer.

    Raises:
        PaymentRequired: Nothing is left, or the allowance cannot cover the estimate.
        DomainError: The provider failed (nothing is charged).
    """
    grant = principal.run
    # Another user's agent never spends the caller's own key: it is held to the run's budget.
    foreign = grant is not None and bool(grant.store_prefix)
    own_key = None if foreign else api_keys.own_key(payer, request.provider)
    if own_key is not None:
        if grant is not None:
            accounts.require_live_run(grant)
        result = gateway.complete(request, own_key)
        _settle(
            principal,
            payer,
            0,
            0,
            (uuid.uuid4().hex, usage_entry(request, result, source, own_key)),
        )
        return result
    estimate = accounts.to_micros(gateway.estimate_cost(request))
    if grant is not None:
        accounts.reserve_for_run(grant, estimate)
    else:
        if accounts.get_account(principal).usageInfo.spendRemaining <= 0:
            raise PaymentRequired("Allowance exhausted")
        accounts.reserve(payer, estimate, also_set=[])
    try:
        result = gateway.complete(request)
    except DomainError:
        _settle(principal, payer, estimate, 0, None)
        raise
    charged = accounts.to_micros(result.cost)
    entry = usage_entry(request, result, source, None)
    _settle(principal, payer, estimate, charged, (uuid.uuid4().hex, entry))
    return result


def _settle(
    principal: Principal,
    payer: str,
    reserved: int,
    charged: int,
    ledger: tuple[str, dict[str, Any]] | None,
) -> None:
    """Replace a reservation by the charge: within the run's budget when a run is calling."""
    if principal.run is not None:
        accounts.settle_for_run(principal.run, reserved, charged, ledger)
    else:
        accounts.settle(payer, reserved, charged, ledger=ledger)


def usage_entry(
    request: gateway.LlmRequest,
    result: gateway.LlmResult,
    source: str,
    own_key: gateway.OwnKey | None,
) -> dict[str, Any]:
    """The ledger entry of a model call: what it was for, and whose key paid (`keySource`)."""
    return {
        "model": result.model,
        "provider": request.provider,
        "usage": result.usage.model_dump(),
        "source": source,
        "keySource": "user" if own_key is not None else "platform",
        "createdAt": datetime.now(UTC),
    }
