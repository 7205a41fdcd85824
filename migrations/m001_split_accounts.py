"""Move agent-platform accounts out of `users/{userId}` into `accounts/{userId}`.

Before this change the account (`basicInfo`, `billingInfo`, `usageInfo` in
dollars) was written onto the user's profile document and its ledger lived
in `users/{userId}/usage`. Now the account is `accounts/{userId}` with money
in integer micro-dollars and its ledger beneath it. For every user document
carrying account fields this migration:

1. writes `accounts/{userId}` (unless it already exists: a newer account wins);
2. copies each ledger entry to `accounts/{userId}/usage/{entryId}` with
   `costMicros`, then deletes the old entry;
3. removes the account fields from the user document, or deletes the
   document when it held nothing else (an account made before any profile).

It is idempotent: running it again finds nothing to move. Run it once
against each project after deploying, with Application Default Credentials
(or the emulator variables):

    GOOGLE_CLOUD_PROJECT=my-project python -m migrations.m001_split_accounts
"""

from __future__ import annotations

import logging
from typing import Any

from shared.agents.accounts import ACCOUNTS, LEDGER, to_micros
from shared.platform import clients
from shared.platform.auth import USERS
from shared.platform.logging import configure_logging

logger = logging.getLogger(__name__)

ACCOUNT_FIELDS = ("basicInfo", "billingInfo", "usageInfo")


def _account(user_id: str, record: dict[str, Any]) -> dict[str, Any]:
    usage = record["usageInfo"]
    return {
        "userId": user_id,
        "basicInfo": record["basicInfo"],
        "billingInfo": {"plan": record.get("billingInfo", {}).get("plan", "free")},
        "usageInfo": {
            "monthlyAllowanceMicros": to_micros(float(usage["monthlyAllowance"])),
            "allowanceResetDate": float(usage["allowanceResetDate"]),
            "spendRemainingMicros": to_micros(float(usage["spendRemaining"])),
        },
    }


def migrate() -> int:
    """Move every legacy account; return how many user documents were changed."""
    from google.cloud import firestore

    db = clients.firestore()
    moved = 0
    for snapshot in db.collection(USERS).stream():
        record = snapshot.to_dict() or {}
        if "usageInfo" not in record or "basicInfo" not in record:
            continue
        account_ref = db.collection(ACCOUNTS).document(snapshot.id)
        if not account_ref.get().exists:
            account_ref.set(_account(snapshot.id, record))
        for entry in snapshot.reference.collection(LEDGER).stream():
            data = entry.to_dict() or {}
            data.setdefault("costMicros", to_micros(float(data.pop("cost", 0.0))))
            batch = db.batch()
            batch.set(account_ref.collection(LEDGER).document(entry.id), data)
            batch.delete(entry.reference)
            batch.commit()
        remaining = set(record) - set(ACCOUNT_FIELDS)
        if remaining:
            snapshot.reference.update({field: firestore.DELETE_FIELD for field in ACCOUNT_FIELDS})
        else:
            snapshot.reference.delete()
        moved += 1
    return moved


def main() -> None:
    """Run the migration and log how many documents it changed."""
    configure_logging()
    logger.info("accounts migrated", extra={"users": migrate()})


if __name__ == "__main__":
    main()
