"""Cost of each list and catalog route as other users' data grows: N = 0 beside N = `others`.

One run starts the emulator stack and the gateway in this process, with the
Firestore channel observed (`devstack.firestore_probe`: documents read are
counted from the gRPC responses the client library receives). The same fixed
world is built through the API in two Firestore projects of the one emulator
(same users and tokens):

- the caller ("me"): `OWN` agents, each deployed (private), `OWN` demos, a
  data store of three namespaces (`OWN` records in one), usage entries;
- a friend with `OWN` public deployments, `CHOSEN` of them chosen by me;
- `ACCOUNTS` accounts, so the admin account list fills its first page.

Every first page is full at N = 0, so what a route reads can only grow with N
if it reads other users' data. Then N documents of other users are written
straight into the second project (an equal share each: public deployments
with their agents, agents, demos, data-store records, accounts, matches).
Each route is timed `runs` times in each project, the two projects taking
turns round by round (the Firestore client is rebuilt for each turn and
warmed by an untimed call), so both see the same machine load. Rows: p50
latency, response bytes and documents read per request at N next to the
same route at N = 0; and, as the floor under those latencies, bare client
calls made the same way (a lookup by id, a query of an empty top-level
collection, and the very queries of `GET /agents` and `GET .../records`):
the emulator has no indexes and scans the project's top-level documents for
a query on a top-level collection, so its query latency grows with N where
production Firestore's, served from indexes, grows with the documents
returned.

    PYTHONPATH=. .venv/bin/python bench/scale.py [--others 10000] [--runs 15]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests
from werkzeug.serving import make_server

from bench.common import Row, percentile, table
from devstack.emulators import free_port, running_stack
from devstack.firestore_probe import Probe, observed_firestore
from shared.platform.config import DEFAULT_QUEUE_WORKERS

OWN = 60
CHOSEN = 5
ACCOUNTS = 210
KINDS = 6
CODE = "async def run(input_dict, tools):\n    return {'outputText': input_dict['inputText']}\n"
DEMO = {
    "name": "Weather board",
    "description": "Shows the weather",
    "selectedApis": [],
    "modelConfig": {"provider": "openai", "model": "gpt-4.1-mini", "parameters": {}},
    "userPrompt": "A page that shows the weather.",
    "generatedCode": {"html": "<div></div>", "css": "div{}", "js": "1;"},
}


@dataclass(frozen=True)
class Route:
    """One timed request, and who makes it."""

    label: str
    path: str
    as_admin: bool = False


ROUTES = (
    Route("GET /agents", "/agents"),
    Route("GET /agents?all=true (admin)", "/agents?all=true", as_admin=True),
    Route("GET /deployments", "/deployments"),
    Route("GET /deployments?all=true (admin)", "/deployments?all=true", as_admin=True),
    Route("GET /deployments/public", "/deployments/public"),
    Route("GET /providers", "/providers"),
    Route("GET /demos", "/demos"),
    Route("GET /data-store/namespaces", "/data-store/namespaces"),
    Route("GET /data-store/.../records", "/data-store/namespaces/big/records"),
    Route("GET /users/me (usage)", "/users/me"),
    Route("GET /admin/users (admin)", "/admin/users", as_admin=True),
    Route("GET /users/me/export", "/users/me/export"),
)


def _agents_of(db: Any, me: str) -> object:
    from google.cloud import firestore
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = db.collection("agents").where(filter=FieldFilter("ownerId", "==", me))
    return list(
        query.order_by("createdAt", direction=firestore.Query.DESCENDING).limit(51).stream()
    )


def _records_of(db: Any, me: str) -> object:
    from google.cloud.firestore_v1.base_query import FieldFilter

    query = (
        db.collection("data_store")
        .where(filter=FieldFilter("userId", "==", me))
        .where(filter=FieldFilter("namespace", "==", "big"))
    )
    return list(query.order_by("key").limit(51).stream())


FLOORS: tuple[tuple[str, Callable[[Any, str], object]], ...] = (
    ("bare lookup by id", lambda db, me: db.collection("accounts").document(me).get()),
    (
        "bare query of an empty top-level collection",
        lambda db, me: list(db.collection("bench_empty").limit(1).stream()),
    ),
    ("bare query of GET /agents (51 of my agents)", _agents_of),
    ("bare query of GET .../records (51 of my records)", _records_of),
)
"""Bare client calls, no route: what the emulator itself does as its documents grow."""


@dataclass
class Sample:
    """What one route cost over the timed calls."""

    p50_ms: float
    bytes: int
    reads: int


class World:
    """The gateway, the callers' sessions and the template documents to copy."""

    def __init__(self, gateway_url: str, probe: Probe) -> None:
        from devstack.tokens import mint_token

        self.url = gateway_url
        self.probe = probe
        self.me = self._session(mint_token(f"me-{uuid.uuid4().hex[:8]}@example.com"))
        self.admin = self._session(
            mint_token(f"admin-{uuid.uuid4().hex[:8]}@example.com", admin=True)
        )
        self.friend = self._session(mint_token(f"friend-{uuid.uuid4().hex[:8]}@example.com"))

    @staticmethod
    def _session(user: Any) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {user.id_token}"
        return session

    def call(self, session: requests.Session, method: str, path: str, **kwargs: Any) -> Any:
        response = session.request(method, self.url + path, timeout=120, **kwargs)
        assert response.status_code < 300, (path, response.status_code, response.text[:500])
        return response.json() if response.content else None


