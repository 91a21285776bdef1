"""Unit tests for the ``dockerconfig`` backend, alone and through ``provider.fullpath.respond``."""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provider.backends import dockerconfig
from provider.backends.base import Answer, Credential, Lookup
from provider.backends.dockerconfig import MAX_FILE_BYTES, DockerConfigBackend, default_files, read_auth_file
from provider.config import API_VERSION, KIND, AnonymousRule, DockerConfigRule, ProviderConfig, Rule
from provider.deadline import Deadline
from provider.errors import CredentialHelperError, DeadlineExceededError, DockerConfigFileError
from provider.fullpath import respond
from provider.kubelet import CredentialProviderRequest, CredentialProviderResponse
from provider.matching import parse_schemeless, urls_match

DATA = Path(__file__).parent / "data" / "dockerconfig"
SECRET = "backend-s3cret-do-not-leak"
HUB_URL = "https://index.docker.io/v1/"


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def entry(username: str, password: str) -> dict[str, str]:
    return {"auth": b64(f"{username}:{password}")}


class Env:
    """A scratch directory for auth files and fake helpers, with the environment to find them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "log"
        self.log.mkdir()
        self.environ: dict[str, str] = {"PATH": f"{self.bin}:/usr/bin:/bin", "HELPER_LOG": str(self.log)}
        self.warnings: list[str] = []

    def file(self, name: str, doc: dict[str, Any] | str | bytes) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(doc, dict):
            path.write_text(json.dumps(doc))
        elif isinstance(doc, str):
            path.write_text(doc)
        else:
            path.write_bytes(doc)
        return str(path)

    def helper(self, name: str, answers: dict[str, tuple[str, str]]) -> None:
        """``docker-credential-<name>``: logs each server it is asked about, answers from ``answers``,
        and says "credentials not found" for any other server."""
        cases = "".join(
            f"  {shlex.quote(server)}) printf '%s' "
            f"{shlex.quote(json.dumps({'ServerURL': server, 'Username': user, 'Secret': secret}))} ;;\n"
            for server, (user, secret) in answers.items()
        )
        script = (
            "#!/bin/sh\n"
            '[ "$1" = get ] || exit 9\n'
            "server=$(cat)\n"
            f'printf "%s\\n" "$server" >> "$HELPER_LOG/{name}.calls"\n'
            'case "$server" in\n'
            f"{cases}"
            "  *) echo 'credentials not found in native keychain'; exit 1 ;;\n"
            "esac\n"
        )
        path = self.bin / f"docker-credential-{name}"
        path.write_text(script)
        path.chmod(0o755)

    def raw_helper(self, name: str, body: str) -> None:
        path = self.bin / f"docker-credential-{name}"
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)

    def calls(self, name: str) -> list[str]:
        path = self.log / f"{name}.calls"
        return path.read_text().splitlines() if path.exists() else []

    def lookup(
        self,
        image: str,
        files: list[str] | None,
        *,
        helper_timeout: str = "5s",
        deadline: Deadline | None = None,
    ) -> Lookup:
        url = parse_schemeless(image)
        return Lookup(
            request=CredentialProviderRequest(
                api_version="credentialprovider.kubelet.k8s.io/v1",
                kind="CredentialProviderRequest",
                image=image,
            ),
            image=image,
            host=url.host,
            path=url.path,
            rule=DockerConfigRule(files=files, helper_timeout=helper_timeout),
            deadline=deadline or Deadline(10),
            environ=self.environ,
            warn=self.warnings.append,
            now=time.time,
        )

    def answer(self, image: str, files: list[str] | None, **kwargs: Any) -> Answer:
        return DockerConfigBackend().get_credentials(self.lookup(image, files, **kwargs))


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def cred(answer: Answer) -> tuple[str, str, str] | None:
    c = answer.credential
    return None if c is None else (c.username, c.password, c.path_scope)


# --- default_files ----------------------------------------------------------------------------------

DEFAULT_FILES_CASES: list[tuple[str, dict[str, str], list[str]]] = [
    (
        "none",
        {},
        ["/var/lib/kubelet/config.json", "/root/.docker/config.json", "/run/containers/0/auth.json"],
    ),
    (
        "docker-config",
        {"DOCKER_CONFIG": "/etc/docker-cfg"},
        [
            "/etc/docker-cfg/config.json",
            "/var/lib/kubelet/config.json",
            "/root/.docker/config.json",
            "/run/containers/0/auth.json",
        ],
    ),
    (
        "registry-auth-file",
        {"REGISTRY_AUTH_FILE": "/etc/auth.json"},
        [
            "/var/lib/kubelet/config.json",
            "/root/.docker/config.json",
            "/etc/auth.json",
            "/run/containers/0/auth.json",
        ],
    ),
    (
        "both",
        {"DOCKER_CONFIG": "/etc/docker-cfg/", "REGISTRY_AUTH_FILE": "/etc/auth.json"},
        [
            "/etc/docker-cfg/config.json",
            "/var/lib/kubelet/config.json",
            "/root/.docker/config.json",
            "/etc/auth.json",
            "/run/containers/0/auth.json",
        ],
    ),
    (
        "empty-values-ignored",
        {"DOCKER_CONFIG": "", "REGISTRY_AUTH_FILE": ""},
        ["/var/lib/kubelet/config.json", "/root/.docker/config.json", "/run/containers/0/auth.json"],
    ),
]


@pytest.mark.parametrize(
    ("environ", "expected"), [c[1:] for c in DEFAULT_FILES_CASES], ids=[c[0] for c in DEFAULT_FILES_CASES]
)
def test_default_files(environ: dict[str, str], expected: list[str]) -> None:
    assert default_files(environ) == expected


def test_default_files_under_a_root() -> None:
    assert default_files({"DOCKER_CONFIG": "/etc/d", "REGISTRY_AUTH_FILE": "/etc/a.json"}, root="/node") == [
        "/etc/d/config.json",
        "/node/var/lib/kubelet/config.json",
        "/node/root/.docker/config.json",
        "/etc/a.json",
        "/node/run/containers/0/auth.json",
    ]


@pytest.fixture
def node_root(env: Env, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The node's filesystem for the default files: a directory of the test's own, never this
    machine's real credential files."""
    root = env.root / "node"
    root.mkdir()
    monkeypatch.setattr(dockerconfig, "default_files", functools.partial(default_files, root=str(root)))
    return root


