"""The stampede: 32 parallel execs of the zipapp on a cold disk cache for one registry whose
credential helper takes half a second (as ``tests/test_cache_exec.py`` does): how many times
the helper ran (goal: once) and how many execs failed (goal: none)."""

from __future__ import annotations

import json
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.bench.common import SAMPLES, ZIPAPP, Measurement, kubelet_env, measurement, timed_exec

REQUEST = b'{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"registry.example.com/team/app"}'
PARALLEL = 32


def measure() -> list[Measurement]:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        bindir = root / "bin"
        bindir.mkdir()
        calls = root / "calls"
        reply = json.dumps({"ServerURL": "registry.example.com", "Username": "u", "Secret": "s"})
        helper = bindir / "docker-credential-slow"
        helper.write_text(f"#!/bin/sh\necho call >> {calls}\nsleep 0.5\necho '{reply}'\n")
        helper.chmod(0o700)
        (root / "config.json").write_text('{"credsStore": "slow"}')
        config = root / "provider.yaml"
        config.write_text(
            "apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\n"
            f"rules:\n  - backend: dockerconfig\n    files: [{root / 'config.json'}]\n"
        )
        env = kubelet_env(
            {"PATH": f"{bindir}:/usr/bin:/bin", "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(root / "cache")}
        )
        argv = [str(ZIPAPP), "get-credentials", "--config", str(config)]

        def one(_: int) -> float | None:
            try:
                return timed_exec(argv, REQUEST, env)
            except (RuntimeError, subprocess.SubprocessError):
                return None

        with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
            times = list(pool.map(one, range(PARALLEL)))
        upstream = len(calls.read_text().splitlines()) if calls.exists() else 0
    failures = sum(t is None for t in times)
    SAMPLES["stampede (32 parallel cold execs)"] = [t for t in times if t is not None]
    return [
        measurement(
            f"{PARALLEL} parallel cold execs: helper runs",
            upstream,
            "calls",
            "== 1",
            upstream == 1,
            "stampede_upstream_calls",
        ),
        measurement(
            f"{PARALLEL} parallel cold execs: failures",
            failures,
            "execs",
            "== 0",
            failures == 0,
            "stampede_failures",
        ),
    ]
