"""Local stand-ins for outside services, speaking their real wire formats.

`make dev` runs each in its own process (`python -m devstack.standins NAME
PORT`, started and stopped with the emulators); the tests serve the same
classes in a thread on free ports (`tests/fakes/`).

- `loopmessage`: LoopMessage's send and typing API, plus its attachment host;
- `pdl`: People Data Labs' Person Enrichment API, with sample people (`people`).

Each answers `GET /` with a JSON listing of what it received and what it
answered (newest last, at most `journal.LIMIT` entries) and forgets it on
`DELETE /` (`make reset`).
"""

from __future__ import annotations

import os

WEBHOOK_SECRET = "local-webhook-secret"  # noqa: S105 - the local stack's, shown in the README


def settings(urls: dict[str, str]) -> dict[str, str]:
    """The settings that point the service at the stand-ins served at `urls` (by name).

    LoopMessage and People Data Labs are left alone when this environment
    configures a key of its own (`LOOPMESSAGE_AUTH_KEY`, `PDL_API_KEY`).
    """
    from devstack.standins.loopmessage import LoopMessageStandIn
    from devstack.standins.pdl import API_KEY

    values = {"LOOPMESSAGE_WEBHOOK_SECRET": WEBHOOK_SECRET}
    if not os.environ.get("LOOPMESSAGE_AUTH_KEY"):
        values.update(LoopMessageStandIn().settings(urls["loopmessage"]))
    if not os.environ.get("PDL_API_KEY"):
        values.update(PDL_API_KEY=API_KEY, PDL_BASE_URL=urls["pdl"])
    return values
