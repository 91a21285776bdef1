"""Shared fixtures: the built zipapp, and running it the way the kubelet does."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

# The tests talk CRI to containerd over gRPC and also start servers as child processes. gRPC's
# fork handlers then run in each child between fork and exec, and once aborted a starting
# registry (SIGABRT); children here always exec at once, so the handlers are not needed.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

pytest_plugins = ["tests.infra.fixtures"]

ROOT = Path(__file__).resolve().parent.parent
ZIPAPP = ROOT / "dist" / "registry-credential-provider"


CACHE_DIR_ENV = "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR"


def kubelet_environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment like a systemd kubelet's: PATH and little else (notably no HOME), plus the
    test session's cache directory so no test writes to the machine's real one."""
    environ = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LANG": "C.UTF-8"}
    if CACHE_DIR_ENV in os.environ:
        environ[CACHE_DIR_ENV] = os.environ[CACHE_DIR_ENV]
    environ.update(extra or {})
    return environ


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Each test starts with no registered secrets (one test's password is not another's)."""
    from provider.redact import forget_all

    forget_all()
    yield
    forget_all()


@pytest.fixture(autouse=True, scope="session")
def _session_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the disk cache of everything the tests run at a private directory."""
    directory = tmp_path_factory.mktemp("cache-root") / "cache"
    previous = os.environ.get(CACHE_DIR_ENV)
    os.environ[CACHE_DIR_ENV] = str(directory)
    yield directory
    if previous is None:
        del os.environ[CACHE_DIR_ENV]
    else:
        os.environ[CACHE_DIR_ENV] = previous


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
