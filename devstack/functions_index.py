"""What is deployed where: functions from `deploy/functions.yaml`, routes from `firebase.json`.

The local gateway and the tests read the same files the deploy uses, so a
function missing from the build or a wrong rewrite fails locally too.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from deploy.manifest import ROOT, Function, load


@dataclass(frozen=True)
class Rewrite:
    """One Hosting rewrite: a path glob routed to a function."""

    source: str
    function: str
    pattern: re.Pattern[str]


def deployed_functions() -> dict[str, Function]:
    """Read the functions the deploy manifest (`deploy/functions.yaml`) describes.

    Returns:
        The functions by name.
    """
    return load().functions


def hosting_rewrites(root: Path = ROOT) -> list[Rewrite]:
    """Read the Hosting rewrites of `firebase.json`, in order.

    Args:
        root: The repository root.

    Returns:
        The rewrites that target functions.
    """
    config = json.loads((root / "firebase.json").read_text())
    rewrites = []
    for rewrite in config["hosting"]["rewrites"]:
        target = rewrite.get("function")
        if target is None:
            continue
        function = target["functionId"] if isinstance(target, dict) else target
        rewrites.append(
            Rewrite(
                source=rewrite["source"], function=function, pattern=glob_pattern(rewrite["source"])
            )
        )
    return rewrites


def glob_pattern(glob: str) -> re.Pattern[str]:
    """Translate a Hosting glob: `**` spans segments, `*` stays within one.

    Args:
        glob: The rewrite source.

    Returns:
        An anchored regular expression.
    """
    parts = re.split(r"(\*\*|\*)", glob)
    regex = "".join(
        ".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part) for part in parts
    )
    return re.compile(f"^{regex}$")


def resolve(rewrites: list[Rewrite], path: str) -> str | None:
    """Return the function the first matching rewrite routes a path to.

    Args:
        rewrites: The rewrites, in `firebase.json` order.
        path: A request path.

    Returns:
        The function name, or None when no rewrite matches.
    """
    return next((r.function for r in rewrites if r.pattern.match(path)), None)


def load_entry_point(spec: Function) -> Callable[..., Any]:
    """Import a function's `main.py` (as the runtime would) and return its entry point.

    Args:
        spec: The deployed function.

    Returns:
        The entry point callable.
    """
    module = _load_module(spec.source / "main.py")
    return getattr(module, spec.entry_point)  # type: ignore[no-any-return]


@cache
def _load_module(path: Path) -> ModuleType:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    name = f"functions_{path.parent.name}_main"
    module_spec = importlib.util.spec_from_file_location(name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    module_spec.loader.exec_module(module)
    return module
