"""A model call charged to a user: reserve the estimate, call, settle the real cost.

Used by every caller that is not a chat ticket (demo code generation, model
calls from agent code); chat tickets do the same in steps, because each step
is also written to the ticket for a retried worker to resume.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from shared.agents import accounts
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
        if grant is not None:
            accounts.settle_for_run(grant, estimate, 0, None)
        else:
            accounts.settle(payer, estimate, 0)
        raise
    entry = {
        "model": result.model,
        "provider": request.provider,
        "usage": result.usage.model_dump(),
        "source": source,
        "createdAt": datetime.now(UTC),
    }
    charged = accounts.to_micros(result.cost)
    ledger = (uuid.uuid4().hex, entry)
    if grant is not None:
        accounts.settle_for_run(grant, estimate, charged, ledger)
    else:
        accounts.settle(payer, estimate, charged, ledger=ledger)
    return result
