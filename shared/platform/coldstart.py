"""Cyclic garbage collection held off from start-up to the end of the first call.

A cold start is mostly imports: the first call of a function loads the
Google clients, and our own modules load before it. CPython collects the
young objects every 700 new container objects, and walks every object alive
(a full collection) each time the long-lived ones have grown by a quarter, so
start-up pays for walking the same module objects again and again while it
builds them (measured with `bench/platform_overhead.py`: about 25 ms of a
400 ms start of `users`). Module objects live as long as the process,
so nothing is gained by walking them.

The entry-point builders (`http_function`, `task_worker`,
`service_function`, and the storage event) call `entry_point` on the
function they return: collection stops when the entry point is built (the
end of the function's import) and starts again when its first call ends,
after everything alive then is moved by `gc.freeze()` out of every later
collection. Reference counting still frees all acyclic garbage meanwhile;
cycles made during start-up and the first call (exception tracebacks, for
example) are kept, once, for the life of the instance.

The hold happens once per process, whatever number of entry points it
builds. A process that builds entry points but serves none of them (a
script, a test session) calls `release()` itself.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

_state = {"held": False, "done": False}


def hold() -> None:
    """Stop collection until `release()`, the first time this process asks."""
    if not _state["done"] and not _state["held"] and gc.isenabled():
        gc.disable()
        _state["held"] = True


def release() -> None:
    """Freeze what start-up built and collect again (once; later calls do nothing)."""
    if _state["held"]:
        _state["held"] = False
        gc.freeze()
        gc.enable()
    _state["done"] = True


def entry_point(function: Callable[P, R]) -> Callable[P, R]:
    """Hold collection from now until the first call of `function` ends.

    Args:
        function: A functions-framework entry point.

    Returns:
        The same entry point, which ends the hold when its first call returns
        or raises.
    """
    hold()

    @functools.wraps(function)
    def served(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        finally:
            release()

    return served
