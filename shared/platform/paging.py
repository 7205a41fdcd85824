"""Pages of a Firestore query: `limit` + an opaque `cursor` over a stable, indexed order.

A list route takes `PageQuery` (`?limit=&cursor=`), reads one page with
`read_page` and returns a `Page`; `shared.platform.http` answers the page's
body (a plain JSON array where the gofannon web UI reads one) and, when more
follow, the cursor of the next page in `X-Next-Cursor` and a `Link: <...>;
rel="next"` header. A request reads at most `limit + 1` documents, whatever
other users hold.

Invariants:
- The order is the given fields, then the document id in the direction of
  the last field, so it is total: no item is skipped or repeated between
  pages while nothing is written, and a write shows up at most once.
- A cursor holds the last item's order values and id (URL-safe base64 of
  JSON); it positions the next page inside the caller's own filter, so a
  forged cursor can skip items but never reveal others'. A cursor that does
  not decode to the route's order is 422.
- A page whose items are large ends early (`fit`): its body holds at most
  `PAGE_BYTES` of items, or its first item alone, and the cursor follows the
  last item kept.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import ConfigDict, Field

from shared.platform.errors import InvalidInput
from shared.platform.models import Model

if TYPE_CHECKING:
    from google.cloud.firestore import CollectionReference, Query

T = TypeVar("T")
DEFAULT_PAGE = 50
MAX_PAGE = 200
PAGE_BYTES = 1_000_000
MAX_CURSOR_CHARS = 1024
_TIME = "$t"


class PageQuery(Model):
    """`?limit=&cursor=`: the page size and where to continue (`X-Next-Cursor` of the last page)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE, description="Items per page")
    cursor: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CURSOR_CHARS,
        description="The previous page's `X-Next-Cursor` header",
    )


@dataclass(frozen=True)
class Page(Generic[T]):
    """A route's answer holding one page (a list, or an object around one), and the next cursor.

    `next_cursor` is None on the last page.
    """

    body: T
    next_cursor: str | None = None


@dataclass(frozen=True)
class Order:
    """One field of a page order."""

    field: str
    descending: bool = False


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {_TIME: value.isoformat()}
    return value


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {_TIME} and isinstance(value[_TIME], str):
        return datetime.fromisoformat(value[_TIME])
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    raise ValueError("unsupported cursor value")


def encode_cursor(values: Sequence[Any], doc_id: str) -> str:
    """The cursor after an item with these order values and document id."""
    text = json.dumps([[_encode_value(v) for v in values], doc_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, fields: int) -> tuple[list[Any], str]:
    """The order values and document id a cursor holds.

    Raises:
        InvalidInput: The cursor is not one of this order's (422).
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values, doc_id = json.loads(raw)
        if not isinstance(values, list) or len(values) != fields:
            raise ValueError("wrong number of values")
        if not isinstance(doc_id, str) or not doc_id or "/" in doc_id:
            raise ValueError("bad document id")
        return [_decode_value(v) for v in values], doc_id
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise InvalidInput("Invalid cursor", loc=("query", "cursor")) from exc


def read_page(
    query: Query | CollectionReference,
    order: Sequence[Order],
    page: PageQuery,
) -> tuple[list[Any], str | None]:
    """Read one page of `query` (already filtered) in `order`, then by document id.

    Args:
        query: The filtered query of one collection (or the whole collection).
        order: The order fields; the document id follows in the last one's direction.
        page: The page size and the cursor.

    Returns:
        At most `page.limit` snapshots, and the next page's cursor when more follow.

    Raises:
        InvalidInput: A cursor that is not one of this order's.
    """
    from google.cloud import firestore
    from google.cloud.firestore_v1.field_path import FieldPath

    descending = order[-1].descending if order else False
    request: Any = query
    for item in order:
        direction = firestore.Query.DESCENDING if item.descending else firestore.Query.ASCENDING
        request = request.order_by(item.field, direction=direction)
    by_id = firestore.Query.DESCENDING if descending else firestore.Query.ASCENDING
    request = request.order_by(FieldPath.document_id(), direction=by_id)
    if page.cursor is not None:
        values, doc_id = decode_cursor(page.cursor, len(order))
        request = request.start_after([*values, doc_id])
    found = list(request.limit(page.limit + 1).stream())
    if len(found) <= page.limit:
        return found, None
    kept = found[: page.limit]
    return kept, cursor_after(kept[-1], order)


def cursor_after(snapshot: Any, order: Sequence[Order]) -> str:
    """The cursor of the page that follows `snapshot` in `order`."""
    return encode_cursor([snapshot.get(item.field) for item in order], snapshot.id)


def fit(
    found: Sequence[Any],
    cursor: str | None,
    order: Sequence[Order],
    sizes: Sequence[int],
    budget: int = PAGE_BYTES,
) -> tuple[int, str | None]:
    """How many of a page's snapshots fit in `budget` bytes of items (at least one), and the cursor.

    Args:
        found: The page's snapshots, as `read_page` returned them.
        cursor: The cursor `read_page` returned.
        order: The page's order.
        sizes: The answer's bytes for each snapshot (0 for one left out of the answer).
        budget: The bytes a page may hold.

    Returns:
        The number of snapshots to keep, and the cursor after the last one kept
        (`cursor` unchanged when all fit).
    """
    total = 0
    for index, size in enumerate(sizes):
        total += size
        if total > budget and index > 0:
            return index, cursor_after(found[index - 1], order)
    return len(found), cursor


def batches(
    query: Query | CollectionReference, order: Sequence[Order] = (), size: int = MAX_PAGE
) -> Iterator[list[Any]]:
    """Every document of `query`, `size` a read, in `order` then by id (for whole-set work).

    Each batch is read when the previous one has been handled, so documents
    the caller deletes or moves out of the query meanwhile do not shift the
    next batch (it starts after the last id seen).
    """
    page = PageQuery(limit=size)
    while True:
        found, cursor = read_page(query, order, page)
        if found:
            yield found
        if cursor is None:
            return
        page = PageQuery(limit=size, cursor=cursor)
