"""The deployment files agree with each other and with the route tables."""

from __future__ import annotations

import json
import re

import pytest
from openapi_spec_validator import validate

from devstack.functions_index import (
    ROOT,
    deployed_functions,
    glob_pattern,
    hosting_rewrites,
    load_entry_point,
    resolve,
)
from devstack.openapi_build import build, routers

# DESIGN.md section 2: every function of the product and whether Hosting routes to it.
DESIGNED_FUNCTIONS = {
    "meta": True,
    "auth": True,
    "users": True,
    "archetype_worker": False,
    "storage": True,
    "image_worker": False,
    "photo_finalized": False,
    "agent_webhook": True,
    "agent_worker": False,
    "account": True,
    "providers": True,
    "chat": True,
    "chat_worker": False,
    "agents": True,
    "sandbox": False,
    "connectors": True,
    "demos": True,
}


def sample_path(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "sample", template)


def test_every_deployed_function_is_designed_and_loads():
    functions = deployed_functions()

    assert functions, "cloudbuild.yaml deploys nothing"
    for name, spec in functions.items():
        assert name in DESIGNED_FUNCTIONS, name
        assert (spec.source / "main.py").is_file(), name
        assert (spec.source / "requirements.txt").is_file(), name
        assert callable(load_entry_point(spec)), name
        assert spec.public == DESIGNED_FUNCTIONS[name], name


def test_rewrites_target_exactly_the_public_functions():
    targets = {rewrite.function for rewrite in hosting_rewrites()}

    assert targets == {name for name, public in DESIGNED_FUNCTIONS.items() if public}


def test_every_route_is_reachable_through_the_rewrites():
    rewrites = hosting_rewrites()
    for name, spec in deployed_functions().items():
        router = getattr(load_entry_point(spec), "router", None)
        if router is None:
            continue
        for route in router.routes:
            path = sample_path(route.path)
            assert resolve(rewrites, path) == name, f"{route.method} {route.path}"


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("/users/**", "/users/abc/public", True),
        ("/users/**", "/users", False),
        ("/users/*", "/users/abc", True),
        ("/users/*", "/users/abc/public", False),
        ("/", "/x", False),
    ],
)
def test_hosting_glob_semantics(glob, path, matches):
    assert bool(glob_pattern(glob).match(path)) is matches


def test_specific_user_paths_win_over_the_users_catch_all():
    rewrites = hosting_rewrites()

    assert resolve(rewrites, "/users/me") == "account"
    assert resolve(rewrites, "/users/me/usage") == "account"
    assert resolve(rewrites, "/users/upload-photo") == "storage"
    assert resolve(rewrites, "/users/abc") == "users"
    assert resolve(rewrites, "/users") == "users"


def test_committed_openapi_document_is_current_and_valid():
    generated = build()
    committed = json.loads((ROOT / "shared" / "openapi.json").read_text())

    validate(generated)
    assert committed == generated, "run `make openapi` and commit shared/openapi.json"


def test_openapi_covers_every_route():
    paths = build()["paths"]

    for router in routers():
        for route in router.routes:
            assert route.method.lower() in paths[route.openapi_path]


def test_env_example_lists_every_setting():
    from shared.platform.config import Settings

    listed = (ROOT / ".env.example").read_text()
    aliases = [field.alias for field in Settings.model_fields.values() if field.alias]

    assert [alias for alias in aliases if alias not in listed] == []


@pytest.mark.parametrize("name", ["storage", "providers", "chat", "users", "agents", "sandbox"])
def test_http_functions_do_not_import_heavy_libraries(name):
    import subprocess
    import sys

    spec = deployed_functions()[name]
    probe = (
        "import importlib.util, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        f"s = importlib.util.spec_from_file_location('m', {str(spec.source / 'main.py')!r})\n"
        "m = importlib.util.module_from_spec(s); s.loader.exec_module(m)\n"
        "heavy = ['deepface', 'cv2', 'onnxruntime', 'google.genai', 'openai', 'anthropic', 'mcp',"
        " 'PIL', 'firebase_admin']\n"
        "print(','.join(h for h in heavy if h in sys.modules))\n"
    )

    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert loaded == ""
