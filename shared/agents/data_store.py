"""The agent data store: per-user key-value records in namespaces (owns two collections).

- `data_store/{id}`: one record; the id is the SHA-256 of (user, namespace,
  key), so any key (slashes included) maps to one document. Fields: userId,
  namespace, key, valueJson and metadataJson (values are kept as JSON text,
  so anything JSON can express is storable), sizeBytes, createdByAgent,
  lastAccessedByAgent, accessCount, createdAt, updatedAt, lastAccessedAt
  (ISO 8601 strings, as gofannon shapes them).
- `data_store_namespaces/{id}`: one namespace's totals (recordCount,
  sizeBytes, agents, updatedAt). Every write of a record also writes its
  namespace document with a precondition, so writers to one namespace are
  serialised and the totals, which enforce `DATA_STORE_NAMESPACE_BYTES` and
  `DATA_STORE_NAMESPACE_RECORDS`, stay exact.
- `data_store_totals/{userId}`: the user's totals over every namespace
  (recordCount, sizeBytes), changed by increments in the same commit as the
  namespace document, so they stay the sum of the namespaces' without
  reading them.

Lists are paged (`shared.platform.paging`): namespaces by name, records by
key; whole-namespace operations (clear, agent code's `list_keys`, `get_all`)
read `MAX_PAGE` records at a time, never more than the namespace's record limit.

A record's value is at most `DATA_STORE_RECORD_BYTES` of JSON. The UI's
routes and agent code (`data_store` in the sandbox, through `POST
/data-store/ops` with a run token) both land here, always scoped to the
caller's own user id. Agent code is further held to its run's grant: every
operation needs the namespace declared with that access (`read` for get,
get_many, get_all, list_keys; `write` for set, set_many, delete, clear;
`both` for either), `list_namespaces` shows only declared namespaces; a
run of another user's agent works in `{RunGrant.store_prefix}{namespace}`
(an area of the caller's store that agent has to itself); and a
token of a deleted or revoked user is refused: reads through
`accounts.require_live_run`, writes on the account read in the same round
trip as the records they replace (so nothing is written for a user whose
deletion finished, which nothing would delete again).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from shared.agents import accounts
from shared.platform import clients, erasure
from shared.platform.auth import Principal, RunGrant
from shared.platform.config import get_settings
from shared.platform.errors import Forbidden, InvalidInput, NotFound, PayloadTooLarge
from shared.platform.models import Model
from shared.platform.paging import MAX_PAGE, Order, Page, PageQuery, batches, fit, read_page
from shared.platform.transactions import Plan, write_if_unchanged

RECORDS = "data_store"
NAMESPACES = "data_store_namespaces"
TOTALS = "data_store_totals"
MAX_KEY_CHARS = 1024
MAX_NAMESPACE_CHARS = 256
MAX_AGENTS_LISTED = 50
_BATCH = 400
_BY_ALIAS = ConfigDict(populate_by_name=True)


class DataStoreRecord(Model):
    """A record as the UI reads it."""

    model_config = _BY_ALIAS

    id: str = Field(alias="_id")
    user_id: str = Field(alias="userId")
    namespace: str
    key: str
    value: Any = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_by_agent: str | None = Field(default=None, alias="createdByAgent")
    last_accessed_by_agent: str | None = Field(default=None, alias="lastAccessedByAgent")
    access_count: int = Field(default=0, alias="accessCount")
    created_at: str | None = Field(default=None, alias="createdAt")
    updated_at: str | None = Field(default=None, alias="updatedAt")
    last_accessed_at: str | None = Field(default=None, alias="lastAccessedAt")


class NamespaceStats(Model):
    """A namespace's totals."""

    model_config = _BY_ALIAS

    namespace: str
    record_count: int = Field(alias="recordCount")
    size_bytes: int = Field(alias="sizeBytes")
    agents: list[str] = Field(default_factory=list)
    updated_at: str | None = Field(default=None, alias="updatedAt")


