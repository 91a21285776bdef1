"""The release files: size per architecture against the 20 MB goal, and what the first exec
after an install costs (unpacking into the runtime root, which the installer pre-warms) against
the execs after it."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.common import ROOT, Measurement, kubelet_env, measurement, timed_exec

sys.path.insert(0, str(ROOT / "packaging"))
import build_release

REQUEST = b'{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"quay.io/x"}'
ANONYMOUS = '{"apiVersion":"registry-credential-provider/v1alpha1","kind":"ProviderConfig","rules":[{"backend":"anonymous"}]}'
MB = 1000 * 1000


def measure() -> list[Measurement]:
    rows: list[Measurement] = []
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "release"
        started = time.monotonic()
        artifacts = build_release.build_release(out, log=False)
        build_seconds = time.monotonic() - started
        for artifact in artifacts:
            size = artifact.size / MB
            goal = build_release.SIZE_GOAL_BYTES / MB
            rows.append(
                measurement(
                    f"release file size ({artifact.arch})",
                    size,
                    "MB",
                    f"<= {goal:g}",
                    size <= goal,
                    "artifact_mb" if artifact.arch == "x86_64" else f"artifact_mb_{artifact.arch}",
                )
            )
            if artifact.trim.trimmed:
                rows.append(
                    measurement(
                        f"botocore wheel trimmed from {artifact.trim.bytes_before / MB:.1f} MB ({artifact.arch})",
                        artifact.trim.bytes_after / MB,
                        "MB",
                    )
                )
        rows.append(measurement("make dist (both architectures, warm pex cache)", build_seconds, "s"))
        x86 = next(a for a in artifacts if a.arch == "x86_64")
        config = Path(scratch) / "config.json"
        config.write_text(ANONYMOUS)
        argv = [str(x86.path), "get-credentials", "--config", str(config)]
        firsts = []
        for attempt in range(3):  # each into a fresh runtime root
            env = kubelet_env(
                {"PEX_ROOT": str(Path(scratch) / f"pex{attempt}"), "PYTHONDONTWRITEBYTECODE": "1"}
            )
            firsts.append(timed_exec(argv, REQUEST, env))
        first = statistics.median(firsts)
        later = statistics.median(timed_exec(argv, REQUEST, env) for _ in range(10))
        rows.append(
            measurement("first exec: unpack into the runtime root (pre-warmed by install)", first, "s")
        )
        rows.append(measurement("exec after unpacking (anonymous rule)", later * 1000, "ms"))
        rows.append(measurement("first exec / later exec", first / later, "x"))
    return rows
