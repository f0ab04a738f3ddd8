"""HPVM's fixed-width tables: a header, a rule of `=` per column, then the rows."""

from __future__ import annotations

Column = tuple[str, int, bool]  # title, width, right-aligned


def row(cells: list[str], columns: list[Column]) -> str:
    parts = [
        cell.rjust(width) if right else cell.ljust(width)
        for cell, (_, width, right) in zip(cells, columns, strict=True)
    ]
    return " ".join(parts).rstrip()


def table(columns: list[Column], rows: list[list[str]]) -> list[str]:
    header = " ".join(title.ljust(width) for title, width, _ in columns).rstrip()
    rule = " ".join("=" * width for _, width, _ in columns)
    return [header, rule, *(row(cells, columns) for cells in rows)]