class NamespaceList(Model):
    """`GET /data-store/namespaces`: a page of namespaces, and the totals over all of them."""

    model_config = _BY_ALIAS

    namespaces: list[NamespaceStats]
    total_record_count: int = Field(alias="totalRecordCount")
    total_size_bytes: int = Field(alias="totalSizeBytes")


class SetRecordBody(Model):
    """`PUT .../records/{key}`: the new value and optional metadata."""

    model_config = ConfigDict(extra="forbid")

    value: Any = None
    metadata: dict[str, Any] | None = None


class ClearedNamespace(Model):
    """`DELETE /data-store/namespaces/{namespace}`."""

    model_config = _BY_ALIAS

    namespace: str
    deleted_count: int = Field(alias="deletedCount")


class OpBody(Model):
    """One `data_store` operation from agent code."""

    model_config = ConfigDict(extra="forbid")

    op: Literal[
        "get",
        "set",
        "delete",
        "list_keys",
        "list_namespaces",
        "get_all",
        "get_many",
        "set_many",
        "clear",
    ]
    namespace: str = Field(min_length=1, max_length=MAX_NAMESPACE_CHARS)
    agent: str = Field(min_length=1, max_length=200)
    key: str | None = Field(default=None, min_length=1, max_length=MAX_KEY_CHARS)
    value: Any = None
    metadata: dict[str, Any] | None = None
    keys: list[str] | None = Field(default=None, max_length=1000)
    items: dict[str, Any] | None = Field(default=None, max_length=_BATCH)
    prefix: str | None = Field(default=None, max_length=MAX_KEY_CHARS)


class OpResult(Model):
    """What a `data_store` operation returns to agent code."""

    value: Any = None


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _user(principal: Principal) -> str:
    if not principal.user_id:
        raise Forbidden("Create your user first")
    return principal.user_id


def _record_ref(user_id: str, namespace: str, key: str) -> Any:
    return clients.firestore().collection(RECORDS).document(_digest(user_id, namespace, key))


def _namespace_ref(user_id: str, namespace: str) -> Any:
    return clients.firestore().collection(NAMESPACES).document(_digest(user_id, namespace))


def _totals_ref(user_id: str) -> Any:
    return clients.firestore().collection(TOTALS).document(user_id)


def _totals_change(user_id: str, records: int, size: int) -> tuple[Any, dict[str, Any]]:
    """The merge that moves the user's totals by a namespace's change (for `Plan.also_set`)."""
    from google.cloud import firestore

    change = {
        "userId": user_id,
        "recordCount": firestore.Increment(records),
        "sizeBytes": firestore.Increment(size),
    }
    return _totals_ref(user_id), change


def _check_names(namespace: str, key: str | None = None) -> None:
    if not namespace or len(namespace) > MAX_NAMESPACE_CHARS:
        raise InvalidInput("Namespace must be 1 to 256 characters", loc=("path", "namespace"))
    if key is not None and (not key or len(key) > MAX_KEY_CHARS):
        raise InvalidInput("Key must be 1 to 1024 characters", loc=("path", "key"))


def _encode(value: Any, what: str) -> str:
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"The {what} must be JSON", loc=("body", what)) from exc
    limit = get_settings().data_store_record_bytes
    if len(text.encode()) > limit:
        raise PayloadTooLarge(f"A record's {what} may be at most {limit} bytes of JSON")
    return text


def _to_record(doc_id: str, data: dict[str, Any]) -> DataStoreRecord:
    return DataStoreRecord(
        _id=doc_id,
        userId=data["userId"],
        namespace=data["namespace"],
        key=data["key"],
        value=json.loads(data["valueJson"]),
        metadata=json.loads(data.get("metadataJson") or "{}"),
        createdByAgent=data.get("createdByAgent"),
        lastAccessedByAgent=data.get("lastAccessedByAgent"),
        accessCount=data.get("accessCount", 0),
        createdAt=data.get("createdAt"),
        updatedAt=data.get("updatedAt"),
        lastAccessedAt=data.get("lastAccessedAt"),
    )


