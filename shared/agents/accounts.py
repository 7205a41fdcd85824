"""Accounts, monthly allowances and the usage ledger.

The account lives on the user document (`basicInfo`, `billingInfo`,
`usageInfo`); each charge is a ledger entry in `users/{userId}/usage/{id}`.
All balance changes are atomic compare-and-set writes on the user document
(`write_if_unchanged`), so concurrent calls can never overspend.

Rules:
- `monthlyAllowance` may be set by the user up to their plan's cap
  (`PLAN_CAPS`); above it only by admins.
- `spendRemaining` may only be lowered by the user; raising it is for admins.
- `allowanceResetDate` (epoch seconds) may only be postponed by the user.
- `reset-allowance` before the reset date is admin only. When the reset
  date has passed, the allowance resets itself on the next use:
  `spendRemaining = monthlyAllowance` and the date moves
  `ALLOWANCE_PERIOD_DAYS` on.
- A model call reserves its estimated cost before the call (402 if the
  remaining spend cannot cover it) and settles to the real cost after.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from shared.platform import clients
from shared.platform.auth import USERS, Principal
from shared.platform.config import get_settings
from shared.platform.errors import Forbidden, InvalidInput, NotFound, PaymentRequired
from shared.platform.transactions import Plan, write_if_unchanged

if TYPE_CHECKING:
    from google.cloud.firestore import DocumentReference

LEDGER = "usage"


class BasicInfo(BaseModel):
    """Who the account belongs to."""

    email: str | None = None
    displayName: str | None = None  # noqa: N815 - seed field name
    createdAt: datetime  # noqa: N815 - seed field name


class BillingInfo(BaseModel):
    """The plan and its cap."""

    plan: str
    planCap: float  # noqa: N815 - API field name


class UsageInfo(BaseModel):
    """The allowance and what is left of it (USD; the date in epoch seconds)."""

    monthlyAllowance: float  # noqa: N815 - seed field name
    allowanceResetDate: float  # noqa: N815 - seed field name
    spendRemaining: float  # noqa: N815 - seed field name


class Account(BaseModel):
    """A user with basicInfo, billingInfo and usageInfo."""

    userId: str  # noqa: N815 - seed field name
    basicInfo: BasicInfo  # noqa: N815 - seed field name
    billingInfo: BillingInfo  # noqa: N815 - seed field name
    usageInfo: UsageInfo  # noqa: N815 - seed field name


class MonthlyAllowanceBody(BaseModel):
    """`{"monthlyAllowance": number}`."""

    model_config = ConfigDict(extra="forbid")

    monthlyAllowance: float = Field(ge=0, le=1_000_000)  # noqa: N815


class ResetDateBody(BaseModel):
    """`{"allowanceResetDate": number}` (epoch seconds)."""

    model_config = ConfigDict(extra="forbid")

    allowanceResetDate: float = Field(gt=0, lt=4_102_444_800)  # noqa: N815 - before 2100


class SpendRemainingBody(BaseModel):
    """`{"spendRemaining": number}`."""

    model_config = ConfigDict(extra="forbid")

    spendRemaining: float = Field(ge=0, le=1_000_000)  # noqa: N815


class UsageBody(BaseModel):
    """A usage entry reported by the client."""

    model_config = ConfigDict(extra="forbid")

    responseCost: float = Field(ge=0, le=10_000)  # noqa: N815
    metadata: dict[str, Any] | None = None


class AdminUsageUpdate(BaseModel):
    """Any combination of the three usage fields."""

    model_config = ConfigDict(extra="forbid")

    monthlyAllowance: float | None = Field(default=None, ge=0, le=1_000_000)  # noqa: N815
    allowanceResetDate: float | None = Field(default=None, gt=0, lt=4_102_444_800)  # noqa: N815
    spendRemaining: float | None = Field(default=None, ge=0, le=1_000_000)  # noqa: N815


class AdminUsersQuery(BaseModel):
    """Paging of the admin user list."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=128, description="userId to start after")


class AccountPage(BaseModel):
    """One page of accounts."""

    users: list[Account]
    nextCursor: str | None  # noqa: N815 - API field name


def _user_ref(user_id: str) -> DocumentReference:
    return clients.firestore().collection(USERS).document(user_id)


