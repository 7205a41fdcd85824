"""The `auth` function: phone codes, phone session tokens, the web UI's sign-in probes."""

from __future__ import annotations

from shared.platform import sign_in
from shared.platform.http import RequestContext, Router, http_function
from shared.social import phone_auth

router = Router("authentication")


@router.post(
    "/auth/send-code",
    auth="none",
    summary="Send Verification Code",
    body=phone_auth.SendCodeRequest,
    response=phone_auth.SendCodeResponse,
    responses={429: "Too Many Requests", 503: "Service Unavailable"},
)
def send_code(ctx: RequestContext, body: phone_auth.SendCodeRequest) -> phone_auth.SendCodeResponse:
    """Send a verification code to the provided phone number."""
    return phone_auth.send_code(body.phone, ctx.client_host)


@router.post(
    "/auth/verify-code",
    auth="none",
    summary="Verify Phone Code",
    body=phone_auth.VerifyCodeRequest,
    response=phone_auth.TokenResponse,
)
def verify_code(
    ctx: RequestContext, body: phone_auth.VerifyCodeRequest
) -> phone_auth.TokenResponse:
    """Verify a code for a phone number and return an authentication token."""
    return phone_auth.verify_code(body.phone, body.code)


@router.post(
    "/auth/logout",
    auth="none",
    summary="Logout",
    body=phone_auth.LogoutRequest,
    response=phone_auth.LogoutResponse,
)
def logout(ctx: RequestContext, body: phone_auth.LogoutRequest) -> phone_auth.LogoutResponse:
    """Revoke an authentication token."""
    return phone_auth.logout(body.token)


@router.get(
    "/auth/validate", auth="user", summary="Validate Token", response=phone_auth.ValidateResponse
)
def validate(ctx: RequestContext) -> phone_auth.ValidateResponse:
    """Validate the token in the Authorization header."""
    return phone_auth.ValidateResponse(valid=True, user_id=ctx.user.user_id)


@router.get(
    "/auth/providers",
    auth="none",
    summary="List Sign-In Providers",
    response=sign_in.SignInProviders,
)
def list_sign_in_providers(ctx: RequestContext) -> sign_in.SignInProviders:
    """What the web UI's login page offers: Firebase sign-in, no server session providers."""
    return sign_in.providers()


@router.get("/auth/me", auth="user", summary="Get Signed-In User", response=sign_in.SignedInUser)
def get_signed_in_user(ctx: RequestContext) -> sign_in.SignedInUser:
    """The identity of the bearer token (Firebase ID token or phone session token); 401 without."""
    return sign_in.me(ctx.user)


auth = http_function(router)