def _read_for(run: RunGrant | None, refs: list[Any]) -> list[Any]:
    """Read documents about to be written; for a run, its account in the same round trip.

    A run's write thus never lands for a user already deleted or revoked
    (`accounts.check_live_run`), whatever an instance remembers.
    """
    if run is None:
        return list(clients.firestore().get_all(refs))
    account = accounts.account_ref(run.user_id)
    found = list(clients.firestore().get_all([*refs, account]))
    snapshot = next(s for s in found if s.reference.path == account.path)
    accounts.check_live_run(run, snapshot.to_dict() if snapshot.exists else None)
    return [s for s in found if s.reference.path != account.path]


def _write(
    user_id: str,
    namespace: str,
    items: dict[str, tuple[str, str | None]],
    agent: str | None,
    run: RunGrant | None = None,
) -> int:
    """Write records (key → (valueJson, metadataJson)), keeping the namespace totals exact.

    Raises:
        Unauthorized: A run's user was deleted or revoked.
        PayloadTooLarge: The namespace would exceed its size or record limit.
    """
    settings = get_settings()
    refs = {key: _record_ref(user_id, namespace, key) for key in items}
    ns_ref = _namespace_ref(user_id, namespace)

    def decide(totals: dict[str, Any] | None) -> Plan[int]:
        now = _now()
        current = {s.reference.id: s for s in _read_for(run, list(refs.values()))}
        size = (totals or {}).get("sizeBytes", 0)
        count = (totals or {}).get("recordCount", 0)
        writes = []
        for key, (value_json, metadata_json) in items.items():
            snapshot = current.get(refs[key].id)
            old = snapshot.to_dict() if snapshot is not None and snapshot.exists else None
            record_size = len(value_json.encode())
            size += record_size - (old or {}).get("sizeBytes", 0)
            count += 0 if old else 1
            metadata = (
                metadata_json if metadata_json is not None else (old or {}).get("metadataJson")
            )
            record = {
                "userId": user_id,
                "namespace": namespace,
                "key": key,
                "valueJson": value_json,
                "metadataJson": metadata or "{}",
                "sizeBytes": record_size,
                "createdByAgent": (old or {}).get("createdByAgent", agent),
                "lastAccessedByAgent": (old or {}).get("lastAccessedByAgent"),
                "accessCount": (old or {}).get("accessCount", 0),
                "createdAt": (old or {}).get("createdAt", now),
                "updatedAt": now,
                "lastAccessedAt": (old or {}).get("lastAccessedAt"),
            }
            writes.append((refs[key], record))
        if size > settings.data_store_namespace_bytes:
            limit = settings.data_store_namespace_bytes
            raise PayloadTooLarge(f"Namespace '{namespace}' may hold at most {limit} bytes")
        if count > settings.data_store_namespace_records:
            limit = settings.data_store_namespace_records
            raise PayloadTooLarge(f"Namespace '{namespace}' may hold at most {limit} records")
        agents = list((totals or {}).get("agents", []))
        if agent and agent not in agents and len(agents) < MAX_AGENTS_LISTED:
            agents.append(agent)
        update = {
            "userId": user_id,
            "namespace": namespace,
            "recordCount": count,
            "sizeBytes": size,
            "agents": sorted(agents),
            "updatedAt": now,
        }
        before = totals or {}
        moved = (count - before.get("recordCount", 0), size - before.get("sizeBytes", 0))
        writes.append(_totals_change(user_id, *moved))
        return Plan(len(items), update=update, also_set=writes)

    return write_if_unchanged(ns_ref, decide)


