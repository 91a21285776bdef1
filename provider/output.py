"""Human and machine output for the operator commands.

Humans get aligned columns, with colour only when stdout is a terminal (and ``NO_COLOR`` is
unset); scripts pass ``--output json`` and get one JSON document built from typed structs.
Nothing here is imported on the kubelet's path.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec

if TYPE_CHECKING:
    from provider.commands import Streams

__all__ = [
    "Check",
    "Status",
    "add_output_argument",
    "checks_table",
    "emit_json",
    "exit_code",
    "table",
    "use_colour",
    "worst",
]

Status = Literal["ok", "warn", "fail"]

_COLOURS = {"ok": "32", "warn": "33", "fail": "31", "bold": "1", "dim": "2"}


class Check(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One line of a report: what was checked, how it went, and what the operator should know."""

    status: Status
    check: str
    detail: str = ""


def add_output_argument(parser: argparse.ArgumentParser) -> None:
    """``--output text|json`` (every command has it)."""
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text (aligned columns, colour on a terminal) or json (one document for scripts)",
    )


def use_colour(streams: Streams, environ: Mapping[str, str] | None = None) -> bool:
    """Colour only for a terminal, never with ``NO_COLOR`` set or ``TERM=dumb``."""
    environ = os.environ if environ is None else environ
    if "NO_COLOR" in environ or environ.get("TERM") == "dumb":
        return False
    return streams.isatty()


def paint(text: str, style: str, colour: bool) -> str:
    """``text`` in ``style`` (ok, warn, fail, bold, dim) when ``colour`` is on."""
    code = _COLOURS.get(style)
    if not colour or code is None or not text:
        return text
    return f"\033[{code}m{text}\033[0m"


def table(
    rows: Sequence[Sequence[str]],
    *,
    colour: bool = False,
    styles: Sequence[Sequence[str]] | None = None,
    header: Sequence[str] | None = None,
) -> str:
    """Rows as aligned columns (two spaces apart); the last column is never padded.

    ``styles[i][j]`` names a ``paint`` style for cell ``(i, j)`` ("" for none); padding is
    computed on the plain text, so colour codes never break the alignment.
    """
    all_rows = [list(header)] if header else []
    all_rows += [list(row) for row in rows]
    if not all_rows:
        return ""
    width = max(len(row) for row in all_rows)
    widths = [0] * width
    for row in all_rows:
        for index, cell in enumerate(row[:-1]):
            widths[index] = max(widths[index], len(cell))
    lines = []
    for number, row in enumerate(all_rows):
        row_styles: Sequence[str] = ()
        if header and number == 0:
            row_styles = ["bold"] * len(row)
        elif styles is not None:
            row_styles = styles[number - (1 if header else 0)]
        cells = []
        for index, cell in enumerate(row):
            padded = cell if index == len(row) - 1 else cell.ljust(widths[index])
            style = row_styles[index] if index < len(row_styles) else ""
            if style:
                # Paint the text only, then pad, so the escape codes do not count as width.
                padded = paint(cell, style, colour) + padded[len(cell) :]
            cells.append(padded)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def checks_table(checks: Sequence[Check], *, colour: bool) -> str:
    """One line per check: ``STATUS  CHECK  DETAIL``; multi-line details are indented under it."""
    rows: list[list[str]] = []
    styles: list[list[str]] = []
    for check in checks:
        detail_lines = check.detail.splitlines() or [""]
        rows.append([check.status, check.check, detail_lines[0]])
        styles.append([check.status, "", ""])
        for more in detail_lines[1:]:
            rows.append(["", "", more])
            styles.append(["", "", ""])
    return table(rows, colour=colour, styles=styles)


def worst(checks: Sequence[Check]) -> Status:
    """``fail`` if any check failed, else ``warn`` if any warned, else ``ok``."""
    statuses = {check.status for check in checks}
    if "fail" in statuses:
        return "fail"
    return "warn" if "warn" in statuses else "ok"


def exit_code(checks: Sequence[Check]) -> int:
    """1 when a check failed (warnings alone still exit 0)."""
    return 1 if worst(checks) == "fail" else 0


def emit_json(streams: Streams, document: Any) -> None:
    """``document`` (structs, dicts, lists) as indented JSON and a newline on stdout."""
    data = msgspec.json.format(msgspec.json.encode(document), indent=2)
    streams.stdout.write(data + b"\n")
    streams.stdout.flush()