@pytest.mark.usefixtures("node_root")
def test_default_files_docker_config_before_registry_auth_file(env: Env) -> None:
    env.file("docker/config.json", {"auths": {"reg.io": entry("from-docker-config", "p1")}})
    env.environ["DOCKER_CONFIG"] = str(env.root / "docker")
    env.environ["REGISTRY_AUTH_FILE"] = env.file(
        "auth.json", {"auths": {"reg.io": entry("from-auth-file", "p2")}}
    )
    assert cred(env.answer("reg.io/app", None)) == ("from-docker-config", "p1", "")
    # a host only the second file knows
    env.file("auth.json", {"auths": {"other.io": entry("from-auth-file", "p2")}})
    assert cred(env.answer("other.io/app", None)) == ("from-auth-file", "p2", "")
    assert env.warnings == []


def test_default_files_the_kubelets_file_before_roots_and_podmans(env: Env, node_root: Path) -> None:
    for relative, user in [
        ("var/lib/kubelet/config.json", "kubelet"),
        ("root/.docker/config.json", "root"),
        ("run/containers/0/auth.json", "podman"),
    ]:
        path = node_root / relative
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"auths": {f"{user}.io": entry(user, "p"), "all.io": entry(user, "p")}}))
    assert [cred(env.answer(f"{user}.io/app", None)) for user in ("kubelet", "root", "podman")] == [
        ("kubelet", "p", ""),
        ("root", "p", ""),
        ("podman", "p", ""),
    ]
    assert cred(env.answer("all.io/app", None)) == ("kubelet", "p", "")
    assert env.warnings == []


@pytest.mark.usefixtures("node_root")
def test_default_files_all_missing_is_anonymous(env: Env) -> None:
    env.environ["DOCKER_CONFIG"] = str(env.root / "nonexistent")
    env.environ["REGISTRY_AUTH_FILE"] = str(env.root / "nonexistent.json")
    assert env.answer("reg.io/app", None) == Answer(credential=None, per_image=False)
    assert env.warnings == []


def test_explicit_empty_file_list_does_not_read_defaults(env: Env) -> None:
    env.file("docker/config.json", {"auths": {"reg.io": entry("u", "p")}})
    env.environ["DOCKER_CONFIG"] = str(env.root / "docker")
    assert env.answer("reg.io/app", []).credential is None


# --- read_auth_file: broken files ----------------------------------------------------------------------


def test_missing_file_is_none(env: Env) -> None:
    assert read_auth_file(str(env.root / "missing.json")) is None


