"""Files someone else chose: never read past a size or from a FIFO, unreadable default files
skipped, helper names checked, and loosely owned files that choose programs warned about."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from provider.backends import dockerconfig
from provider.backends.base import Finding
from provider.config import MAX_CONFIG_BYTES, DockerConfigRule, load_config
from provider.errors import ConfigError, DockerConfigFileError
from provider.safefile import FileTooLargeError, UnsafeFileError, read_regular_file, trust_problem
from tests.test_dockerconfig_backend import Env, entry

# --- read_regular_file ----------------------------------------------------------------------------


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)  # no writer: a plain open() would block forever
    with pytest.raises(UnsafeFileError, match="it is a FIFO, not a regular file"):
        read_regular_file(str(fifo), 1024)


def test_a_device_that_never_ends_is_refused() -> None:
    with pytest.raises(UnsafeFileError, match="it is a character device"):
        read_regular_file("/dev/zero", 1024)


def test_a_regular_file_up_to_the_limit_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_regular_file(str(path), 10) == b"x" * 10
    with pytest.raises(FileTooLargeError, match="larger than 9 bytes"):
        read_regular_file(str(path), 9)


# --- our config -----------------------------------------------------------------------------------


def test_config_that_is_a_fifo_is_a_one_line_error(tmp_path: Path) -> None:
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError) as caught:
        load_config(str(fifo))
    assert str(caught.value) == f"cannot read config file {fifo}: it is a FIFO, not a regular file"


def test_config_larger_than_the_cap_says_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value) == f"cannot read config file {path}: it is larger than {MAX_CONFIG_BYTES} bytes"
    assert MAX_CONFIG_BYTES <= 1024 * 1024  # a bigger YAML file takes seconds to load


# --- docker config files --------------------------------------------------------------------------


def test_a_fifo_named_by_a_rule_is_an_error(tmp_path: Path) -> None:
    env = Env(tmp_path)
    fifo = tmp_path / "auth.json"
    os.mkfifo(fifo)
    with pytest.raises(DockerConfigFileError, match="it is a FIFO, not a regular file"):
        env.answer("reg.io/app", [str(fifo)])


def test_an_unreadable_default_file_is_skipped_with_a_warning(tmp_path: Path) -> None:
    env = Env(tmp_path)
    (tmp_path / "docker").mkdir()
    os.mkfifo(tmp_path / "docker" / "config.json")
    env.environ["DOCKER_CONFIG"] = str(tmp_path / "docker")
    env.environ["REGISTRY_AUTH_FILE"] = env.file("auth.json", {"auths": {"reg.io": entry("u", "p")}})
    answer = env.answer("reg.io/app", None)
    assert answer.credential is not None
    assert answer.credential.password == "p"
    assert env.warnings == [
        f"cannot read {tmp_path}/docker/config.json: it is a FIFO, not a regular file; "
        "skipped (it is one of the node's default files)"
    ]


def test_root_docker_config_denied_to_an_unprivileged_user_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rootless kubelet's embedded default: /root/.docker/config.json gives EACCES."""
    real = read_regular_file

    def read(path: str, limit: int) -> bytes:
        if path == "/root/.docker/config.json":
            raise PermissionError(errno.EACCES, "Permission denied", path)
        return real(path, limit)

    monkeypatch.setattr(dockerconfig, "read_regular_file", read)
    env = Env(tmp_path)
    env.environ["DOCKER_CONFIG"] = str(tmp_path / "nonexistent")
    assert env.answer("reg.io/app", None).credential is None
    assert (
        "cannot read /root/.docker/config.json: Permission denied; skipped (it is one of the node's "
        "default files)"
    ) in env.warnings
    # A file the rule names is still an error.
    with pytest.raises(DockerConfigFileError, match="Permission denied"):
        env.answer("reg.io/app", ["/root/.docker/config.json"])
    # And doctor says so as a warning, not a failure.
    findings = dockerconfig.doctor(DockerConfigRule(), env.environ, 1.0)
    assert Finding("warn", env.warnings[0]) in findings
    assert not [f for f in findings if f.status == "fail" and "/root/.docker" in f.detail]


# --- helper names and who may write the files that choose them -----------------------------------


@pytest.mark.parametrize(
    "name",
    ["../../../tmp/evil", "/bin/sh", "-rf", "ecr login", "x" * 101, "pass\n"],
    ids=["traversal", "absolute", "option", "space", "long", "newline"],
)
def test_helper_names_are_checked_before_anything_runs(tmp_path: Path, name: str) -> None:
    env = Env(tmp_path)
    marker = tmp_path / "ran"
    env.raw_helper("x", f"touch {marker}\n")
    path = env.file("config.json", {"credHelpers": {"reg.io": name}})
    with pytest.raises(DockerConfigFileError, match=r"credHelpers\['reg.io'\] is .* not a credential helper"):
        env.answer("reg.io/app", [path])
    store = env.file("store.json", {"credsStore": name})
    with pytest.raises(DockerConfigFileError, match=r"credsStore is .* not a credential helper name"):
        env.answer("reg.io/app", [store])
    assert not marker.exists()


@pytest.mark.parametrize("name", ["ecr-login", "gcloud", "osxkeychain", "pass", "acr_env", "v1.2"])
def test_real_helper_names_are_accepted(tmp_path: Path, name: str) -> None:
    env = Env(tmp_path)
    env.helper(name, {"reg.io": ("u", "p")})
    path = env.file("config.json", {"credHelpers": {"reg.io": name}})
    answer = env.answer("reg.io/app", [path])
    assert answer.credential is not None
    assert answer.credential.password == "p"


