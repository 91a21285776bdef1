"""What every backend receives and returns.

A backend is a class with one method, ``get_credentials(lookup) -> Answer``. It imports its
SDK inside that method (or a helper it calls), never at module level: the plugin is a
short-lived process and every import is paid on every pull.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import msgspec

from provider.config import Rule
from provider.deadline import Deadline
from provider.kubelet import CredentialProviderRequest


class Credential(msgspec.Struct, frozen=True, kw_only=True):
    """A username and password for one registry.

    ``expires_at``: Unix time after which it is useless (None: unknown or static).
    ``path_scope``: when set (``/team-a``), the credential is only meant for images under that
    path of the host, so the response key and the kubelet's cache are narrowed to it.
    """

    username: str
    password: str
    expires_at: float | None = None
    path_scope: str = ""

    def __repr__(self) -> str:
        return (
            f"Credential(username={self.username!r}, password=<redacted>, "
            f"expires_at={self.expires_at!r}, path_scope={self.path_scope!r})"
        )


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """A backend's result: a credential or None (pull anonymously).

    ``cache_seconds``: how long the backend suggests the kubelet keep this answer (None: the
    rule's or the config's default). ``per_image``: other images of the same host may get a
    different answer, so the kubelet must cache per image, not per registry.
    ``cacheable``: the credential came from somewhere slow or rate-limited (a cloud token API,
    a credential helper) and may be kept in our disk cache until ``credential.expires_at``, or
    for ``keep_seconds`` when it has no expiry of its own. ``depends_on``: files whose change
    makes this answer obsolete.
    """

    credential: Credential | None
    cache_seconds: float | None = None
    per_image: bool = False
    cacheable: bool = False
    keep_seconds: float | None = None
    depends_on: tuple[str, ...] = ()


class Lookup(msgspec.Struct, frozen=True, kw_only=True):
    """One question to a backend: credentials for ``image`` (``host`` and ``path`` as the kubelet
    parses them) under ``rule``, before ``deadline``."""

    request: CredentialProviderRequest
    image: str
    host: str
    path: str
    rule: Rule
    deadline: Deadline
    environ: Mapping[str, str]
    warn: Callable[[str], None]
    now: Callable[[], float]


class Backend(Protocol):
    """Turns a lookup into an answer; raises a ``ProviderError`` subclass on failure.

    ``cache_key`` names everything besides the backend, the registry host and the caller's
    identity (node, or the pod's service account, which the cache adds itself) that changes the
    answer for this lookup: a region, a role, a file's path and version... None means the
    answer must not come from the disk cache. It must be cheap (no network, no SDK import):
    it runs before every cache lookup.
    """

    def get_credentials(self, lookup: Lookup) -> Answer: ...

    def cache_key(self, lookup: Lookup) -> tuple[str, ...] | None: ...
