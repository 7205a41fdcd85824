"""Serve one stand-in on 127.0.0.1 (`make dev` starts each in its own process group).

python -m devstack.standins loopmessage PORT
python -m devstack.standins pdl PORT
"""

from __future__ import annotations

import argparse

from werkzeug.serving import run_simple

from devstack.standins import people
from devstack.standins.loopmessage import LoopMessageStandIn
from devstack.standins.pdl import PdlStandIn


def main() -> None:
    """Parse the command line and serve until stopped."""
    parser = argparse.ArgumentParser(prog="python -m devstack.standins")
    parser.add_argument("service", choices=["loopmessage", "pdl"])
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    if args.service == "loopmessage":
        app = LoopMessageStandIn().app()
    else:
        app = PdlStandIn(people=people.records(), answer_anyone=False).app()
    run_simple("127.0.0.1", args.port, app, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