def _plan_cap(plan: str) -> float:
    caps = get_settings().plan_caps
    return caps.get(plan, caps.get(get_settings().default_plan, 0.0))


def _next_reset(now: datetime) -> float:
    return (now + timedelta(days=get_settings().allowance_period_days)).timestamp()


def _fresh_account(principal: Principal | None, now: datetime) -> dict[str, Any]:
    plan = get_settings().default_plan
    cap = _plan_cap(plan)
    return {
        "basicInfo": {
            "email": principal.email if principal else None,
            "displayName": None,
            "createdAt": now,
        },
        "billingInfo": {"plan": plan},
        "usageInfo": {
            "monthlyAllowance": cap,
            "allowanceResetDate": _next_reset(now),
            "spendRemaining": cap,
        },
    }


def _current(
    record: dict[str, Any] | None, principal: Principal | None, now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the account as it stands now and the writes that bring it there.

    Creates the account fields when missing and applies a due reset.
    """
    if record is None or "usageInfo" not in record:
        fresh = _fresh_account(principal, now)
        return {**(record or {}), **fresh}, fresh
    usage = dict(record["usageInfo"])
    if now.timestamp() >= usage["allowanceResetDate"]:
        usage["spendRemaining"] = usage["monthlyAllowance"]
        usage["allowanceResetDate"] = _next_reset(now)
        return {**record, "usageInfo": usage}, {"usageInfo": usage}
    return record, {}


def _to_account(user_id: str, record: dict[str, Any]) -> Account:
    plan = record.get("billingInfo", {}).get("plan", get_settings().default_plan)
    return Account(
        userId=user_id,
        basicInfo=BasicInfo.model_validate(record["basicInfo"]),
        billingInfo=BillingInfo(plan=plan, planCap=_plan_cap(plan)),
        usageInfo=UsageInfo.model_validate(record["usageInfo"]),
    )


def _require_user_id(principal: Principal) -> str:
    if not principal.user_id:
        raise Forbidden("Create your user first")
    return principal.user_id


def get_account(principal: Principal) -> Account:
    """Return the caller's account, creating it on first use and applying a due reset."""
    user_id = _require_user_id(principal)

    def decide(record: dict[str, Any] | None) -> Plan[Account]:
        account, writes = _current(record, principal, datetime.now(UTC))
        return Plan(_to_account(user_id, account), update=writes or None)

    return write_if_unchanged(_user_ref(user_id), decide)


def _change_usage(
    user_id: str,
    change: Any,
    principal: Principal | None = None,
    ledger_entry: tuple[str, dict[str, Any]] | None = None,
    also_set: list[tuple[Any, dict[str, Any]]] | None = None,
) -> Account:
    """Apply `change(usage_info, record) -> None` (raising to refuse) atomically.

    The account is created first when missing (only for a caller's own
    account) and a due reset is applied; `ledger_entry` and `also_set` are
    written in the same commit.
    """
    ref = _user_ref(user_id)
    also = list(also_set or [])
    if ledger_entry is not None:
        entry_id, entry = ledger_entry
        also.append((ref.collection(LEDGER).document(entry_id), entry))

    def decide(record: dict[str, Any] | None) -> Plan[Account]:
        if record is None and principal is None:
            raise NotFound("User not found")
        account, _ = _current(record, principal, datetime.now(UTC))
        usage = dict(account["usageInfo"])
        change(usage, account)
        account = {**account, "usageInfo": usage}
        writes = {key: account[key] for key in ("basicInfo", "billingInfo", "usageInfo")}
        return Plan(_to_account(user_id, account), update=writes, also_set=also)

    return write_if_unchanged(ref, decide)


def set_monthly_allowance(principal: Principal, value: float) -> Account:
    """Set the caller's monthly allowance (above the plan cap: admin only)."""

    def change(usage: dict[str, Any], account: dict[str, Any]) -> None:
        cap = _plan_cap(account["billingInfo"]["plan"])
        if value > cap and not principal.is_admin:
            raise Forbidden(f"monthlyAllowance above the plan cap ({cap}) needs an admin")
        usage["monthlyAllowance"] = value
        usage["spendRemaining"] = min(usage["spendRemaining"], value)

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

    def change(usage: dict[str, Any], account: dict[str, Any]) -> None:
        if value > usage["spendRemaining"] and not principal.is_admin:
            raise Forbidden("Only admins may raise spendRemaining")
        usage["spendRemaining"] = value

    return _change_usage(_require_user_id(principal), change, principal)


def record_usage(principal: Principal, body: UsageBody) -> Account:
    """Append a ledger entry reported by the client and lower the remaining spend."""
    now = datetime.now(UTC)

    def change(usage: dict[str, Any], account: dict[str, Any]) -> None:
        usage["spendRemaining"] = max(0.0, usage["spendRemaining"] - body.responseCost)

    entry = {"cost": body.responseCost, "metadata": body.metadata or {}, "source": "client"}
    return _change_usage(
        _require_user_id(principal),
        change,
        principal,
        ledger_entry=(uuid.uuid4().hex, {**entry, "createdAt": now}),
    )


def reset_allowance(principal: Principal) -> Account:
    """Refill the allowance now (before the reset date: admin only)."""

    def change(usage: dict[str, Any], account: dict[str, Any]) -> None:
        now = datetime.now(UTC)
        if now.timestamp() < usage["allowanceResetDate"] and not principal.is_admin:
            raise Forbidden("The allowance can be reset after allowanceResetDate")
        usage["spendRemaining"] = usage["monthlyAllowance"]
        usage["allowanceResetDate"] = _next_reset(now)

    return _change_usage(_require_user_id(principal), change, principal)


def admin_update(user_id: str, body: AdminUsageUpdate) -> Account:
    """Set any of a user's usage fields (admins).

    Raises:
        InvalidInput: No field given.
        NotFound: No such user.
    """
    values = body.model_dump(exclude_none=True)
    if not values:
        raise InvalidInput("Give at least one field", loc=("body",))
    return _change_usage(user_id, lambda usage, account: usage.update(values))


def admin_list(query: AdminUsersQuery) -> AccountPage:
    """List accounts by user id, a page at a time (users without an account are skipped)."""
    from google.cloud.firestore_v1.field_path import FieldPath

    collection = clients.firestore().collection(USERS)
    request = collection.order_by(FieldPath.document_id()).limit(query.limit)
    if query.cursor:
        request = request.start_after({FieldPath.document_id(): collection.document(query.cursor)})
    snapshots = list(request.stream())
    accounts = [
        _to_account(snapshot.id, record)
        for snapshot in snapshots
        if "usageInfo" in (record := snapshot.to_dict() or {}) and "basicInfo" in record
    ]
    next_cursor = snapshots[-1].id if len(snapshots) == query.limit else None
    return AccountPage(users=accounts, nextCursor=next_cursor)


def reserve(user_id: str, amount: float, also_set: list[tuple[Any, dict[str, Any]]]) -> None:
    """Hold `amount` of the user's remaining spend before a model call.

    Args:
        user_id: The payer.
        amount: The estimated cost.
        also_set: Documents to merge in the same atomic write (the ticket).

    Raises:
        PaymentRequired: The remaining spend cannot cover the estimate.
        NotFound: No such user.
    """

    def change(usage: dict[str, Any], account: dict[str, Any]) -> None:
        if usage["spendRemaining"] < amount:
            raise PaymentRequired("Allowance exhausted")
        usage["spendRemaining"] -= amount

    _change_usage(user_id, change, also_set=also_set)


def settle(
    user_id: str,
    reserved: float,
    charged: float,
    *,
    ledger: tuple[str, dict[str, Any]] | None = None,
    also_set: list[tuple[Any, dict[str, Any]]] | None = None,
) -> None:
    """Replace a reservation by the real charge (0 releases it) and write the ledger entry.

    Args:
        user_id: The payer.
        reserved: What `reserve` held.
        charged: The real cost.
        ledger: The ledger entry and its deterministic id (the ticket's), if anything is charged.
        also_set: Documents to merge in the same atomic write (the ticket).
    """
    ref = _user_ref(user_id)
    extra = list(also_set or [])
    if ledger is not None:
        entry_id, entry = ledger
        extra.append((ref.collection(LEDGER).document(entry_id), entry))

    def decide(record: dict[str, Any] | None) -> Plan[None]:
        usage = dict((record or {}).get("usageInfo") or {})
        usage["spendRemaining"] = max(0.0, usage.get("spendRemaining", 0.0) + reserved - charged)
        return Plan(None, update={"usageInfo": usage}, also_set=extra)

    write_if_unchanged(ref, decide)
