"""Deployment commands.

python -m deploy cloudbuild   write cloudbuild.yaml from deploy/functions.yaml
python -m deploy stage        copy each function's deploy folder into build/functions/
"""

from __future__ import annotations

import argparse

from deploy.manifest import ROOT, load, render, stage


def main() -> None:
    """Run one deployment command."""
    parser = argparse.ArgumentParser(prog="python -m deploy")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("cloudbuild", help="write cloudbuild.yaml from the manifest")
    commands.add_parser("stage", help="stage every function's deploy folder")
    args = parser.parse_args()
    if args.command == "cloudbuild":
        (ROOT / "cloudbuild.yaml").write_text(render(load()))
    else:
        stage(load())


if __name__ == "__main__":
    main()
