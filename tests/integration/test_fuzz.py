"""Property-based fuzzing of the whole API from its own /openapi.json (schemathesis).

Every operation, without a token, with a user's and with an admin's: no 5xx,
and every status, content type and body is the one the document declares.
Besides what the schema describes, JSON bodies may carry one hostile value
(`fuzz_hooks.py`): an integer of thousands of digits or beyond int64, or a
structure nested deeper than the API's limit.
The routes that fetch user-supplied URLs (`/mcp/**`, `/specs/**`) answer 502
when the URL's server fails, as documented: there only the conformance
checks run. Bounded (a few examples per operation, a fixed seed) so CI stays
quick and repeatable; run `schemathesis run` by hand with more examples to
dig deeper.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.tokens import mint_token

CONFORMANCE = "status_code_conformance,content_type_conformance,response_schema_conformance"
OUTBOUND = "^/(mcp|specs)/"
HOOKS = Path(__file__).with_name("fuzz_hooks.py")


def fuzz(url: str, headers: list[str], *options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            url,
            *headers,
            *options,
            "--max-examples",
            "5",
            "--seed",
            "20261124",
            # Every run from the seed alone: no example database in the working tree.
            "--generation-database",
            "none",
            # One worker: hypothesis parses lambdas with `ast`, which CPython 3.11 does
            # not do safely from several threads at once (a SystemError, not our bug).
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
    )


@pytest.mark.parametrize("who", ["anonymous", "user", "admin"])
def test_every_operation_keeps_its_documented_contract(stack, unique, who):
    headers = []
    if who != "anonymous":
        token = mint_token(f"fuzz-{who}-{unique}@example.com", admin=who == "admin").id_token
        headers = ["-H", f"Authorization: Bearer {token}"]
    url = stack.url("/openapi.json")

    platform = fuzz(
        url,
        headers,
        "--exclude-path-regex",
        OUTBOUND,
        # Deleting the fuzzing account would leave only 401s for the operations after it.
        "--exclude-operation-id",
        "delete_users_me",
        "--checks",
        f"not_a_server_error,{CONFORMANCE}",
    )
    outbound = fuzz(url, headers, "--include-path-regex", OUTBOUND, "--checks", CONFORMANCE)

    assert platform.returncode == 0, platform.stdout[-6000:]
    assert outbound.returncode == 0, outbound.stdout[-6000:]
