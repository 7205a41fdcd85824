"""Local tooling entry point.

python -m devstack dev       start every emulator and the gateway on :8000
python -m devstack token     print an ID token for a local user (needs `dev` running)
python -m devstack reset     wipe the running `dev` stack's data and records, seed the demo user
python -m devstack openapi   regenerate shared/openapi.json from the route tables
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from deploy.manifest import ROOT
from shared.platform.logging import configure_logging

DEV_PROJECT = "demo-series"
GATEWAY_PORT = 8000
DEMO_EMAIL = "demo@example.com"
DEV_TEST_NUMBERS = '{"+12015550100": "123456"}'
DEV_CORS_ORIGINS = ["http://localhost:3000"]  # the gofannon web UI's dev server
DEV_DEBOUNCE_SECONDS = "5"  # long enough to double-text by hand


def _dev() -> None:
    from werkzeug.serving import run_simple

    from devstack import standins
    from devstack.emulators import DEV_PORTS, running_local_llm, running_stack, running_standins

    gateway_url = f"http://127.0.0.1:{GATEWAY_PORT}"
    from shared.platform.config import get_settings

    with (
        running_stack(
            DEV_PROJECT,
            fixed_ports=True,
            queues=get_settings().task_queues,
            gateway_url=gateway_url,
        ) as stack,
        running_local_llm(DEV_PORTS["llm"]) as local_llm_url,
        running_standins(DEV_PORTS) as standin_urls,
    ):
        os.environ.update(stack.env(gateway_url))
        os.environ.setdefault("LOCAL_LLM_BASE_URL", local_llm_url)
        for name, value in standins.settings(standin_urls).items():
            os.environ.setdefault(name, value)
        os.environ.setdefault("IMESSAGE_DEBOUNCE_SECONDS", DEV_DEBOUNCE_SECONDS)
        # The local model runs on shared CPUs: a 1,000-token answer can take minutes.
        os.environ.setdefault("LLM_TIMEOUT_SECONDS", "300")
        os.environ.setdefault("APP_ENV", "local")
        os.environ.setdefault("CORS_ORIGINS", json.dumps(DEV_CORS_ORIGINS))
        os.environ.setdefault("TEST_PHONE_NUMBERS", DEV_TEST_NUMBERS)
        from shared.platform import clients

        clients.reset()  # the settings were read before the stack's variables were set
        from devstack.gateway import create_app
        from devstack.seed import seed_demo_user

        seed_demo_user(DEMO_EMAIL)
        app = create_app()
        logging.getLogger(__name__).info(
            "gateway on %s; docs at %s/docs; token: make token (admin: make token ADMIN=1)",
            gateway_url,
            gateway_url,
        )
        logging.getLogger(__name__).info(
            "what LoopMessage sent: %s/ ; what People Data Labs answered: %s/",
            standin_urls["loopmessage"],
            standin_urls["pdl"],
        )
        run_simple("127.0.0.1", GATEWAY_PORT, app, threaded=True, use_reloader=False)


def _token(email: str, admin: bool) -> None:
    from devstack.emulators import DEV_PORTS
    from devstack.tokens import mint_token

    os.environ.setdefault("FIREBASE_AUTH_EMULATOR_HOST", f"127.0.0.1:{DEV_PORTS['auth']}")
    os.environ.setdefault("GOOGLE_CLOUD_PROJECT", DEV_PROJECT)
    user = mint_token(email, admin=admin)
    sys.stdout.write(user.id_token + "\n")


def _reset() -> None:
    from devstack.emulators import DEV_PORTS, PROFILES_BUCKET, wipe_data, wipe_standins
    from devstack.seed import seed_demo_user

    wipe_data(DEV_PROJECT, DEV_PORTS)
    wipe_standins(DEV_PORTS)
    os.environ.update(
        {
            "GOOGLE_CLOUD_PROJECT": DEV_PROJECT,
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{DEV_PORTS['firestore']}",
            "FIREBASE_AUTH_EMULATOR_HOST": f"127.0.0.1:{DEV_PORTS['auth']}",
        }
    )
    from shared.platform import clients

    clients.reset()
    seed_demo_user(DEMO_EMAIL)
    logging.getLogger(__name__).info(
        "wiped Firestore, Auth, gs://%s and the stand-ins' records; seeded %s",
        PROFILES_BUCKET,
        DEMO_EMAIL,
    )


def _openapi() -> None:
    from devstack.openapi_build import build

    path = ROOT / "shared" / "openapi.json"
    path.write_text(json.dumps(build(), indent=2) + "\n")
    sys.stderr.write(f"wrote {path.relative_to(ROOT)}\n")


def main() -> None:
    """Parse the command line and run the command."""
    parser = argparse.ArgumentParser(prog="python -m devstack")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("dev", help="start the emulators and the gateway")
    token = commands.add_parser("token", help="print an Auth emulator ID token")
    token.add_argument("--email", default=DEMO_EMAIL)
    token.add_argument("--admin", action="store_true")
    commands.add_parser("openapi", help="regenerate shared/openapi.json")
    commands.add_parser("reset", help="wipe the running dev stack's data, seed the demo user")
    args = parser.parse_args()
    configure_logging()
    if args.command == "dev":
        _dev()
    elif args.command == "token":
        _token(args.email, args.admin)
    elif args.command == "reset":
        _reset()
    else:
        _openapi()


if __name__ == "__main__":
    main()