def _remove(user_id: str, namespace: str, keys: Iterable[str], run: RunGrant | None = None) -> int:
    """Delete records and lower the namespace totals; returns how many existed.

    Raises:
        Unauthorized: A run's user was deleted or revoked.
    """
    refs = {_record_ref(user_id, namespace, key) for key in keys}
    ns_ref = _namespace_ref(user_id, namespace)
    db = clients.firestore()

    def decide(totals: dict[str, Any] | None) -> Plan[list[Any]]:
        found = [s for s in _read_for(run, list(refs)) if s.exists]
        if not found or totals is None:
            return Plan([])
        freed = sum((s.to_dict() or {}).get("sizeBytes", 0) for s in found)
        update = {
            "recordCount": max(totals.get("recordCount", 0) - len(found), 0),
            "sizeBytes": max(totals.get("sizeBytes", 0) - freed, 0),
            "updatedAt": _now(),
        }
        moved = (
            update["recordCount"] - totals.get("recordCount", 0),
            update["sizeBytes"] - totals.get("sizeBytes", 0),
        )
        return Plan(
            [s.reference for s in found], update=update, also_set=[_totals_change(user_id, *moved)]
        )

    removed = write_if_unchanged(ns_ref, decide)
    for start in range(0, len(removed), _BATCH):
        batch = db.batch()
        for ref in removed[start : start + _BATCH]:
            batch.delete(ref)
        batch.commit()
    return len(removed)


def _records_query(user_id: str, namespace: str) -> Any:
    from google.cloud.firestore import FieldFilter

    return (
        clients.firestore()
        .collection(RECORDS)
        .where(filter=FieldFilter("userId", "==", user_id))
        .where(filter=FieldFilter("namespace", "==", namespace))
    )


def _records(user_id: str, namespace: str) -> list[tuple[str, dict[str, Any]]]:
    """Every record of a namespace by key, `MAX_PAGE` a read (at most the namespace limit)."""
    return [
        (s.id, s.to_dict() or {})
        for batch in batches(_records_query(user_id, namespace), [Order("key")])
        for s in batch
    ]


def _stats(namespace: str, data: dict[str, Any] | None) -> NamespaceStats:
    return NamespaceStats(
        namespace=namespace,
        recordCount=(data or {}).get("recordCount", 0),
        sizeBytes=(data or {}).get("sizeBytes", 0),
        agents=(data or {}).get("agents", []),
        updatedAt=(data or {}).get("updatedAt"),
    )


def list_namespaces(principal: Principal, query: PageQuery) -> Page[NamespaceList]:
    """A page of the caller's namespaces that hold records, by name, and their totals.

    The totals are the user's counters (`data_store_totals`), not a sum of the page.

    Raises:
        InvalidInput: A cursor that is not one of this list's.
    """
    from google.cloud.firestore import FieldFilter

    user_id = _user(principal)
    owned = (
        clients.firestore()
        .collection(NAMESPACES)
        .where(filter=FieldFilter("userId", "==", user_id))
    )
    found, cursor = read_page(owned, [Order("namespace")], query)
    stats = [_stats(data["namespace"], data) for s in found if (data := s.to_dict() or {})]
    totals = _totals_ref(user_id).get().to_dict() or {}
    listing = NamespaceList(
        namespaces=[item for item in stats if item.record_count > 0],
        totalRecordCount=totals.get("recordCount", 0),
        totalSizeBytes=totals.get("sizeBytes", 0),
    )
    return Page(listing, cursor)


def namespace_stats(principal: Principal, namespace: str) -> NamespaceStats:
    """One namespace's totals (zero for a namespace with nothing in it)."""
    user_id = _user(principal)
    _check_names(namespace)
    return _stats(namespace, _namespace_ref(user_id, namespace).get().to_dict())


