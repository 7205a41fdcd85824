"""Account deletion: refused at once, finished through the `account-deletion` queue.

`DELETE /users/me` (and an admin's `DELETE /users/{id}`) only marks and
revokes, then queues the rest (`request_deletion`):

1. the deletion record `deletions/{userId}` is written (`shared.platform.erasure`):
   from now on every token of the user is refused where it is resolved;
2. the Firebase Auth user (if any) is disabled and its refresh tokens revoked;
3. the user's phone session tokens are deleted (their keys kept on the record
   to find pending uploads);
4. the runs of agent code the user started are revoked (`runsRevokedAt` on
   their account: every run token of theirs is refused from now on, and,
   once the account is deleted, forever);
5. this instance forgets the user's remembered tokens;
6. a task is queued; the answer is 202.

The worker (`shared.privacy.worker`) runs its steps in order, each re-runnable
(bounded batch deletes, or a re-keying that a second run finds nothing to
do), and records each finished step on the deletion record, so a retried or
duplicated task resumes where the last one stopped. A task runs at most
`DELETION_STEPS_PER_TASK` steps, then queues the next one. The last step
sweeps every earlier step once more (a document written meanwhile by a task
already running), deletes the Firebase Auth user and the record itself.
"""

from __future__ import annotations

import logging

from shared.agents import accounts
from shared.platform import auth, clients, erasure, tasks
from shared.platform.auth import Principal
from shared.platform.errors import NotFound, Unavailable
from shared.privacy.api import QUEUE, DeletionAccepted, DeletionTask
from shared.social import phone_auth, user_store

logger = logging.getLogger(__name__)


def delete_me(principal: Principal) -> DeletionAccepted:
    """Delete the caller's account (see the module docstring).

    Raises:
        NotFound: The caller has no user yet (a phone session before `POST /users`).
        Unavailable: Firebase Auth or the queue could not be reached (retry: it resumes).
    """
    if principal.user_id is None:
        raise NotFound("User not found")
    return request_deletion(principal.user_id)


def delete_user(user_id: str) -> DeletionAccepted:
    """Delete any user's account (admins; see the module docstring).

    Raises:
        NotFound: No profile, account or Firebase user has that id.
        Unavailable: Firebase Auth or the queue could not be reached (retry: it resumes).
    """
    known = (
        erasure.is_erasing(user_id)
        or user_store.exists(user_id)
        or accounts.has_account(user_id)
        or _has_firebase_user(user_id)
    )
    if not known:
        raise NotFound("User not found")
    return request_deletion(user_id)


def request_deletion(user_id: str) -> DeletionAccepted:
    """Refuse the user from now on, revoke their sessions and queue the deletion.

    Repeating it (an admin restarting a deletion the queue gave up on) is
    harmless: the record is kept, revocation and queueing happen again.
    """
    profile = user_store.load_many([user_id]).get(user_id, {})
    record = erasure.start(user_id, {"phone": profile.get("phone"), "email": profile.get("email")})
    phone = record.get("phone")
    firebase_email = _disable_firebase_user(user_id)
    keys = phone_auth.revoke_user_tokens(user_id, phone)
    erasure.start(user_id, {"firebaseEmail": firebase_email, "pendingKeys": keys})
    accounts.revoke_runs(user_id)
    auth.forget_user(user_id)
    # No task name: a repeated request must queue a task even after an earlier
    # chain gave up (Cloud Tasks refuses a used name for a while); duplicates are harmless.
    tasks.enqueue(QUEUE, DeletionTask(userId=user_id))
    logger.info("account deletion requested")
    return DeletionAccepted(userId=user_id)


def _has_firebase_user(user_id: str) -> bool:
    from firebase_admin import auth as firebase_auth
    from firebase_admin import exceptions as firebase_exceptions

    try:
        firebase_auth.get_user(user_id, app=clients.firebase_app())
    except (firebase_auth.UserNotFoundError, ValueError):
        return False
    except firebase_exceptions.FirebaseError as exc:
        raise Unavailable("Firebase Auth is unavailable") from exc
    return True


def _disable_firebase_user(user_id: str) -> str | None:
    """Disable the Firebase Auth user and revoke its refresh tokens; return its verified email.

    An unverified email may be anyone's: data keyed by it (conversations) is not the user's.
    """
    from firebase_admin import auth as firebase_auth
    from firebase_admin import exceptions as firebase_exceptions

    try:
        user = firebase_auth.update_user(user_id, disabled=True, app=clients.firebase_app())
        firebase_auth.revoke_refresh_tokens(user_id, app=clients.firebase_app())
    except (firebase_auth.UserNotFoundError, ValueError):
        return None
    except firebase_exceptions.FirebaseError as exc:
        raise Unavailable("Firebase Auth is unavailable") from exc
    return str(user.email) if user.email and user.email_verified else None