@pytest.mark.parametrize("content", [b"", b"\n", b"  \n\t\n"], ids=["empty", "newline", "whitespace"])
def test_empty_file_is_an_empty_config(env: Env, content: bytes) -> None:
    file = read_auth_file(env.file("config.json", content))
    assert file is not None
    assert (file.auths, file.cred_helpers, file.creds_store) == ({}, {}, "")


def test_directory_in_place_of_file(env: Env) -> None:
    path = env.root / "config.json"
    path.mkdir()
    with pytest.raises(DockerConfigFileError) as caught:
        read_auth_file(str(path))
    assert str(caught.value) == f"cannot read {path}: it is a directory, not a regular file"


def test_path_below_a_regular_file(env: Env) -> None:
    path = Path(env.file("notadir", "{}")) / "config.json"
    with pytest.raises(DockerConfigFileError) as caught:
        read_auth_file(str(path))
    assert str(caught.value) == f"cannot read {path}: Not a directory"


def read_as_nobody(path: str) -> str:
    """``read_auth_file(path)`` in a forked child that dropped root, which reads any file."""
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(readable)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            try:
                file = read_auth_file(path)
                message = "none" if file is None else "read " + ",".join(file.auths)
            except DockerConfigFileError as exc:
                message = "error " + str(exc)
            os.write(writable, message.encode())
        finally:
            os._exit(0)
    os.close(writable)
    chunks = []
    with os.fdopen(readable, "rb") as pipe:
        chunks.append(pipe.read())
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory any user can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="dockerconfig-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def test_unreadable_file(open_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop privileges to another user")
    readable = open_dir / "readable.json"
    readable.write_text(json.dumps({"auths": {"reg.io": entry("u", SECRET)}}))
    readable.chmod(0o644)
    unreadable = open_dir / "unreadable.json"
    unreadable.write_text(json.dumps({"auths": {"reg.io": entry("u", SECRET)}}))
    unreadable.chmod(0o000)
    assert read_as_nobody(str(readable)) == "read reg.io"  # the directory itself is reachable
    assert read_as_nobody(str(unreadable)) == f"error cannot read {unreadable}: Permission denied"


def test_oversized_file(env: Env) -> None:
    doc = json.dumps({"auths": {"reg.io": entry("u", SECRET)}, "pad": "x" * MAX_FILE_BYTES})
    path = env.file("big.json", doc)
    with pytest.raises(DockerConfigFileError) as caught:
        read_auth_file(path)
    assert str(caught.value) == f"cannot read {path}: it is larger than {MAX_FILE_BYTES} bytes"


def test_file_at_the_size_limit_is_read(env: Env) -> None:
    head = json.dumps({"auths": {"reg.io": entry("u", "p")}})
    path = env.file("big.json", head + " " * (MAX_FILE_BYTES - len(head)))
    file = read_auth_file(path)
    assert file is not None
    assert set(file.auths) == {"reg.io"}


BROKEN_FILE_CASES = [
    ("not-json", '{"auths": {"reg.io": {"auth": "' + b64("u:" + SECRET) + '"}', "not valid JSON"),
    ("auths-is-list", json.dumps({"auths": [entry("u", SECRET)]}), "unexpected content"),
    ("entry-is-string", json.dumps({"auths": {"reg.io": SECRET}}), "unexpected content"),
    ("credhelpers-wrong-type", json.dumps({"credHelpers": "ecr-login"}), "unexpected content"),
    ("bad-base64", json.dumps({"auths": {"reg.io": {"auth": SECRET + "="}}}), "is not base64"),
    ("no-colon", json.dumps({"auths": {"reg.io": {"auth": b64(SECRET)}}}), "no 'username:password' pair"),
    (
        "non-utf8",
        json.dumps({"auths": {"reg.io": {"auth": b64(b"u:\xff" + SECRET.encode())}}}),
        "is not base64",
    ),
    ("non-utf8-file", b'{"auths": {"reg.io": {"auth": "\xff' + SECRET.encode() + b'"}}}', "not valid JSON"),
]


@pytest.mark.parametrize(
    ("content", "message"), [c[1:] for c in BROKEN_FILE_CASES], ids=[c[0] for c in BROKEN_FILE_CASES]
)
def test_broken_file_through_backend(env: Env, content: str | bytes, message: str) -> None:
    path = env.file("config.json", content)
    with pytest.raises(DockerConfigFileError) as caught:
        env.answer("reg.io/app", [path])
    text = str(caught.value)
    assert text.startswith(path + ": ")
    assert message in text
    assert SECRET not in text
    assert b64("u:" + SECRET) not in text


