"""Write each user's data-store totals (`data_store_totals/{userId}`) from their namespaces.

`GET /data-store/namespaces` answers a page of namespaces with the user's
totals over all of them, read from one counter document that every record
write moves by increments. Namespaces written before the counter existed are
not in it; this migration sets each user's counter to the sum of their
namespace documents (`recordCount`, `sizeBytes`), reading them a page at a
time. It is idempotent (it writes sums, not increments); a record write that
lands while it runs can be lost from that user's counter, so run it when
writes are quiet, and again to repair. Run it once against each project
after deploying, with Application Default Credentials (or the emulator
variables):

    GOOGLE_CLOUD_PROJECT=my-project python -m migrations.m003_data_store_totals
"""

from __future__ import annotations

import logging
from collections import defaultdict

from shared.agents.data_store import NAMESPACES, TOTALS
from shared.platform import clients
from shared.platform.logging import configure_logging
from shared.platform.paging import batches

logger = logging.getLogger(__name__)


def migrate() -> int:
    """Set every user's totals from their namespaces; return how many users were written."""
    db = clients.firestore()
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for batch in batches(db.collection(NAMESPACES)):
        for snapshot in batch:
            data = snapshot.to_dict() or {}
            if data.get("userId"):
                totals[data["userId"]][0] += int(data.get("recordCount", 0))
                totals[data["userId"]][1] += int(data.get("sizeBytes", 0))
    for user_id, (records, size) in totals.items():
        db.collection(TOTALS).document(user_id).set(
            {"userId": user_id, "recordCount": records, "sizeBytes": size}
        )
    return len(totals)


def main() -> None:
    """Run the migration and log how many users' totals it wrote."""
    configure_logging()
    logger.info("data store totals written", extra={"users": migrate()})


if __name__ == "__main__":
    main()
