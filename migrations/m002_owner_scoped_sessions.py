"""Move chat sessions under their owner: `sessions/{sessionId}` to `sessions/{ownerId}:{sessionId}`.

Session ids are chosen by clients. Before this change a session was stored
under its bare id, so the first user to save an id held it (a later owner
was refused) and a stranger could tell taken ids from free ones. Now every
session lives under its owner (`shared.agents.chat.session_ref`) and the
API reads only there, so sessions stored the old way are invisible until
moved. For every `sessions` document whose id holds no `:` this migration:

1. copies it to `sessions/{ownerId}:{sessionId}` unless that document exists
   (a session the owner saved since the deploy is newer and wins);
2. deletes the old document (one holding no `ownerId` was never readable by
   anyone and is dropped).

Each move is one batch, so a document is never lost or doubled, and the
migration is idempotent: running it again finds nothing to move. Run it
once against each project after deploying, with Application Default
Credentials (or the emulator variables):

    GOOGLE_CLOUD_PROJECT=my-project python -m migrations.m002_owner_scoped_sessions
"""

from __future__ import annotations

import logging

from shared.agents.chat import SESSIONS, session_ref
from shared.platform import clients
from shared.platform.logging import configure_logging

logger = logging.getLogger(__name__)


def migrate() -> int:
    """Move every session stored under its bare id; return how many were moved or dropped."""
    db = clients.firestore()
    moved = 0
    for snapshot in db.collection(SESSIONS).stream():
        if ":" in snapshot.id:
            continue
        record = snapshot.to_dict() or {}
        owner = record.get("ownerId")
        batch = db.batch()
        if isinstance(owner, str) and owner:
            target = session_ref(owner, snapshot.id)
            if not target.get().exists:
                batch.set(target, {**record, "sessionId": snapshot.id})
        batch.delete(snapshot.reference)
        batch.commit()
        moved += 1
    return moved


def main() -> None:
    """Run the migration and log how many documents it changed."""
    configure_logging()
    logger.info("sessions migrated", extra={"sessions": migrate()})


if __name__ == "__main__":
    main()