def test_broken_file_before_an_answer_is_an_error(env: Env) -> None:
    broken = env.file("broken.json", "{")
    good = env.file("good.json", {"auths": {"reg.io": entry("u", "p")}})
    with pytest.raises(DockerConfigFileError, match=re.escape(f"{broken}: not valid JSON")):
        env.answer("reg.io/app", [broken, good])


def test_broken_file_after_the_answer_is_not_read(env: Env) -> None:
    good = env.file("good.json", {"auths": {"reg.io": entry("u", "p")}})
    broken = env.file("broken.json", "{")
    assert cred(env.answer("reg.io/app", [good, broken])) == ("u", "p", "")


def test_missing_files_are_skipped_silently(env: Env) -> None:
    good = env.file("good.json", {"auths": {"reg.io": entry("u", "p")}})
    missing = [str(env.root / "missing.json"), str(env.root / "no" / "such" / "dir" / "config.json")]
    assert cred(env.answer("reg.io/app", [*missing, good])) == ("u", "p", "")
    assert env.warnings == []


# --- key forms, through the backend ---------------------------------------------------------------------

# (auths key, image, whether the key's entry answers the image)
KEY_FORM_CASES: list[tuple[str, str, bool]] = [
    ("https://index.docker.io/v1/", "docker.io/library/nginx", True),
    ("https://index.docker.io/v1/", "docker.io/someone/app", True),
    ("index.docker.io", "docker.io/library/nginx", True),
    ("docker.io", "docker.io/library/nginx", True),
    ("registry-1.docker.io", "docker.io/library/nginx", True),
    ("https://registry-1.docker.io/v2/", "docker.io/library/nginx", True),
    ("https://index.docker.io/v1/", "quay.io/library/nginx", False),
    ("reg.io", "reg.io/app", True),
    ("reg.io/", "reg.io/a/b/c", True),
    ("http://reg.io", "reg.io/app", True),
    ("https://reg.io", "reg.io/app", True),
    ("https://reg.io/v2/", "reg.io/app", True),
    ("REG.IO", "reg.io/app", True),
    ("HTTPS://Reg.Io/v2/", "reg.io/app", True),
    ("reg.io", "reg.io:5000/app", False),
    ("reg.io:5000", "reg.io:5000/app", True),
    ("http://reg.io:5000/", "reg.io:5000/app", True),
    ("reg.io:5000", "reg.io/app", False),
    ("reg.io:5000", "reg.io:5001/app", False),
    ("reg.io/team", "reg.io/team/app", True),
    ("reg.io/team/", "reg.io/team/app", True),
    ("reg.io/team", "reg.io/team", True),
    ("reg.io/team", "reg.io/teamx/app", False),
    ("reg.io/team", "reg.io/other/app", False),
    ("reg.io/team/app", "reg.io/team/app/sub", True),
    ("reg.io:5000/team", "reg.io:5000/team/app", True),
    ("docker.io/library", "docker.io/library/nginx", True),
    ("docker.io/library", "docker.io/libraryx/nginx", False),
]


@pytest.mark.parametrize(
    ("key", "image", "answers"), KEY_FORM_CASES, ids=[f"{c[0]} -> {c[1]}" for c in KEY_FORM_CASES]
)
def test_key_forms(env: Env, key: str, image: str, answers: bool) -> None:
    path = env.file("config.json", {"auths": {key: entry("user", SECRET)}})
    answer = env.answer(image, [path])
    if not answers:
        assert answer.credential is None
        return
    assert answer.credential is not None
    assert (answer.credential.username, answer.credential.password) == ("user", SECRET)
    assert SECRET not in repr(answer)


def test_username_password_fields(env: Env) -> None:
    path = env.file("auth.json", {"auths": {"reg.io": {"username": "alice", "password": SECRET}}})
    assert cred(env.answer("reg.io/app", [path])) == ("alice", SECRET, "")


# --- path-scoped keys: per_image and path_scope ---------------------------------------------------------

