"""Run every benchmark module and print one table, then the same results as JSON.

Each module under ``tests/bench`` with a ``measure() -> list[dict]`` is one section; goals are
ratios measured within this one run (these machines are shared and noisy), never absolute
times. Results are also written to ``dist/bench.json``.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path

import tests.bench
from tests.bench.common import ROOT, ZIPAPP


def main() -> int:
    if not ZIPAPP.exists():
        print(f"{ZIPAPP} is missing: run 'make zipapp'", file=sys.stderr)
        return 1
    sections = sorted(
        info.name
        for info in pkgutil.iter_modules(tests.bench.__path__)
        if info.name not in ("common", "__main__")
    )
    results: dict[str, list[dict[str, object]]] = {}
    for section in sections:
        module = importlib.import_module(f"tests.bench.{section}")
        if hasattr(module, "measure"):
            print(f"measuring {section} ...", file=sys.stderr, flush=True)
            results[section] = module.measure()
    rows = [(section, row) for section, measured in results.items() for row in measured]
    header = ("section", "measurement", "value", "goal", "ok")
    table = [header] + [
        (
            section,
            str(row["name"]),
            f"{row['value']} {row['unit']}",
            str(row["goal"]),
            {True: "yes", False: "NO", None: ""}[row["ok"]],  # type: ignore[index]
        )
        for section, row in rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())
    document = json.dumps(results, indent=2)
    print(document)
    Path(ROOT / "dist").mkdir(exist_ok=True)
    (ROOT / "dist" / "bench.json").write_text(document + "\n")
    return 0 if all(row["ok"] is not False for _, row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
