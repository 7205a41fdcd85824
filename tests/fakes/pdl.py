"""People Data Labs for the tests: the stand-in `make dev` runs, answering anyone."""

from __future__ import annotations

from devstack.standins.pdl import API_KEY
from devstack.standins.pdl import PdlStandIn as FakePdl

__all__ = ["API_KEY", "FakePdl"]
