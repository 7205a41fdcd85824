r"""What JSON and Firestore can hold: checks applied before anything is stored.

Two layers, so that a whole class of input is refused with a 422 before any
write, whatever the route:

- `parse_json` and `check_json`: every JSON body the HTTP layer (and the
  private service calls) parse. Python's `json` accepts `NaN`, `Infinity`,
  `1e999` (read as infinity), lone UTF-16 surrogates (a `\ud800` escape
  alone) and integers of any size, and it raises a bare `ValueError` for an
  integer of more than 4,300 digits (CPython's guard against quadratic
  conversion) and `RecursionError` for deep nesting; none of these can be
  stored by Firestore or written back as valid JSON. `parse_json` turns
  every such body into `UnreadableJson` or `UnstorableValue` (a 422 at the
  edge): integer literals longer than an int64 can be are refused before
  any conversion, other number literals longer than `MAX_NUMBER_CHARS`
  too, and nesting is bounded.
- `StorableMap`: free-form maps that reach Firestore as they came (client
  metadata, model parameters). Firestore refuses empty and reserved
  (`__name__`) field names, arrays directly inside arrays and maps nested
  more than 20 deep; the limits here are stricter.

`DocId` is the one pattern for document ids taken from clients (path
parameters use the same pattern through the router's `id` converter).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, StringConstraints

DOC_ID_PATTERN = r"[A-Za-z0-9-][A-Za-z0-9_-]{0,127}"
INT64_MAX = 2**63 - 1
MAX_JSON_DEPTH = 32
MAX_NUMBER_CHARS = 64
"""The longest non-integer number literal read (64 characters carry every double exactly)."""
_INT64_CHARS = len(str(-(2**63)))
MAX_MAP_DEPTH = 16
MAX_KEY_LENGTH = 256
_RESERVED_KEY = re.compile(r"^__.*__$")

DocId = Annotated[str, StringConstraints(pattern=f"^{DOC_ID_PATTERN}$")]
"""A document id a client may name: letters, digits, `-` and `_`, at most 128."""


class UnstorableValue(ValueError):
    """A value JSON or Firestore cannot hold.

    Args:
        message: What is wrong.
        path: Where, as keys and indexes from the top.
    """

    def __init__(self, message: str, path: tuple[str | int, ...]) -> None:
        super().__init__(message)
        self.path = path


class UnreadableJson(ValueError):
    """Bytes that are not a JSON document Python can read.

    Args:
        message: What is wrong.
        position: The character offset of the problem, when known.
    """

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


@dataclass(frozen=True)
class _Refused:
    """A number literal left unconverted: `check_json` refuses it where it stands."""

    message: str


def _int_literal(text: str) -> int | _Refused:
    """An integer literal's value; never converted when int64 cannot hold it."""
    if len(text) > _INT64_CHARS:
        return _Refused("Integer out of range (64-bit)")
    return int(text)


def _float_literal(text: str) -> float | _Refused:
    """A fraction or exponent literal's value (an overflow reads as infinity: refused later)."""
    if len(text) > MAX_NUMBER_CHARS:
        return _Refused(f"Number literal longer than {MAX_NUMBER_CHARS} characters")
    return float(text)


def parse_json(raw: bytes | str) -> Any:
    """Read a JSON document into values JSON and Firestore can hold again.

    Every failure is one of the two errors below, never another exception:
    a body the JSON layer cannot turn into values is the caller's mistake.

    Args:
        raw: The document (UTF-8, or UTF-16/32 with its byte order).

    Returns:
        The values, checked by `check_json`.

    Raises:
        UnreadableJson: Not JSON, not decodable text, or nested deeper than
            the parser can go.
        UnstorableValue: A number literal too long or out of range, a
            non-finite number, a lone surrogate, or nesting deeper than
            `MAX_JSON_DEPTH` (with where, when known).
    """
    try:
        value = json.loads(raw, parse_int=_int_literal, parse_float=_float_literal)
    except json.JSONDecodeError as exc:
        raise UnreadableJson("JSON decode error", exc.pos) from exc
    except UnicodeDecodeError as exc:
        raise UnreadableJson("JSON decode error", 0) from exc
    except RecursionError as exc:
        raise UnreadableJson("JSON nested too deeply") from exc
    check_json(value)
    return value


def check_json(value: Any, path: tuple[str | int, ...] = (), depth: int = 0) -> None:
    """Refuse parsed JSON that could not be stored or serialised again.

    Args:
        value: What `json.loads` returned.
        path: Where `value` sits (for the error).
        depth: How deep `value` sits.

    Raises:
        UnstorableValue: A non-finite number, an integer outside int64, a number
            literal `parse_json` left unconverted, a lone surrogate in a string
            or key, or nesting deeper than `MAX_JSON_DEPTH`.
    """
    if depth > MAX_JSON_DEPTH:
        raise UnstorableValue(f"Nesting deeper than {MAX_JSON_DEPTH} levels", path)
    if isinstance(value, _Refused):
        raise UnstorableValue(value.message, path)
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if abs(value) > INT64_MAX:
            raise UnstorableValue("Integer out of range (64-bit)", path)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise UnstorableValue("Number must be finite", path)
    elif isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json(item, (*path, index), depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, (*path, key))
            check_json(item, (*path, key), depth + 1)


def _check_text(text: str, path: tuple[str | int, ...]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnstorableValue("Text must be valid Unicode (no lone surrogates)", path) from exc


def _check_map(value: dict[str, Any]) -> dict[str, Any]:
    _check_storable(value, 1, in_list=False)
    return value


def _check_storable(value: Any, depth: int, *, in_list: bool) -> None:
    if isinstance(value, dict):
        if depth > MAX_MAP_DEPTH:
            raise ValueError(f"maps may nest at most {MAX_MAP_DEPTH} levels")
        for key, item in value.items():
            if not key or len(key) > MAX_KEY_LENGTH or _RESERVED_KEY.match(key):
                raise ValueError(
                    f"keys must be 1 to {MAX_KEY_LENGTH} characters and not of the form __x__"
                )
            _check_storable(item, depth + 1, in_list=False)
    elif isinstance(value, list):
        if in_list:
            raise ValueError("a list may not directly contain another list")
        for item in value:
            _check_storable(item, depth + 1, in_list=True)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64_MAX:
        raise ValueError("integers must fit in 64 bits")


StorableMap = Annotated[dict[str, Any], AfterValidator(_check_map)]
"""A free-form map Firestore can store as it is."""
