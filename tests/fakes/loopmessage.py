"""LoopMessage for the tests: the stand-in `make dev` runs, served in a thread (`serving`)."""

from __future__ import annotations

from devstack.standins.loopmessage import LoopMessageStandIn as FakeLoopMessage

__all__ = ["FakeLoopMessage"]
