"""Shared fixtures: the built zipapp, and running it the way the kubelet does."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

pytest_plugins = ["tests.infra.fixtures"]

ROOT = Path(__file__).resolve().parent.parent
ZIPAPP = ROOT / "dist" / "registry-credential-provider"


def kubelet_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment like a systemd kubelet's: PATH and little else (notably no HOME)."""
    environ = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8"}
    environ.update(extra or {})
    return environ


@pytest.fixture(scope="session")
def zipapp() -> Path:
    """The built zipapp (``make zipapp``; ``make test`` builds it first)."""
    if not os.access(ZIPAPP, os.X_OK):
        pytest.fail(f"{ZIPAPP} is missing: run 'make zipapp' (make test does it)")
    return ZIPAPP


def run_zipapp(
    zipapp: Path,
    args: list[str],
    stdin: bytes,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[bytes]:
    """Exec the zipapp as the kubelet does: argv, stdin, no shell, its own environment."""
    return subprocess.run(
        [str(zipapp), *args],
        input=stdin,
        capture_output=True,
        env=kubelet_environ(env),
        timeout=timeout,
        check=False,
    )
