"""Unit tests for ``provider.authfile``: docker ``config.json`` / containers ``auth.json`` parsing and lookup."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from provider.authfile import (
    AuthFile,
    find_entry,
    has_path_keys,
    helper_for,
    normalize_host,
    parse_auth_file,
    server_url,
    split_key,
)
from provider.errors import DockerConfigFileError

SOURCE = "/etc/test/config.json"
SECRET = "s3cret-Pa55w0rd-do-not-leak"


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def auth_file(doc: dict[str, Any]) -> AuthFile:
    return parse_auth_file(json.dumps(doc).encode(), SOURCE)


def auths(*keys: str) -> AuthFile:
    """A file whose every key holds a distinct credential, derived from the key itself."""
    return auth_file({"auths": {key: {"auth": b64(f"{user_for(key)}:pw-{key}")} for key in keys}})


def user_for(key: str) -> str:
    return key.replace(":", "_")  # a username cannot hold a colon


# --- split_key / normalize_host ---------------------------------------------------------------

SPLIT_KEY_CASES = [
    ("https://index.docker.io/v1/", ("docker.io", "")),
    ("https://index.docker.io/v2/", ("docker.io", "")),
    ("http://index.docker.io/v1/", ("docker.io", "")),
    ("index.docker.io", ("docker.io", "")),
    ("index.docker.io/v1", ("docker.io", "")),
    ("docker.io", ("docker.io", "")),
    ("registry-1.docker.io", ("docker.io", "")),
    ("https://registry-1.docker.io/v2/", ("docker.io", "")),
    ("registry.hub.docker.com", ("docker.io", "")),
    ("DOCKER.IO", ("docker.io", "")),
    ("docker.io/library", ("docker.io", "/library")),
    ("reg.io", ("reg.io", "")),
    ("reg.io/", ("reg.io", "")),
    ("reg.io//", ("reg.io", "")),
    ("reg.io:5000", ("reg.io:5000", "")),
    ("reg.io:5000/", ("reg.io:5000", "")),
    ("http://reg.io", ("reg.io", "")),
    ("http://reg.io:5000", ("reg.io:5000", "")),
    ("https://reg.io", ("reg.io", "")),
    ("https://reg.io/", ("reg.io", "")),
    ("https://reg.io/v2/", ("reg.io", "")),
    ("https://reg.io/v1/", ("reg.io", "")),
    ("HTTPS://REG.IO/", ("reg.io", "")),
    ("REG.IO", ("reg.io", "")),
    ("Reg.Io:5000", ("reg.io:5000", "")),
    ("reg.io/team", ("reg.io", "/team")),
    ("reg.io/team/", ("reg.io", "/team")),
    ("reg.io/team/app", ("reg.io", "/team/app")),
    ("reg.io:5000/team/app/", ("reg.io:5000", "/team/app")),
    ("https://reg.io/v2/team/", ("reg.io", "/team")),
    ("reg.io/v10/app", ("reg.io", "/v10/app")),
    ("reg.io/v2x", ("reg.io", "/v2x")),
    ("reg.io/Team", ("reg.io", "/Team")),  # paths stay case-sensitive
    ("[::1]:5000", ("[::1]:5000", "")),
]


@pytest.mark.parametrize(("key", "expected"), SPLIT_KEY_CASES, ids=[c[0] for c in SPLIT_KEY_CASES])
def test_split_key(key: str, expected: tuple[str, str]) -> None:
    assert split_key(key) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("docker.io", "docker.io"),
        ("index.docker.io", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("registry.hub.docker.com", "docker.io"),
        ("Index.Docker.IO", "docker.io"),
        ("REG.IO:5000", "reg.io:5000"),
        ("docker.io:443", "docker.io:443"),  # a port makes it another host string
        ("mirror.docker.io", "mirror.docker.io"),
    ],
    ids=str,
)
def test_normalize_host(host: str, expected: str) -> None:
    assert normalize_host(host) == expected


# --- find_entry: which key applies --------------------------------------------------------------

# (keys in the file, image host, image path, key expected to answer or None)
FIND_CASES: list[tuple[str, list[str], str, str, str | None]] = [
    # Docker Hub, every form docker and podman write
    (
        "hub-legacy-url",
        ["https://index.docker.io/v1/"],
        "docker.io",
        "/library/nginx",
        "https://index.docker.io/v1/",
    ),
    ("hub-index-host", ["index.docker.io"], "docker.io", "/library/nginx", "index.docker.io"),
    ("hub-docker.io", ["docker.io"], "docker.io", "/library/nginx", "docker.io"),
    ("hub-registry-1", ["registry-1.docker.io"], "docker.io", "/library/nginx", "registry-1.docker.io"),
    ("hub-v2-url", ["https://index.docker.io/v2/"], "docker.io", "/x/y", "https://index.docker.io/v2/"),
    (
        "hub-upper",
        ["HTTPS://INDEX.DOCKER.IO/v1/"],
        "docker.io",
        "/library/nginx",
        "HTTPS://INDEX.DOCKER.IO/v1/",
    ),
    ("hub-image-host-alias", ["docker.io"], "index.docker.io", "/library/nginx", "docker.io"),
    # plain hosts
    ("host", ["reg.io"], "reg.io", "/app", "reg.io"),
    ("host-trailing-slash", ["reg.io/"], "reg.io", "/app", "reg.io/"),
    ("host-http", ["http://reg.io"], "reg.io", "/app", "http://reg.io"),
    ("host-https-v2", ["https://reg.io/v2/"], "reg.io", "/app", "https://reg.io/v2/"),
    ("host-upper-key", ["REG.IO"], "reg.io", "/app", "REG.IO"),
    ("host-upper-image", ["reg.io"], "REG.io", "/app", "reg.io"),
    ("other-host", ["reg.io"], "other.io", "/app", None),
    ("subdomain-is-other-host", ["reg.io"], "eu.reg.io", "/app", None),
    ("hub-key-not-for-other-host", ["https://index.docker.io/v1/"], "quay.io", "/app", None),
    # ports
    ("host-port", ["reg.io:5000"], "reg.io:5000", "/app", "reg.io:5000"),
    ("host-port-http", ["http://reg.io:5000"], "reg.io:5000", "/app", "http://reg.io:5000"),
    ("port-key-not-for-bare-host", ["reg.io:5000"], "reg.io", "/app", None),
    ("bare-key-not-for-port", ["reg.io"], "reg.io:5000", "/app", None),
    ("other-port", ["reg.io:5000"], "reg.io:5001", "/app", None),
    # paths: that path and below, on whole segments
    ("path-exact", ["reg.io/team"], "reg.io", "/team", "reg.io/team"),
    ("path-below", ["reg.io/team"], "reg.io", "/team/app", "reg.io/team"),
    ("path-trailing-slash", ["reg.io/team/"], "reg.io", "/team/app", "reg.io/team/"),
    ("path-not-a-prefix-segment", ["reg.io/team"], "reg.io", "/teamx/app", None),
    ("path-not-a-prefix-segment-host-wide", ["reg.io/team", "reg.io"], "reg.io", "/teamx/app", "reg.io"),
    ("path-is-case-sensitive", ["reg.io/Team"], "reg.io", "/team/app", None),
    ("path-other-branch", ["reg.io/team/app"], "reg.io", "/team/other", None),
    ("path-with-port", ["reg.io:5000/team"], "reg.io:5000", "/team/app", "reg.io:5000/team"),
    ("path-hub", ["docker.io/library"], "docker.io", "/library/nginx", "docker.io/library"),
    # the most specific wins, whatever the order in the file
    ("specific-after-host", ["reg.io", "reg.io/team"], "reg.io", "/team/app", "reg.io/team"),
    ("specific-before-host", ["reg.io/team", "reg.io"], "reg.io", "/team/app", "reg.io/team"),
    (
        "deepest-wins",
        ["reg.io/team", "reg.io/team/app", "reg.io"],
        "reg.io",
        "/team/app/sub",
        "reg.io/team/app",
    ),
    ("deeper-key-not-covering", ["reg.io/team/app", "reg.io/team"], "reg.io", "/team/lib", "reg.io/team"),
    # same specificity: the first key in the file
    ("tie-first-wins", ["docker.io", "https://index.docker.io/v1/"], "docker.io", "/a/b", "docker.io"),
    (
        "tie-first-wins-reversed",
        ["https://index.docker.io/v1/", "docker.io"],
        "docker.io",
        "/a/b",
        "https://index.docker.io/v1/",
    ),
]


@pytest.mark.parametrize(
    ("keys", "host", "path", "expected"), [c[1:] for c in FIND_CASES], ids=[c[0] for c in FIND_CASES]
)
def test_find_entry_picks_key(keys: list[str], host: str, path: str, expected: str | None) -> None:
    found = find_entry(auths(*keys), host, path, SOURCE)
    if expected is None:
        assert found is None
        return
    assert found is not None
    assert found.key == expected
    # each key's credential is distinct, so this also proves the right entry was decoded
    assert (found.username, found.password) == (user_for(expected), f"pw-{expected}")
    assert found.path == split_key(expected)[1]
    assert not found.empty
    assert not found.identity_token_only


def test_find_entry_in_empty_file() -> None:
    assert find_entry(AuthFile(), "reg.io", "/app", SOURCE) is None
    assert find_entry(auth_file({}), "reg.io", "/app", SOURCE) is None


# --- find_entry: what an entry holds --------------------------------------------------------------

ENTRY_CASES: list[tuple[str, dict[str, str], tuple[str, str]]] = [
    ("auth", {"auth": b64("alice:" + SECRET)}, ("alice", SECRET)),
    ("username-password", {"username": "bob", "password": SECRET}, ("bob", SECRET)),
    # docker decodes "auth" over the separate fields
    (
        "auth-over-fields",
        {"auth": b64("alice:" + SECRET), "username": "x", "password": "y"},
        ("alice", SECRET),
    ),
    ("password-with-colons", {"auth": b64("carol:a:b:c")}, ("carol", "a:b:c")),
    ("empty-password-in-auth", {"auth": b64("dave:")}, ("dave", "")),
    ("utf8", {"auth": b64("jürgen:pässwörd")}, ("jürgen", "pässwörd")),
    ("empty-auth-string-uses-fields", {"auth": "", "username": "eve", "password": SECRET}, ("eve", SECRET)),
    (
        "with-email-and-identitytoken",
        {"auth": b64("frank:" + SECRET), "identitytoken": "tok"},
        ("frank", SECRET),
    ),
]


@pytest.mark.parametrize(("entry", "expected"), [c[1:] for c in ENTRY_CASES], ids=[c[0] for c in ENTRY_CASES])
def test_entry_credentials(entry: dict[str, str], expected: tuple[str, str]) -> None:
    found = find_entry(auth_file({"auths": {"reg.io": entry}}), "reg.io", "/app", SOURCE)
    assert found is not None
    assert (found.username, found.password) == expected
    assert not found.empty
    assert not found.identity_token_only


def test_unknown_entry_and_top_level_fields_are_ignored() -> None:
    doc = {
        "auths": {"reg.io": {"auth": b64("u:p"), "email": "u@example.com", "serveraddress": "x", "new": [1]}},
        "HttpHeaders": {"User-Agent": "Docker-Client"},
        "currentContext": "default",
        "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
    }
    found = find_entry(auth_file(doc), "reg.io", "/app", SOURCE)
    assert found is not None
    assert (found.username, found.password) == ("u", "p")


@pytest.mark.parametrize(
    "entry",
    [
        {"identitytoken": SECRET},
        # what `docker login` writes when the registry returns an identity token: the username
        # is kept, the password blanked
        {"auth": b64("alice:"), "identitytoken": SECRET},
        {"username": "alice", "identitytoken": SECRET},
    ],
    ids=["token-alone", "docker-login-form", "username-field-and-token"],
)
def test_identity_token_only(entry: dict[str, str]) -> None:
    found = find_entry(auth_file({"auths": {"reg.io": entry}}), "reg.io", "/app", SOURCE)
    assert found is not None
    assert found.identity_token_only
    assert not found.empty
    assert found.password == ""
    assert SECRET not in repr(found)


@pytest.mark.parametrize(
    "entry",
    [{}, {"auth": ""}, {"username": "", "password": ""}, {"email": "x@example.com"}, {"auth": b64(":")}],
    ids=["braces", "empty-auth", "empty-fields", "email-only", "auth-of-colon"],
)
def test_empty_placeholder(entry: dict[str, str]) -> None:
    found = find_entry(
        auth_file({"auths": {"https://index.docker.io/v1/": entry}}), "docker.io", "/a/b", SOURCE
    )
    assert found is not None
    assert found.empty
    assert not found.identity_token_only


BAD_AUTH_CASES = [
    ("not-base64", SECRET + "!", "is not base64"),
    ("bad-padding", b64("user:" + SECRET).rstrip("="), "is not base64"),
    ("embedded-space", b64("user:" + SECRET)[:4] + " " + b64("user:" + SECRET)[4:], "is not base64"),
    ("no-colon", b64("user" + SECRET), "holds no 'username:password' pair"),
    ("non-utf8", b64(b"user:" + SECRET.encode() + b"\xff\xfe"), "is not base64"),
]


@pytest.mark.parametrize(
    ("auth", "message"), [c[1:] for c in BAD_AUTH_CASES], ids=[c[0] for c in BAD_AUTH_CASES]
)
def test_bad_auth_field(auth: str, message: str) -> None:
    file = auth_file({"auths": {"bad.example.com": {"auth": auth}}})
    with pytest.raises(DockerConfigFileError) as caught:
        find_entry(file, "bad.example.com", "/app", SOURCE)
    text = str(caught.value)
    assert SOURCE in text
    assert "'bad.example.com'" in text
    assert message in text
    assert SECRET not in text
    assert auth not in text


def test_bad_entry_for_another_host_does_not_matter() -> None:
    file = auth_file({"auths": {"broken.io": {"auth": "!!!"}, "reg.io": {"auth": b64("u:p")}}})
    found = find_entry(file, "reg.io", "/app", SOURCE)
    assert found is not None
    assert (found.username, found.password) == ("u", "p")


def test_bad_entry_shadowed_by_more_specific_one_does_not_matter() -> None:
    file = auth_file({"auths": {"reg.io": {"auth": "!!!"}, "reg.io/team": {"auth": b64("u:p")}}})
    found = find_entry(file, "reg.io", "/team/app", SOURCE)
    assert found is not None
    assert found.key == "reg.io/team"
    with pytest.raises(DockerConfigFileError, match="not base64"):
        find_entry(file, "reg.io", "/other", SOURCE)


def test_reprs_hide_secrets() -> None:
    file = auth_file({"auths": {"reg.io": {"auth": b64("alice:" + SECRET)}}})
    found = find_entry(file, "reg.io", "/app", SOURCE)
    assert found is not None
    assert SECRET not in repr(found)
    assert "alice" in repr(found)
    assert SECRET not in repr(file)
    assert b64("alice:" + SECRET) not in repr(file)


# --- parse_auth_file: broken files ---------------------------------------------------------------

PARSE_ERROR_CASES = [
    ("not-json", b'{"auths": {"reg.io": {"auth": "' + SECRET.encode() + b'"', "not valid JSON"),
    ("garbage", SECRET.encode() + b" is not json", "not valid JSON"),
    ("trailing-garbage", b'{"auths": {}} ' + SECRET.encode(), "not valid JSON"),
    ("auths-is-list", b'{"auths": [{"auth": "' + SECRET.encode() + b'"}]}', "unexpected content"),
    ("auths-is-string", b'{"auths": "' + SECRET.encode() + b'"}', "unexpected content"),
    ("entry-is-string", b'{"auths": {"reg.io": "' + SECRET.encode() + b'"}}', "unexpected content"),
    ("auth-is-number", b'{"auths": {"reg.io": {"auth": 12345}}}', "unexpected content"),
    (
        "password-is-list",
        b'{"auths": {"reg.io": {"password": ["' + SECRET.encode() + b'"]}}}',
        "unexpected content",
    ),
    ("credhelpers-is-list", b'{"credHelpers": ["' + SECRET.encode() + b'"]}', "unexpected content"),
    ("credhelper-value-is-number", b'{"credHelpers": {"reg.io": 1}}', "unexpected content"),
    ("credsstore-is-object", b'{"credsStore": {"name": "' + SECRET.encode() + b'"}}', "unexpected content"),
    ("top-level-list", b'["' + SECRET.encode() + b'"]', "unexpected content"),
    ("top-level-null", b"null", "unexpected content"),
    ("top-level-string", b'"' + SECRET.encode() + b'"', "unexpected content"),
    ("auths-null", b'{"auths": null}', "unexpected content"),
    ("non-utf8-string", b'{"auths": {"reg.io": {"password": "\xff' + SECRET.encode() + b'"}}}', "not UTF-8"),
    ("non-utf8-key", b'{"auths": {"\xfe' + SECRET.encode() + b'": {}}}', "not UTF-8"),
    ("non-utf8-outside-strings", b"\xff{}", "not valid JSON"),
    ("utf16-bom", "{}".encode("utf-16"), "not valid JSON"),
]


@pytest.mark.parametrize(
    ("data", "message"), [c[1:] for c in PARSE_ERROR_CASES], ids=[c[0] for c in PARSE_ERROR_CASES]
)
def test_parse_errors_name_the_file_and_hide_secrets(data: bytes, message: str) -> None:
    with pytest.raises(DockerConfigFileError) as caught:
        parse_auth_file(data, SOURCE)
    text = str(caught.value)
    assert text.startswith(SOURCE + ": ")
    assert message in text
    assert SECRET not in text


def test_parse_complete_file() -> None:
    doc = {
        "auths": {"reg.io": {"auth": b64("u:p")}},
        "credHelpers": {"gcr.io": "gcloud", "123.dkr.ecr.us-east-1.amazonaws.com": "ecr-login"},
        "credsStore": "desktop",
    }
    file = auth_file(doc)
    assert set(file.auths) == {"reg.io"}
    assert file.cred_helpers == doc["credHelpers"]
    assert file.creds_store == "desktop"


def test_parse_empty_object() -> None:
    file = parse_auth_file(b"{}", SOURCE)
    assert file.auths == {}
    assert file.cred_helpers == {}
    assert file.creds_store == ""


# --- has_path_keys / helper_for / server_url ------------------------------------------------------

HAS_PATH_CASES = [
    ("host-only", ["reg.io", "https://reg.io/v2/"], "reg.io", False),
    ("path-key", ["reg.io", "reg.io/team"], "reg.io", True),
    ("path-key-upper-host", ["REG.IO/team"], "reg.io", True),
    ("path-key-other-host", ["other.io/team", "reg.io"], "reg.io", False),
    ("path-key-other-port", ["reg.io:5000/team"], "reg.io", False),
    ("hub-legacy-url-is-host-wide", ["https://index.docker.io/v1/"], "docker.io", False),
    ("hub-path-key", ["docker.io/library"], "docker.io", True),
    ("hub-path-key-alias", ["index.docker.io/library"], "docker.io", True),
    ("trailing-slash-is-host-wide", ["reg.io/"], "reg.io", False),
    ("no-keys", [], "reg.io", False),
]


@pytest.mark.parametrize(
    ("keys", "host", "expected"), [c[1:] for c in HAS_PATH_CASES], ids=[c[0] for c in HAS_PATH_CASES]
)
def test_has_path_keys(keys: list[str], host: str, expected: bool) -> None:
    assert has_path_keys(auths(*keys), host) is expected


HELPER_CASES = [
    ("exact", {"gcr.io": "gcloud"}, "gcr.io", "gcloud"),
    ("other-host", {"gcr.io": "gcloud"}, "quay.io", ""),
    ("upper-key", {"GCR.IO": "gcloud"}, "gcr.io", "gcloud"),
    ("scheme-key", {"https://gcr.io": "gcloud"}, "gcr.io", "gcloud"),
    ("port", {"reg.io:5000": "pass"}, "reg.io:5000", "pass"),
    ("port-not-for-bare-host", {"reg.io:5000": "pass"}, "reg.io", ""),
    ("hub-legacy-url", {"https://index.docker.io/v1/": "desktop"}, "docker.io", "desktop"),
    ("hub-alias", {"registry-1.docker.io": "desktop"}, "docker.io", "desktop"),
    ("none", {}, "gcr.io", ""),
]


@pytest.mark.parametrize(
    ("helpers", "host", "expected"), [c[1:] for c in HELPER_CASES], ids=[c[0] for c in HELPER_CASES]
)
def test_helper_for(helpers: dict[str, str], host: str, expected: str) -> None:
    assert helper_for(auth_file({"credHelpers": helpers}), host) == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("docker.io", "https://index.docker.io/v1/"),
        ("index.docker.io", "https://index.docker.io/v1/"),
        ("registry-1.docker.io", "https://index.docker.io/v1/"),
        ("gcr.io", "gcr.io"),
        ("reg.io:5000", "reg.io:5000"),
    ],
    ids=str,
)
def test_server_url(host: str, expected: str) -> None:
    assert server_url(host) == expected
