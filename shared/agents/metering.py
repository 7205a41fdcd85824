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

    Args:
        principal: The caller (their account is created on first use).
        payer: The user charged.
        request: The validated model request.
        source: What the ledger entry says the charge was for.

    Returns:
        The model's answer.

    Raises:
        PaymentRequired: Nothing is left, or the allowance cannot cover the estimate.
        DomainError: The provider failed (nothing is charged).
    """
    own_key = api_keys.own_key(payer, request.provider)
    if own_key is not None:
        result = gateway.complete(request, own_key)
        accounts.settle(
            payer, 0, 0, ledger=(uuid.uuid4().hex, usage_entry(request, result, source, own_key))
        )
        return result
    if accounts.get_account(principal).usageInfo.spendRemaining <= 0:
        raise PaymentRequired("Allowance exhausted")
    estimate = accounts.to_micros(gateway.estimate_cost(request))
    accounts.reserve(payer, estimate, also_set=[])
    try:
        result = gateway.complete(request)
    except DomainError:
        accounts.settle(payer, estimate, 0)
        raise
    charged = accounts.to_micros(result.cost)
    entry = usage_entry(request, result, source, None)
    accounts.settle(payer, estimate, charged, ledger=(uuid.uuid4().hex, entry))
    return result


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
