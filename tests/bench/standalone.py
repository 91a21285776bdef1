"""The self-contained form against the zipapp on this machine: the disk-cache hit path (the
same config and request, answered from each one's warm disk cache), and its size per
architecture. Builds with ``build_standalone`` (root; cached by input hash)."""

from __future__ import annotations

import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.bench.common import (
    ROOT,
    ZIPAPP,
    Measurement,
    interleaved_medians,
    kubelet_env,
    measurement,
    timed_exec,
)

sys.path.insert(0, str(ROOT / "packaging"))
import build_release
import build_standalone

from provider.__main__ import DEBUG_ENV, FAST_PATH_MARK
from provider.cachekeys import CACHE_DIR_ENV
from provider.releasenames import NAME, standalone_dir

HELPER_REPLY = '{"ServerURL": "registry.example.com", "Username": "u", "Secret": "s"}'
REQUEST = b'{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"registry.example.com/app"}'
MB = 1000 * 1000


def measure() -> list[Measurement]:
    rows: list[Measurement] = []
    version = build_release.project_version()
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        archives = {arch: build_standalone.build(arch, out / "dist") for arch in build_release.ARCHES}
        for arch, archive in archives.items():
            rows.append(
                measurement(f"self-contained archive size ({arch})", archive.stat().st_size / MB, "MB")
            )
        with tarfile.open(archives["x86_64"]) as tar:
            tar.extractall(out / "opt")  # noqa: S202 - our own archive
        unpacked = sum(p.stat().st_size for p in (out / "opt").rglob("*") if p.is_file())
        rows.append(measurement("self-contained unpacked size (x86_64)", unpacked / MB, "MB"))
        standalone = out / "opt" / standalone_dir(version, "x86_64") / NAME
        bindir = out / "bin"
        bindir.mkdir()
        helper = bindir / "docker-credential-bench"
        helper.write_text(f"#!/bin/sh\necho '{HELPER_REPLY}'\n")
        helper.chmod(0o700)
        (out / "auth.json").write_text('{"credsStore": "bench"}')
        config = out / "config.yaml"
        config.write_text(
            "apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\n"
            f"rules:\n  - backend: dockerconfig\n    files: [{out / 'auth.json'}]\n"
        )
        argv = ["get-credentials", "--config", str(config)]
        envs = {
            "zipapp": kubelet_env({"PATH": f"{bindir}:/usr/bin:/bin", CACHE_DIR_ENV: str(out / "cache-z")}),
            "standalone": kubelet_env(
                {"PATH": f"{bindir}:/usr/bin:/bin", CACHE_DIR_ENV: str(out / "cache-s")}
            ),
        }
        programs = {"zipapp": str(ZIPAPP), "standalone": str(standalone)}
        for name, program in programs.items():  # warm: unpacked, and the answer in the disk cache
            timed_exec([program, *argv], REQUEST, envs[name])
        # Debug mode only adds the line that says the fast path answered (checked on every hit).
        envs = {name: {**env, DEBUG_ENV: "1"} for name, env in envs.items()}

        def hit(name: str) -> Callable[[], float]:
            return lambda: timed_exec(
                [programs[name], *argv], REQUEST, envs[name], expect_stderr=FAST_PATH_MARK
            )

        medians = interleaved_medians(15, {name: hit(name) for name in programs})
        rows.append(measurement("hit path, zipapp", medians["zipapp"] * 1000, "ms"))
        rows.append(measurement("hit path, self-contained", medians["standalone"] * 1000, "ms"))
        ratio = medians["standalone"] / medians["zipapp"]
        rows.append(measurement("hit path self-contained / zipapp", ratio, "x", "<= 1", ratio <= 1))
    return rows
