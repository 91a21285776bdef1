"""The disk cache's hit path: an exec of the zipapp answered from the cache, against
``python3 -c pass`` on the same interpreter, in the same run (goal: at most 4x); the same hit
with the metrics textfile on (it must stay within the same goal), interleaved with it."""

from __future__ import annotations

import json
import statistics
import subprocess
import tempfile
from pathlib import Path

from provider.__main__ import DEBUG_ENV, FAST_PATH_MARK
from tests.bench.common import (
    ZIPAPP,
    Measurement,
    interleaved_medians,
    kubelet_env,
    measurement,
    peak_rss_mb,
    timed_exec,
    zipapp_python,
)

REQUEST = b'{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"registry.example.com/team/app"}'
RUNS = 40
HIT_GOAL = 4.0


def measure() -> list[Measurement]:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        bindir = root / "bin"
        bindir.mkdir()
        helper = bindir / "docker-credential-bench"
        reply = json.dumps({"ServerURL": "registry.example.com", "Username": "u", "Secret": "s"})
        helper.write_text(f"#!/bin/sh\necho '{reply}'\n")
        helper.chmod(0o700)
        (root / "config.json").write_text('{"credsStore": "bench"}')
        (root / "inline.json").write_text(
            '{"auths": {"registry.example.com": {"username": "u", "password": "s"}}}'
        )
        configs = {}
        for name, files, extra in (
            ("helper", "config.json", ""),
            ("inline", "inline.json", ""),
            ("metrics", "config.json", f"metrics:\n  textfile: {root / 'rcp.prom'}\n"),
        ):
            configs[name] = root / f"{name}.yaml"
            configs[name].write_text(
                f"apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\n{extra}"
                f"rules:\n  - backend: dockerconfig\n    files: [{root / files}]\n"
            )
        env = kubelet_env(
            {"PATH": f"{bindir}:/usr/bin:/bin", "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(root / "cache")}
        )
        # Debug mode only adds the line that says the fast path answered (checked on every hit).
        hit_env = {**env, DEBUG_ENV: "1"}
        python = zipapp_python(env)
        hit = [str(ZIPAPP), "get-credentials", "--config", str(configs["helper"])]
        inline = [str(ZIPAPP), "get-credentials", "--config", str(configs["inline"])]
        with_metrics = [str(ZIPAPP), "get-credentials", "--config", str(configs["metrics"])]
        timed_exec(hit, REQUEST, env)  # the miss that fills the cache
        timed_exec(with_metrics, REQUEST, env)
        timed_exec(inline, REQUEST, env)
        peak_hit = statistics.median(peak_rss_mb(hit, REQUEST, env) for _ in range(3))
        medians = interleaved_medians(
            RUNS,
            {
                "python": lambda: timed_exec([python, "-c", "pass"], b"", env),
                "hit": lambda: timed_exec(hit, REQUEST, hit_env, expect_stderr=FAST_PATH_MARK),
                "hit+metrics": lambda: timed_exec(
                    with_metrics, REQUEST, hit_env, expect_stderr=FAST_PATH_MARK
                ),
                "inline": lambda: timed_exec(inline, REQUEST, env),
            },
            scenario="cache",
        )
        counted = (root / "rcp.prom").read_text()
        if f'registry_credential_provider_cache_hits_total{{path="fast"}} {RUNS}' not in counted:
            raise RuntimeError(f"the metrics textfile did not count {RUNS} fast path hits: {counted}")
        misses = statistics.median(timed_miss(env, configs["helper"]) for _ in range(5))
        ratio = medians["hit"] / medians["python"]
        metrics_ratio = medians["hit+metrics"] / medians["python"]
        return [
            measurement("python3 -c pass (baseline)", medians["python"] * 1000, "ms"),
            measurement("cache hit exec (fast path)", medians["hit"] * 1000, "ms"),
            measurement(
                "cache hit / python3 -c pass", ratio, "x", f"<= {HIT_GOAL}", ratio <= HIT_GOAL, "hit_ratio"
            ),
            measurement(
                "cache hit with metrics textfile / python3 -c pass",
                metrics_ratio,
                "x",
                f"<= {HIT_GOAL}",
                metrics_ratio <= HIT_GOAL,
                "hit_metrics_ratio",
            ),
            measurement("docker config auths exec (no cache)", medians["inline"] * 1000, "ms"),
            measurement("docker config auths / python3 -c pass", medians["inline"] / medians["python"], "x"),
            measurement("cache miss exec (helper + full path)", misses * 1000, "ms"),
            measurement("cache hit exec peak RSS", peak_hit, "MB", key="rss_hit_mb"),
        ]


def timed_miss(env: dict[str, str], config: Path) -> float:
    """One miss: purge the cache, then time an exec that must call the helper and store."""
    subprocess.run([str(ZIPAPP), "cache", "purge"], env=env, capture_output=True, check=True)
    return timed_exec([str(ZIPAPP), "get-credentials", "--config", str(config)], REQUEST, env)
