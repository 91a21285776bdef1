"""The disk cache through the built zipapp, exec'd as the kubelet does: restarts, a burst of
parallel pulls, the lean hit path, and the operator's ``cache`` command."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from provider.__main__ import DEBUG_ENV, FAST_PATH_MARK
from tests.conftest import kubelet_environ, run_zipapp

REQUEST = b'{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"registry.example.com/team/app"}'
SECRET = "helper-secret-7d1f"


class Scenario:
    """A docker config whose credsStore helper counts its calls (and can be made slow)."""

    def __init__(self, root: Path, *, delay: float = 0.0) -> None:
        self.root = root
        self.cache = root / "cache"
        self.calls = root / "calls"
        bindir = root / "bin"
        bindir.mkdir()
        helper = bindir / "docker-credential-counting"
        reply = json.dumps({"ServerURL": "registry.example.com", "Username": "helper-user", "Secret": SECRET})
        helper.write_text(f"#!/bin/sh\necho call >> {self.calls}\nsleep {delay}\necho '{reply}'\n")
        helper.chmod(0o700)
        self.docker_config = root / "config.json"
        self.docker_config.write_text('{"credsStore": "counting"}')
        self.config = root / "provider.yaml"
        self.config.write_text(
            "apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\n"
            f"rules:\n  - backend: dockerconfig\n    files: [{self.docker_config}]\n"
        )
        self.env = {
            "PATH": f"{bindir}:/usr/bin:/bin",
            "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(self.cache),
        }

    def call_count(self) -> int:
        return len(self.calls.read_text().splitlines()) if self.calls.exists() else 0

    def run(
        self, zipapp: Path, stdin: bytes = REQUEST, args: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[bytes]:
        return run_zipapp(
            zipapp, ["get-credentials", "--config", str(self.config), *args], stdin, env=self.env
        )


def answer_of(result: subprocess.CompletedProcess[bytes]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr.decode()
    decoded: dict[str, object] = json.loads(result.stdout)
    return decoded


def test_32_parallel_pulls_on_a_cold_cache_call_the_helper_once(zipapp: Path, tmp_path: Path) -> None:
    scenario = Scenario(tmp_path, delay=0.5)
    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda _: scenario.run(zipapp), range(32)))
    answers = [answer_of(result) for result in results]
    assert scenario.call_count() == 1
    auths = {json.dumps(answer["auth"], sort_keys=True) for answer in answers}
    assert len(auths) == 1
    assert SECRET in auths.pop()
    assert all(result.stderr == b"" for result in results)


def test_the_cache_survives_restarts(zipapp: Path, tmp_path: Path) -> None:
    scenario = Scenario(tmp_path)
    first = answer_of(scenario.run(zipapp))
    for _ in range(3):
        assert answer_of(scenario.run(zipapp))["auth"] == first["auth"]
    assert scenario.call_count() == 1


def test_editing_the_docker_config_takes_effect_at_once(zipapp: Path, tmp_path: Path) -> None:
    scenario = Scenario(tmp_path)
    answer_of(scenario.run(zipapp))
    scenario.docker_config.write_text(
        '{"auths": {"registry.example.com": {"username": "inline", "password": "pw"}}}'
    )
    edited = answer_of(scenario.run(zipapp))
    assert edited["auth"] == {"registry.example.com": {"username": "inline", "password": "pw"}}
    scenario.docker_config.write_text('{"credsStore": "counting", "auths": {}}')
    answer_of(scenario.run(zipapp))
    assert scenario.call_count() == 2


def test_a_hit_imports_neither_msgspec_nor_diskcache(zipapp: Path, tmp_path: Path) -> None:
    scenario = Scenario(tmp_path)
    expected = scenario.run(zipapp).stdout  # the miss: full path
    assert scenario.run(zipapp).stdout == expected  # a hit, through the fast path, byte for byte
    code = (
        "import io, json, sys\n"
        "from provider.__main__ import main\n"
        "out = io.BytesIO()\n"
        f"rc = main(['get-credentials', '--config', {str(scenario.config)!r}], stdin=io.BytesIO({REQUEST!r}), stdout=out)\n"
        "print(json.dumps({'rc': rc, 'out': out.getvalue().decode(), 'modules': sorted(sys.modules)}))\n"
    )
    # PEX_* variables are not part of the environment a plan is keyed by, so this process
    # finds the plan the plain execs above recorded.
    probe = run_zipapp(zipapp, ["-c", code], b"", env={**scenario.env, "PEX_INTERPRETER": "1"})
    assert probe.returncode == 0, probe.stderr.decode()
    report = json.loads(probe.stdout)
    assert report["rc"] == 0
    assert report["out"].encode() == expected
    heavy = [
        m
        for m in report["modules"]
        if m.split(".")[0] in ("msgspec", "diskcache", "yaml") or m == "provider.fullpath"
    ]
    assert heavy == []
    assert "provider.fastpath" in report["modules"]
    assert scenario.call_count() == 1


def test_debug_mode_says_when_the_fast_path_answered(zipapp: Path, tmp_path: Path) -> None:
    """What make bench checks on every hit: the line appears on a hit, never on a miss."""
    scenario = Scenario(tmp_path)
    scenario.env[DEBUG_ENV] = "1"
    miss = scenario.run(zipapp)
    hit = scenario.run(zipapp)
    assert miss.stdout == hit.stdout
    assert FAST_PATH_MARK.encode() not in miss.stderr
    assert hit.stderr == f"registry-credential-provider: debug: {FAST_PATH_MARK}\n".encode()
    assert scenario.call_count() == 1


def test_cache_list_and_purge(zipapp: Path, tmp_path: Path) -> None:
    scenario = Scenario(tmp_path)
    answer_of(scenario.run(zipapp))
    listing = run_zipapp(zipapp, ["cache", "list", "--config", str(scenario.config)], b"", env=scenario.env)
    assert listing.returncode == 0, listing.stderr
    leaked = SECRET.encode() in listing.stdout + listing.stderr
    assert not leaked, "cache list printed a secret"
    assert b"registry.example.com" in listing.stdout
    assert b"dockerconfig" in listing.stdout
    as_json = run_zipapp(zipapp, ["cache", "list", "--output", "json"], b"", env=scenario.env)
    rows = json.loads(as_json.stdout)
    assert [(row["registry"], row["backend"], row["identity"]) for row in rows] == [
        ("registry.example.com", "dockerconfig", "node")
    ]
    assert SECRET not in as_json.stdout.decode()

    other = run_zipapp(zipapp, ["cache", "purge", "--registry", "other.example.com"], b"", env=scenario.env)
    assert other.stdout.startswith(b"removed 0 cached credential(s) for other.example.com")
    answer_of(scenario.run(zipapp))
    assert scenario.call_count() == 1

    purged = run_zipapp(
        zipapp, ["cache", "purge", "--registry", "registry.example.com"], b"", env=scenario.env
    )
    assert purged.stdout.startswith(b"removed 1 cached credential(s)")
    answer_of(scenario.run(zipapp))
    assert scenario.call_count() == 2
    everything = run_zipapp(zipapp, ["cache", "purge"], b"", env=scenario.env)
    assert everything.stdout.startswith(b"removed 1 cached credential(s) from")


def test_cache_can_be_turned_off(zipapp: Path, tmp_path: Path) -> None:
    scenario = Scenario(tmp_path)
    scenario.config.write_text(scenario.config.read_text() + "cache:\n  enabled: false\n")
    for _ in range(2):
        answer_of(scenario.run(zipapp))
    assert scenario.call_count() == 2
    assert not scenario.cache.exists()


def test_bad_input_never_touches_the_cache(zipapp: Path, tmp_path: Path) -> None:
    scenario = Scenario(tmp_path)
    answer_of(scenario.run(zipapp))
    database = scenario.cache / "cache.db"
    before = database.read_bytes()
    for stdin in (b"garbage", b'{"kind":"CredentialProviderRequest"}', REQUEST.replace(b"v1", b"v9")):
        result = scenario.run(zipapp, stdin)
        assert result.returncode == 1
        assert result.stdout == b""
    assert database.read_bytes() == before
    answer_of(scenario.run(zipapp))
    assert scenario.call_count() == 1


def test_a_refused_cache_directory_warns_and_still_answers(zipapp: Path, tmp_path: Path) -> None:
    scenario = Scenario(tmp_path)
    scenario.cache.mkdir(mode=0o700)
    scenario.cache.chmod(0o777)
    result = scenario.run(zipapp)
    assert answer_of(result)["auth"]
    assert result.stderr.decode().count("\n") == 1
    assert b"is open to other users" in result.stderr
    answer_of(scenario.run(zipapp))
    assert scenario.call_count() == 2


@pytest.mark.parametrize("cache_type", ["ServiceAccount", "Token"])
def test_service_account_tokens_key_the_cache_but_are_never_stored(
    zipapp: Path, tmp_path: Path, cache_type: str
) -> None:
    from tests.test_cache import _jwt

    scenario = Scenario(tmp_path)
    scenario.config.write_text(
        scenario.config.read_text() + f"cache:\n  serviceAccountCacheType: {cache_type}\n"
    )

    def request(token: str) -> bytes:
        body = json.loads(REQUEST)
        body.update(serviceAccountToken=token, serviceAccountAnnotations={"example.com/role": "puller"})
        return json.dumps(body).encode()

    tokens = [_jwt("team-a", "puller", "uid-1", f"nonce-{i}-never-stored") for i in range(3)]
    for token in tokens:
        answer_of(scenario.run(zipapp, request(token)))
    answer_of(scenario.run(zipapp, request(_jwt("team-b", "puller", "uid-2", "other-never-stored"))))
    answer_of(scenario.run(zipapp))  # the node itself
    expected_calls = 3 if cache_type == "ServiceAccount" else 5
    assert scenario.call_count() == expected_calls
    stored = b"".join(path.read_bytes() for path in scenario.cache.rglob("*") if path.is_file())
    leaked = b"never-stored" in stored or any(token.encode() in stored for token in tokens)
    assert not leaked, "a service account token reached the disk cache"


def test_the_environment_of_a_plain_kubelet_has_a_cache_dir_of_its_own() -> None:
    assert "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR" in kubelet_environ()
