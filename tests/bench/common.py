"""Helpers for the benchmarks: timing execs, interleaved, and reporting medians (every row is a
median of several runs, never a best or a worst)."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
ZIPAPP = ROOT / "dist" / "registry-credential-provider"

Measurement = dict[str, object]
# Every timed sample of every scenario, in seconds (``dist/bench.png`` draws their distribution).
SAMPLES: dict[str, list[float]] = {}


def measurement(
    name: str, value: float, unit: str, goal: str = "", ok: bool | None = None, key: str | None = None
) -> Measurement:
    """One row of the report; ``key``: its stable name in ``dist/bench.json``."""
    return {"name": name, "value": round(value, 4), "unit": unit, "goal": goal, "ok": ok, "key": key}


def timed_exec(
    argv: Sequence[str], stdin: bytes, env: Mapping[str, str], *, expect_stderr: str | None = None
) -> float:
    """Wall seconds of one exec; fails loudly if the command fails, or if ``expect_stderr`` is
    given and its stderr does not say it."""
    started = time.perf_counter()
    result = subprocess.run(list(argv), input=stdin, capture_output=True, env=dict(env), check=False)
    elapsed = time.perf_counter() - started
    stderr = result.stderr.decode(errors="replace")
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {stderr.strip()[:300]}")
    if expect_stderr is not None and expect_stderr not in stderr:
        raise RuntimeError(f"{argv[0]}: expected {expect_stderr!r} on stderr, got {stderr.strip()[:300]!r}")
    return elapsed


_RSS_PROBE = """
import json, resource, subprocess, sys
argv, stdin = json.loads(sys.argv[1]), sys.stdin.buffer.read()
result = subprocess.run(argv, input=stdin, capture_output=True)
if result.returncode:
    sys.exit(result.stderr.decode(errors="replace")[:300])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_mb(argv: Sequence[str], stdin: bytes, env: Mapping[str, str]) -> float:
    """Peak resident memory (MB) of one exec of ``argv`` and its children, measured from a fresh
    parent so that no earlier exec counts."""
    import json
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, json.dumps(list(argv))],
        input=stdin,
        capture_output=True,
        env=dict(env),
        check=True,
    )
    return int(result.stdout) / 1024


def interleaved_medians(
    runs: int, commands: Mapping[str, Callable[[], float]], *, scenario: str = ""
) -> dict[str, float]:
    """Run each command ``runs`` times, round-robin (so machine noise hits all alike); medians.
    The samples are kept in ``SAMPLES`` as ``<scenario> <name>``."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            samples[name].append(command())
    for name, values in samples.items():
        SAMPLES[f"{scenario} {name}".strip()] = values
    return {name: statistics.median(values) for name, values in samples.items()}


def zipapp_python(env: Mapping[str, str]) -> str:
    """The interpreter the zipapp's boot script picks in ``env`` (the fair baseline)."""
    result = subprocess.run(
        [str(ZIPAPP), "-c", "import sys; print(getattr(sys, '_base_executable', sys.executable))"],
        capture_output=True,
        env={**env, "PEX_INTERPRETER": "1"},
        check=True,
    )
    return result.stdout.decode().strip()


def kubelet_env(extra: Mapping[str, str]) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", **extra}
