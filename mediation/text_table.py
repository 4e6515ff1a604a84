"""Plain-text tables for the CLI (no dependency, readable in any terminal or log)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["render_table"]


def render_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(
            cell.rjust(width) if _numeric(cell) and i else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [line(row) for row in cells[1:]] or ["(none)"]
    return "\n".join([title, line(cells[0]), rule, *body])


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def _numeric(cell: str) -> bool:
    return (
        bool(cell) and cell.replace(",", "").replace(".", "").replace("%", "").lstrip("-").isdigit()
    )