def list_records(
    principal: Principal, namespace: str, query: PageQuery
) -> Page[list[DataStoreRecord]]:
    """A page of a namespace's records, by key.

    Raises:
        InvalidInput: A bad namespace, or a cursor that is not one of this list's.
    """
    user_id = _user(principal)
    _check_names(namespace)
    order = [Order("key")]
    found, cursor = read_page(_records_query(user_id, namespace), order, query)
    records = [_to_record(s.id, s.to_dict() or {}) for s in found]
    kept, cursor = fit(
        found, cursor, order, [(s.to_dict() or {}).get("sizeBytes", 0) for s in found]
    )
    return Page(records[:kept], cursor)


def get_record(principal: Principal, namespace: str, key: str) -> DataStoreRecord:
    """One record.

    Raises:
        NotFound: No such record of the caller.
    """
    user_id = _user(principal)
    _check_names(namespace, key)
    snapshot = _record_ref(user_id, namespace, key).get()
    if not snapshot.exists:
        raise NotFound(f"Record '{key}' not found in '{namespace}'")
    return _to_record(snapshot.id, snapshot.to_dict() or {})


def set_record(
    principal: Principal, namespace: str, key: str, body: SetRecordBody
) -> DataStoreRecord:
    """Create or replace a record (an edit from the UI, not by an agent).

    Raises:
        InvalidInput: Bad names, or a value that is not JSON.
        PayloadTooLarge: The record or the namespace would be too large.
    """
    user_id = _user(principal)
    _check_names(namespace, key)
    metadata = _encode(body.metadata, "metadata") if body.metadata is not None else None
    _write(user_id, namespace, {key: (_encode(body.value, "value"), metadata)}, None)
    return get_record(principal, namespace, key)


def delete_record(principal: Principal, namespace: str, key: str) -> None:
    """Delete a record.

    Raises:
        NotFound: No such record of the caller.
    """
    user_id = _user(principal)
    _check_names(namespace, key)
    if not _remove(user_id, namespace, [key]):
        raise NotFound(f"Record '{key}' not found in '{namespace}'")


def clear_namespace(principal: Principal, namespace: str) -> ClearedNamespace:
    """Delete every record of a namespace."""
    user_id = _user(principal)
    _check_names(namespace)
    keys = [str(data["key"]) for _, data in _records(user_id, namespace)]
    return ClearedNamespace(namespace=namespace, deletedCount=_remove(user_id, namespace, keys))


def _op_get(principal: Principal, user_id: str, body: OpBody) -> Any:
    ref = _record_ref(user_id, body.namespace, body.key or "")
    snapshot = ref.get()
    if not snapshot.exists:
        return None
    from google.cloud import firestore

    ref.update(
        {
            "lastAccessedByAgent": body.agent,
            "lastAccessedAt": _now(),
            "accessCount": firestore.Increment(1),
        }
    )
    return {"value": json.loads((snapshot.to_dict() or {})["valueJson"])}


def _op_set_many(principal: Principal, user_id: str, body: OpBody) -> Any:
    items = body.items if body.op == "set_many" else {body.key or "": body.value}
    metadata = _encode(body.metadata, "metadata") if body.metadata is not None else None
    encoded = {key: (_encode(value, "value"), metadata) for key, value in (items or {}).items()}
    for key in encoded:
        _check_names(body.namespace, key)
    count = _write(user_id, body.namespace, encoded, body.agent, principal.run) if encoded else 0
    return count if body.op == "set_many" else None


def _op_delete(principal: Principal, user_id: str, body: OpBody) -> Any:
    return _remove(user_id, body.namespace, [body.key or ""], principal.run) > 0


def _op_list_keys(principal: Principal, user_id: str, body: OpBody) -> Any:
    keys = [str(data["key"]) for _, data in _records(user_id, body.namespace)]
    return [key for key in keys if key.startswith(body.prefix or "")]


