"""What every backend is made of, receives and returns.

A backend is one module under ``provider/backends/`` that exports a ``SPEC`` (a
``BackendSpec``): its rule struct (a tagged ``RuleBase`` subclass, the rule's ``backend``
name) and that rule's checks, the class that answers lookups, its doctor probe, the
ServiceAccount annotations it reads in token mode, the hosts it claims in the embedded default
config, and why it cannot run on this node. ``provider.backends.BACKENDS`` lists the specs;
everything else (the config's rule union, the backend names, doctor's probes, the embedded
default, render's token annotations) is derived from that table.

A backend class has two methods, ``get_credentials(lookup) -> Answer`` and ``cache_key``.
It imports its SDK inside ``get_credentials`` (or a helper it calls), never at module level:
the plugin is a short-lived process and every import is paid on every pull.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal, NamedTuple, Optional, Protocol

import msgspec

from provider.deadline import Deadline
from provider.kubelet import CredentialProviderRequest

__all__ = [
    "Answer",
    "Backend",
    "BackendSpec",
    "CloudRule",
    "Credential",
    "Finding",
    "Lookup",
    "RuleBase",
]


class RuleBase(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel", tag_field="backend", frozen=True
):
    """Fields every rule has.

    ``match``: kubelet globs this rule answers, paths on whole segments (absent: every image).
    ``cacheDuration``: how long the kubelet may keep our answer, overriding what the backend
    would suggest (it is still capped by the credential's own expiry).

    Whose pulls it answers (token mode; absent: everyone's). A rule with any of these is an
    *identity rule*: it answers only requests carrying a service account token whose
    ``kubernetes.io`` claims satisfy every field given, and never a request without a token.
    ``namespaces``: the pod's namespace is one of these. ``serviceAccounts``: the pod's service
    account is one of these ``<namespace>/<name>`` pairs. ``serviceAccountAnnotations``: the
    ServiceAccount carries each of these annotations with exactly this value (the kubelet
    passes only the keys its ``tokenAttributes`` list; ``render`` lists these).
    """

    match: Optional[list[str]] = None
    cache_duration: Optional[str] = None
    namespaces: Optional[list[str]] = None
    service_accounts: Optional[list[str]] = None
    service_account_annotations: Optional[dict[str, str]] = None

    @property
    def identity_rule(self) -> bool:
        """Whether the rule answers only some pods' pulls (see the class docstring)."""
        return (
            self.namespaces is not None
            or self.service_accounts is not None
            or self.service_account_annotations is not None
        )

    def selects(self, namespace: str, name: str, annotations: Mapping[str, str]) -> bool:
        """Whether the rule answers a pod of service account ``namespace``/``name`` (as the
        token's claims say; empty strings for a request without a usable token) whose
        ServiceAccount has ``annotations``. A rule without identity fields selects everyone;
        an identity rule never selects a request without claims."""
        if not self.identity_rule:
            return True
        if not namespace or not name:
            return False
        if self.namespaces is not None and namespace not in self.namespaces:
            return False
        if self.service_accounts is not None and f"{namespace}/{name}" not in self.service_accounts:
            return False
        wanted = self.service_account_annotations or {}
        return all(annotations.get(key) == value for key, value in wanted.items())

    @property
    def backend(self) -> str:
        """The rule's ``backend`` name (its tag)."""
        name: str = self.__struct_config__.tag  # type: ignore[assignment]
        return name


class CloudRule(RuleBase, frozen=True):
    """Fields every cloud backend's rule has.

    ``onNoIdentity``: what happens when this node has no identity in the backend's cloud (not
    on that cloud, no SDK in this build, the backend not built): ``fail`` the image, or let
    the ``next`` matching rule answer, with one warning. The embedded default uses ``next``,
    so a cloud host is still served from the node's docker config files off that cloud.
    """

    on_no_identity: Literal["fail", "next"] = "fail"


class Credential(msgspec.Struct, frozen=True, kw_only=True):
    """A username and password for one registry.

    ``expires_at``: Unix time after which it is useless (None: unknown or static).
    ``path_scope``: when set (``/team-a``), the credential is only meant for images under that
    path of the host, so the response key and the kubelet's cache are narrowed to it.
    """

    username: str
    password: str
    expires_at: Optional[float] = None
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

    credential: Optional[Credential]
    cache_seconds: Optional[float] = None
    per_image: bool = False
    cacheable: bool = False
    keep_seconds: Optional[float] = None
    depends_on: tuple[str, ...] = ()


class Lookup(msgspec.Struct, frozen=True, kw_only=True):
    """One question to a backend: credentials for ``image`` (``host`` and ``path`` as the kubelet
    parses them) under ``rule``, before ``deadline``."""

    request: CredentialProviderRequest
    image: str
    host: str
    path: str
    rule: RuleBase
    deadline: Deadline
    environ: Mapping[str, str]
    warn: Callable[[str], None]
    now: Callable[[], float]


class Backend(Protocol):
    """Turns a lookup into an answer; raises a ``ProviderError`` subclass on failure, and
    ``NoIdentityError`` (quickly) when this node has no identity for it at all.

    ``cache_key`` names everything besides the backend, the registry host and the caller's
    identity (node, or the pod's service account, which the cache adds itself) that changes the
    answer for this lookup: a region, a role, a file's path and version... None means the
    answer must not come from the disk cache. It must be cheap (no network, no SDK import):
    it runs before every cache lookup.
    """

    def get_credentials(self, lookup: Lookup) -> Answer: ...

    def cache_key(self, lookup: Lookup) -> tuple[str, ...] | None: ...


class Finding(NamedTuple):
    """One line of ``doctor``'s report about a backend: ``ok``, ``warn`` or ``fail``, and why;
    ``date``: a server asked on the way and its Date header, for ``doctor``'s clock check."""

    status: Literal["ok", "warn", "fail"]
    detail: str
    date: Optional[tuple[str, str]] = None


def _no_checks(path: str, rule: RuleBase) -> None:
    """A rule with nothing to check beyond its types."""


def _nothing_missing(environ: Mapping[str, str]) -> str | None:
    return None


def _no_annotations(rule: RuleBase) -> tuple[str, ...]:
    return ()


class BackendSpec(NamedTuple):
    """Everything about one backend, exported by its module as ``SPEC``.

    ``name``: the rule's ``backend`` value. ``title``: what it serves, for people.
    ``rule``: its rule struct. ``backend``: the class answering lookups (None: named in configs
    but not built yet). ``check_rule(path, rule)``: what the rule's types cannot say; raises
    ``ConfigError`` naming ``path``. ``doctor(rule, environ, timeout)``: findings about this
    node for the rule, bounded by ``timeout``. ``token_annotations(rule)``: the ServiceAccount
    annotations the rule reads (the kubelet passes only the keys its ``tokenAttributes`` list);
    ``uses_token``: it acts on the pod's service account token. ``default_globs``: hosts it
    claims in the embedded default. ``unavailable(environ)``: why it cannot run here (its SDK
    is missing from this build...), or None.
    """

    name: str
    title: str
    rule: type[RuleBase]
    backend: Optional[Callable[[], Backend]]
    doctor: Callable[[RuleBase, Mapping[str, str], float], list[Finding]]
    check_rule: Callable[[str, RuleBase], None] = _no_checks
    token_annotations: Callable[[RuleBase], tuple[str, ...]] = _no_annotations
    uses_token: bool = False
    default_globs: tuple[str, ...] = ()
    unavailable: Callable[[Mapping[str, str]], Optional[str]] = _nothing_missing
