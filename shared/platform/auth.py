"""Who is calling: bearer tokens resolved to one `Principal`.

Two kinds of bearer token are accepted in `Authorization: Bearer ...`:

- Firebase ID tokens (JWTs) from the web app, verified by firebase-admin with
  revocation checked;
- phone session tokens issued by `/auth/verify-code`: opaque random strings,
  stored only as their SHA-256 in `auth_tokens/{hash}` with an expiry and a
  revoked flag;
- run tokens (`run:...`), held by agent code in the sandbox: HMAC-signed,
  expiring with the run (its wall clock), carrying the user id, the agent
  call chain, the agents the run may call, the data-store namespaces the
  agent declared, the run's model budget and the user's account epoch
  (`RunGrant`). Only routes with auth mode `run` accept them, and they never
  carry admin rights;
- demo capabilities (`demo:...`), held by demo pages: HMAC-signed
  (`shared.platform.signing`), expiring within `DEMO_CAPABILITY_SECONDS`,
  carrying the viewer, the demo and the deployment names the page may call.
  Only routes with auth mode `demo` accept them (`POST /rest/{name}` for
  those names), they never carry admin rights, and they live no longer than
  the viewer's sign-in: each use checks that the viewer's Firebase user is
  still enabled and has not revoked its sessions since the capability was
  made (or that the viewer's phone session still stands), and that the
  viewer is not being deleted.

Admin is the custom claim `admin: true` or the role `admin` on the user document.

Each instance remembers a verified token for `TOKEN_CACHE_SECONDS` (30 s by
default, never past the token's own expiry): a Firebase token's signature,
revocation and disabled state, or a bound phone token's record, are checked
again only after that window. So a token revoked, or a user disabled,
elsewhere is refused by every instance within the window; the instance that
revokes a phone token (logout) forgets it at once. Phone tokens not yet bound
to a user are never remembered (their user appears when `POST /users` binds
them).

A user whose deletion was requested (`shared.platform.erasure`) is refused
whenever a token is resolved; the instance that takes the deletion request
forgets the user's tokens at once (`forget_user`), other instances within
`TOKEN_CACHE_SECONDS`. Run tokens are checked by the agent platform
instead (`shared.agents.accounts.require_live_run`): against the account
epoch they carry, on the account reads and writes their routes already do.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Literal

from shared.platform import clients, erasure, signing
from shared.platform.config import get_settings
from shared.platform.errors import Forbidden, NotFound, Unauthorized, Unavailable

AUTH_TOKENS = "auth_tokens"
USERS = "users"
USER_PHONES = "user_phones"
ADMIN_ROLE = "admin"
RUN_TOKEN_PREFIX = "run:"  # noqa: S105 - a marker, not a secret
DEMO_CAPABILITY_PREFIX = "demo:"
DEMO_CAPABILITY_PURPOSE = "demo-capability.v1"


def hash_token(token: str) -> str:
    """Return the key under which a phone session token is stored.

    Args:
        token: The opaque token as the client holds it.

    Returns:
        Its SHA-256 in hex.
    """
    return hashlib.sha256(token.encode()).hexdigest()


NamespaceAccess = Literal["read", "write", "both"]


@dataclass(frozen=True)
class RunGrant:
    """What a run token allows: acting for one user from inside one agent run.

    A nested agent call gets its own token for the same run (same `run_id`,
    budget and `epoch`, an expiry no later than its parent's), so a call
    inside a run never widens the run's money, lifetime or account.

    Attributes:
        user_id: The user the run acts for (and who pays for its model calls).
        chain: Names of the agents on the call stack, outermost first (cycles are refused).
        agents: Ids of the agents the running agent may call.
        expires: Unix time after which the token is refused (the run's wall clock).
        run_id: The top-level run this token belongs to (its budget and concurrency lease).
        namespaces: Data-store namespaces the running agent may use, with their access
            (`read`, `write` or `both`); None only for the owner's own unsaved code
            (`POST /agents/run-code` without `dataStoreConfig`): every namespace of theirs.
        budget_micros: The most the whole run's model calls may cost together (micro-dollars).
        epoch: The creation time of the user's account when the run started: a token is
            refused once that account is gone, re-created or has its runs revoked.
        store_prefix: Put before every namespace the run names: "" for the caller's own
            agents; for another user's agent, an area of the caller's store of its own
            (`agent:{agentId}:`), so it never reaches the caller's own namespaces.
    """

    user_id: str
    chain: tuple[str, ...]
    agents: tuple[str, ...]
    expires: float
    run_id: str
    namespaces: dict[str, NamespaceAccess] | None
    budget_micros: int
    epoch: float
    store_prefix: str = ""

    @property
    def depth(self) -> int:
        """How many agent calls deep the run is (0 for a top-level run)."""
        return max(len(self.chain) - 1, 0)

    def may_use(self, namespace: str, access: Literal["read", "write"]) -> bool:
        """Tell whether the run may read (or write) a data-store namespace."""
        if self.namespaces is None:
            return True
        declared = self.namespaces.get(namespace)
        return declared is not None and declared in (access, "both")


RUN_TOKEN_PURPOSE = "run-token.v2"  # noqa: S105 - a signing label, not a secret


def issue_run_token(grant: RunGrant) -> str:
    """Mint a run token carrying a grant (agent code holds it until `grant.expires`).

    Args:
        grant: What the run may do.

    Returns:
        `run:` + payload + `~` + signature.
    """
    claims = {
        "u": grant.user_id,
        "c": list(grant.chain),
        "a": list(grant.agents),
        "e": grant.expires,
        "r": grant.run_id,
        "n": grant.namespaces,
        "b": grant.budget_micros,
        "k": grant.epoch,
        "p": grant.store_prefix,
    }
    return RUN_TOKEN_PREFIX + signing.sign(RUN_TOKEN_PURPOSE, claims)


def read_run_token(token: str) -> RunGrant:
    """Check a run token's signature and expiry.

    Raises:
        Unauthorized: Malformed, mis-signed or expired.
    """
    claims = signing.read(RUN_TOKEN_PURPOSE, token.removeprefix(RUN_TOKEN_PREFIX))
    namespaces = claims["n"]
    return RunGrant(
        user_id=str(claims["u"]),
        chain=tuple(claims["c"]),
        agents=tuple(claims["a"]),
        expires=float(claims["e"]),
        run_id=str(claims["r"]),
        namespaces=None if namespaces is None else dict(namespaces),
        budget_micros=int(claims["b"]),
        epoch=float(claims["k"]),
        store_prefix=str(claims["p"]),
    )


@dataclass(frozen=True)
class DemoGrant:
    """What a demo capability allows: `POST /rest/{name}` as the viewer, for the demo's names.

    Attributes:
        user_id: The viewer the page acts for (who pays for the runs).
        demo_id: The demo whose page holds the capability.
        deployments: Friendly names of the deployments the demo selected.
        session: How the viewer signed in when it was made: `firebase` or `phone`.
        subject: The Firebase uid, or the stored hash of the phone session token.
        issued: Unix time it was made.
        expires: Unix time after which it is refused.
    """

    user_id: str
    demo_id: str
    deployments: tuple[str, ...]
    session: Literal["firebase", "phone"]
    subject: str
    issued: float
    expires: float

    def require(self, friendly_name: str) -> None:
        """Allow only the deployments the demo selected.

        Raises:
            Unauthorized: `friendly_name` is not one of them.
        """
        if friendly_name not in self.deployments:
            raise Unauthorized("This capability does not cover that deployment")


def issue_demo_capability(
    principal: Principal, demo_id: str, deployments: list[str]
) -> tuple[str, DemoGrant]:
    """Mint a demo page's capability for its viewer (valid `DEMO_CAPABILITY_SECONDS`).

    Args:
        principal: The viewer, signed in with a Firebase or phone token.
        demo_id: The demo.
        deployments: The friendly names the demo selected.

    Returns:
        `demo:` + signed claims, and the grant it carries.

    Raises:
        Forbidden: The viewer is not signed in as a user (a run or demo token, or no user yet).
    """
    if principal.kind not in ("firebase", "phone") or not principal.user_id:
        raise Forbidden("Only a signed-in user can open a demo page")
    issued = time.time()
    grant = DemoGrant(
        user_id=principal.user_id,
        demo_id=demo_id,
        deployments=tuple(dict.fromkeys(deployments)),
        session=principal.kind,
        subject=principal.subject,
        issued=issued,
        expires=issued + get_settings().demo_capability_seconds,
    )
    claims = {
        "u": grant.user_id,
        "d": grant.demo_id,
        "n": list(grant.deployments),
        "k": grant.session,
        "s": grant.subject,
        "i": grant.issued,
        "e": grant.expires,
    }
    return DEMO_CAPABILITY_PREFIX + signing.sign(DEMO_CAPABILITY_PURPOSE, claims), grant


def _read_demo_capability(token: str) -> DemoGrant:
    claims = signing.read(DEMO_CAPABILITY_PURPOSE, token.removeprefix(DEMO_CAPABILITY_PREFIX))
    user_id, demo_id, names = claims.get("u"), claims.get("d"), claims.get("n")
    session, subject, issued = claims.get("k"), claims.get("s"), claims.get("i")
    if (
        not (isinstance(user_id, str) and user_id)
        or not isinstance(demo_id, str)
        or not (isinstance(names, list) and all(isinstance(name, str) for name in names))
        or session not in ("firebase", "phone")
        or not (isinstance(subject, str) and subject)
        or not isinstance(issued, int | float)
    ):
        raise Unauthorized("Invalid token")
    return DemoGrant(
        user_id=user_id,
        demo_id=demo_id,
        deployments=tuple(names),
        session=session,
        subject=subject,
        issued=float(issued),
        expires=float(claims["e"]),
    )


@dataclass
class Principal:
    """The authenticated caller.

    Attributes:
        kind: Which kind of token authenticated the caller.
        subject: The Firebase uid, or the stored hash of the phone token.
        user_id: The `users/{userId}` document of the caller, if one exists yet.
        phone: The verified phone number (E.164), if known.
        email: The email the token carries, if any.
        email_verified: Whether the identity provider verified that email.
        admin_claim: Whether the token itself carries the admin claim.
    """

    kind: Literal["firebase", "phone", "run", "demo"]
    subject: str
    user_id: str | None
    phone: str | None = None
    email: str | None = None
    email_verified: bool = False
    admin_claim: bool = False
    run: RunGrant | None = None
    demo: DemoGrant | None = None
    _admin: bool | None = field(default=None, repr=False, init=False)

    @property
    def is_admin(self) -> bool:
        """Whether the caller is an admin (claim, or role on the user document)."""
        if self._admin is None:
            # Agent code's run tokens and demo pages' capabilities never carry admin rights.
            self._admin = self.kind in ("firebase", "phone") and (
                self.admin_claim or self._has_admin_role()
            )
        return self._admin

    def _has_admin_role(self) -> bool:
        if not self.user_id:
            return False
        snapshot = clients.firestore().collection(USERS).document(self.user_id).get()
        roles = (snapshot.to_dict() or {}).get("roles") or []
        return isinstance(roles, list) and ADMIN_ROLE in roles


@dataclass(frozen=True)
class _Remembered:
    principal: Principal
    until: float


_remembered: dict[str, _Remembered] = {}
_REMEMBER_AT_MOST = 10_000


def _recall(token_hash: str) -> Principal | None:
    entry = _remembered.get(token_hash)
    if entry is None:
        return None
    if entry.until <= time.time():
        _remembered.pop(token_hash, None)
        return None
    # A copy: the admin-role answer is looked up per request, not remembered.
    return replace(entry.principal)


def _remember(token_hash: str, principal: Principal, expires: float) -> None:
    if len(_remembered) >= _REMEMBER_AT_MOST:
        _remembered.clear()
    window = get_settings().token_cache_seconds
    _remembered[token_hash] = _Remembered(replace(principal), min(expires, time.time() + window))


def forget(token: str) -> None:
    """Make this instance check a token again on its next use (after logout or binding).

    Args:
        token: The token as the client holds it.
    """
    _remembered.pop(hash_token(token), None)


def forget_user(user_id: str) -> None:
    """Make this instance check every token of a user again (their account is being deleted).

    Args:
        user_id: The user.
    """
    for key, entry in list(_remembered.items()):
        if entry.principal.user_id == user_id:
            _remembered.pop(key, None)


def _refuse_deleted(user_id: str | None) -> None:
    if user_id is not None and erasure.is_erasing(user_id):
        raise Unauthorized("Account deleted")


def authenticate(
    authorization: str | None, *, allow_run: bool = False, allow_demo: bool = False
) -> Principal:
    """Resolve an `Authorization` header to a principal.

    Args:
        authorization: The raw header value, or None when absent.
        allow_run: Whether a run token (agent code in the sandbox) is accepted.
        allow_demo: Whether a demo capability (a demo page) is accepted; the caller
            then checks the grant's deployments (`DemoGrant.require`).

    Returns:
        The authenticated principal.

    Raises:
        Unauthorized: The header is missing, malformed, or the token is not valid.
        Unavailable: The token could not be checked right now.
    """
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Not authenticated")
    if token.startswith(RUN_TOKEN_PREFIX):
        if not allow_run:
            raise Unauthorized("Run tokens are not accepted here")
        grant = _read_run_token_safely(token)
        return Principal(kind="run", subject=grant.user_id, user_id=grant.user_id, run=grant)
    if token.startswith(DEMO_CAPABILITY_PREFIX):
        if not allow_demo:
            raise Unauthorized("Demo capabilities are not accepted here")
        return _demo_principal(token)
    token_hash = hash_token(token)
    remembered = _recall(token_hash)
    if remembered is not None:
        return remembered
    if token.count(".") == 2:
        return _firebase_principal(token, token_hash)
    return _phone_principal(token_hash)


def _read_run_token_safely(token: str) -> RunGrant:
    try:
        return read_run_token(token)
    except (ValueError, KeyError, TypeError) as exc:
        raise Unauthorized("Invalid token") from exc


def _demo_principal(token: str) -> Principal:
    token_hash = hash_token(token)
    remembered = _recall(token_hash)
    if remembered is not None:
        return remembered
    grant = _read_demo_capability(token)
    _refuse_deleted(grant.user_id)
    if grant.session == "phone":
        if _phone_principal(grant.subject).user_id != grant.user_id:
            raise Unauthorized("Invalid token")
    else:
        _refuse_signed_out(grant)
    principal = Principal(kind="demo", subject=grant.user_id, user_id=grant.user_id, demo=grant)
    _remember(token_hash, principal, grant.expires)
    return principal


def _refuse_signed_out(grant: DemoGrant) -> None:
    """Refuse a capability whose Firebase viewer was disabled, deleted or signed out since."""
    from firebase_admin import auth as firebase_auth
    from firebase_admin import exceptions as firebase_exceptions

    try:
        user = firebase_auth.get_user(grant.subject, app=clients.firebase_app())
    except (firebase_auth.UserNotFoundError, ValueError) as exc:
        raise Unauthorized("Invalid token") from exc
    except firebase_exceptions.FirebaseError as exc:
        raise Unavailable("Token verification is unavailable") from exc
    if user.uid != grant.user_id:
        raise Unauthorized("Invalid token")
    if user.disabled:
        raise Unauthorized("User disabled")
    valid_after = (user.tokens_valid_after_timestamp or 0) / 1000
    if valid_after > grant.issued:
        raise Unauthorized("Token revoked")


def _firebase_principal(token: str, token_hash: str) -> Principal:
    from firebase_admin import auth as firebase_auth
    from firebase_admin import exceptions as firebase_exceptions

    try:
        claims: dict[str, Any] = firebase_auth.verify_id_token(
            token, app=clients.firebase_app(), check_revoked=True
        )
    except firebase_auth.RevokedIdTokenError as exc:
        raise Unauthorized("Token revoked") from exc
    except firebase_auth.ExpiredIdTokenError as exc:
        raise Unauthorized("Token expired") from exc
    except firebase_auth.UserDisabledError as exc:
        raise Unauthorized("User disabled") from exc
    except (firebase_auth.InvalidIdTokenError, firebase_auth.UserNotFoundError, ValueError) as exc:
        raise Unauthorized("Invalid token") from exc
    except (firebase_auth.CertificateFetchError, firebase_exceptions.FirebaseError) as exc:
        raise Unavailable("Token verification is unavailable") from exc
    # The Auth emulator's tokens are unsigned and firebase-admin skips the expiry
    # check for them; checking here keeps local behaviour equal to production.
    expires = claims.get("exp")
    if not isinstance(expires, int | float) or expires <= time.time():
        raise Unauthorized("Token expired")
    uid = str(claims["uid"])
    principal = Principal(
        kind="firebase",
        subject=uid,
        user_id=uid,
        phone=claims.get("phone_number"),
        email=claims.get("email"),
        email_verified=claims.get("email_verified") is True,
        admin_claim=claims.get("admin") is True,
    )
    _refuse_deleted(uid)
    _remember(token_hash, principal, float(expires))
    return principal


def _phone_principal(token_hash: str) -> Principal:
    snapshot = clients.firestore().collection(AUTH_TOKENS).document(token_hash).get()
    record = snapshot.to_dict()
    if record is None:
        raise Unauthorized("Invalid token")
    if record.get("revoked"):
        raise Unauthorized("Token revoked")
    expires_at = record.get("expiresAt")
    if not isinstance(expires_at, datetime) or expires_at <= datetime.now(UTC):
        raise Unauthorized("Token expired")
    user_id = record.get("userId")
    phone = record.get("phone")
    if user_id is None and phone:
        # Tokens issued before the user existed find the user by the verified phone.
        owner = clients.firestore().collection(USER_PHONES).document(phone).get().to_dict()
        user_id = (owner or {}).get("userId")
    _refuse_deleted(user_id)
    principal = Principal(kind="phone", subject=token_hash, user_id=user_id, phone=phone)
    if record.get("userId") is not None:
        _remember(token_hash, principal, expires_at.timestamp())
    return principal


def require_admin(principal: Principal) -> None:
    """Allow only admins.

    Args:
        principal: The caller.

    Raises:
        Forbidden: The caller is not an admin.
    """
    if not principal.is_admin:
        raise Forbidden("Admin access required")


def require_self_or_admin(principal: Principal, user_id: str) -> None:
    """Allow the user themself or an admin.

    Args:
        principal: The caller.
        user_id: The user whose data is being touched.

    Raises:
        Forbidden: The caller is someone else and not an admin.
    """
    if principal.user_id != user_id and not principal.is_admin:
        raise Forbidden("Not allowed to access this user")


def owned_record(principal: Principal, record: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """Return an owned document's data to its owner or an admin.

    Args:
        principal: The caller.
        record: The document's data (None when it does not exist).
        what: The document's kind, for the message ("Agent", "Ticket", ...).

    Returns:
        The data.

    Raises:
        NotFound: No such document, or someone else's (existence does not leak).
    """
    if record is None or not can_access_owned(principal, record.get("ownerId")):
        raise NotFound(f"{what} not found")
    return record


def can_access_owned(principal: Principal, owner_id: str | None) -> bool:
    """Tell whether the caller may see a document owned by `owner_id`.

    Owned documents that the caller may not see are reported as missing
    (404) by the domain code, so their existence does not leak.

    Args:
        principal: The caller.
        owner_id: The `ownerId` recorded on the document.

    Returns:
        True for the owner and for admins.
    """
    return (owner_id is not None and owner_id == principal.user_id) or principal.is_admin