def _op_list_namespaces(principal: Principal, user_id: str, body: OpBody) -> Any:
    names: list[str] = []
    page = PageQuery(limit=MAX_PAGE)
    while True:
        listed = list_namespaces(principal, page)
        names.extend(item.namespace for item in listed.body.namespaces)
        if listed.next_cursor is None:
            break
        page = PageQuery(limit=MAX_PAGE, cursor=listed.next_cursor)
    grant = principal.run
    if grant is None:
        return names
    prefix = grant.store_prefix
    own = [name.removeprefix(prefix) for name in names if name.startswith(prefix)]
    return [n for n in own if grant.may_use(n, "read") or grant.may_use(n, "write")]


def _op_get_all(principal: Principal, user_id: str, body: OpBody) -> Any:
    records = _records(user_id, body.namespace)
    return {data["key"]: json.loads(data["valueJson"]) for _, data in records}


def _op_get_many(principal: Principal, user_id: str, body: OpBody) -> Any:
    refs = [_record_ref(user_id, body.namespace, key) for key in body.keys or []]
    found = [s.to_dict() or {} for s in clients.firestore().get_all(refs) if s.exists]
    return {data["key"]: json.loads(data["valueJson"]) for data in found}


def _op_clear(principal: Principal, user_id: str, body: OpBody) -> Any:
    keys = [str(data["key"]) for _, data in _records(user_id, body.namespace)]
    return _remove(user_id, body.namespace, keys, principal.run)


_OPS = {
    "get": _op_get,
    "set": _op_set_many,
    "delete": _op_delete,
    "list_keys": _op_list_keys,
    "list_namespaces": _op_list_namespaces,
    "get_all": _op_get_all,
    "get_many": _op_get_many,
    "set_many": _op_set_many,
    "clear": _op_clear,
}
_REQUIRED = {"get": "key", "set": "key", "delete": "key", "get_many": "keys", "set_many": "items"}
_WRITES = frozenset({"set", "set_many", "delete", "clear"})


def _allow(grant: RunGrant, body: OpBody) -> None:
    """Refuse an operation on a namespace the running agent did not declare with that access."""
    if body.op == "list_namespaces":
        return
    access: Literal["read", "write"] = "write" if body.op in _WRITES else "read"
    if not grant.may_use(body.namespace, access):
        raise Forbidden(
            f"This agent did not declare namespace '{body.namespace}' for {access} "
            "in its dataStoreConfig"
        )


def run_op(principal: Principal, body: OpBody) -> OpResult:
    """One `data_store` operation of agent code, on the run's user's records.

    Raises:
        Unauthorized: The run's user was deleted or revoked.
        Forbidden: Not a run token, or a namespace the run may not use that way.
        InvalidInput: A required argument of the operation is missing, or not JSON.
        PayloadTooLarge: A record or the namespace would be too large.
    """
    user_id = _user(principal)
    if principal.run is None:
        raise Forbidden("Only agent code may call this")
    _allow(principal.run, body)
    accounts.require_live_run(principal.run)
    if principal.run.store_prefix:
        body = body.model_copy(update={"namespace": principal.run.store_prefix + body.namespace})
    required = _REQUIRED.get(body.op)
    if required and getattr(body, required) is None:
        raise InvalidInput(f"'{required}' is required for {body.op}", loc=("body", required))
    return OpResult(value=_OPS[body.op](principal, user_id, body))


def delete_user_data(user_id: str) -> None:
    """Delete a user's data store records, namespaces and totals (re-runnable)."""
    for collection in (RECORDS, NAMESPACES):
        erasure.delete_matching(erasure.belonging_to(collection, user_id))
    _totals_ref(user_id).delete()


def export_user_data(user_id: str, limit: int) -> dict[str, Any]:
    """Return a user's data store records and namespaces (at most `limit` of each)."""
    return {
        name: [
            s.to_dict() or {}
            for s in erasure.belonging_to(collection, user_id).limit(limit).stream()
        ]
        for name, collection in (("records", RECORDS), ("namespaces", NAMESPACES))
    }
