"""A fast slice of each part of the reliability suite (``make reliability`` runs the full
counts): fixed hypothesis seeds, so the same cases run every time. Timing is reported by the
suite, never asserted here."""

from __future__ import annotations

from pathlib import Path

import pytest

from provider.errors import RequestError
from provider.kubelet import decode_request
from tests.infra.azure import start_azure
from tests.infra.moto import MotoServer
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
from tests.reliability.common import Tally


def clean(tally: Tally) -> None:
    assert tally.cases > 0
    assert dict(tally.failures) == {}, tally.examples
    assert tally.secrets_found == 0


def test_a_request_nested_thousands_deep_is_a_request_error() -> None:
    data = b'{"kind": "CredentialProviderRequest", "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(RequestError, match="nested too deeply"):
        decode_request(data)


def test_stdin_fuzz_slice(zipapp: Path, tmp_path: Path) -> None:
    clean(stdin_fuzz.run(tmp_path, 120))


def test_config_fields_slice(tmp_path: Path) -> None:
    tally = config_fuzz.run_fields(tmp_path, limit=300)
    clean(tally)
    assert tally.cases == 600


def test_hostile_config_files(zipapp: Path, tmp_path: Path) -> None:
    clean(config_fuzz.run_files(tmp_path, zipapp))


def test_hostile_hosts_slice(zipapp: Path, tmp_path: Path) -> None:
    tally = hostile.run(tmp_path, limit=40)
    clean(tally)
    assert tally.notes["trap_requests"] == 0


def test_faults_slice(zipapp: Path, tmp_path: Path, moto_server: MotoServer) -> None:
    # 70 s tokens: past the refresh point (72 % of the life) 19 s are left, room for a slow
    # machine's execs and retries above the 10 s a stale credential must still have.
    clean(faults.run(tmp_path, moto_server, faults=("status:503", "reset", "dns"), token_seconds=70.0))


def test_soak_slice(zipapp: Path, tmp_path: Path, moto_server: MotoServer) -> None:
    tally = soak.run(tmp_path, moto_server, execs=32, rounds=2)
    clean(tally)
    assert tally.notes["soak"] == {
        "execs": 64,
        "rounds": 2,
        "concurrency": 16,
        "registries": 8,
        "upstream_calls": 8,
    }


def test_cache_faults_slice(zipapp: Path, tmp_path: Path, moto_server: MotoServer) -> None:
    clean(
        cache_faults.run(
            tmp_path,
            moto_server,
            cases=("corrupt database", "full disk", "world-writable dir", "planted db symlink"),
        )
    )


def test_operator_commands_name_no_secret(zipapp: Path, tmp_path: Path) -> None:
    tally = hygiene.run(tmp_path)
    clean(tally)
    assert tally.cases == 36


def test_gar_faults_slice(zipapp: Path, tmp_path: Path) -> None:
    tally = faults_google.run(tmp_path, faults=("status:503", "reset", "dns"))
    clean(tally)
    # each fault: at the probe, at the token call, and warm (a hit, a due refresh, expired)
    assert tally.cases == 15
    pauses = tally.notes["gar_retry_pauses"]
    assert isinstance(pauses, dict)
    assert set(pauses) == {"gar status:503 token", "gar reset token"}


def test_acr_faults_slice(zipapp: Path, tmp_path: Path) -> None:
    world = start_azure(tmp_path / "azure")
    try:
        tally = faults_azure.run(
            tmp_path, world, faults=("status:503", "dns"), registry_faults=("dns",), statuses=(503,)
        )
    finally:
        world.stop()
    clean(tally)
    # IMDS: each fault cold, and warm (a hit, a due refresh, expired); the login server; the exchange
    assert tally.cases == 2 * 4 + 1 + 1
    assert tally.notes["acr_attempts"]["acr exchange status:503"] >= 2  # type: ignore[index]


def test_vault_faults_slice(zipapp: Path, tmp_path: Path) -> None:
    tally = faults_vault.run(tmp_path, faults=("status:503", "reset", "dns"))
    clean(tally)
    # each fault: at the login, at the read, and warm (a hit, a due refresh, expired)
    assert tally.cases == 15
    # no retries: exactly one attempt met each fault (none for DNS: nothing reached the proxy)
    assert tally.notes["vault_attempts"] == {
        f"vault {fault} {stage}": 0 if fault == "dns" else 1
        for fault in ("status:503", "reset", "dns")
        for stage in ("login", "read", "warm due")
    }


def test_verify_faults_slice(zipapp: Path, tmp_path: Path) -> None:
    tally = faults_registry.run(tmp_path, faults=("status:503", "reset", "dns"))
    clean(tally)
    # the unfaulted verify, each fault at the challenge and at the manifest, DNS once
    assert tally.cases == 1 + 2 * 2 + 1
    assert tally.notes["verify_attempts"] == {
        "verify status:503 v2": 1,
        "verify status:503 manifest": 1,
        "verify reset v2": 1,
        "verify reset manifest": 1,
        "verify dns": 0,
    }
