"""The deployment files agree with each other and with the route tables."""

from __future__ import annotations

import json
import re

import pytest
from openapi_spec_validator import validate

from deploy.manifest import ROOT, load, render
from devstack.functions_index import (
    deployed_functions,
    glob_pattern,
    hosting_rewrites,
    load_entry_point,
    resolve,
)
from devstack.openapi_build import build, routers

# docs/architecture.md section 2: every function of the product and whether Hosting routes to it.
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
    "deletion_worker": False,
}


def sample_path(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "sample", template)


def test_every_deployed_function_is_designed_and_loads():
    functions = deployed_functions()

    assert functions, "the manifest deploys nothing"
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


HTTP_FUNCTIONS = sorted(
    name
    for name, spec in deployed_functions().items()
    if not spec.event_triggered and not name.endswith("_worker")
)


@pytest.mark.parametrize("name", HTTP_FUNCTIONS)
def test_http_functions_load_nothing_their_first_request_may_not_need(name):
    import subprocess
    import sys

    spec = deployed_functions()[name]
    probe = (
        "import importlib.util, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        f"s = importlib.util.spec_from_file_location('m', {str(spec.source / 'main.py')!r})\n"
        "m = importlib.util.module_from_spec(s); s.loader.exec_module(m)\n"
        "heavy = ['deepface', 'cv2', 'onnxruntime', 'google.genai', 'openai', 'anthropic', 'mcp',"
        " 'PIL', 'firebase_admin', 'email_validator', 'phonenumbers', 'google.cloud.firestore',"
        " 'google.cloud.storage', 'google.cloud.tasks_v2']\n"
        "from shared.platform.models import Model\n"
        "def subclasses(cls):\n"
        "    for sub in cls.__subclasses__():\n"
        "        yield sub\n"
        "        yield from subclasses(sub)\n"
        "built = [c.__name__ for c in subclasses(Model) if c.__pydantic_complete__]\n"
        "print(','.join([h for h in heavy if h in sys.modules] + built))\n"
    )

    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()

    assert loaded == ""


@pytest.mark.parametrize("name", sorted(deployed_functions()))
def test_every_function_holds_garbage_collection_from_its_import_to_its_first_call(name):
    import subprocess
    import sys

    spec = deployed_functions()[name]
    probe = (
        "import gc, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "import functions_framework\n"
        f"app = functions_framework.create_app({spec.entry_point!r}, "
        f"{str(spec.source / 'main.py')!r})\n"
        "held = not gc.isenabled()\n"
        "if not held or sys.argv[1] == 'event':\n"
        "    print(held); sys.exit()\n"
        "app.test_client().post('/', data=b'{}', content_type='application/json')\n"
        "print(held, gc.isenabled(), gc.get_freeze_count() > 0)\n"
    )
    kind = "event" if spec.event_triggered else "http"

    printed = subprocess.run(
        [sys.executable, "-c", probe, kind], capture_output=True, text=True, check=True
    ).stdout.splitlines()[-1]  # the function's request log comes first

    assert printed == ("True" if spec.event_triggered else "True True True")


def test_cloudbuild_is_generated_from_the_current_manifest():
    assert (ROOT / "cloudbuild.yaml").read_text() == render(load()), "run `make deploy-config`"


def test_every_function_folder_is_in_the_manifest():
    folders = {path.parent.name for path in (ROOT / "functions").glob("*/main.py")}

    assert folders == set(deployed_functions())


def test_task_queues_match_the_manifest_and_each_has_its_worker():
    from shared.platform.config import DEFAULT_QUEUE_WORKERS

    manifest = load()
    workers = {name: queue.worker for name, queue in manifest.queues.items()}

    assert workers == DEFAULT_QUEUE_WORKERS
    for name, worker in workers.items():
        assert manifest.functions[worker].queue == name, worker


def test_workers_and_the_sandbox_are_private_and_secrets_come_from_capabilities():
    manifest = load()
    for function in manifest.functions.values():
        if function.queue or function.event_triggered or function.name == "sandbox":
            assert not function.public, function.name
        if function.queue or function.enqueues:
            assert "TASK_SIGNING_SECRET" in function.secrets, function.name
        if function.enqueues:
            assert "TASKS_TARGET_BASE_URL" in function.environment, function.name
    assert manifest.functions["sandbox"].service_account


def test_functions_with_run_token_routes_deploy_the_service_secret():
    for name, spec in deployed_functions().items():
        router = getattr(load_entry_point(spec), "router", None)
        if router and any(route.auth == "run" for route in router.routes):
            assert "SERVICE_SIGNING_SECRET" in spec.secrets, name


def test_staging_copies_each_functions_own_code_and_shared(tmp_path):
    from deploy.manifest import stage

    staged = {path.name: path for path in stage(load(), tmp_path)}

    for name, folder in staged.items():
        assert (folder / "main.py").is_file(), name
        assert (folder / "requirements.txt").is_file(), name
        assert (folder / "shared" / "platform" / "http.py").is_file(), name
        others = set(staged) - {name}
        assert not any((folder / other).exists() for other in others), name
