"""The one shape every benchmark returns: rows of a figure next to its baseline, from one run.

Each `bench/*.py` module has `measure(...) -> list[Row]` (runnable alone
through its `main()`, which prints its rows); `bench/run` calls every
module's `measure` and prints all the rows as one table.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One figure of ours, the baseline measured beside it in the same run, and their ratio.

    `ratio` is ours over the baseline in `unit`: for times lower is better
    (1.10x means 10% slower than the baseline), for rates (`/s`) higher is.
    """

    name: str
    value: float
    baseline: float
    baseline_name: str
    unit: str = "ms"

    @property
    def ratio(self) -> float:
        return self.value / self.baseline if self.baseline else float("inf")


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which `fraction` of the samples fall (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _number(value: float, unit: str) -> str:
    text = (
        f"{value:.0f}"
        if abs(value) >= 100
        else f"{value:.2f}"
        if abs(value) < 10
        else f"{value:.1f}"
    )
    return f"{text} {unit}"


def table(rows: Sequence[Row], *, heading: str | None = None) -> str:
    """Render rows as one fixed-width table (Markdown-compatible)."""
    header = ("figure", "ours", "baseline", "ratio", "baseline is")
    lines = [
        (
            row.name,
            _number(row.value, row.unit),
            _number(row.baseline, row.unit),
            f"{row.ratio:.2f}x",
            row.baseline_name,
        )
        for row in rows
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines, strict=True)]

    def render(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if index in (1, 2, 3) else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            "-" * (width + 1) + ":" if index in (1, 2, 3) else "-" * (width + 2)
            for index, width in enumerate(widths)
        )
        + "|"
    )
    body = [render(header), rule, *(render(line) for line in lines)]
    return "\n".join(([heading, ""] if heading else []) + body)


@contextlib.contextmanager
def isolated() -> Iterator[None]:
    """Run one benchmark without leaking its environment or cached clients into the next."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        from shared.platform import clients

        clients.reset()
