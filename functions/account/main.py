"""The `account` function: the caller's account and allowance, and admin user management.

Deletion and export reach every collection's owner in both halves; they are
imported when one is asked for, so `GET /users/me` (the web UI's most frequent
call) starts without them.
"""

from __future__ import annotations

from shared.agents import accounts, api_keys
from shared.platform.http import RequestContext, Router, http_function
from shared.platform.paging import Page
from shared.privacy import api

router = Router("account")
_ADMIN_ONLY = {403: "Forbidden"}


@router.get("/users/me", auth="user", summary="Get Current User", response=accounts.Account)
def get_me(ctx: RequestContext) -> accounts.Account:
    """The caller's profile with basicInfo, billingInfo and usageInfo (created on first call)."""
    return accounts.with_recent_usage(accounts.get_account(ctx.user))


@router.delete(
    "/users/me",
    auth="user",
    summary="Delete Current User",
    response=api.DeletionAccepted,
    status_code=202,
    responses={404: "Not Found", 503: "Service Unavailable"},
)
def delete_me(ctx: RequestContext) -> api.DeletionAccepted:
    """Delete the caller's account and every piece of their data.

    Sign-in is refused from this moment; the data goes in the background
    (`account-deletion` queue). The caller cannot repeat it (their token is
    refused); an admin's `DELETE /users/{id}` restarts a deletion that stopped.
    """
    from shared.privacy import deletion

    return deletion.delete_me(ctx.user)


@router.get(
    "/users/me/export",
    auth="user",
    summary="Export Current User Data",
    query=api.ExportQuery,
    response=api.PersonalDataExport,
    responses={404: "Not Found"},
)
def export_me(ctx: RequestContext, query: api.ExportQuery) -> api.PersonalDataExport:
    """Everything stored about the caller as JSON, with signed URLs for their photos.

    Each list holds at most `EXPORT_MAX_ITEMS` items; `truncated` names those that held more.
    """
    from shared.privacy import export

    return export.export_me(ctx.user, query)


@router.put(
    "/users/me/monthly-allowance",
    auth="user",
    summary="Update Monthly Allowance",
    body=accounts.MonthlyAllowanceBody,
    response=accounts.Account,
    responses=_ADMIN_ONLY,
)
def put_monthly_allowance(
    ctx: RequestContext, body: accounts.MonthlyAllowanceBody
) -> accounts.Account:
    """Set the monthly allowance (above the plan cap: admin only)."""
    return accounts.with_recent_usage(
        accounts.set_monthly_allowance(ctx.user, body.monthlyAllowance)
    )


@router.put(
    "/users/me/allowance-reset-date",
    auth="user",
    summary="Update Allowance Reset Date",
    body=accounts.ResetDateBody,
    response=accounts.Account,
    responses=_ADMIN_ONLY,
)
def put_reset_date(ctx: RequestContext, body: accounts.ResetDateBody) -> accounts.Account:
    """Set the reset date in epoch seconds (earlier than now set: admin only)."""
    return accounts.with_recent_usage(accounts.set_reset_date(ctx.user, body.allowanceResetDate))


@router.put(
    "/users/me/spend-remaining",
    auth="user",
    summary="Update Spend Remaining",
    body=accounts.SpendRemainingBody,
    response=accounts.Account,
    responses=_ADMIN_ONLY,
)
def put_spend_remaining(ctx: RequestContext, body: accounts.SpendRemainingBody) -> accounts.Account:
    """Set the remaining spend (raising it: admin only)."""
    return accounts.with_recent_usage(accounts.set_spend_remaining(ctx.user, body.spendRemaining))


@router.post(
    "/users/me/usage",
    auth="user",
    summary="Add Usage",
    body=accounts.UsageBody,
    response=accounts.Account,
    responses={402: "Payment Required"},
)
def post_usage(ctx: RequestContext, body: accounts.UsageBody) -> accounts.Account:
    """Append a usage entry and lower the remaining spend."""
    return accounts.with_recent_usage(accounts.record_usage(ctx.user, body))


@router.post(
    "/users/me/reset-allowance",
    auth="user",
    summary="Reset Allowance",
    response=accounts.Account,
    responses=_ADMIN_ONLY,
)
def post_reset_allowance(ctx: RequestContext) -> accounts.Account:
    """Refill the allowance (before the reset date: admin only)."""
    return accounts.with_recent_usage(accounts.reset_allowance(ctx.user))


@router.get(
    "/users/me/api-keys",
    auth="user",
    summary="Get User Api Keys",
    response=accounts.ApiKeys,
)
def get_api_keys(ctx: RequestContext) -> accounts.ApiKeys:
    """The caller's own LLM API keys, masked (null where none is set)."""
    return api_keys.masked(ctx.user)


@router.put(
    "/users/me/api-keys",
    auth="user",
    summary="Update User Api Key",
    body=api_keys.ApiKeyBody,
    response=accounts.Account,
    responses={400: "Bad Request", 503: "Service Unavailable"},
)
def put_api_key(ctx: RequestContext, body: api_keys.ApiKeyBody) -> accounts.Account:
    """Store the caller's key for a provider, sealed (envelope encryption); answers the account.

    The caller's model calls to that provider then use this key before the
    platform's, and are not charged to the allowance.
    """
    return api_keys.put(ctx.user, body)


@router.delete(
    "/users/me/api-keys/{provider}",
    auth="user",
    summary="Delete User Api Key",
    response=accounts.Account,
    responses={400: "Bad Request"},
)
def delete_api_key(ctx: RequestContext, provider: str) -> accounts.Account:
    """Remove the caller's key for a provider; answers the account."""
    return api_keys.delete(ctx.user, provider)


@router.get(
    "/users/me/api-keys/{provider}/effective",
    auth="user",
    summary="Get Effective Api Key",
    response=api_keys.EffectiveKey,
)
def get_effective_api_key(ctx: RequestContext, provider: str) -> api_keys.EffectiveKey:
    """Whether the caller's calls to `provider` have a key: `user` (theirs) or `env` (ours)."""
    return api_keys.effective(ctx.user, provider)


@router.get(
    "/admin/users",
    auth="admin",
    summary="List Users",
    query=accounts.AdminUsersQuery,
    response=list[accounts.AdminAccount],
)
def list_users(
    ctx: RequestContext, query: accounts.AdminUsersQuery
) -> Page[list[accounts.AdminAccount]]:
    """All accounts, a page at a time (admin; the reset date in epoch milliseconds).

    Page on with `cursor` = the `X-Next-Cursor` header (the page's last `_id`), absent on the last.
    """
    return accounts.admin_list(query)


@router.put(
    "/admin/users/{user_id:id}",
    auth="admin",
    summary="Update User Usage",
    body=accounts.AdminUsageUpdate,
    response=accounts.AdminAccount,
    responses={404: "Not Found"},
)
def update_user_usage(
    ctx: RequestContext, user_id: str, body: accounts.AdminUsageUpdate
) -> accounts.AdminAccount:
    """Set a user's monthlyAllowance, allowanceResetDate, spendRemaining (admin).

    The reset date is in epoch milliseconds; 0 restarts the period from now.
    """
    return accounts.admin_update(user_id, body)


account = http_function(router)