def _agent(world: World, session: requests.Session, name: str, *, public: bool) -> str:
    body = {
        "name": name,
        "description": "Repeats its input",
        "code": CODE,
        "friendlyName": name,
        "inputSchema": {"inputText": "string"},
        "outputSchema": {"outputText": "string"},
    }
    agent = world.call(session, "POST", "/agents", json=body)
    flag = "?public=true" if public else ""
    world.call(session, "POST", f"/agents/{agent['_id']}/deploy{flag}")
    return str(agent["_id"])


def build_fixed_world(world: World) -> None:
    """The caller's own data and the fixed neighbourhood, through the API."""
    from shared.platform import clients

    for index in range(OWN):
        _agent(world, world.me, f"mine{index:03d}", public=False)
        _agent(world, world.friend, f"friend{index:03d}", public=True)
        world.call(world.me, "POST", "/demos", json={**DEMO, "name": f"demo {index}"})
        world.call(
            world.me,
            "PUT",
            f"/data-store/namespaces/big/records/k{index:03d}",
            json={"value": index},
        )
    for index in range(CHOSEN):
        world.call(world.me, "PUT", f"/deployments/friend{index:03d}/chosen")
    for namespace in ("small1", "small2"):
        world.call(
            world.me, "PUT", f"/data-store/namespaces/{namespace}/records/k", json={"value": 1}
        )
    for session in (world.me, world.admin, world.friend):
        world.call(session, "GET", "/users/me")
    for _ in range(20):
        world.call(world.me, "POST", "/users/me/usage", json={"responseCost": 0.0001})
    db = clients.firestore()
    account = db.collection("accounts").document(_uid(world, world.me)).get().to_dict() or {}
    _write_many(
        db,
        (
            (
                db.collection("accounts").document(f"fixed-{index:04d}"),
                {**account, "userId": f"fixed-{index:04d}"},
            )
            for index in range(ACCOUNTS)
        ),
    )


def _uid(world: World, session: requests.Session) -> str:
    return str(world.call(session, "GET", "/users/me")["userId"])


def _write_many(db: Any, writes: Iterator[tuple[Any, dict[str, Any]]]) -> int:
    """Write documents in batches of 500; return how many."""
    count = 0
    batch = db.batch()
    for ref, data in writes:
        batch.set(ref, data)
        count += 1
        if count % 500 == 0:
            batch.commit()
            batch = db.batch()
    batch.commit()
    return count