@pytest.mark.parametrize(("mode", "who"), [(0o664, "its group"), (0o646, "others")])
def test_a_writable_file_that_names_a_helper_is_warned_about(tmp_path: Path, mode: int, who: str) -> None:
    env = Env(tmp_path)
    env.helper("store", {"reg.io": ("u", "p")})
    path = env.file("config.json", {"credsStore": "store"})
    os.chmod(path, mode)
    assert env.answer("reg.io/app", [path]).credential is not None
    assert env.warnings == [
        f"{path} is writable by {who}, yet it chooses a program this plugin runs; make it root's, mode 0600"
    ]
    assert trust_problem(path) == f"{path} is writable by {who}"


def test_a_file_owned_by_another_user_is_warned_about(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.helper("store", {"reg.io": ("u", "p")})
    path = env.file("config.json", {"credsStore": "store"})
    os.chown(path, 65534, 65534)
    assert env.answer("reg.io/app", [path]).credential is not None
    assert env.warnings == [
        f"{path} belongs to uid 65534, neither root nor this process's user, "
        "yet it chooses a program this plugin runs; make it root's, mode 0600"
    ]


def test_a_writable_file_with_only_auths_is_not_warned_about(tmp_path: Path) -> None:
    env = Env(tmp_path)
    path = env.file("config.json", {"auths": {"reg.io": entry("u", "p")}})
    os.chmod(path, 0o666)  # noqa: S103 - the point of the test
    assert env.answer("reg.io/app", [path]).credential is not None
    assert env.warnings == []


# --- config paths the kernel cannot take ------------------------------------------------------------


def _config_with(tmp_path: Path, **fields: object) -> str:
    import json

    document: dict[str, object] = {
        "apiVersion": "registry-credential-provider/v1alpha1",
        "kind": "ProviderConfig",
    }
    document.update({"rules": [{"backend": "anonymous"}]}, **fields)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(document))
    return str(path)


def test_a_nul_byte_in_cache_dir_is_a_path_qualified_error(tmp_path: Path) -> None:
    path = _config_with(tmp_path, cache={"dir": "/var/cache/a\0b"})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: $.cache.dir: expected an absolute path, got one with a NUL byte"


def test_a_nul_byte_in_a_rules_files_is_a_path_qualified_error(tmp_path: Path) -> None:
    path = _config_with(tmp_path, rules=[{"backend": "dockerconfig", "files": ["/etc/a\0b.json"]}])
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}: $.rules[0].files[0]: expected an absolute path, got one with a NUL byte"
    )


def test_a_path_longer_than_linux_allows_is_a_path_qualified_error(tmp_path: Path) -> None:
    path = _config_with(tmp_path, cache={"dir": "/" + "d" * 5000})
    with pytest.raises(ConfigError, match=r"\$\.cache\.dir: expected a path of at most 4095 bytes"):
        load_config(path)


def test_a_cache_2000_levels_deep_is_bypassed_with_a_warning(tmp_path: Path) -> None:
    from provider.cache import CredentialStore

    warnings: list[str] = []
    directory = str(tmp_path) + "/d" * 2000
    store = CredentialStore(directory, warnings.append)
    assert store.get_credential("cred:x") is None
    assert not store.usable
    assert warnings == [
        f"disk cache {directory} cannot be opened (too many missing directory levels to create); "
        "answering without it"
    ]


# --- a cache database that is not diskcache's -----------------------------------------------------


def _wrong_schema(database: Path) -> None:
    import sqlite3

    connection = sqlite3.connect(database)
    connection.execute("CREATE TABLE Cache (x)")
    connection.commit()
    connection.close()


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda db: db.mkdir(), "is not a regular file"),
        (lambda db: db.symlink_to(db.parent.parent / "elsewhere.db"), "is not a regular file"),
        (_wrong_schema, "has another schema (no such column: key)"),
    ],
    ids=["directory", "symlink", "wrong-schema"],
)
def test_a_cache_database_that_is_not_ours_is_moved_aside_and_rebuilt(
    tmp_path: Path, make: object, why: str
) -> None:
    import time

    from provider.cache import CachedCredential, CredentialStore

    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    database = directory / "cache.db"
    (tmp_path / "elsewhere.db").touch()
    make(database)  # type: ignore[operator]
    warnings: list[str] = []
    store = CredentialStore(str(directory), warnings.append)
    now = time.time()
    entry = CachedCredential(
        username="u", password="p", expires_at=now + 60, fetched_at=now, refresh_at=now + 30,
        backend="dockerconfig", registry="r.io", identity="node", parts=[],
    )  # fmt: skip
    store.put_credential("cred:x", entry, now)
    assert store.usable
    assert len(warnings) == 1
    assert warnings[0].startswith(f"disk cache {database} {why}; moved aside to {database}.corrupt-")
    assert database.is_file()
    assert not database.is_symlink()
    assert (tmp_path / "elsewhere.db").stat().st_size == 0  # nothing written through the link
    again = CredentialStore(str(directory), warnings.append).get_credential("cred:x")
    assert again is not None
    assert again.username == "u"
    assert len(warnings) == 1


def test_our_config_writable_by_others_is_warned_about(tmp_path: Path) -> None:
    from provider import core

    path = _config_with(tmp_path)
    os.chmod(path, 0o646)  # noqa: S103 - the point of the test
    request = b'{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"r.io/a"}'
    reply = core.answer(request, config_path=path, environ={}, use_cache=False)
    assert reply.warnings == [
        f"{path} is writable by others, yet it chooses what this plugin reads and runs; "
        "make it root's, not writable by others"
    ]
