"""Schemathesis hooks for the fuzz suite: JSON bodies carrying values no parser should choke on.

Loaded by the schemathesis CLI through `SCHEMATHESIS_HOOKS` (see
`test_fuzz.py`). Every JSON body the schema generates may come out of
`flatmap_body` unchanged or with one hostile value put in it: an integer
beyond what CPython converts by default (more than 4,300 digits) or beyond
int64, or a structure nested deeper than the API's limit. The API must
answer each with a documented 4xx, never a 5xx.
"""

from __future__ import annotations

import sys
from typing import Any

import schemathesis
from hypothesis import strategies as st

# This process writes the integers; the API's own limits stay as they are.
sys.set_int_max_str_digits(0)

OVERSIZED_INTEGERS = st.sampled_from([10**5_000, -(10**4_301), 2**63, -(2**63) - 1, 10**30])


def _nested(depth: int, as_object: bool) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = {"k": value} if as_object else [value]
    return value


DEEP_STRUCTURES = st.builds(_nested, st.integers(min_value=33, max_value=400), st.booleans())
HOSTILE = st.one_of(OVERSIZED_INTEGERS, DEEP_STRUCTURES)


def _takes_json(context: Any) -> bool:
    operation = context.operation
    return operation is not None and any(
        body.media_type == "application/json" for body in operation.body
    )


def _with_hostile(body: Any) -> st.SearchStrategy[Any]:
    if isinstance(body, dict):
        keys = st.sampled_from(sorted(body) or ["extra"])
        return st.builds(lambda key, value: {**body, key: value}, keys, HOSTILE)
    if isinstance(body, list):
        return HOSTILE.map(lambda value: [*body, value])
    return HOSTILE


@schemathesis.hook
def flatmap_body(context: Any, body: Any) -> st.SearchStrategy[Any]:
    """The generated body, or the same body with one oversized number or deep structure."""
    if not _takes_json(context):
        return st.just(body)
    # Hostile first: hypothesis starts from the first branch, so the few examples
    # per operation always include one.
    return st.one_of(_with_hostile(body), st.just(body))
