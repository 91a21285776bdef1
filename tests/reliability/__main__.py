"""``make reliability``: every part at its full count, one table, and ``dist/reliability.json``.

Counts: 10,000 stdin cases (2 execs at a time), every config field wrong in every way as JSON
and YAML (over 2,000 documents each), hostile config files, every fault cold and warm, every
look-alike host under two configs, every cache fault, and the soak (200 execs, 16 at a time, 3
kubelet restarts, 8 registries: 5 credential helper hosts, ECR, GAR and ACR), and the GAR and
ACR faults (cold, at the token call, warm), the Vault faults (at the login, at the read, warm)
and ``verify`` against the registry under faults (at the challenge, at the manifest). Exit 1 if any part failed or any secret was found."""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.infra.azure import start_azure
from tests.infra.moto import start_moto_server
from tests.reliability import (
    cache_faults,
    config_fuzz,
    faults,
    faults_azure,
    faults_google,
    faults_registry,
    faults_vault,
    hostile,
    hygiene,
    soak,
    stdin_fuzz,
)
from tests.reliability.common import ROOT, ZIPAPP, Tally

STDIN_CASES = 10_000
CONFIG_SECONDS_GOAL = 1.0
FAULT_PARTS = ("fault injection", "gar faults", "acr faults", "vault faults", "verify faults")


def main() -> int:
    if not ZIPAPP.exists():
        print(f"{ZIPAPP} is missing: run 'make zipapp'", file=sys.stderr)
        return 1
    tallies: list[Tally] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="reliability-") as scratch:
        root = Path(scratch)
        steps: list[tuple[str, Callable[[], Tally]]] = [
            ("config fuzz", lambda: config_fuzz.run_fields(root / "config")),
            ("config files", lambda: config_fuzz.run_files(root / "files", ZIPAPP)),
            ("hostile hosts", lambda: hostile.run(root / "hostile")),
            ("stdin fuzz", lambda: stdin_fuzz.run(root / "stdin", STDIN_CASES)),
            ("operator secrets", lambda: hygiene.run(root / "hygiene")),
            ("gar faults", lambda: faults_google.run(root / "gar-faults")),
            ("vault faults", lambda: faults_vault.run(root / "vault-faults")),
            ("verify faults", lambda: faults_registry.run(root / "verify-faults")),
        ]
        for name, step in steps:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            tallies.append(step())
        print("running fault injection ...", file=sys.stderr, flush=True)
        moto = start_moto_server(root / "moto")
        try:
            tallies.append(faults.run(root / "faults", moto))
            print("running cache faults ...", file=sys.stderr, flush=True)
            tallies.append(cache_faults.run(root / "cache-faults", moto))
            print("running soak ...", file=sys.stderr, flush=True)
            azure = start_azure(root / "azure")
            try:
                tallies.append(soak.run(root / "soak", moto, azure=azure))
                print("running acr faults ...", file=sys.stderr, flush=True)
                tallies.append(faults_azure.run(root / "acr-faults", azure))
            finally:
                azure.stop()
        finally:
            moto.stop()
    header = ("part", "cases", "failures", "secrets", "worst (s)", "worst case")
    rows = [header]
    for tally in tallies:
        label, worst = max(tally.worst.items(), key=lambda item: item[1], default=("", 0.0))
        failures = ", ".join(f"{kind} {n}" for kind, n in sorted(tally.failures.items())) or "0"
        rows.append((tally.part, str(tally.cases), failures, str(tally.secrets_found), f"{worst:.3f}", label))
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    print("worst wall time per fault (s):")
    for tally in tallies:
        if tally.part in FAULT_PARTS:
            for label, seconds in sorted(tally.worst.items()):
                print(f"  {tally.part:16}  {label:32}  {seconds:.3f}")
    config_worst = max(
        (s for t in tallies if t.part.startswith("config") for s in t.worst.values()), default=0.0
    )
    fault_worst = max(
        (s for t in tallies if t.part in FAULT_PARTS for s in t.worst.values()),
        default=0.0,
    )
    goals = {
        "config_case_under_1s": {
            "value": config_worst,
            "goal": "< 1 s",
            "ok": config_worst < CONFIG_SECONDS_GOAL,
        },
        "fault_inside_kubelet_60s": {
            "value": fault_worst,
            "goal": "< 60 s",
            "ok": fault_worst < faults.KUBELET_SECONDS,
        },
    }
    for name, goal in goals.items():
        print(f"goal {name}: {goal['value']:.3f} s ({goal['goal']}): {'met' if goal['ok'] else 'NOT met'}")
    document = {
        "machine": f"{platform.machine()} {platform.system()} {platform.release()}, Python {platform.python_version()}",
        "seconds": round(time.monotonic() - started, 1),
        "parts": {tally.part: tally.as_json() for tally in tallies},
        "goals": goals,
        "cases": sum(t.cases for t in tallies),
        "failures": sum(t.failed for t in tallies),
        "secrets_found": sum(t.secrets_found for t in tallies),
    }
    (ROOT / "dist").mkdir(exist_ok=True)
    (ROOT / "dist" / "reliability.json").write_text(json.dumps(document, indent=2) + "\n")
    print("written: dist/reliability.json", file=sys.stderr)
    ok = document["failures"] == 0 and all(goal["ok"] for goal in goals.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
