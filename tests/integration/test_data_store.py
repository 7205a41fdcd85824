"""The data store: agent code's `data_store` and the UI's `/data-store` routes, per user."""

from __future__ import annotations

import os
import textwrap

import pytest
import requests

from devstack.tokens import mint_token
from shared.platform.config import get_settings

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="isolation needs a root host")


@pytest.fixture
def alice(stack, unique):
    user = mint_token(f"alice-{unique}@example.com")
    return {"Authorization": f"Bearer {user.id_token}"}, user.uid


@pytest.fixture
def bob(stack, unique):
    user = mint_token(f"bob-{unique}@example.com")
    return {"Authorization": f"Bearer {user.id_token}"}, user.uid


def run_agent(stack, headers, body, name="archivist"):
    code = "async def run(input_dict, tools):\n" + textwrap.indent(textwrap.dedent(body), "    ")
    payload = {"code": code, "inputDict": {}, "tools": {}, "friendlyName": name}
    response = requests.post(
        stack.url("/agents/run-code"), json=payload, headers=headers, timeout=60
    )
    assert response.status_code == 200, response.text
    return response.json()


def url(stack, path):
    return stack.url("/data-store" + path)


def test_agent_code_uses_every_operation(stack, alice):
    headers, user_id = alice
    body = run_agent(
        stack,
        headers,
        """
        data_store.set("a", {"n": 1})
        data_store.set("files/b.py", [1, 2, 3], metadata={"lang": "py"})
        cache = data_store.use_namespace("cache")
        count = cache.set_many({"x": 1, "y": 2, "z": None})
        out = {
            "get": data_store.get("a"),
            "missing": data_store.get("nope", default="dflt"),
            "keys": data_store.list_keys(),
            "prefixed": data_store.list_keys(prefix="files/"),
            "many": cache.get_many(["x", "z", "w"]),
            "all": cache.get_all(),
            "count": count,
            "deleted": data_store.delete("a"),
            "deleted_again": data_store.delete("a"),
            "namespaces": data_store.list_namespaces(),
        }
        out["cleared"] = cache.clear()
        out["namespaces_after"] = data_store.list_namespaces()
        return out
        """,
    )

    assert body["error"] is None, body["error"]
    result = body["result"]
    assert result["get"] == {"n": 1}
    assert result["missing"] == "dflt"
    assert result["keys"] == ["a", "files/b.py"]
    assert result["prefixed"] == ["files/b.py"]
    assert result["many"] == {"x": 1, "z": None}
    assert result["all"] == {"x": 1, "y": 2, "z": None}
    assert result["count"] == 3
    assert (result["deleted"], result["deleted_again"]) == (True, False)
    assert result["namespaces"] == ["cache", "default"]
    assert result["cleared"] == 3
    assert result["namespaces_after"] == ["default"]
    ops = [(entry["op"], entry["namespace"]) for entry in body["opsLog"]]
    assert ops[:3] == [("set", "default"), ("set", "default"), ("set_many", "cache")]
    assert all(entry["agent"] == "archivist" for entry in body["opsLog"])
    record = requests.get(
        url(stack, "/namespaces/default/records/files/b.py"), headers=headers, timeout=10
    )
    assert record.status_code == 200
    assert record.json() == {
        **record.json(),
        "userId": user_id,
        "namespace": "default",
        "key": "files/b.py",
        "value": [1, 2, 3],
        "metadata": {"lang": "py"},
        "createdByAgent": "archivist",
    }
    assert record.json()["_id"]