# image -> (username, path_scope) from podman-auth.json, or None; every answer there is per image
# for quay.io and docker.io (they have path keys), not for registry.example.com:5000
PODMAN_CASES: list[tuple[str, tuple[str, str] | None, bool]] = [
    ("quay.io/other/app", ("quay-host", ""), True),
    ("quay.io/team/lib", ("quay-team", "/team"), True),
    ("quay.io/team", ("quay-team", "/team"), True),
    ("quay.io/team/app", ("quay-app", "/team/app"), True),
    ("quay.io/team/app/sub", ("quay-app", "/team/app"), True),
    ("quay.io/teamx/app", ("quay-host", ""), True),
    ("quay.io/team/application", ("quay-team", "/team"), True),
    ("registry.example.com:5000/app", ("port-user", ""), False),
    ("registry.example.com/app", None, False),
    ("docker.io/library/nginx", ("hub-library", "/library"), True),
    ("docker.io/bitnami/redis", ("hub-user", ""), True),
    ("ghcr.io/org/app", None, False),
]


@pytest.mark.parametrize(("image", "expected", "per_image"), PODMAN_CASES, ids=[c[0] for c in PODMAN_CASES])
def test_podman_auth_file(env: Env, image: str, expected: tuple[str, str] | None, per_image: bool) -> None:
    answer = env.answer(image, [str(DATA / "podman-auth.json")])
    assert answer.per_image is per_image
    if expected is None:
        assert answer.credential is None
        return
    username, scope = expected
    assert answer.credential == Credential(username=username, password=f"{username}-pw", path_scope=scope)
    assert answer.cache_seconds is None


def test_path_keys_in_an_earlier_file_make_the_host_per_image(env: Env) -> None:
    first = env.file("first.json", {"auths": {"reg.io/team": entry("team", "p1")}})
    second = env.file("second.json", {"auths": {"reg.io": entry("host", "p2")}})
    answer = env.answer("reg.io/other/app", [first, second])
    assert answer == Answer(
        credential=Credential(username="host", password="p2"), per_image=True, depends_on=(first, second)
    )


def test_path_keys_of_another_host_do_not_matter(env: Env) -> None:
    path = env.file("auth.json", {"auths": {"other.io/team": entry("x", "y"), "reg.io": entry("u", "p")}})
    assert env.answer("reg.io/app", [path]) == Answer(
        credential=Credential(username="u", password="p"), depends_on=(path,)
    )


def test_per_image_without_an_answer(env: Env) -> None:
    path = env.file("auth.json", {"auths": {"reg.io/team": entry("team", "p")}})
    assert env.answer("reg.io/other", [path]) == Answer(credential=None, per_image=True)


# --- identity tokens and placeholders --------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [{"identitytoken": SECRET}, {"auth": b64("alice:"), "identitytoken": SECRET}],
    ids=["token-alone", "docker-login-form"],
)
def test_identity_token_entry_is_skipped_with_warning(env: Env, value: dict[str, str]) -> None:
    first = env.file("first.json", {"auths": {"reg.io": value}})
    second = env.file("second.json", {"auths": {"reg.io": entry("u", "p")}})
    assert cred(env.answer("reg.io/app", [first, second])) == ("u", "p", "")
    assert len(env.warnings) == 1
    assert first in env.warnings[0]
    assert "'reg.io'" in env.warnings[0]
    assert "identitytoken" in env.warnings[0]
    assert SECRET not in env.warnings[0]


def test_identity_token_entry_falls_back_to_creds_store(env: Env) -> None:
    env.helper("store", {"reg.io": ("store-user", SECRET)})
    path = env.file("config.json", {"auths": {"reg.io": {"identitytoken": "t"}}, "credsStore": "store"})
    assert cred(env.answer("reg.io/app", [path])) == ("store-user", SECRET, "")
    assert len(env.warnings) == 1


def test_empty_placeholder_without_store_is_anonymous(env: Env) -> None:
    path = env.file("config.json", {"auths": {HUB_URL: {}}})
    assert env.answer("docker.io/library/nginx", [path]) == Answer(credential=None)
    assert env.warnings == []


def test_empty_placeholder_uses_creds_store(env: Env) -> None:
    env.helper("desktop", {HUB_URL: ("hub-user", SECRET)})
    path = env.file("config.json", {"auths": {HUB_URL: {}}, "credsStore": "desktop"})
    assert cred(env.answer("docker.io/library/nginx", [path])) == ("hub-user", SECRET, "")
    assert env.calls("desktop") == [HUB_URL]


# --- credential helpers ------------------------------------------------------------------------------------

