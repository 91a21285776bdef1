"""Identity rules, the files backend and the vault backend, through the full path and the disk cache."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from provider import core
from provider.config import decode_config
from provider.errors import ConfigError, ProviderError
from provider.fullpath import find_rule
from provider.kubelet import CredentialProviderRequest
from tests.infra.tls import TLSFiles
from tests.infra.vault import VaultFake, VaultRole
from tests.reliability.faultproxy import FaultProxy
from tests.test_ecr_backend import sa_token

HEAD = "apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\nrules:\n"
TEAM_A, TEAM_B = sa_token("team-a", "puller"), sa_token("team-b", "puller")


def request(token: str = "", annotations: dict[str, str] | None = None, image: str = "r.io/app") -> bytes:
    fields = {
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "kind": "CredentialProviderRequest",
        "image": image,
        "serviceAccountToken": token,
        "serviceAccountAnnotations": annotations or {},
    }
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("namespaces: []", "$.rules[0].namespaces: expected at least one namespace"),
        ("namespaces: [Team-A]", "$.rules[0].namespaces[0]: expected a namespace name"),
        ("namespaces: ['../x']", "$.rules[0].namespaces[0]: expected a namespace name"),
        ("serviceAccounts: [puller]", "$.rules[0].serviceAccounts[0]: expected '<namespace>/<name>'"),
        ("serviceAccounts: ['a/b/c']", "$.rules[0].serviceAccounts[0]: expected '<namespace>/<name>'"),
        ("serviceAccountAnnotations: {}", "$.rules[0].serviceAccountAnnotations: expected at least one"),
        ("serviceAccountAnnotations: {'bad key': x}", "$.rules[0].serviceAccountAnnotations['bad key']"),
    ],
)
def test_identity_fields_are_checked_with_their_path(rule: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        decode_config((HEAD + f"  - backend: anonymous\n    {rule}\n").encode(), "c")
    assert message in str(error.value)


def test_an_identity_rule_without_match_is_not_a_catch_all() -> None:
    config = decode_config(
        (HEAD + "  - backend: anonymous\n    namespaces: [team-a]\n  - backend: dockerconfig\n").encode(), "c"
    )

    def rule_for(token: str, annotations: dict[str, str] | None = None) -> int | None:
        req = CredentialProviderRequest(
            api_version="credentialprovider.kubelet.k8s.io/v1",
            kind="CredentialProviderRequest",
            image="r.io/app",
            service_account_token=token,
            service_account_annotations=annotations or {},
        )
        match = find_rule(config, "r.io/app", req)
        return None if match is None else match.index

    assert rule_for(TEAM_A) == 0
    assert rule_for(TEAM_B) == 1
    assert rule_for("") == 1  # no token: never an identity rule
    assert rule_for("not-a-jwt") == 1
    assert rule_for(TEAM_A.rsplit(".", 2)[0] + ".e30.sig") == 1  # claims missing


def test_annotations_and_service_accounts_must_all_hold() -> None:
    config = decode_config(
        (
            HEAD + "  - backend: anonymous\n    serviceAccounts: [team-a/puller]\n"
            "    serviceAccountAnnotations: {example.com/pull: 'yes'}\n  - backend: dockerconfig\n"
        ).encode(),
        "c",
    )
    for token, passed, expected in (
        (TEAM_A, {"example.com/pull": "yes"}, 0),
        (TEAM_A, {"example.com/pull": "no"}, 1),
        (TEAM_A, {}, 1),
        (TEAM_B, {"example.com/pull": "yes"}, 1),
        (sa_token("team-a", "other"), {"example.com/pull": "yes"}, 1),
    ):
        req = CredentialProviderRequest(
            api_version="credentialprovider.kubelet.k8s.io/v1",
            kind="CredentialProviderRequest",
            image="r.io/app",
            service_account_token=token,
            service_account_annotations=passed,
        )
        match = find_rule(config, "r.io/app", req)
        assert match is not None
        assert match.index == expected, passed


def answer(config: Path, data: bytes, cache: Path) -> dict[str, object]:
    env = {"REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"}
    reply = core.answer(data, config_path=str(config), environ=env, timeout=10)
    result: dict[str, object] = json.loads(reply.stdout)
    return result


def test_files_backend_rereads_a_changed_file_and_a_missing_one_is_no_credentials(tmp_path: Path) -> None:
    (tmp_path / "team-a").mkdir()
    config = tmp_path / "provider.yaml"
    config.write_text(
        HEAD + f"  - backend: files\n    paths: ['{tmp_path}/{{namespace}}/{{serviceAccount}}.json']\n"
    )
    file = tmp_path / "team-a" / "puller.json"
    for password in ("first", "second"):
        file.write_text(json.dumps({"auths": {"r.io": {"username": "robot", "password": password}}}))
        got = answer(config, request(TEAM_A), tmp_path / "cache")
        assert got["auth"] == {"r.io": {"username": "robot", "password": password}}
    assert answer(config, request(TEAM_B), tmp_path / "cache")["auth"] == {}
    file.unlink()
    assert answer(config, request(TEAM_A), tmp_path / "cache")["auth"] == {}


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("/w/{serviceAccount}.json", "has no {namespace}"),
        ("/w/{namespace}-{serviceAccount}.json", "two placeholders in one path segment"),
        ("/w/{namespace}/{pod}.json", "unknown placeholder {pod}"),
        ("/w/../{namespace}.json", "'.' or '..' segment"),
        ("w/{namespace}.json", "expected an absolute path"),
    ],
)
def test_files_templates_are_checked(template: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        decode_config((HEAD + f"  - backend: files\n    paths: ['{template}']\n").encode(), "c")
    assert "$.rules[0].paths[0]" in str(error.value)
    assert message in str(error.value)


def test_the_token_as_a_password_needs_cache_type_token(tmp_path: Path) -> None:
    (tmp_path / "team-a").mkdir()
    (tmp_path / "team-a" / "puller.json").write_text(
        json.dumps({"auths": {"r.io": {"username": "oauth", "password": TEAM_A}}})
    )
    rules = f"  - backend: files\n    paths: ['{tmp_path}/{{namespace}}/{{serviceAccount}}.json']\n"
    config = tmp_path / "provider.yaml"
    config.write_text(HEAD + rules)
    with pytest.raises(ProviderError) as error:
        answer(config, request(TEAM_A), tmp_path / "cache")
    assert "only 'cacheType: Token' allows" in str(error.value)
    assert TEAM_A not in str(error.value)
    config.write_text(HEAD.replace("rules:", "cache: {serviceAccountCacheType: Token}\nrules:") + rules)
    assert answer(config, request(TEAM_A), tmp_path / "cache")["auth"] == {
        "r.io": {"username": "oauth", "password": TEAM_A}
    }


# --- vault ------------------------------------------------------------------------------------


@pytest.fixture
def vault() -> Iterator[VaultFake]:
    fake = VaultFake().start()
    role = VaultRole(paths=("registry/{namespace}/{serviceAccount}",), namespaces=("team-a", "team-b"))
    fake.mount("kubernetes", "kubernetes", {"puller": role})
    fake.mount("jwt", "jwt", {"puller": role})
    fake.put_secret("registry/team-a/puller", {"username": "robot-a", "password": "pw-a"})
    fake.put_secret("registry/team-b/puller", {"username": "robot-b", "password": "pw-b"})
    fake.trusted_jwts.update({TEAM_A, TEAM_B})
    yield fake
    fake.stop()


def vault_config(tmp_path: Path, rule: str) -> Path:
    config = tmp_path / "provider.yaml"
    config.write_text(HEAD + "  - backend: vault\n" + "".join(f"    {line}\n" for line in rule.splitlines()))
    return config


def logins(vault: VaultFake) -> list[int]:
    return [call.status for call in vault.requests if call.path.endswith("/login")]


def test_the_disk_cache_never_serves_one_namespaces_secret_to_another(
    vault: VaultFake, tmp_path: Path
) -> None:
    config = vault_config(tmp_path, f"address: {vault.url}\nrole: puller")
    for _ in range(2):
        assert answer(config, request(TEAM_A), tmp_path / "cache")["auth"] == {
            "r.io": {"username": "robot-a", "password": "pw-a"}
        }
        assert answer(config, request(TEAM_B), tmp_path / "cache")["auth"] == {
            "r.io": {"username": "robot-b", "password": "pw-b"}
        }
    assert logins(vault) == [200, 200]  # the second round came from the disk cache, per identity
    assert answer(config, request(), tmp_path / "cache")["auth"] == {}  # no token, no nodeAuth


def test_jwt_method_a_wrong_role_and_a_missing_secret(vault: VaultFake, tmp_path: Path) -> None:
    config = vault_config(
        tmp_path, f"address: {vault.url}\nauthMethod: jwt\nroleAnnotations: [example.com/vault-role]"
    )
    annotated = {"example.com/vault-role": "puller"}
    assert answer(config, request(TEAM_A, annotated), tmp_path / "c1")["auth"] == {
        "r.io": {"username": "robot-a", "password": "pw-a"}
    }
    assert vault.requests[0].path == "/v1/auth/jwt/login"
    with pytest.raises(ProviderError) as error:
        answer(config, request(TEAM_A, {"example.com/vault-role": "admin"}), tmp_path / "c2")
    assert "refused (InvalidRequest) the login as role 'admin'" in str(error.value)
    assert TEAM_A not in str(error.value)
    with pytest.raises(ProviderError) as error:
        answer(config, request(TEAM_A), tmp_path / "c3")
    assert "no Vault role for service account team-a/puller" in str(error.value)
    other = sa_token("team-c", "puller")
    vault.trusted_jwts.add(other)
    with pytest.raises(ProviderError) as error:
        answer(config, request(other, annotated), tmp_path / "c4")
    assert "refused (Forbidden)" in str(error.value)
    assert other not in str(error.value)
    vault.kv["secret"].pop("registry/team-b/puller")
    assert answer(config, request(TEAM_B, annotated), tmp_path / "c5")["auth"] == {}


def test_a_vault_answer_trickling_in_is_cut_at_the_rules_timeout(vault: VaultFake, tmp_path: Path) -> None:
    # requests' timeout is per read: a byte every 50 ms would keep the login going for half a minute.
    with FaultProxy("127.0.0.1", vault.port, slow_seconds=0.05) as proxy:
        proxy.mode, proxy.only = "slow", "/login"
        config = vault_config(tmp_path, f"address: {proxy.url}\nrole: puller\ntimeout: 1s")
        with pytest.raises(ProviderError) as error:
            answer(config, request(TEAM_A), tmp_path / "cache")
    assert "did not answer (Timeout) to the login as role 'puller' at auth/kubernetes" in str(error.value)
    assert "no whole answer within 1s" in str(error.value)
    assert len(proxy.faulted) == 1  # one attempt: neither hvac nor we retry


def test_vault_in_trouble_names_the_step_that_failed(vault: VaultFake, tmp_path: Path) -> None:
    with FaultProxy("127.0.0.1", vault.port) as proxy:
        proxy.mode, proxy.only = "status:503", "/data/"
        config = vault_config(tmp_path, f"address: {proxy.url}\nrole: puller")
        with pytest.raises(ProviderError) as error:
            answer(config, request(TEAM_A), tmp_path / "cache")
    assert "failed (VaultDown) the read of secret/registry/team-a/puller" in str(error.value)
    assert [call.status for call in vault.requests] == [200]  # the login went through


def test_node_approle_over_tls_with_a_configured_ca(test_tls: TLSFiles, tmp_path: Path) -> None:
    fake = VaultFake(tls=(test_tls.server_cert, test_tls.server_key)).start()
    try:
        fake.mount(
            "approle",
            "approle",
            {"n": VaultRole(paths=("registry/node",), role_id="node-role-id", secret_id="node-secret-id")},
        )
        fake.put_secret("registry/node", {"username": "node", "password": "pw-node"})
        config = vault_config(
            tmp_path,
            f"address: {fake.url}\ncaFile: {test_tls.ca_cert}\nnodeAuth: approle\n"
            f"nodeRoleIdFile: {tmp_path / 'rid'}\nnodeSecretIdFile: {tmp_path / 'sid'}\nnodeSecretPath: registry/node",
        )
        (tmp_path / "rid").write_text("node-role-id\n")
        (tmp_path / "sid").write_text("node-secret-id\n")
        assert answer(config, request(), tmp_path / "c1")["auth"] == {
            "r.io": {"username": "node", "password": "pw-node"}
        }
        untrusted = vault_config(tmp_path, f"address: {fake.url}\nrole: puller")
        with pytest.raises(ProviderError) as error:
            answer(untrusted, request(TEAM_A), tmp_path / "c2")
        assert "did not answer (SSLError)" in str(error.value)
    finally:
        fake.stop()


# --- vault: the node's token file (nodeAuth: token) -------------------------------------------------


def reply(config: Path, data: bytes, cache: Path) -> core.Reply:
    env = {"REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"}
    return core.answer(data, config_path=str(config), environ=env, timeout=10)


@pytest.fixture
def node_token(vault: VaultFake, tmp_path: Path) -> tuple[str, Path, Path]:
    """A node token that may read registry/node, its file (mode 0600) and a config using it."""
    vault.put_secret("registry/node", {"username": "node", "password": "pw-node"})
    token = vault.create_token(("registry/node",))
    file = tmp_path / "vault-token"
    file.write_text(token + "\n")
    file.chmod(0o600)
    config = vault_config(
        tmp_path,
        f"address: {vault.url}\nrole: puller\nnodeAuth: token\nnodeTokenFile: {file}\n"
        "nodeSecretPath: registry/node\nsecretCacheDuration: 0s",
    )
    return token, file, config


def test_node_token_file_reads_the_nodes_secret(
    vault: VaultFake, node_token: tuple[str, Path, Path], tmp_path: Path
) -> None:
    _token, _file, config = node_token
    got = reply(config, request(), tmp_path / "cache")
    assert json.loads(got.stdout)["auth"] == {"r.io": {"username": "node", "password": "pw-node"}}
    assert got.warnings == []
    assert [(c.method, c.path, c.status) for c in vault.requests] == [
        ("GET", "/v1/secret/data/registry/node", 200)
    ]
    # A pod's pull still logs in as the pod, never with the node's token.
    assert json.loads(reply(config, request(TEAM_A), tmp_path / "cache").stdout)["auth"] == {
        "r.io": {"username": "robot-a", "password": "pw-a"}
    }
    assert vault.requests[-2].path == "/v1/auth/kubernetes/login"


def test_a_revoked_node_token_is_one_line_without_it(
    vault: VaultFake, node_token: tuple[str, Path, Path], tmp_path: Path
) -> None:
    token, file, config = node_token
    vault.revoke(token)
    with pytest.raises(ProviderError) as error:
        reply(config, request(), tmp_path / "cache")
    message = str(error.value)
    assert (
        f"refused (Forbidden) the read of secret/registry/node with the node's token from {file} (revoked or expired?)"
        in message
    )
    assert token not in message
    assert "\n" not in message
    assert [c.status for c in vault.requests] == [403]


def test_a_missing_node_token_file_is_an_error_naming_it(
    vault: VaultFake, node_token: tuple[str, Path, Path], tmp_path: Path
) -> None:
    _token, file, config = node_token
    file.unlink()
    with pytest.raises(ProviderError) as error:
        reply(config, request(), tmp_path / "cache")
    assert str(error.value) == f"cannot read the Vault token file {file}: No such file or directory"
    assert vault.requests == []


@pytest.mark.parametrize(
    ("mode", "said"),
    [(0o640, "is readable by its group"), (0o604, "is readable by others"), (0o622, "is writable by others")],
)
def test_a_node_token_file_others_can_reach_is_used_with_a_warning(
    vault: VaultFake, node_token: tuple[str, Path, Path], tmp_path: Path, mode: int, said: str
) -> None:
    token, file, config = node_token
    file.chmod(mode)
    got = reply(config, request(), tmp_path / "cache")
    assert json.loads(got.stdout)["auth"] == {"r.io": {"username": "node", "password": "pw-node"}}
    assert got.warnings == [f"{file} {said}, and it holds the node's Vault token: make it root's, mode 0600"]
    assert token not in got.warnings[0]


def test_a_node_token_fifo_is_refused_without_blocking(
    vault: VaultFake, node_token: tuple[str, Path, Path], tmp_path: Path
) -> None:
    import os

    _token, file, config = node_token
    file.unlink()
    os.mkfifo(file, 0o600)  # no writer: a plain open() would block until the kubelet kills us
    with pytest.raises(ProviderError) as error:
        reply(config, request(), tmp_path / "cache")
    assert str(error.value) == f"the Vault token file {file} is refused: it is a FIFO, not a regular file"
    assert vault.requests == []


# --- doctor: files and vault -------------------------------------------------------------------------


def test_files_doctor_ok_and_missing_directory(tmp_path: Path) -> None:
    from provider.backends.files import FilesRule
    from provider.backends.files import doctor as files_doctor

    (tmp_path / "present").mkdir()
    (tmp_path / "present" / "team-a.json").write_text(
        json.dumps({"auths": {"r.io": {"auth": "c2VjcmV0OnNlY3JldA=="}}})
    )
    rule = FilesRule(
        paths=[
            f"{tmp_path}/present/{{namespace}}.json",
            f"{tmp_path}/absent/{{namespace}}/{{serviceAccount}}.json",
        ]
    )
    ok, missing = files_doctor(rule, {}, 2.0)
    assert ok == ("ok", f"{tmp_path}/present exists (files: {tmp_path}/present/{{namespace}}.json)", None)
    assert missing.status == "warn"
    assert missing.detail == (
        f"{tmp_path}/absent does not exist: every pod's pull under "
        f"{tmp_path}/absent/{{namespace}}/{{serviceAccount}}.json is anonymous"
    )
    assert "c2VjcmV0" not in str([ok, missing])


def vault_doctor(rule_text: str) -> list[tuple[str, str]]:
    from provider.backends.vault import doctor as doctor_of_vault
    from provider.config import decode_config

    config = decode_config(
        (
            HEAD + "  - backend: vault\n" + "".join(f"    {line}\n" for line in rule_text.splitlines())
        ).encode(),
        "c",
    )
    return [(finding.status, finding.detail) for finding in doctor_of_vault(config.rules[0], {}, 2.0)]


def test_vault_doctor_ok_and_sealed(vault: VaultFake, node_token: tuple[str, Path, Path]) -> None:
    token, file, _config = node_token
    rule = f"address: {vault.url}\nrole: puller\nnodeAuth: token\nnodeTokenFile: {file}\nnodeSecretPath: registry/node"
    assert vault_doctor(rule) == [("ok", f"Vault at {vault.url}: health 200")]
    vault.sealed = True
    assert vault_doctor(rule) == [("warn", f"Vault at {vault.url}: health 503")]
    assert [c.path for c in vault.requests] == [
        "/v1/sys/health",
        "/v1/sys/health",
    ]  # nothing logged in, nothing read
    file.unlink()
    vault.sealed = False
    assert vault_doctor(rule)[0] == ("fail", f"nodeTokenFile {file} does not exist")
    assert token not in str(vault_doctor(rule))


def test_vault_doctor_unreachable(tmp_path: Path) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    assert vault_doctor(f"address: http://127.0.0.1:{port}\nrole: puller") == [
        ("fail", f"Vault at http://127.0.0.1:{port} did not answer: ConnectionError")
    ]


def test_vault_doctor_bad_ca(test_tls: TLSFiles, tmp_path: Path) -> None:
    from tests.infra.tls import make_tls_files

    fake = VaultFake(tls=(test_tls.server_cert, test_tls.server_key)).start()
    try:
        other = make_tls_files(tmp_path / "other-ca")
        assert vault_doctor(f"address: {fake.url}\nrole: puller\ncaFile: {test_tls.ca_cert}") == [
            ("ok", f"Vault at {fake.url}: health 200")
        ]
        assert vault_doctor(f"address: {fake.url}\nrole: puller\ncaFile: {other.ca_cert}") == [
            ("fail", f"Vault at {fake.url} did not answer: SSLError")
        ]
        missing = tmp_path / "missing-ca.pem"
        found = vault_doctor(f"address: {fake.url}\nrole: puller\ncaFile: {missing}")
        assert found == [
            ("fail", f"caFile {missing} does not exist"),
            (
                "fail",
                f"Vault at {fake.url} not asked: Could not find a suitable TLS CA certificate bundle, "
                f"invalid path: {missing}",
            ),
        ]
        # The backend says the same in one line, rather than letting requests' OSError escape.
        config = vault_config(tmp_path, f"address: {fake.url}\nrole: puller\ncaFile: {missing}")
        with pytest.raises(ProviderError) as error:
            answer(config, request(TEAM_A), tmp_path / "cache")
        assert str(error.value) == (
            f"r.io: cannot reach Vault at {fake.url} over TLS: Could not find a suitable TLS CA certificate "
            f"bundle, invalid path: {missing}"
        )
    finally:
        fake.stop()


def test_doctor_command_shows_files_and_vault_without_secrets(
    vault: VaultFake, node_token: tuple[str, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.cmdutil import run

    token, file, _config = node_token
    (tmp_path / "workloads").mkdir()
    cache = tmp_path / "doctor-cache"
    cache.mkdir(mode=0o700)
    monkeypatch.setenv("REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR", str(cache))
    config = tmp_path / "doctor.yaml"
    config.write_text(
        HEAD
        + f"  - match: [r.io]\n    backend: files\n    paths: ['{tmp_path}/workloads/{{namespace}}.json']\n"
        + f"  - match: [r.io]\n    backend: vault\n    address: {vault.url}\n    role: puller\n"
        + f"    nodeAuth: token\n    nodeTokenFile: {file}\n    nodeSecretPath: registry/node\n"
    )
    result = run(["doctor", "--config", str(config), "-o", "json"])
    checks = {(c["check"], c["status"], c["detail"]) for c in result.json()["checks"]}
    assert (
        "files",
        "ok",
        f"{tmp_path}/workloads exists (files: {tmp_path}/workloads/{{namespace}}.json)",
    ) in checks
    assert ("vault", "ok", f"Vault at {vault.url}: health 200") in checks
    assert token not in result.stdout + result.stderr
    assert "pw-node" not in result.stdout + result.stderr
