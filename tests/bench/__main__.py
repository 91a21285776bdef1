"""Run every benchmark module and print one table, then the same results as JSON.

Each module under ``tests/bench`` with a ``measure() -> list[dict]`` is one section; goals are
ratios measured within this one run (these machines are shared and noisy), never absolute
times. ``dist/bench.json`` (also printed) is one flat object of stable keys, each
``{value, unit, goal, ok}`` (plus ``note`` where there is one): the rows that carry a ``key``,
and every key of ``EXPECTED`` whatever happened, with value and ok null and a note when its
part is not built yet. ``dist/bench.png`` draws the latency distribution of each timed scenario.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path

import tests.bench
from tests.bench.common import ROOT, SAMPLES, ZIPAPP

# Keys dist/bench.json always has: unit, goal, and the note shown while its part is missing.
EXPECTED = {
    "hit_ratio": ("x", "<= 4.0", "the cache section did not run"),
    "hit_metrics_ratio": ("x", "<= 4.0", "the cache section did not run"),
    "cold_ecr_ratio": ("x", "<= 1.25", "the ecr section did not run"),
    "cold_gar_ratio": ("x", "<= 1.25", "the gar section did not run"),
    "cold_acr_ratio": ("x", "<= 1.25", "the acr section did not run"),
    "stampede_upstream_calls": ("calls", "== 1", "the stampede section did not run"),
    "stampede_failures": ("execs", "== 0", "the stampede section did not run"),
    "nodeday_calls_ours": ("calls", "", "the nodeday section did not run"),
    "nodeday_calls_upstream": ("calls", "", "the nodeday section did not run"),
    "nodeday_ratio": ("x", "<= 0.2", "the nodeday section did not run"),
    "nodeday_calls_bound": ("calls", "", "the nodeday section did not run"),
    "nodeday_bound_ratio": ("x", "", "the nodeday section did not run"),
    "nodeday_busy_calls_ours": ("calls", "", "the nodeday section did not run"),
    "nodeday_busy_calls_upstream": ("calls", "", "the nodeday section did not run"),
    "nodeday_busy_calls_bound": ("calls", "", "the nodeday section did not run"),
    "nodeday_busy_ratio": ("x", "<= 0.2", "the nodeday section did not run"),
    "nodeday_busy_bound_ratio": ("x", "", "the nodeday section did not run"),
    "rss_hit_mb": ("MB", "", "the cache section did not run"),
    "rss_cold_ecr_mb": ("MB", "<= 100", "the ecr section did not run"),
    "artifact_mb": ("MB", "<= 20", "the release section did not run"),
}


def flat(rows: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    """The rows with a key, by key, and a null entry for each expected key no row gave."""
    document: dict[str, dict[str, object]] = {}
    for row in rows:
        key = row.get("key")
        if isinstance(key, str):
            entry = {name: row[name] for name in ("value", "unit", "goal", "ok")}
            if row.get("note"):
                entry["note"] = row["note"]
            document[key] = entry
    for key, (unit, goal, note) in EXPECTED.items():
        document.setdefault(key, {"value": None, "unit": unit, "goal": goal, "ok": None, "note": note})
    return dict(sorted(document.items()))


def draw(path: Path) -> None:
    """Box plots of every timed scenario's samples (milliseconds, log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(SAMPLES)
    figure, axes = plt.subplots(figsize=(10, 0.45 * len(names) + 1.5))
    axes.boxplot(
        [[s * 1000 for s in SAMPLES[name]] for name in names], orientation="horizontal", showfliers=True
    )
    axes.set_yticks(range(1, len(names) + 1), names)
    axes.set_xscale("log")
    axes.set_xlabel("exec wall time (ms, log scale)")
    axes.set_title("make bench: latency per scenario")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


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
    document = json.dumps(flat([row for _, row in rows]), indent=2)
    print(document)
    Path(ROOT / "dist").mkdir(exist_ok=True)
    (ROOT / "dist" / "bench.json").write_text(document + "\n")
    if SAMPLES:
        draw(ROOT / "dist" / "bench.png")
    return 0 if all(row["ok"] is not False for _, row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
