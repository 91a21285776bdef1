"""Checks of single config fields that the types alone cannot express; each raises a
``ConfigError`` naming the field's path. Shared by our config and each backend's rule checks."""

from __future__ import annotations

import os

from provider import goduration
from provider.errors import ConfigError

__all__ = [
    "check_absolute_path",
    "check_annotation_key",
    "check_duration",
    "check_endpoint",
    "is_dns_label",
    "is_dns_subdomain",
]


def check_duration(path: str, value: str, *, maximum: float | None = None, positive: bool = False) -> None:
    """A Go duration such as ``30s``; non-negative (``positive``: above zero), at most ``maximum``."""
    try:
        seconds = goduration.parse_seconds(value)
    except ValueError:
        raise ConfigError(
            f"{path}: expected a Go duration such as '30s', '5m' or '12h', got {value!r}"
        ) from None
    if seconds < 0 or (positive and seconds == 0):
        kind = "positive" if positive else "non-negative"
        raise ConfigError(f"{path}: expected a {kind} duration, got {value!r}")
    if maximum is not None and seconds > maximum:
        raise ConfigError(f"{path}: at most {maximum:g}s (the kubelet kills plugins at 60s), got {value!r}")


# Linux's PATH_MAX, less the terminating NUL.
MAX_PATH_BYTES = 4095


def check_absolute_path(path: str, value: str) -> None:
    """An absolute path the kernel can take: no NUL byte, at most ``MAX_PATH_BYTES`` long."""
    if "\0" in value:
        raise ConfigError(f"{path}: expected an absolute path, got one with a NUL byte")
    if len(value.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
        raise ConfigError(
            f"{path}: expected a path of at most {MAX_PATH_BYTES} bytes, got {len(value)} characters"
        )
    if not os.path.isabs(value):
        raise ConfigError(f"{path}: expected an absolute path, got {value!r}")


def check_endpoint(path: str, endpoint: str, example: str) -> None:
    """An https base URL (http only on loopback, for tests and local proxies), no path or query."""
    from urllib.parse import urlsplit

    url = urlsplit("")
    try:
        url = urlsplit(endpoint)
        host = url.hostname or ""
        url.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        host = ""
    if not host or url.path not in ("", "/") or url.query or url.fragment or url.username:
        raise ConfigError(f"{path}: expected a URL such as {example!r}, got {endpoint!r}")
    loopback = host in ("127.0.0.1", "::1", "localhost")
    if url.scheme != "https" and not (url.scheme == "http" and loopback):
        raise ConfigError(f"{path}: expected an https:// URL (http only on loopback), got {endpoint!r}")


def check_annotation_key(path: str, key: str, example: str) -> None:
    """A Kubernetes qualified name, as the kubelet requires of tokenAttributes annotation keys."""
    prefix, slash, name = key.rpartition("/")
    name_ok = 0 < len(name) <= 63 and name[0].isalnum() and name[-1].isalnum()
    name_ok = name_ok and all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)
    labels = prefix.split(".")
    prefix_ok = not slash or (
        0 < len(prefix) <= 253
        and all(label and label[0].isalnum() and label[-1].isalnum() for label in labels)
        and all(c.isascii() and (c.islower() or c.isdigit() or c in "-.") for c in prefix)
    )
    if not (name_ok and prefix_ok):
        raise ConfigError(f"{path}: expected an annotation key such as {example!r}, got {key!r}")


def is_dns_label(value: str) -> bool:
    """An RFC 1123 label, as Kubernetes requires of namespace names: 1-63 of ``[a-z0-9-]``,
    starting and ending with a letter or digit."""
    return (
        0 < len(value) <= 63
        and value[0].isalnum()
        and value[-1].isalnum()
        and all(c.isascii() and (c.islower() or c.isdigit() or c == "-") for c in value)
    )


def is_dns_subdomain(value: str) -> bool:
    """An RFC 1123 subdomain, as Kubernetes requires of service account names: at most 253
    characters, dot-separated labels (so no ``/``, no ``..``, never ``.`` alone)."""
    return 0 < len(value) <= 253 and all(is_dns_label(label) for label in value.split("."))