DESKTOP_CASES: list[tuple[str, tuple[str, str] | None, dict[str, list[str]]]] = [
    # Docker Hub through credsStore, asked with the legacy URL
    ("docker.io/library/nginx", ("hub-user", "hub-secret"), {"desktop": [HUB_URL], "ecr-login": []}),
    ("ghcr.io/org/app", ("gh-user", "gh-secret"), {"desktop": ["ghcr.io"], "ecr-login": []}),
    # an inline entry answers before credsStore is asked
    ("registry.example.com/app", ("inline-user", "inline-pw"), {"desktop": [], "ecr-login": []}),
    # credHelpers for its host only
    (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
        ("AWS", "ecr-secret"),
        {"desktop": [], "ecr-login": ["123456789012.dkr.ecr.us-east-1.amazonaws.com"]},
    ),
    # no entry anywhere: credsStore is still asked, and says not found
    ("quay.io/org/app", None, {"desktop": ["quay.io"], "ecr-login": []}),
    ("reg.io:5000/app", None, {"desktop": ["reg.io:5000"], "ecr-login": []}),
]


@pytest.mark.parametrize(("image", "expected", "calls"), DESKTOP_CASES, ids=[c[0] for c in DESKTOP_CASES])
def test_docker_desktop_config(
    env: Env, image: str, expected: tuple[str, str] | None, calls: dict[str, list[str]]
) -> None:
    env.helper("desktop", {HUB_URL: ("hub-user", "hub-secret"), "ghcr.io": ("gh-user", "gh-secret")})
    env.helper("ecr-login", {"123456789012.dkr.ecr.us-east-1.amazonaws.com": ("AWS", "ecr-secret")})
    answer = env.answer(image, [str(DATA / "docker-desktop-config.json")])
    if expected is None:
        assert answer.credential is None
    else:
        assert answer.credential == Credential(username=expected[0], password=expected[1])
    assert answer.per_image is False
    assert {name: env.calls(name) for name in calls} == calls
    assert env.warnings == []


def test_docker_login_identity_token_entry_in_desktop_config(env: Env) -> None:
    # token.example.com holds what `docker login` writes for an identity token: skipped, then credsStore
    env.helper("desktop", {"token.example.com": ("store-user", "store-secret")})
    answer = env.answer("token.example.com/app", [str(DATA / "docker-desktop-config.json")])
    assert answer.credential == Credential(username="store-user", password="store-secret")
    assert len(env.warnings) == 1
    assert "'token.example.com'" in env.warnings[0]
    assert "identity-refresh-token" not in env.warnings[0]


def test_cred_helpers_beat_auths(env: Env) -> None:
    env.helper("special", {"reg.io": ("helper-user", "helper-secret")})
    path = env.file(
        "config.json",
        {"auths": {"reg.io": entry("inline", "inline-pw")}, "credHelpers": {"reg.io": "special"}},
    )
    assert cred(env.answer("reg.io/app", [path])) == ("helper-user", "helper-secret", "")
    assert env.calls("special") == ["reg.io"]


def test_cred_helpers_beat_creds_store(env: Env) -> None:
    env.helper("special", {"reg.io": ("helper-user", "helper-secret")})
    env.helper("store", {"reg.io": ("store-user", "store-secret")})
    path = env.file("config.json", {"credHelpers": {"reg.io": "special"}, "credsStore": "store"})
    assert cred(env.answer("reg.io/app", [path])) == ("helper-user", "helper-secret", "")
    assert env.calls("store") == []


def test_cred_helper_not_found_moves_to_next_file_not_to_auths(env: Env) -> None:
    env.helper("special", {})
    first = env.file(
        "first.json",
        {"auths": {"reg.io": entry("inline", "inline-pw")}, "credHelpers": {"reg.io": "special"}},
    )
    second = env.file("second.json", {"auths": {"reg.io": entry("second", "second-pw")}})
    assert cred(env.answer("reg.io/app", [first, second])) == ("second", "second-pw", "")
    assert env.calls("special") == ["reg.io"]


def test_cred_helper_for_docker_hub_gets_legacy_url(env: Env) -> None:
    env.helper("hub", {HUB_URL: ("hub-user", SECRET)})
    path = env.file("config.json", {"credHelpers": {"docker.io": "hub"}})
    assert cred(env.answer("docker.io/library/nginx", [path])) == ("hub-user", SECRET, "")
    assert env.calls("hub") == [HUB_URL]


def test_creds_store_not_asked_when_inline_entry_answers(env: Env) -> None:
    env.helper("store", {"reg.io": ("store-user", "store-secret")})
    path = env.file("config.json", {"auths": {"reg.io": entry("inline", "p")}, "credsStore": "store"})
    assert cred(env.answer("reg.io/app", [path])) == ("inline", "p", "")
    assert env.calls("store") == []