def test_ui_routes_with_gofannon_shapes(stack, alice):
    headers, _ = alice
    put = requests.put(
        url(stack, "/namespaces/notes/records/a/b"),
        json={"value": {"text": "hello"}, "metadata": {"tag": "t"}},
        headers=headers,
        timeout=10,
    )
    requests.put(
        url(stack, "/namespaces/notes/records/c"), json={"value": 5}, headers=headers, timeout=10
    )

    listed = requests.get(url(stack, "/namespaces"), headers=headers, timeout=10).json()
    stats = requests.get(url(stack, "/namespaces/notes"), headers=headers, timeout=10).json()
    records = requests.get(
        url(stack, "/namespaces/notes/records"), headers=headers, timeout=10
    ).json()
    empty = requests.get(url(stack, "/namespaces/nothing"), headers=headers, timeout=10).json()

    assert put.status_code == 200
    assert put.json()["value"] == {"text": "hello"}
    assert put.json()["createdByAgent"] is None
    assert listed["totalRecordCount"] == 2
    assert listed["namespaces"][0]["namespace"] == "notes"
    assert listed["totalSizeBytes"] == stats["sizeBytes"] == len('{"text":"hello"}') + 1
    assert stats["recordCount"] == 2
    assert [r["key"] for r in records] == ["a/b", "c"]
    assert empty == {
        "namespace": "nothing",
        "recordCount": 0,
        "sizeBytes": 0,
        "agents": [],
        "updatedAt": None,
    }

    deleted = requests.delete(
        url(stack, "/namespaces/notes/records/a/b"), headers=headers, timeout=10
    )
    again = requests.delete(
        url(stack, "/namespaces/notes/records/a/b"), headers=headers, timeout=10
    )
    cleared = requests.delete(url(stack, "/namespaces/notes"), headers=headers, timeout=10)

    assert deleted.status_code == 204
    assert again.status_code == 404
    assert cleared.json() == {"namespace": "notes", "deletedCount": 1}
    assert requests.get(url(stack, "/namespaces"), headers=headers, timeout=10).json() == {
        "namespaces": [],
        "totalRecordCount": 0,
        "totalSizeBytes": 0,
    }


def test_records_are_per_user(stack, alice, bob):
    alice_headers, _ = alice
    bob_headers, _ = bob
    requests.put(
        url(stack, "/namespaces/n/records/k"), json={"value": 1}, headers=alice_headers, timeout=10
    )

    assert (
        requests.get(
            url(stack, "/namespaces/n/records/k"), headers=bob_headers, timeout=10
        ).status_code
        == 404
    )
    assert (
        requests.get(url(stack, "/namespaces/n/records"), headers=bob_headers, timeout=10).json()
        == []
    )
    assert (
        requests.delete(
            url(stack, "/namespaces/n/records/k"), headers=bob_headers, timeout=10
        ).status_code
        == 404
    )
    assert requests.get(url(stack, "/namespaces"), timeout=10).status_code == 401


def test_record_size_limit(stack, alice):
    headers, _ = alice
    big = "x" * (get_settings().data_store_record_bytes + 1)

    response = requests.put(
        url(stack, "/namespaces/n/records/k"), json={"value": big}, headers=headers, timeout=10
    )
    from_agent = run_agent(stack, headers, f"data_store.set('k', 'x' * {len(big)})\n")

    assert response.status_code == 413
    assert "PlatformError: 413" in from_agent["error"]
    assert (
        requests.get(url(stack, "/namespaces/n"), headers=headers, timeout=10).json()["recordCount"]
        == 0
    )


def test_namespace_record_limit(stack, alice, monkeypatch):
    headers, _ = alice
    monkeypatch.setenv("DATA_STORE_NAMESPACE_RECORDS", "2")
    get_settings.cache_clear()
    try:
        codes = [
            requests.put(
                url(stack, f"/namespaces/n/records/k{i}"),
                json={"value": i},
                headers=headers,
                timeout=10,
            ).status_code
            for i in range(3)
        ]
        replaced = requests.put(
            url(stack, "/namespaces/n/records/k1"), json={"value": 9}, headers=headers, timeout=10
        )
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()

    assert codes == [200, 200, 413]
    assert replaced.status_code == 200


def test_values_that_are_not_json_are_refused(stack, alice):
    headers, _ = alice

    response = requests.put(
        url(stack, "/namespaces/n/records/k"),
        data='{"value": NaN}',
        headers={**headers, "Content-Type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 422
