"""What is deployed where: functions from `cloudbuild.yaml`, routes from `firebase.json`.

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

import yaml

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class FunctionSpec:
    """One deployed function, as `cloudbuild.yaml` deploys it."""

    name: str
    source: Path
    entry_point: str
    flags: tuple[str, ...]
    substitutions: tuple[tuple[str, str], ...] = ()

    @property
    def event_triggered(self) -> bool:
        """Whether the function takes CloudEvents (Eventarc) instead of HTTP requests."""
        return any(flag.startswith("--trigger-event-filters") for flag in self.flags)

    @property
    def environment(self) -> dict[str, str]:
        """The plain variables the deploy sets (`--set-env-vars`), substitutions resolved."""
        values = dict(self.substitutions)
        pairs = [pair for flag in self._flag_values("--set-env-vars") for pair in flag.split(",")]
        resolved = {}
        for pair in pairs:
            name, _, value = pair.partition("=")
            resolved[name] = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), ""), value)
        return resolved

    @property
    def secrets(self) -> tuple[str, ...]:
        """The variables the deploy fills from Secret Manager (`--set-secrets`)."""
        pairs = [pair for flag in self._flag_values("--set-secrets") for pair in flag.split(",")]
        return tuple(pair.partition("=")[0] for pair in pairs)

    def _flag_values(self, name: str) -> list[str]:
        return [flag.split("=", 1)[1] for flag in self.flags if flag.startswith(name + "=")]

    @property
    def event_filters(self) -> dict[str, str]:
        """The Eventarc trigger's filters (`type`, `bucket`...), empty for HTTP functions."""
        pairs = (value.split("=", 1) for value in self._flag_values("--trigger-event-filters"))
        return {name: value for name, value in pairs}

    @property
    def public(self) -> bool:
        """Whether the function is reachable without IAM (behind Hosting)."""
        return "--allow-unauthenticated" in self.flags


@dataclass(frozen=True)
class Rewrite:
    """One Hosting rewrite: a path glob routed to a function."""

    source: str
    function: str
    pattern: re.Pattern[str]


def deployed_functions(root: Path = ROOT) -> dict[str, FunctionSpec]:
    """Read the functions `cloudbuild.yaml` deploys.

    Args:
        root: The repository root.

    Returns:
        The functions by name.
    """
    build = yaml.safe_load((root / "cloudbuild.yaml").read_text())
    substitutions = tuple(
        (str(key), str(value)) for key, value in (build.get("substitutions") or {}).items()
    )
    functions: dict[str, FunctionSpec] = {}
    for step in build["steps"]:
        args = [str(arg) for arg in step.get("args", [])]
        if args[:2] != ["functions", "deploy"]:
            continue
        options = dict(arg.split("=", 1) for arg in args[3:] if "=" in arg)
        name = args[2]
        functions[name] = FunctionSpec(
            name=name,
            source=root / options["--source"],
            entry_point=options["--entry-point"],
            flags=tuple(args[3:]),
            substitutions=substitutions,
        )
    return functions


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


@cache
def load_entry_point(spec: FunctionSpec) -> Callable[..., Any]:
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