def seed_others(world: World, others: int) -> int:
    """Write `others` documents of other users into the active project; return how many."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    from shared.platform import clients

    db = clients.firestore()
    me = _uid(world, world.me)

    def template(collection: str, field: str) -> dict[str, Any]:
        query = db.collection(collection).where(filter=FieldFilter(field, "==", me)).limit(1)
        return next(snapshot.to_dict() or {} for snapshot in query.stream())

    template_agent = template("agents", "ownerId")
    template_demo = template("demos", "ownerId")
    template_record = template("data_store", "userId")
    template_account = db.collection("accounts").document(me).get().to_dict()
    share = max(1, others // KINDS)
    now = datetime.now(UTC)

    def documents() -> Iterator[tuple[Any, dict[str, Any]]]:
        for index in range(share // 2):  # a public deployment and its agent: two documents
            owner, agent_id = f"other-{index:05d}", f"other-agent-{index:05d}"
            yield db.collection("agents").document(agent_id), {**template_agent, "ownerId": owner}
            yield (
                db.collection("deployments").document(f"other{index:05d}"),
                {"agentId": agent_id, "ownerId": owner, "public": True, "createdAt": now},
            )
        for index in range(share):
            owner = f"other-{index:05d}"
            yield (
                db.collection("agents").document(f"other-private-{index:05d}"),
                {
                    **template_agent,
                    "ownerId": owner,
                },
            )
            yield (
                db.collection("demos").document(f"other-demo-{index:05d}"),
                {
                    **template_demo,
                    "ownerId": owner,
                },
            )
            yield (
                db.collection("data_store").document(f"other-record-{index:05d}"),
                {
                    **template_record,
                    "userId": owner,
                    "key": f"k{index}",
                },
            )
            yield db.collection("accounts").document(owner), {**template_account, "userId": owner}
            yield (
                db.collection("matches").document(f"other-match-{index:05d}"),
                {
                    "matchId": f"other-match-{index:05d}",
                    "users": [owner, f"other-{index + 1:05d}"],
                    "source": "referral",
                    "status": "pending",
                    "createdAt": now,
                },
            )

    return _write_many(db, documents())


BASE, GROWN = "demo-bench-scale-base", "demo-bench-scale-grown"


@contextlib.contextmanager
def firestore_projects() -> Iterator[Callable[[str], None]]:
    """Yield `activate(project)`, which points this process's Firestore client at `project`.

    Only Firestore moves (the client factory is wrapped here, in the
    benchmark); the Auth emulator, and so every token, stays the stack's.
    """
    from shared.platform import clients, deadlines

    original = deadlines.bounded_firestore
    active: dict[str, str] = {}

    def bounded(project: str, deadline: float) -> Any:
        return original(active.get("project", project), deadline)

    def activate(project: str) -> None:
        active["project"] = project
        clients.firestore.cache_clear()

    deadlines.bounded_firestore = bounded  # type: ignore[assignment]
    try:
        yield activate
    finally:
        deadlines.bounded_firestore = original
        clients.firestore.cache_clear()


def time_routes(
    world: World, activate: Callable[[str], None], runs: int
) -> dict[str, dict[str, Sample]]:
    """Each route `runs` times per project, projects taking turns: p50, bytes, reads per call."""
    from shared.platform import clients

    projects = (BASE, GROWN)
    labels = [route.label for route in ROUTES] + [label for label, _ in FLOORS]
    samples: dict[str, dict[str, list[tuple[float, int, int]]]] = {
        project: {label: [] for label in labels} for project in projects
    }
    me = _uid(world, world.me)
    for round_ in range(runs + 1):
        for project in projects if round_ % 2 else projects[::-1]:
            activate(project)
            for session in (world.me, world.admin):
                world.call(session, "GET", "/users/me")
            for route in ROUTES:
                session = world.admin if route.as_admin else world.me
                before = world.probe.read_count()
                started = time.perf_counter()
                response = session.get(world.url + route.path, timeout=120)
                elapsed = (time.perf_counter() - started) * 1000
                reads = world.probe.read_count() - before
                assert response.status_code == 200, (route.path, response.text[:500])
                if round_:
                    samples[project][route.label].append((elapsed, len(response.content), reads))
            for label, bare in FLOORS:
                before = world.probe.read_count()
                started = time.perf_counter()
                bare(clients.firestore(), me)
                elapsed = (time.perf_counter() - started) * 1000
                if round_:
                    samples[project][label].append((elapsed, 0, world.probe.read_count() - before))
    return {
        project: {
            label: Sample(
                p50_ms=percentile([ms for ms, _, _ in values], 0.5),
                bytes=int(statistics.median(size for _, size, _ in values)),
                reads=int(statistics.median(reads for _, _, reads in values)),
            )
            for label, values in by_route.items()
        }
        for project, by_route in samples.items()
    }


def rows(base: dict[str, Sample], grown: dict[str, Sample], others: int) -> list[Row]:
    """Every route's figures at N = `others` next to N = 0."""
    baseline = "same route, N = 0"
    found: list[Row] = []
    figures: tuple[tuple[str, str, Callable[[Sample], float]], ...] = (
        ("p50", "ms", lambda s: s.p50_ms),
        ("docs read", "docs", lambda s: float(s.reads)),
        ("bytes", "B", lambda s: float(s.bytes)),
    )
    for route in ROUTES:
        for name, unit, value in figures:
            found.append(
                Row(
                    f"{route.label} {name}, N = {others}",
                    value(grown[route.label]),
                    value(base[route.label]),
                    baseline,
                    unit,
                )
            )
    for label, _ in FLOORS:
        found.append(
            Row(
                f"{label} p50, N = {others}",
                grown[label].p50_ms,
                base[label].p50_ms,
                "same call, N = 0",
            )
        )
    return found


def measure(others: int = 10_000, runs: int = 15) -> list[Row]:
    """Each route's p50, bytes and documents read with `others` documents of other users vs none."""
    port = free_port()
    gateway_url = f"http://127.0.0.1:{port}"
    with running_stack("demo-bench", fixed_ports=False, queues=DEFAULT_QUEUE_WORKERS) as stack:
        os.environ.update({**stack.env(gateway_url), "APP_ENV": "test"})
        from devstack.gateway import create_app

        with observed_firestore() as probe:
            server = make_server("127.0.0.1", port, create_app(), threaded=True)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            try:
                with firestore_projects() as activate:
                    world = World(gateway_url, probe)
                    for project in (BASE, GROWN):
                        activate(project)
                        build_fixed_world(world)
                    seed_others(world, others)
                    timed = time_routes(world, activate, runs)
            finally:
                server.shutdown()
    base, grown = timed[BASE], timed[GROWN]
    return rows(base, grown, others)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--others", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    print(table(measure(args.others, args.runs)))


if __name__ == "__main__":
    main()
