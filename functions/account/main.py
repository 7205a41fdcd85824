"""The `account` function: the caller's account and allowance, and admin user management."""

from __future__ import annotations

from shared import usage
from shared.platform.http import RequestContext, Router, http_function

router = Router("account")
_ADMIN_ONLY = {403: "Forbidden"}


@router.get("/users/me", auth="user", summary="Get Current User", response=usage.Account)
def get_me(ctx: RequestContext) -> usage.Account:
    """The caller's profile with basicInfo, billingInfo and usageInfo (created on first call)."""
    return usage.get_account(ctx.user)


@router.put(
    "/users/me/monthly-allowance",
    auth="user",
    summary="Update Monthly Allowance",
    body=usage.MonthlyAllowanceBody,
    response=usage.Account,
    responses=_ADMIN_ONLY,
)
def put_monthly_allowance(ctx: RequestContext, body: usage.MonthlyAllowanceBody) -> usage.Account:
    """Set the monthly allowance (above the plan cap: admin only)."""
    return usage.set_monthly_allowance(ctx.user, body.monthlyAllowance)


@router.put(
    "/users/me/allowance-reset-date",
    auth="user",
    summary="Update Allowance Reset Date",
    body=usage.ResetDateBody,
    response=usage.Account,
    responses=_ADMIN_ONLY,
)
def put_reset_date(ctx: RequestContext, body: usage.ResetDateBody) -> usage.Account:
    """Set the reset date in epoch seconds (earlier than now set: admin only)."""
    return usage.set_reset_date(ctx.user, body.allowanceResetDate)


@router.put(
    "/users/me/spend-remaining",
    auth="user",
    summary="Update Spend Remaining",
    body=usage.SpendRemainingBody,
    response=usage.Account,
    responses=_ADMIN_ONLY,
)
def put_spend_remaining(ctx: RequestContext, body: usage.SpendRemainingBody) -> usage.Account:
    """Set the remaining spend (raising it: admin only)."""
    return usage.set_spend_remaining(ctx.user, body.spendRemaining)


@router.post(
    "/users/me/usage",
    auth="user",
    summary="Add Usage",
    body=usage.UsageBody,
    response=usage.Account,
)
def post_usage(ctx: RequestContext, body: usage.UsageBody) -> usage.Account:
    """Append a usage entry and lower the remaining spend."""
    return usage.record_usage(ctx.user, body)


@router.post(
    "/users/me/reset-allowance",
    auth="user",
    summary="Reset Allowance",
    response=usage.Account,
    responses=_ADMIN_ONLY,
)
def post_reset_allowance(ctx: RequestContext) -> usage.Account:
    """Refill the allowance (before the reset date: admin only)."""
    return usage.reset_allowance(ctx.user)


@router.get(
    "/admin/users",
    auth="admin",
    summary="List Users",
    query=usage.AdminUsersQuery,
    response=usage.AccountPage,
)
def list_users(ctx: RequestContext, query: usage.AdminUsersQuery) -> usage.AccountPage:
    """All accounts, a page at a time (admin)."""
    return usage.admin_list(query)


@router.put(
    "/admin/users/{user_id:id}",
    auth="admin",
    summary="Update User Usage",
    body=usage.AdminUsageUpdate,
    response=usage.Account,
    responses={404: "Not Found"},
)
def update_user_usage(
    ctx: RequestContext, user_id: str, body: usage.AdminUsageUpdate
) -> usage.Account:
    """Set any of a user's monthlyAllowance, allowanceResetDate, spendRemaining (admin)."""
    return usage.admin_update(user_id, body)


account = http_function(router)