def test_first_file_with_an_answer_wins(env: Env) -> None:
    env.helper("store", {})
    no_host = env.file("a.json", {"auths": {"other.io": entry("other", "p")}})
    store_without_answer = env.file("b.json", {"credsStore": "store"})
    answering = env.file("c.json", {"auths": {"reg.io": entry("third", "p3")}})
    also_answering = env.file("d.json", {"auths": {"reg.io": entry("fourth", "p4")}})
    files = [no_host, store_without_answer, answering, also_answering]
    assert cred(env.answer("reg.io/app", files)) == ("third", "p3", "")
    assert env.calls("store") == ["reg.io"]


def test_files_are_read_on_every_call(env: Env) -> None:
    path = env.file("config.json", {"auths": {"reg.io": entry("before", "p")}})
    assert cred(env.answer("reg.io/app", [path])) == ("before", "p", "")
    env.file("config.json", {"auths": {"reg.io": entry("after", "p")}})
    assert cred(env.answer("reg.io/app", [path])) == ("after", "p", "")


def test_helper_token_username_is_skipped_with_warning(env: Env) -> None:
    env.helper("store", {"reg.io": ("<token>", SECRET)})
    first = env.file("first.json", {"credsStore": "store"})
    second = env.file("second.json", {"auths": {"reg.io": entry("u", "p")}})
    assert cred(env.answer("reg.io/app", [first, second])) == ("u", "p", "")
    assert len(env.warnings) == 1
    assert "docker-credential-store" in env.warnings[0]
    assert "reg.io" in env.warnings[0]
    assert SECRET not in env.warnings[0]


def test_missing_helper_is_an_error(env: Env) -> None:
    path = env.file("config.json", {"credsStore": "nonexistent"})
    with pytest.raises(CredentialHelperError) as caught:
        env.answer("reg.io/app", [path])
    assert "docker-credential-nonexistent" in str(caught.value)
    assert env.environ["PATH"] in str(caught.value)


def test_failing_helper_is_an_error_without_secret(env: Env) -> None:
    reply = json.dumps({"Username": "u", "Secret": SECRET})
    env.raw_helper(
        "broken", f"cat >/dev/null\nprintf '%s' '{reply}'\necho 'backend unreachable' >&2\nexit 4\n"
    )
    path = env.file("config.json", {"credsStore": "broken"})
    with pytest.raises(CredentialHelperError) as caught:
        env.answer("reg.io/app", [path])
    assert str(caught.value) == "docker-credential-broken failed for reg.io (exit 4): backend unreachable"


def test_helper_timeout_from_rule(env: Env) -> None:
    env.raw_helper("slow", "exec sleep 5\n")
    path = env.file("config.json", {"credsStore": "slow"})
    with pytest.raises(CredentialHelperError, match=r"within 0\.3s"):  # the rule's, not the default 10s
        env.answer("reg.io/app", [path], helper_timeout="300ms")


def test_helper_timeout_bounded_by_deadline(env: Env) -> None:
    env.raw_helper("slow", "exec sleep 5\n")
    path = env.file("config.json", {"credsStore": "slow"})
    with pytest.raises(
        CredentialHelperError, match=r"did not answer for reg\.io within 0\.[0-3]s"
    ):  # not 30s
        env.answer("reg.io/app", [path], helper_timeout="30s", deadline=Deadline(0.3))


def test_expired_deadline_runs_no_helper(env: Env) -> None:
    env.helper("store", {"reg.io": ("u", "p")})
    path = env.file("config.json", {"credsStore": "store"})
    deadline = Deadline(0)
    with pytest.raises(DeadlineExceededError):
        env.answer("reg.io/app", [path], deadline=deadline)
    assert env.calls("store") == []


# --- through provider.fullpath.respond --------------------------------------------------------------------


def respond_for(
    env: Env, image: str, files: list[str], rules: list[Rule] | None = None
) -> CredentialProviderResponse:
    config = ProviderConfig(
        api_version=API_VERSION,
        kind=KIND,
        rules=rules if rules is not None else [DockerConfigRule(files=files)],
        default_cache_duration="5m",
    )
    request = CredentialProviderRequest(
        api_version="credentialprovider.kubelet.k8s.io/v1", kind="CredentialProviderRequest", image=image
    )
    outcome = respond(request, config, deadline=Deadline(10), environ=env.environ, warn=env.warnings.append)
    response = outcome.response
    assert response.api_version == "credentialprovider.kubelet.k8s.io/v1"
    assert response.kind == "CredentialProviderResponse"
    if rules is None:
        assert response.cache_duration == "5m0s"
    for key in response.auth:
        assert urls_match(key, image), f"the kubelet would not apply key {key!r} to {image!r}"
    return response


