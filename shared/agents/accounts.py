"""Accounts, monthly allowances and the usage ledger (owner of `accounts`).

The agent-platform account lives in `accounts/{userId}` (`basicInfo`,
`billingInfo`, `usageInfo`), apart from the social profile, so either can
exist without the other and either order of first calls works. Each charge
is a ledger entry in `accounts/{userId}/usage/{entryId}`. Money is stored as
integer micro-dollars (`monthlyAllowanceMicros`, `spendRemainingMicros`,
`costMicros`); the API keeps its dollar number fields. The ledger sum always
equals what was taken from the allowance: a charge never takes more than
what remains, and the entry records what was taken.

`GET /users/me` (and every answer about one account) also lists the
`RECENT_USAGE` newest ledger entries in `usageInfo.usage` (read from the
ledger, never stored in the account document), with the gofannon web UI's
`_id`, `createdAt`, `updatedAt` and `apiKeys`. The admin list leaves `usage`
empty (`with_recent_usage` fills it).

A user's own LLM API keys are kept sealed (`shared.platform.envelope`) in
`ownApiKeys.{provider}` with their last four characters; answers show only a
masked form to the user (`apiKeys`) and nothing to admins, and exports leave
the sealed material out. Deleting the account deletes them.

All balance changes are atomic compare-and-set writes on the account
(`write_if_unchanged`), so concurrent calls can never overspend.

Rules:
- `monthlyAllowance` may be set by the user up to their plan's cap
  (`PLAN_CAPS`); above it only by admins.
- `spendRemaining` may only be lowered by the user; raising it is for admins.
- `allowanceResetDate` (epoch seconds) may only be postponed by the user.
  The admin routes speak epoch milliseconds, as the gofannon admin panel
  does, both ways; an admin's `0` restarts the period (the next reset is
  `ALLOWANCE_PERIOD_DAYS` from now) rather than leaving no date.
- `reset-allowance` before the reset date is admin only. When the reset
  date has passed, the allowance resets itself on the next use:
  `spendRemaining = monthlyAllowance` and the date moves
  `ALLOWANCE_PERIOD_DAYS` on.
- An account with nothing left answers 402 to new usage.
- A model call reserves its estimated cost before the call (402 if the
  remaining spend cannot cover it) and settles to the real cost after.

Runs of agent code (`RunGrant`) never create an account: a run starts from
the user's own token (`start_run` creates the account then, and puts its
`basicInfo.createdAt` in the run token as the run's epoch). Each run token
use is refused once the account is gone, re-created (another epoch) or has
`runsRevokedAt` set (`revoke_runs`, when a deletion is requested). A run's
model calls are also held to the run's budget: `runSpend.{runId}` on the
account (`spent`, `until`) is moved in the same compare-and-set as the
allowance, so the budget holds across every process and instance of the
run; entries past their `until` are dropped on the next write.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field

from shared.platform import clients, erasure
from shared.platform.auth import Principal, RunGrant
from shared.platform.config import get_settings
from shared.platform.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    PaymentRequired,
    Unauthorized,
)
from shared.platform.models import Model
from shared.platform.paging import Page
from shared.platform.transactions import Plan, write_if_unchanged
from shared.platform.values import StorableMap

if TYPE_CHECKING:
    from google.cloud.firestore import DocumentReference

ACCOUNTS = "accounts"
LEDGER = "usage"
RECENT_USAGE = 100
MICROS = 1_000_000
_Money = ConfigDict(extra="forbid", allow_inf_nan=False)


def to_micros(dollars: float) -> int:
    """Convert dollars to integer micro-dollars (rounded to the nearest)."""
    return round(dollars * MICROS)


def to_dollars(micros: int) -> float:
    """Convert integer micro-dollars to dollars."""
    return micros / MICROS


class BasicInfo(Model):
    """Who the account belongs to."""

    email: str | None = None
    displayName: str | None = None  # noqa: N815 - seed field name
    createdAt: datetime  # noqa: N815 - seed field name


class BillingInfo(Model):
    """The plan and its cap."""

    plan: str
    planCap: float  # noqa: N815 - API field name


class UsageEntry(Model):
    """One ledger entry as the web UI charts it."""

    timestamp: datetime
    responseCost: float  # noqa: N815 - UI field name
    metadata: dict[str, Any]


class UsageInfo(Model):
    """The allowance and what is left of it (USD; the date in epoch seconds), and recent usage."""

    monthlyAllowance: float  # noqa: N815 - seed field name
    allowanceResetDate: float  # noqa: N815 - seed field name
    spendRemaining: float  # noqa: N815 - seed field name
    usage: list[UsageEntry] = Field(
        default_factory=list, description=f"The {RECENT_USAGE} newest ledger entries, newest first"
    )


# The gofannon web UI's API key slots, by provider.
API_KEY_SLOTS = {
    "openai": "openaiApiKey",
    "anthropic": "anthropicApiKey",
    "gemini": "geminiApiKey",
    "perplexity": "perplexityApiKey",
    "openrouter": "openrouterApiKey",
}
OWN_KEYS = "ownApiKeys"
_MASK = "\u2022" * 8


class ApiKeys(Model):
    """The web UI's per-provider key slots: a masked form of the user's own key, or null."""

    openaiApiKey: str | None = None  # noqa: N815 - UI field name
    anthropicApiKey: str | None = None  # noqa: N815 - UI field name
    geminiApiKey: str | None = None  # noqa: N815 - UI field name
    perplexityApiKey: str | None = None  # noqa: N815 - UI field name
    openrouterApiKey: str | None = None  # noqa: N815 - UI field name


def _masked_keys(record: dict[str, Any]) -> ApiKeys:
    stored = record.get(OWN_KEYS) or {}
    return ApiKeys.model_validate(
        {
            slot: _MASK + str(stored[provider].get("last4", ""))
            for provider, slot in API_KEY_SLOTS.items()
            if stored.get(provider)
        }
    )


class Account(Model):
    """A user with basicInfo, billingInfo and usageInfo."""

    model_config = ConfigDict(populate_by_name=True)

    id: str = Field(alias="_id", description="The user id (the web UI's `_id`)")
    userId: str  # noqa: N815 - seed field name
    createdAt: datetime  # noqa: N815 - UI field name
    updatedAt: datetime  # noqa: N815 - UI field name
    apiKeys: ApiKeys = Field(default_factory=ApiKeys)  # noqa: N815 - UI field name
    basicInfo: BasicInfo  # noqa: N815 - seed field name
    billingInfo: BillingInfo  # noqa: N815 - seed field name
    usageInfo: UsageInfo  # noqa: N815 - seed field name


class MonthlyAllowanceBody(Model):
    """`{"monthlyAllowance": number}`."""

    model_config = _Money

    monthlyAllowance: float = Field(ge=0, le=1_000_000)  # noqa: N815


class ResetDateBody(Model):
    """`{"allowanceResetDate": number}` (epoch seconds)."""

    model_config = _Money

    allowanceResetDate: float = Field(gt=0, lt=4_102_444_800)  # noqa: N815 - before 2100


class SpendRemainingBody(Model):
    """`{"spendRemaining": number}`."""

    model_config = _Money

    spendRemaining: float = Field(ge=0, le=1_000_000)  # noqa: N815


class UsageBody(Model):
    """A usage entry reported by the client."""

    model_config = _Money

    responseCost: float = Field(ge=0, le=10_000)  # noqa: N815
    metadata: StorableMap | None = None


class AdminUsageUpdate(Model):
    """Any combination of the three usage fields (the reset date in epoch milliseconds)."""

    model_config = _Money

    monthlyAllowance: float | None = Field(default=None, ge=0, le=1_000_000)  # noqa: N815
    allowanceResetDate: float | None = Field(  # noqa: N815
        default=None,
        ge=0,
        lt=4_102_444_800_000,
        description="Epoch milliseconds (before 2100); 0 restarts the period from now",
    )
    spendRemaining: float | None = Field(default=None, ge=0, le=1_000_000)  # noqa: N815


class AdminUsageInfo(UsageInfo):
    """Usage as the admin routes show it: the reset date in epoch milliseconds."""

    allowanceResetDate: float = Field(description="Epoch milliseconds")  # noqa: N815


class AdminAccount(Account):
    """An account as the admin routes show it (the gofannon admin panel's units)."""

    usageInfo: AdminUsageInfo  # noqa: N815 - seed field name


class AdminUsersQuery(Model):
    """Paging of the admin user list: pass the last `_id` as `cursor` while pages are full."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=200, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=128, description="userId to start after")


def _account_ref(user_id: str) -> DocumentReference:
    return clients.firestore().collection(ACCOUNTS).document(user_id)


def _plan_cap(plan: str) -> int:
    caps = get_settings().plan_caps
    return to_micros(caps.get(plan, caps.get(get_settings().default_plan, 0.0)))


def _next_reset(now: datetime) -> float:
    return (now + timedelta(days=get_settings().allowance_period_days)).timestamp()


def _fresh_account(user_id: str, principal: Principal | None, now: datetime) -> dict[str, Any]:
    plan = get_settings().default_plan
    cap = _plan_cap(plan)
    return {
        "userId": user_id,
        "updatedAt": now,
        "basicInfo": {
            "email": principal.email if principal else None,
            "displayName": None,
            "createdAt": now,
        },
        "billingInfo": {"plan": plan},
        "usageInfo": {
            "monthlyAllowanceMicros": cap,
            "allowanceResetDate": _next_reset(now),
            "spendRemainingMicros": cap,
        },
    }


def _current(
    user_id: str, record: dict[str, Any] | None, principal: Principal | None, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the account as it stands now and the writes that bring it there.

    Creates the account when missing and applies a due reset.
    """
    if record is None:
        fresh = _fresh_account(user_id, principal, now)
        return fresh, fresh
    usage = dict(record["usageInfo"])
    if now.timestamp() >= usage["allowanceResetDate"]:
        usage["spendRemainingMicros"] = usage["monthlyAllowanceMicros"]
        usage["allowanceResetDate"] = _next_reset(now)
        return {**record, "usageInfo": usage, "updatedAt": now}, {
            "usageInfo": usage,
            "updatedAt": now,
        }
    return record, {}


def _recent_usage(user_id: str) -> list[UsageEntry]:
    """The newest ledger entries of a user, newest first (at most `RECENT_USAGE`)."""
    from google.cloud import firestore

    query = (
        _account_ref(user_id)
        .collection(LEDGER)
        .order_by("createdAt", direction=firestore.Query.DESCENDING)
        .limit(RECENT_USAGE)
    )
    entries = []
    for snapshot in query.stream():
        entry = snapshot.to_dict() or {}
        metadata = dict(entry.get("metadata") or {})
        for key in ("source", "keySource", "provider", "model", "usage", "ticketId"):
            if key in entry:
                metadata.setdefault(key, entry[key])
        entries.append(
            UsageEntry(
                timestamp=entry["createdAt"],
                responseCost=to_dollars(entry.get("costMicros", 0)),
                metadata=metadata,
            )
        )
    return entries


def with_recent_usage(account: Account) -> Account:
    """The account with its newest ledger entries in `usageInfo.usage` (one bounded query)."""
    usage_info = account.usageInfo.model_copy(update={"usage": _recent_usage(account.userId)})
    return account.model_copy(update={"usageInfo": usage_info})


def _to_account(user_id: str, record: dict[str, Any]) -> Account:
    plan = record.get("billingInfo", {}).get("plan", get_settings().default_plan)
    usage = record["usageInfo"]
    created = record["basicInfo"]["createdAt"]
    return Account(
        id=user_id,
        userId=user_id,
        createdAt=created,
        updatedAt=record.get("updatedAt") or created,
        apiKeys=_masked_keys(record),
        basicInfo=BasicInfo.model_validate(record["basicInfo"]),
        billingInfo=BillingInfo(plan=plan, planCap=to_dollars(_plan_cap(plan))),
        usageInfo=UsageInfo(
            monthlyAllowance=to_dollars(usage["monthlyAllowanceMicros"]),
            allowanceResetDate=usage["allowanceResetDate"],
            spendRemaining=to_dollars(usage["spendRemainingMicros"]),
        ),
    )


def _require_user_id(principal: Principal) -> str:
    if not principal.user_id:
        raise Forbidden("Create your user first")
    return principal.user_id


def get_account(principal: Principal) -> Account:
    """Return the caller's account, creating it on first use and applying a due reset."""
    user_id = _require_user_id(principal)

    def decide(record: dict[str, Any] | None) -> Plan[Account]:
        account, writes = _current(user_id, record, principal, datetime.now(UTC))
        return Plan(_to_account(user_id, account), update=writes or None)

    return write_if_unchanged(_account_ref(user_id), decide)


def _change_usage(
    user_id: str,
    change: Callable[[dict[str, Any], dict[str, Any]], None],
    principal: Principal | None = None,
    ledger_entry: Callable[[int, int], tuple[str, dict[str, Any]]] | None = None,
    also_set: list[tuple[Any, dict[str, Any]]] | None = None,
) -> Account:
    """Apply `change(usage_info, record) -> None` (raising to refuse) atomically.

    `usage_info` holds micro-dollars. The account is created first when
    missing (only for a caller's own account) and a due reset is applied.
    `ledger_entry(before, after) -> (entry_id, entry) | None` sees the
    remaining micro-dollars before and after the change; its entry and
    `also_set` are written in the same commit.
    """
    ref = _account_ref(user_id)

    def decide(record: dict[str, Any] | None) -> Plan[Account]:
        if record is None and principal is None:
            raise NotFound("User not found")
        account, _ = _current(user_id, record, principal, datetime.now(UTC))
        usage = dict(account["usageInfo"])
        before = usage["spendRemainingMicros"]
        change(usage, account)
        account = {**account, "usageInfo": usage, "updatedAt": datetime.now(UTC)}
        writes = {
            key: account[key]
            for key in ("userId", "basicInfo", "billingInfo", "usageInfo", "updatedAt")
        }
        also = list(also_set or [])
        entry = ledger_entry(before, usage["spendRemainingMicros"]) if ledger_entry else None
        if entry is not None:
            also.append((ref.collection(LEDGER).document(entry[0]), entry[1]))
        return Plan(_to_account(user_id, account), update=writes, also_set=also)

    return write_if_unchanged(ref, decide)


def set_monthly_allowance(principal: Principal, value: float) -> Account:
    """Set the caller's monthly allowance (above the plan cap: admin only)."""
    micros = to_micros(value)

    def change(usage: dict[str, Any], account: dict[str, Any]) -> None:
        cap = _plan_cap(account["billingInfo"]["plan"])
        if micros > cap and not principal.is_admin:
            raise Forbidden(
                f"monthlyAllowance above the plan cap ({to_dollars(cap)}) needs an admin"
            )
        usage["monthlyAllowanceMicros"] = micros
        usage["spendRemainingMicros"] = min(usage["spendRemainingMicros"], micros)

    return _change_usage(_require_user_id(principal), change, principal)


def set_reset_date(principal: Principal, value: float) -> Account:
    """Move the caller's reset date (earlier: admin only)."""

    def change(usage: dict[str, Any], account: dict[str, Any]) -> None:
        if value < usage["allowanceResetDate"] and not principal.is_admin:
            raise Forbidden("Only admins may move the reset date earlier")
        usage["allowanceResetDate"] = value

    return _change_usage(_require_user_id(principal), change, principal)


def set_spend_remaining(principal: Principal, value: float) -> Account:
    """Set what the caller has left (raising it: admin only)."""
    micros = to_micros(value)

    def change(usage: dict[str, Any], account: dict[str, Any]) -> None:
        if micros > usage["spendRemainingMicros"] and not principal.is_admin:
            raise Forbidden("Only admins may raise spendRemaining")
        usage["spendRemainingMicros"] = micros

    return _change_usage(_require_user_id(principal), change, principal)


def record_usage(principal: Principal, body: UsageBody) -> Account:
    """Charge a usage entry reported by the client and write it to the ledger.

    The charge is the reported cost, or what remains when that is less; the
    entry records the charge (and the reported cost).

    Raises:
        PaymentRequired: Nothing is left of the allowance.
    """
    reported = to_micros(body.responseCost)
    entry_id = uuid.uuid4().hex
    now = datetime.now(UTC)

    def change(usage: dict[str, Any], account: dict[str, Any]) -> None:
        if usage["spendRemainingMicros"] <= 0:
            raise PaymentRequired("Allowance exhausted")
        usage["spendRemainingMicros"] -= min(reported, usage["spendRemainingMicros"])

    def entry(before: int, after: int) -> tuple[str, dict[str, Any]]:
        return entry_id, {
            "costMicros": before - after,
            "reportedCostMicros": reported,
            "metadata": body.metadata or {},
            "source": "client",
            "createdAt": now,
        }

    return _change_usage(_require_user_id(principal), change, principal, ledger_entry=entry)


def reset_allowance(principal: Principal) -> Account:
    """Refill the allowance now (before the reset date: admin only)."""

    def change(usage: dict[str, Any], account: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        if now.timestamp() < usage["allowanceResetDate"] and not principal.is_admin:
            raise Forbidden("The allowance can be reset after allowanceResetDate")
        usage["spendRemainingMicros"] = usage["monthlyAllowanceMicros"]
        usage["allowanceResetDate"] = _next_reset(now)

    return _change_usage(_require_user_id(principal), change, principal)


def admin_view(account: Account) -> AdminAccount:
    """The account in the admin routes' units (the reset date in epoch milliseconds)."""
    data = account.model_dump(by_alias=True)
    data["apiKeys"] = {}  # a user's keys are theirs alone, even masked
    data["usageInfo"]["allowanceResetDate"] = account.usageInfo.allowanceResetDate * 1000
    return AdminAccount.model_validate(data)


def admin_update(user_id: str, body: AdminUsageUpdate) -> AdminAccount:
    """Set any of a user's usage fields (admins); a reset date of 0 restarts the period.

    Raises:
        InvalidInput: No field given.
        NotFound: No such account.
    """
    values = body.model_dump(exclude_none=True)
    if not values:
        raise InvalidInput("Give at least one field", loc=("body",))

    def change(usage: dict[str, Any], account: dict[str, Any]) -> None:
        if "monthlyAllowance" in values:
            usage["monthlyAllowanceMicros"] = to_micros(values["monthlyAllowance"])
        if "spendRemaining" in values:
            usage["spendRemainingMicros"] = to_micros(values["spendRemaining"])
        if "allowanceResetDate" in values:
            millis = values["allowanceResetDate"]
            now = datetime.now(UTC)
            usage["allowanceResetDate"] = millis / 1000 if millis else _next_reset(now)

    return admin_view(with_recent_usage(_change_usage(user_id, change)))


def admin_list(query: AdminUsersQuery) -> Page[list[AdminAccount]]:
    """A page of accounts by user id; the next page's cursor (the last `_id`) when more follow."""
    from google.cloud.firestore_v1.field_path import FieldPath

    collection = clients.firestore().collection(ACCOUNTS)
    request = collection.order_by(FieldPath.document_id()).limit(query.limit + 1)
    if query.cursor:
        request = request.start_after({FieldPath.document_id(): collection.document(query.cursor)})
    found = list(request.stream())
    kept = found[: query.limit]
    accounts = [admin_view(_to_account(s.id, s.to_dict() or {})) for s in kept]
    return Page(accounts, kept[-1].id if len(found) > query.limit else None)


def reserve(user_id: str, micros: int, also_set: list[tuple[Any, dict[str, Any]]]) -> None:
    """Hold `micros` of the user's remaining spend before a model call.

    Args:
        user_id: The payer.
        micros: The estimated cost in micro-dollars.
        also_set: Documents to merge in the same atomic write (the ticket).

    Raises:
        PaymentRequired: The remaining spend cannot cover the estimate.
        NotFound: No such account.
    """

    def change(usage: dict[str, Any], account: dict[str, Any]) -> None:
        if usage["spendRemainingMicros"] < micros:
            raise PaymentRequired("Allowance exhausted")
        usage["spendRemainingMicros"] -= micros

    _change_usage(user_id, change, also_set=also_set)


def settle(
    user_id: str,
    reserved: int,
    charged: int,
    *,
    ledger: tuple[str, dict[str, Any]] | None = None,
    also_set: list[tuple[Any, dict[str, Any]]] | None = None,
) -> int:
    """Replace a reservation by the real charge (0 releases it) and write the ledger entry.

    The charge never exceeds the reservation plus what remains; the ledger
    entry's `costMicros` is what was actually charged.

    Args:
        user_id: The payer.
        reserved: What `reserve` held, in micro-dollars.
        charged: The real cost, in micro-dollars.
        ledger: The entry id (deterministic, the ticket's) and its fields, if anything is charged.
        also_set: Documents to merge in the same atomic write (the ticket).

    Returns:
        The micro-dollars charged.
    """
    ref = _account_ref(user_id)
    extra = list(also_set or [])

    def decide(record: dict[str, Any] | None) -> Plan[int]:
        if record is None:
            return Plan(0)  # deleted meanwhile: nothing re-creates it
        usage = dict(record.get("usageInfo") or {})
        available = usage.get("spendRemainingMicros", 0) + reserved
        taken = min(charged, available)
        usage["spendRemainingMicros"] = available - taken
        writes = list(extra)
        if ledger is not None:
            entry_id, entry = ledger
            writes.append(
                (ref.collection(LEDGER).document(entry_id), {**entry, "costMicros": taken})
            )
        return Plan(
            taken, update={"usageInfo": usage, "updatedAt": datetime.now(UTC)}, also_set=writes
        )

    return write_if_unchanged(ref, decide)


RUN_SPEND = "runSpend"
RUNS_REVOKED = "runsRevokedAt"
_live: dict[str, tuple[float, float]] = {}
_LIVE_AT_MOST = 10_000


def _epoch(record: dict[str, Any]) -> float:
    created = record["basicInfo"]["createdAt"]
    return float(created.timestamp()) if isinstance(created, datetime) else 0.0


def account_ref(user_id: str) -> DocumentReference:
    """The account document of a user (for reads batched with other documents)."""
    return _account_ref(user_id)


def check_live_run(grant: RunGrant, record: dict[str, Any] | None) -> None:
    """Refuse a run whose account (as just read) is gone, of another epoch, or revoked.

    Raises:
        Unauthorized: The run's user was deleted or revoked.
    """
    _refuse_run(grant, record)


def _refuse_run(grant: RunGrant, record: dict[str, Any] | None) -> dict[str, Any]:
    """The account a run acts on, or Unauthorized when the run's user is gone or revoked."""
    if (
        record is None
        or record.get(RUNS_REVOKED) is not None
        or abs(_epoch(record) - grant.epoch) > 1e-3
    ):
        _live.pop(grant.user_id, None)
        raise Unauthorized("Account deleted")
    return record


def _remember_live(user_id: str, epoch: float) -> None:
    if len(_live) >= _LIVE_AT_MOST:
        _live.clear()
    _live[user_id] = (epoch, time.time() + get_settings().token_cache_seconds)


def start_run(principal: Principal) -> float:
    """Return the caller's account epoch for a new run (the account is created on first use).

    An instance that read the account less than `TOKEN_CACHE_SECONDS` ago
    answers from memory (the window in which it also still accepts the
    caller's own token after a deletion elsewhere); each use of the run's
    token is checked again (`require_live_run`, `reserve_for_run`).

    Raises:
        Forbidden: The caller has no user yet.
        Unauthorized: The account's runs were revoked (its deletion is under way).
    """
    user_id = _require_user_id(principal)
    known = _live.get(user_id)
    if known is not None and known[1] > time.time():
        return known[0]

    def decide(record: dict[str, Any] | None) -> Plan[float]:
        account, writes = _current(user_id, record, principal, datetime.now(UTC))
        if account.get(RUNS_REVOKED) is not None:
            raise Unauthorized("Account deleted")
        return Plan(_epoch(account), update=writes or None)

    epoch = write_if_unchanged(_account_ref(user_id), decide)
    _remember_live(user_id, epoch)
    return epoch


def require_live_run(grant: RunGrant) -> None:
    """Refuse a run token whose user was deleted, re-created or revoked.

    Each instance reads the account at most once per `TOKEN_CACHE_SECONDS`
    per user (the instance that starts a run or revokes runs knows at
    once); routes that move money check on their own compare-and-set.

    Raises:
        Unauthorized: The account is gone, of another epoch, or its runs were revoked.
    """
    known = _live.get(grant.user_id)
    if known is not None and known[1] > time.time() and abs(known[0] - grant.epoch) <= 1e-3:
        return
    snapshot = _account_ref(grant.user_id).get()
    record = _refuse_run(grant, snapshot.to_dict() if snapshot.exists else None)
    _remember_live(grant.user_id, _epoch(record))


def revoke_runs(user_id: str) -> None:
    """Refuse every run token of a user from now on (a deletion was requested)."""
    from google.api_core import exceptions as google_exceptions

    _live.pop(user_id, None)
    try:
        _account_ref(user_id).update({RUNS_REVOKED: datetime.now(UTC)})
    except google_exceptions.NotFound:
        return


def _run_spend(record: dict[str, Any], now: float) -> dict[str, dict[str, Any]]:
    """The runs' budget entries still in force (expired ones are dropped)."""
    entries = record.get(RUN_SPEND) or {}
    return {key: dict(value) for key, value in entries.items() if value.get("until", 0) > now}


def reserve_for_run(grant: RunGrant, micros: int) -> None:
    """Hold `micros` of the allowance and of the run's budget before a model call of a run.

    Raises:
        Unauthorized: The run's user is gone, re-created or revoked.
        PaymentRequired: The allowance or the run's budget cannot cover the estimate.
    """
    ref = _account_ref(grant.user_id)

    def decide(record: dict[str, Any] | None) -> Plan[None]:
        now = datetime.now(UTC)
        account, _ = _current(grant.user_id, _refuse_run(grant, record), None, now)
        usage = dict(account["usageInfo"])
        if usage["spendRemainingMicros"] <= 0 or usage["spendRemainingMicros"] < micros:
            raise PaymentRequired("Allowance exhausted")
        spend = _run_spend(account, now.timestamp())
        entry = spend.get(grant.run_id) or {"spent": 0, "until": grant.expires}
        if entry["spent"] + micros > grant.budget_micros:
            budget = to_dollars(grant.budget_micros)
            raise PaymentRequired(f"The run's model budget (${budget:g}) is spent")
        usage["spendRemainingMicros"] -= micros
        spend[grant.run_id] = {
            "spent": entry["spent"] + micros,
            "until": max(float(entry["until"]), grant.expires),
        }
        update = {"usageInfo": usage, RUN_SPEND: spend, "updatedAt": now}
        return Plan(None, update=update)

    write_if_unchanged(ref, decide)


def settle_for_run(
    grant: RunGrant, reserved: int, charged: int, ledger: tuple[str, dict[str, Any]] | None
) -> int:
    """Replace a run's reservation by the real charge, within the allowance and the run's budget.

    The charge never exceeds the reservation plus what remains of either; an
    account deleted meanwhile is left deleted.

    Returns:
        The micro-dollars charged.
    """
    ref = _account_ref(grant.user_id)

    def decide(record: dict[str, Any] | None) -> Plan[int]:
        if record is None:
            return Plan(0)
        now = datetime.now(UTC)
        usage = dict(record.get("usageInfo") or {})
        available = usage.get("spendRemainingMicros", 0) + reserved
        spend = _run_spend(record, now.timestamp())
        entry = spend.get(grant.run_id)
        room = grant.budget_micros - (entry["spent"] - reserved if entry else 0)
        taken = max(min(charged, available, room), 0)
        usage["spendRemainingMicros"] = available - taken
        if entry is not None:
            entry["spent"] = max(entry["spent"] - reserved + taken, 0)
        writes = []
        if ledger is not None:
            entry_id, fields = ledger
            writes.append(
                (ref.collection(LEDGER).document(entry_id), {**fields, "costMicros": taken})
            )
        update = {"usageInfo": usage, RUN_SPEND: spend, "updatedAt": now}
        return Plan(taken, update=update, also_set=writes)

    return write_if_unchanged(ref, decide)


def set_own_api_key(principal: Principal, provider: str, sealed: dict[str, Any] | None) -> Account:
    """Store (or, with None, remove) the caller's sealed API key for `provider`.

    Args:
        principal: The caller (their account is created on first use).
        provider: One of `API_KEY_SLOTS`.
        sealed: The sealed key and its `last4` (`shared.platform.envelope`), or None.
    """
    from google.cloud import firestore

    if provider not in API_KEY_SLOTS:
        raise ValueError(f"not an API key slot: {provider}")
    user_id = _require_user_id(principal)

    def decide(record: dict[str, Any] | None) -> Plan[Account]:
        now = datetime.now(UTC)
        account, writes = _current(user_id, record, principal, now)
        keys = {**(account.get(OWN_KEYS) or {})}
        keys.pop(provider, None)
        if sealed is not None:
            keys[provider] = sealed
        if record is None:
            writes = {**writes, OWN_KEYS: keys}
        else:
            value = sealed if sealed is not None else firestore.DELETE_FIELD
            writes = {**writes, f"{OWN_KEYS}.{provider}": value, "updatedAt": now}
        return Plan(_to_account(user_id, {**account, OWN_KEYS: keys}), update=writes)

    return write_if_unchanged(_account_ref(user_id), decide)


def sealed_api_keys(user_id: str) -> dict[str, dict[str, Any]]:
    """A user's sealed API keys by provider (empty when they have none or no account)."""
    record = _account_ref(user_id).get().to_dict() or {}
    return dict(record.get(OWN_KEYS) or {})


def delete_user_data(user_id: str) -> None:
    """Delete a user's account and its whole usage ledger, in bounded batches (re-runnable).

    The ledger goes first, so the account document is never gone while
    entries of it remain.
    """
    ref = _account_ref(user_id)
    erasure.delete_matching(ref.collection(LEDGER))
    ref.delete()


def export_user_data(user_id: str, limit: int) -> dict[str, Any]:
    """Return a user's account and their newest `limit` ledger entries."""
    from google.cloud import firestore

    ref = _account_ref(user_id)
    ledger = ref.collection(LEDGER).order_by("createdAt", direction=firestore.Query.DESCENDING)
    account = ref.get().to_dict()
    if account and account.get(OWN_KEYS):
        # The sealed material stays out of exports: which providers, when, the last four.
        account[OWN_KEYS] = {
            provider: {key: entry.get(key) for key in ("last4", "updatedAt")}
            for provider, entry in account[OWN_KEYS].items()
        }
    return {
        "account": account,
        "usage": [snapshot.to_dict() or {} for snapshot in ledger.limit(limit).stream()],
    }


def has_account(user_id: str) -> bool:
    """Tell whether a user has an agent-platform account."""
    return bool(_account_ref(user_id).get().exists)
