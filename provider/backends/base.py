"""What every backend receives and returns.

A backend is a class with one method, ``get_credentials(lookup) -> Answer``. It imports its
SDK inside that method (or a helper it calls), never at module level: the plugin is a
short-lived process and every import is paid on every pull.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from provider.config import Rule
from provider.deadline import Deadline
from provider.kubelet import CredentialProviderRequest


@dataclass(frozen=True)
class Credential:
    """A username and password for one registry.

    ``expires_at``: Unix time after which it is useless (None: unknown or static).
    ``path_scope``: when set (``/team-a``), the credential is only meant for images under that
    path of the host, so the response key and the kubelet's cache are narrowed to it.
    """

    username: str
    password: str = field(repr=False)
    expires_at: float | None = None
    path_scope: str = ""


@dataclass(frozen=True)
class Answer:
    """A backend's result: a credential or None (pull anonymously).

    ``cache_seconds``: how long the backend suggests the kubelet keep this answer (None: the
    rule's or the config's default). ``per_image``: other images of the same host may get a
    different answer, so the kubelet must cache per image, not per registry.
    """

    credential: Credential | None
    cache_seconds: float | None = None
    per_image: bool = False


@dataclass(frozen=True)
class Lookup:
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
    """Turns a lookup into an answer; raises a ``ProviderError`` subclass on failure."""

    def get_credentials(self, lookup: Lookup) -> Answer: ...