def auth_of(response: CredentialProviderResponse) -> dict[str, tuple[str, str]]:
    return {key: (value.username, value.password) for key, value in response.auth.items()}


RESPOND_CASES: list[tuple[str, dict[str, dict[str, str]], str, dict[str, tuple[str, str]], str]] = [
    (
        "hub-legacy-key",
        {HUB_URL: entry("hub", "hp")},
        "docker.io/library/nginx",
        {"docker.io": ("hub", "hp")},
        "Registry",
    ),
    (
        "hub-index-key",
        {"index.docker.io": entry("hub", "hp")},
        "docker.io/x/y",
        {"docker.io": ("hub", "hp")},
        "Registry",
    ),
    ("host", {"reg.io": entry("u", "p")}, "reg.io/app", {"reg.io": ("u", "p")}, "Registry"),
    (
        "host-upper-key",
        {"https://REG.IO/v2/": entry("u", "p")},
        "reg.io/app",
        {"reg.io": ("u", "p")},
        "Registry",
    ),
    ("port", {"reg.io:5000": entry("u", "p")}, "reg.io:5000/app", {"reg.io:5000": ("u", "p")}, "Registry"),
    ("path", {"reg.io/team": entry("t", "tp")}, "reg.io/team/app", {"reg.io/team": ("t", "tp")}, "Image"),
    (
        "path-and-host-host-answer",
        {"reg.io/team": entry("t", "tp"), "reg.io": entry("u", "p")},
        "reg.io/other/app",
        {"reg.io": ("u", "p")},
        "Image",
    ),
    (
        "path-with-port",
        {"reg.io:5000/team/": entry("t", "tp")},
        "reg.io:5000/team/app",
        {"reg.io:5000/team": ("t", "tp")},
        "Image",
    ),
    (
        "hub-path",
        {"docker.io/library": entry("l", "lp")},
        "docker.io/library/nginx",
        {"docker.io/library": ("l", "lp")},
        "Image",
    ),
    ("nothing-matches", {"other.io": entry("u", "p")}, "reg.io/app", {}, "Registry"),
    ("segment-boundary", {"reg.io/team": entry("t", "tp")}, "reg.io/teamx/app", {}, "Image"),
    ("placeholder-only", {HUB_URL: {}}, "docker.io/library/nginx", {}, "Registry"),
]


@pytest.mark.parametrize(
    ("auths", "image", "expected", "cache_key_type"),
    [c[1:] for c in RESPOND_CASES],
    ids=[c[0] for c in RESPOND_CASES],
)
def test_respond(
    env: Env,
    auths: dict[str, dict[str, str]],
    image: str,
    expected: dict[str, tuple[str, str]],
    cache_key_type: str,
) -> None:
    path = env.file("config.json", {"auths": auths})
    response = respond_for(env, image, [path])
    assert auth_of(response) == expected
    assert response.cache_key_type == cache_key_type


def test_respond_from_creds_store_for_docker_hub(env: Env) -> None:
    env.helper("desktop", {HUB_URL: ("hub-user", SECRET)})
    response = respond_for(env, "docker.io/library/nginx", [str(DATA / "docker-desktop-config.json")])
    assert auth_of(response) == {"docker.io": ("hub-user", SECRET)}
    assert response.cache_key_type == "Registry"


def test_respond_with_missing_files_is_empty(env: Env) -> None:
    response = respond_for(env, "reg.io/app", [str(env.root / "missing.json")])
    assert response.auth == {}
    assert response.cache_key_type == "Registry"


def test_respond_only_from_the_rule_that_matches(env: Env) -> None:
    path = env.file("config.json", {"auths": {"reg.io": entry("u", "p"), "other.io": entry("o", "op")}})
    rules: list[Rule] = [AnonymousRule(match=["reg.io"]), DockerConfigRule(files=[path])]
    assert respond_for(env, "reg.io/app", [], rules).auth == {}
    assert auth_of(respond_for(env, "other.io/app", [], rules)) == {"other.io": ("o", "op")}


def test_fixture_files_exist() -> None:
    # a renamed fixture would otherwise turn the table tests above into "file missing" tests
    for name in ("podman-auth.json", "docker-desktop-config.json"):
        assert (DATA / name).is_file()
