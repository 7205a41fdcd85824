"""Bounded reads: pages with cursors, other users' data left out, every query indexed.

Each list route answers one page as a plain JSON array (what the gofannon web
UI reads) and the next page's cursor in `X-Next-Cursor` and `Link`. Queries are
recorded at the gRPC channel while the routes run (`devstack.firestore_probe`)
and each is matched against `firestore.indexes.json`: the emulator does not
enforce composite indexes, production does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from devstack.firestore_probe import observed_firestore
from devstack.tokens import mint_token
from tests.integration.test_demos import demo_body

INDEXES = json.loads((Path(__file__).parents[2] / "firestore.indexes.json").read_text())
ECHO = "async def run(input_dict, tools):\n    return {'outputText': input_dict['inputText']}\n"


def user(unique, name, *, admin=False):
    minted = mint_token(f"{name}-{unique}@example.com", admin=admin)
    return {"Authorization": f"Bearer {minted.id_token}"}


@pytest.fixture
def alice(stack, unique):
    return user(unique, "alice")


@pytest.fixture
def bob(stack, unique):
    return user(unique, "bob")


def call(stack, method, path, headers, **kwargs):
    return requests.request(method, stack.url(path), headers=headers, timeout=60, **kwargs)


def new_agent(stack, headers, name, **fields):
    body = {"name": name, "code": ECHO, "friendlyName": name, "inputSchema": {"inputText": "s"}}
    response = call(stack, "POST", "/agents", headers, json={**body, **fields})
    assert response.status_code == 201, response.text
    return response.json()


def deployed(stack, headers, name, *, public=False):
    agent = new_agent(stack, headers, name)
    flag = "?public=true" if public else ""
    response = call(stack, "POST", f"/agents/{agent['_id']}/deploy{flag}", headers)
    assert response.status_code == 201, response.text
    return agent


def every_page(stack, path, headers, limit):
    """Follow `X-Next-Cursor` to the end; also check `Link` names the same next page."""
    pages, cursor = [], None
    while True:
        params = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        response = call(stack, "GET", path, headers, params=params)
        assert response.status_code == 200, response.text
        pages.append(response.json())
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            assert "Link" not in response.headers
            return pages
        assert response.headers["Link"].endswith(f'cursor={cursor}>; rel="next"')
        assert len(pages) < 20


def test_agents_page_newest_first_with_a_cursor_round_trip(stack, alice):
    made = [new_agent(stack, alice, f"a{n}")["_id"] for n in range(5)]

    pages = every_page(stack, "/agents", alice, 2)
    first = call(stack, "GET", "/agents", alice)

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [a["_id"] for page in pages for a in page] == made[::-1]
    assert [a["_id"] for a in first.json()] == made[::-1]
    assert "X-Next-Cursor" not in first.headers


def test_a_page_of_large_items_ends_at_the_byte_budget(stack, alice, bob, unique):
    from shared.platform.paging import PAGE_BYTES

    code = ECHO + "#" * 190_000
    made = [new_agent(stack, bob, f"big{n}", code=code)["_id"] for n in range(6)]
    admin = user(unique, "admin", admin=True)

    first = call(stack, "GET", "/agents?all=true", admin)
    pages = every_page(stack, "/agents?all=true", admin, 50)

    assert len(first.json()) == 5 and len(first.content) <= PAGE_BYTES
    assert [len(page) for page in pages] == [5, 1]
    assert [a["_id"] for page in pages for a in page] == made[::-1]


def test_a_chain_reads_each_agent_once(stack, alice):
    """Eight levels of two agents, each calling both of the next: 2^8 paths, 16 agents."""
    level = [new_agent(stack, alice, f"leaf{n}")["_id"] for n in range(2)]
    for depth in range(7):
        calls = {"gofannonAgents": level}
        level = [new_agent(stack, alice, f"l{depth}x{n}", **calls)["_id"] for n in range(2)]
    root = new_agent(stack, alice, "root", gofannonAgents=level)["_id"]

    with observed_firestore() as probe:
        chain = call(stack, "GET", f"/agents/{root}/chain", alice).json()

    assert len(chain["nodes"]) == 17
    assert len(chain["edges"]) == 2 + 7 * 4
    assert not any(node["truncated"] or node["missing"] for node in chain["nodes"].values())
    assert probe.read_count() <= 17 + 2  # each agent once, and the owner check of the root


def test_admins_page_through_every_users_agents(stack, alice, bob, unique):
    mine = [new_agent(stack, alice, f"a{n}")["_id"] for n in range(2)]
    theirs = [new_agent(stack, bob, f"b{n}")["_id"] for n in range(2)]
    admin = user(unique, "admin", admin=True)

    pages = every_page(stack, "/agents?all=true", admin, 3)

    assert [a["_id"] for page in pages for a in page] == (mine + theirs)[::-1]


def test_demos_page_newest_first(stack, alice, bob):
    made = []
    for n in range(3):
        response = call(stack, "POST", "/demos", alice, json=demo_body(name=f"d{n}"))
        made.append(response.json()["_id"])
    call(stack, "POST", "/demos", bob, json=demo_body(name="theirs"))

    pages = every_page(stack, "/demos", alice, 2)

    assert [d["_id"] for page in pages for d in page] == made[::-1]


@pytest.mark.parametrize(
    "path",
    [
        "/agents",
        "/demos",
        "/deployments",
        "/deployments/public",
        "/agents?all=true",
        "/data-store/namespaces",
        "/data-store/namespaces/n/records",
    ],
)
@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 201}, {"limit": "x"}, {"cursor": ""}])
def test_page_bounds_are_validated(stack, alice, path, params):
    response = call(stack, "GET", path, alice, params=params)

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"][0] == "query"


@pytest.mark.parametrize("cursor", ["not-base64!", "bm90IGpzb24", "WzEsMiwzXQ", "W1tdLCJhL2IiXQ"])
def test_a_forged_cursor_is_422(stack, alice, cursor):
    response = call(stack, "GET", "/agents", alice, params={"cursor": cursor})

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


def test_other_users_public_deployments_are_listed_only_once_chosen(stack, alice, bob):
    deployed(stack, alice, "mine")
    deployed(stack, bob, "theirs", public=True)
    deployed(stack, bob, "hidden")

    before = call(stack, "GET", "/deployments", alice).json()
    providers_before = call(stack, "GET", "/providers", alice).json()["gofannon"]["models"]
    public = call(stack, "GET", "/deployments/public", alice).json()
    hidden = call(stack, "PUT", "/deployments/hidden/chosen", alice)
    chosen = call(stack, "PUT", "/deployments/theirs/chosen", alice)
    again = call(stack, "PUT", "/deployments/theirs/chosen", alice)
    after = call(stack, "GET", "/deployments", alice).json()
    providers_after = call(stack, "GET", "/providers", alice).json()["gofannon"]["models"]
    second_page = every_page(stack, "/deployments", alice, 1)
    dropped = call(stack, "DELETE", "/deployments/theirs/chosen", alice)
    finally_ = call(stack, "GET", "/deployments", alice).json()

    assert [d["friendlyName"] for d in before] == ["mine"]
    assert set(providers_before) == {"mine"}
    assert [d["friendlyName"] for d in public] == ["theirs"]
    assert hidden.status_code == 404
    assert chosen.status_code == 200 and chosen.json() == {"names": ["theirs"]}
    assert again.json() == {"names": ["theirs"]}
    assert [d["friendlyName"] for d in after] == ["theirs", "mine"]
    assert set(providers_after) == {"mine", "theirs"}
    assert [[d["friendlyName"] for d in page] for page in second_page] == [["theirs", "mine"]]
    assert dropped.status_code == 204
    assert [d["friendlyName"] for d in finally_] == ["mine"]


def test_chosen_deployments_are_capped(stack, alice, bob, monkeypatch):
    from shared.agents import agents

    monkeypatch.setattr(agents, "MAX_CHOSEN", 1)
    for name in ("p1", "p2"):
        deployed(stack, bob, name, public=True)

    first = call(stack, "PUT", "/deployments/p1/chosen", alice)
    second = call(stack, "PUT", "/deployments/p2/chosen", alice)

    assert first.status_code == 200
    assert second.status_code == 409
    assert [d["friendlyName"] for d in call(stack, "GET", "/deployments", alice).json()] == ["p1"]


def test_a_chosen_deployment_made_private_drops_out(stack, alice, bob):
    agent = deployed(stack, bob, "theirs", public=True)
    call(stack, "PUT", "/deployments/theirs/chosen", alice)

    call(stack, "POST", f"/agents/{agent['_id']}/deploy", bob)  # public=false

    assert call(stack, "GET", "/deployments", alice).json() == []
    assert "gofannon" not in call(stack, "GET", "/providers", alice).json()


def test_public_deployments_page_by_name(stack, alice, bob):
    for name in ("c", "a", "b"):
        deployed(stack, bob, name, public=True)

    pages = every_page(stack, "/deployments/public", alice, 2)

    assert [[d["friendlyName"] for d in page] for page in pages] == [["a", "b"], ["c"]]


def test_admins_page_through_every_deployment(stack, alice, bob, unique):
    deployed(stack, alice, "x1")
    deployed(stack, bob, "x2")
    admin = user(unique, "admin", admin=True)

    own = call(stack, "GET", "/deployments", admin).json()
    pages = every_page(stack, "/deployments?all=true", admin, 1)

    assert own == []
    assert [[d["friendlyName"] for d in page] for page in pages] == [["x1"], ["x2"]]
    assert call(stack, "GET", "/deployments?all=true", alice).status_code == 403


def put_record(stack, headers, namespace, key, value):
    path = f"/data-store/namespaces/{namespace}/records/{key}"
    response = call(stack, "PUT", path, headers, json={"value": value})
    assert response.status_code == 200, response.text


def test_data_store_records_and_namespaces_page_by_name(stack, alice, bob):
    for key in ("k3", "k1", "k2"):
        put_record(stack, alice, "notes", key, key)
    for namespace in ("b", "a"):
        put_record(stack, alice, namespace, "x", 1)
    put_record(stack, bob, "notes", "theirs", "x" * 100)

    records = every_page(stack, "/data-store/namespaces/notes/records", alice, 2)
    first = call(stack, "GET", "/data-store/namespaces", alice, params={"limit": 2})
    rest = call(
        stack,
        "GET",
        "/data-store/namespaces",
        alice,
        params={"limit": 2, "cursor": first.headers["X-Next-Cursor"]},
    )

    assert [[r["key"] for r in page] for page in records] == [["k1", "k2"], ["k3"]]
    assert [n["namespace"] for n in first.json()["namespaces"]] == ["a", "b"]
    assert [n["namespace"] for n in rest.json()["namespaces"]] == ["notes"]
    assert "X-Next-Cursor" not in rest.headers
    # Totals over every page, from the caller's counter: none of bob's records.
    totals = {"totalRecordCount": 5, "totalSizeBytes": 3 * 4 + 2 * 1}
    assert {k: first.json()[k] for k in totals} == totals
    assert {k: rest.json()[k] for k in totals} == totals


def test_data_store_totals_follow_deletes_and_clears(stack, alice):
    for key in ("a", "b", "c"):
        put_record(stack, alice, "n", key, "12")
    put_record(stack, alice, "n", "a", "1234")  # replaced: counted once, at its new size

    replaced = call(stack, "GET", "/data-store/namespaces", alice).json()
    call(stack, "DELETE", "/data-store/namespaces/n/records/b", alice)
    deleted = call(stack, "GET", "/data-store/namespaces", alice).json()
    call(stack, "DELETE", "/data-store/namespaces/n", alice)
    cleared = call(stack, "GET", "/data-store/namespaces", alice).json()

    assert (replaced["totalRecordCount"], replaced["totalSizeBytes"]) == (3, 6 + 4 + 4)
    assert (deleted["totalRecordCount"], deleted["totalSizeBytes"]) == (2, 6 + 4)
    assert cleared == {"namespaces": [], "totalRecordCount": 0, "totalSizeBytes": 0}


def test_the_totals_migration_sums_each_users_namespaces(stack, alice, bob):
    from migrations.m003_data_store_totals import migrate
    from shared.agents.data_store import TOTALS
    from shared.platform import clients

    put_record(stack, alice, "n1", "k", "12")
    put_record(stack, alice, "n2", "k", "1")
    put_record(stack, bob, "n1", "k", "1")
    for snapshot in clients.firestore().collection(TOTALS).stream():
        snapshot.reference.delete()  # as before the counters existed

    users = migrate()
    again = migrate()
    listed = call(stack, "GET", "/data-store/namespaces", alice).json()

    assert (users, again) == (2, 2)
    assert (listed["totalRecordCount"], listed["totalSizeBytes"]) == (2, 4 + 3)


def _index_fields(index):
    return [
        (field["fieldPath"], field.get("order") or field.get("arrayConfig"))
        for field in index["fields"]
        if field["fieldPath"] != "__name__"
    ]


def _needed(parent, query):
    """The composite index a recorded query needs: (collection, scope, equalities, orders)."""
    equal, ranged = [], set()
    filters = [query.where] if "where" in query else []
    while filters:
        item = filters.pop()
        if "composite_filter" in item:
            filters.extend(item.composite_filter.filters)
        elif "field_filter" in item:
            field, op = item.field_filter.field.field_path, item.field_filter.op.name
            if op == "EQUAL":
                equal.append((field, "ASCENDING"))
            elif op == "ARRAY_CONTAINS":
                equal.append((field, "CONTAINS"))
            else:
                ranged.add(field)
    orders = [
        (order.field.field_path, order.direction.name)
        for order in query.order_by
        if order.field.field_path != "__name__"
    ]
    orders += [(field, "ASCENDING") for field in sorted(ranged - {f for f, _ in orders})]
    if not orders or (not equal and len(orders) == 1):
        return None  # served by single-field indexes (merged for equalities)
    scope = "COLLECTION_GROUP" if query.from_[0].all_descendants else "COLLECTION"
    return query.from_[0].collection_id, scope, tuple(sorted(equal)), tuple(orders)


def _declared(collection, scope, equal, orders):
    for index in INDEXES["indexes"]:
        if index["collectionGroup"] != collection or index.get("queryScope") != scope:
            continue
        fields = _index_fields(index)
        if sorted(fields[: len(equal)]) == list(equal) and fields[len(equal) :] == list(orders):
            return True
    return False


def test_every_query_the_routes_build_has_its_index(stack, alice, bob, unique):
    admin = user(unique, "admin", admin=True)
    with observed_firestore() as probe:
        deployed(stack, bob, "theirs", public=True)
        deployed(stack, alice, "mine")
        call(stack, "POST", "/demos", alice, json=demo_body())
        call(stack, "PUT", "/deployments/theirs/chosen", alice)
        for key in ("k1", "k2"):
            put_record(stack, alice, "notes", key, 1)
        for path in (
            "/agents",
            "/demos",
            "/deployments",
            "/deployments/public",
            "/providers",
            "/data-store/namespaces",
            "/data-store/namespaces/notes/records",
        ):
            every_page(stack, path, alice, 1)
        call(stack, "DELETE", "/data-store/namespaces/notes", alice)
        every_page(stack, "/agents?all=true", admin, 1)
        every_page(stack, "/deployments?all=true", admin, 1)
        call(stack, "GET", "/users/me/export", alice)

    needed = {n for parent, query in probe.queries if (n := _needed(parent, query))}
    missing = [n for n in needed if not _declared(*n)]

    assert probe.queries and needed
    assert missing == []


def test_the_index_check_finds_a_missing_index():
    missing = ("agents", "COLLECTION", [("ownerId", "ASCENDING")], [("name", "ASCENDING")])
    declared = ("agents", "COLLECTION", [("ownerId", "ASCENDING")], [("createdAt", "DESCENDING")])

    assert not _declared(*missing)
    assert _declared(*declared)


def test_admins_page_through_accounts_by_header(stack, unique):
    admin = user(unique, "admin", admin=True)
    for n in range(3):
        assert call(stack, "GET", "/users/me", user(unique, f"u{n}")).status_code == 200

    pages = every_page(stack, "/admin/users", admin, 2)
    ids = [account["_id"] for page in pages for account in page]

    assert len(ids) == len(set(ids)) >= 3
    assert ids == sorted(ids)
