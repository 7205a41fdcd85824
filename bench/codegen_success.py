"""How often code generation succeeds with the local model of a running `make dev`.

Not a timed benchmark: it counts successes. With `make dev` running (the
local SmolLM2-135M model is provider `local`), it calls `POST
/agents/generate-code` and `POST /demos/generate-code` the given number of
times each, with the bodies and catalog-default parameters the gofannon web
UI sends, and prints how many answered 200 and what the failures said.

    python -m bench.codegen_success [--tries 10] [--url http://127.0.0.1:8000]
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import sys
import time
from typing import Any

import requests

from devstack.emulators import DEV_PORTS, LOCAL_LLM_MODEL

logger = logging.getLogger("bench.codegen_success")

AGENT_DESCRIPTION = "Return the input text reversed, in upper case."
DEMO_PROMPT = "A page with a button that counts how many times it was clicked."


def _token() -> str:
    from devstack.__main__ import DEV_PROJECT
    from devstack.tokens import mint_token

    os.environ.setdefault("FIREBASE_AUTH_EMULATOR_HOST", f"127.0.0.1:{DEV_PORTS['auth']}")
    os.environ.setdefault("GOOGLE_CLOUD_PROJECT", DEV_PROJECT)
    return mint_token("codegen-bench@example.com").id_token


def _model_config(url: str, headers: dict[str, str]) -> dict[str, Any]:
    """The local model with every parameter default, as the UI's model picker sends it."""
    catalog = requests.get(f"{url}/providers", headers=headers, timeout=30).json()
    schema = catalog["local"]["models"][LOCAL_LLM_MODEL]["parameters"]
    defaults = {
        key: spec["default"] for key, spec in schema.items() if spec.get("default") is not None
    }
    return {"provider": "local", "model": LOCAL_LLM_MODEL, "parameters": defaults}


def _bodies(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        "/agents/generate-code": {
            "description": AGENT_DESCRIPTION,
            "tools": {},
            "inputSchema": {"inputText": "string"},
            "outputSchema": {"outputText": "string"},
            "modelConfig": model,
            "invokableModels": [],
            "swaggerSpecs": [],
            "gofannonAgents": [],
            "builtInTools": [],
        },
        "/demos/generate-code": {
            "userPrompt": DEMO_PROMPT,
            "selectedApis": [],
            "modelConfig": model,
            "builtInTools": [],
        },
    }


def measure(url: str, tries: int) -> dict[str, tuple[int, collections.Counter[str], float]]:
    """Per route: successes, the failures' details counted, and the mean seconds per call."""
    headers = {"Authorization": f"Bearer {_token()}"}
    model = _model_config(url, headers)
    results = {}
    for path, body in _bodies(model).items():
        successes, failures, started = 0, collections.Counter[str](), time.monotonic()
        for attempt in range(tries):
            response = requests.post(f"{url}{path}", json=body, headers=headers, timeout=600)
            if response.status_code == 200:
                successes += 1
            else:
                failures[f"{response.status_code} {response.json().get('detail')}"] += 1
            logger.info("%s try %d: %d", path, attempt + 1, response.status_code)
        results[path] = (successes, failures, (time.monotonic() - started) / tries)
    return results


def main() -> None:
    """Run against the running `make dev` and print the counts."""
    parser = argparse.ArgumentParser(prog="python -m bench.codegen_success")
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path, (successes, failures, seconds) in measure(args.url, args.tries).items():
        sys.stdout.write(
            f"POST {path}: {successes}/{args.tries} succeeded, {seconds:.1f} s a call\n"
        )
        for detail, count in failures.items():
            sys.stdout.write(f"  {count}x {detail}\n")


if __name__ == "__main__":
    main()
