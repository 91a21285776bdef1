"""Docker ``config.json`` and containers ``auth.json`` files: parsing and key lookup.

Both formats share ``auths`` (a map from a registry key to ``auth``, base64 of
``user:password``, or ``username``/``password``), ``credHelpers`` (registry host to helper
name) and ``credsStore`` (the helper for every other host). Keys come in every form docker
and podman have written over the years: ``https://index.docker.io/v1/``, ``host``,
``host:port``, ``host/namespace/repo``, with or without a scheme.
"""

from __future__ import annotations

import binascii
import contextlib
from base64 import b64decode

import msgspec

from provider.errors import DockerConfigFileError

__all__ = ["AuthFile", "FoundEntry", "find_entry", "normalize_host", "parse_auth_file", "split_key"]

DOCKER_HUB = "docker.io"
# Every name Docker Hub has gone by in config files; they all mean the same registry.
DOCKER_HUB_ALIASES = frozenset(
    {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)
DOCKER_HUB_SERVER_URL = "https://index.docker.io/v1/"


class AuthEntry(msgspec.Struct):
    """One ``auths`` value; docker adds fields over time, so unknown ones are ignored."""

    auth: str = ""
    username: str = ""
    password: str = ""
    identitytoken: str = ""

    def __repr__(self) -> str:
        return "AuthEntry(<redacted>)"


class AuthFile(msgspec.Struct, rename="camel"):
    """The parts of a docker/containers auth file that concern credentials."""

    auths: dict[str, AuthEntry] = msgspec.field(default_factory=dict)
    cred_helpers: dict[str, str] = msgspec.field(default_factory=dict)
    creds_store: str = ""


_decoder = msgspec.json.Decoder(AuthFile)


def parse_auth_file(data: bytes, source: str) -> AuthFile:
    """Decode one file; ``DockerConfigFileError`` naming the file and what is wrong (never a secret)."""
    try:
        parsed = _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise DockerConfigFileError(f"{source}: unexpected content: {exc}") from None
    except msgspec.DecodeError as exc:
        raise DockerConfigFileError(f"{source}: not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec's error for invalid UTF-8 inside a JSON string
        raise DockerConfigFileError(
            f"{source}: not valid JSON: a string is not UTF-8 ({exc.reason})"
        ) from None
    _register_secrets(parsed)
    return parsed


def _register_secrets(auth_file: AuthFile) -> None:
    """Every password, auth string and identity token in the file, so none is ever printed."""
    from provider.redact import register

    for entry in auth_file.auths.values():
        register(entry.auth, entry.password, entry.identitytoken)
        # A broken one is reported by find_entry, if the entry is ever used.
        with contextlib.suppress(binascii.Error, UnicodeDecodeError):
            register(b64decode(entry.auth, validate=True).decode("utf-8").partition(":")[2])


def normalize_host(host: str) -> str:
    """Hosts compare case-insensitively, and every Docker Hub alias is ``docker.io``."""
    host = host.lower()
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


def split_key(key: str) -> tuple[str, str]:
    """A config key as ``(host, path)``: scheme and a leading ``/v1`` or ``/v2`` dropped, path
    without trailing slash (``""`` for a host-wide key)."""
    for scheme in ("https://", "http://"):
        if key.lower().startswith(scheme):
            key = key[len(scheme) :]
            break
    host, slash, path = key.partition("/")
    path = (slash + path).rstrip("/")
    for api_prefix in ("/v1", "/v2"):
        if path == api_prefix or path.startswith(api_prefix + "/"):
            path = path[len(api_prefix) :]
            break
    return normalize_host(host), path


class FoundEntry(msgspec.Struct, frozen=True, kw_only=True):
    """The ``auths`` entry that applies to an image, with its key's path (``""``: whole host)."""

    key: str
    path: str
    username: str
    password: str
    identity_token_only: bool
    empty: bool

    def __repr__(self) -> str:
        return f"FoundEntry(key={self.key!r}, username={self.username!r}, password=<redacted>)"


def _decode_entry(key: str, entry: AuthEntry, source: str) -> tuple[str, str]:
    if entry.auth:
        try:
            decoded = b64decode(entry.auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise DockerConfigFileError(
                f"{source}: auths[{key!r}].auth is not base64 of 'username:password'"
            ) from None
        username, colon, password = decoded.partition(":")
        if not colon:
            raise DockerConfigFileError(f"{source}: auths[{key!r}].auth holds no 'username:password' pair")
        return username, password
    return entry.username, entry.password


def find_entry(auth_file: AuthFile, host: str, path: str, source: str) -> FoundEntry | None:
    """The most specific ``auths`` entry for an image at ``host`` and ``path``.

    A key with a path applies to that path and below, on whole path segments (as podman reads
    ``auth.json``); the longest such path wins over a host-wide key.
    """
    wanted_host = normalize_host(host)
    best: tuple[str, str, AuthEntry] | None = None
    for key, entry in auth_file.auths.items():
        key_host, key_path = split_key(key)
        if key_host != wanted_host:
            continue
        if key_path and not (path == key_path or path.startswith(key_path + "/")):
            continue
        if best is None or len(key_path) > len(best[1]):
            best = (key, key_path, entry)
    if best is None:
        return None
    key, key_path, entry = best
    username, password = _decode_entry(key, entry, source)
    return FoundEntry(
        key=key,
        path=key_path,
        username=username,
        password=password,
        # docker login keeps the username and blanks the password when the registry hands out an
        # identity token: {"auth": base64("user:"), "identitytoken": ...}.
        identity_token_only=bool(entry.identitytoken) and not password,
        empty=not (username or password or entry.identitytoken),
    )


def has_path_keys(auth_file: AuthFile, host: str) -> bool:
    """Whether some key for ``host`` is narrower than the whole host."""
    wanted_host = normalize_host(host)
    keys = (split_key(key) for key in auth_file.auths)
    return any(key_host == wanted_host and key_path for key_host, key_path in keys)


def helper_for(auth_file: AuthFile, host: str) -> str:
    """The credential helper ``credHelpers`` names for ``host``, or ``""``."""
    wanted_host = normalize_host(host)
    for key, helper in auth_file.cred_helpers.items():
        if split_key(key)[0] == wanted_host:
            return helper
    return ""


def server_url(host: str) -> str:
    """What docker hands a credential helper for ``host``."""
    return DOCKER_HUB_SERVER_URL if normalize_host(host) == DOCKER_HUB else host
