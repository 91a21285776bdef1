"""The kubelet's CredentialProviderConfig, generated from our own rules.

Our config is the one source of truth: ``matchImages`` is the union of the rules' ``match``
globs (minus those another one already covers), so the kubelet asks us for exactly the images
some rule serves. A rule without ``match`` answers every image, which ``matchImages`` cannot
express (``*`` is one host label, ports must be equal): rendering refuses it unless
``partial`` says to leave it out. The document is built from typed structs
(``provider.kubeletconfig``) with the platform's paths (``provider.platforms``), and always
passes the kubelet's validation. ``rbac_objects`` is what the cluster needs for token mode:
the nodes' permission to request tokens for the audience.

The ``render`` command prints these; ``install`` merges our provider entry into the node's file.
"""

from __future__ import annotations

import os
from typing import Optional, Union

import msgspec

from provider import globs
from provider.config import ProviderConfig
from provider.kubeletconfig import (
    PLUGIN_V1,
    CredentialProvider,
    CredentialProviderConfig,
    TokenAttributes,
    validate,
)
from provider.platforms import PROVIDER_NAME, Platform

__all__ = [
    "RBAC_NAME",
    "ObjectList",
    "RenderError",
    "RenderOptions",
    "Rendered",
    "TokenMode",
    "build",
    "explicit_audience_reason",
    "match_images",
    "rbac_objects",
    "render",
    "token_attributes",
]

RBAC_NAME = "registry-credential-provider-token-audience"


class RenderError(Exception):
    """Our config cannot become a kubelet config (one line for stderr)."""


# --- RBAC for token mode (Kubernetes API objects, typed like the rest) --------------------------


class _Object(msgspec.Struct, kw_only=True, rename="camel"):
    pass


class ObjectMeta(_Object, kw_only=True):
    name: str


class PolicyRule(_Object, kw_only=True):
    api_groups: list[str]
    resources: list[str]
    verbs: list[str]


class ClusterRole(_Object, kw_only=True):
    api_version: str = "rbac.authorization.k8s.io/v1"
    kind: str = "ClusterRole"
    metadata: ObjectMeta
    rules: list[PolicyRule]


class RoleRef(_Object, kw_only=True):
    api_group: str = "rbac.authorization.k8s.io"
    kind: str = "ClusterRole"
    name: str


class Subject(_Object, kw_only=True):
    api_group: str = "rbac.authorization.k8s.io"
    kind: str = "Group"
    name: str


class ClusterRoleBinding(_Object, kw_only=True):
    api_version: str = "rbac.authorization.k8s.io/v1"
    kind: str = "ClusterRoleBinding"
    metadata: ObjectMeta
    role_ref: RoleRef
    subjects: list[Subject]


class ObjectList(_Object, kw_only=True):
    api_version: str = "v1"
    kind: str = "List"
    items: list[Union[ClusterRole, ClusterRoleBinding]]


def rbac_objects(audience: str) -> list[ClusterRole | ClusterRoleBinding]:
    """What ``ServiceAccountNodeAudienceRestriction`` (on since 1.32) needs before nodes may
    request service account tokens for ``audience``."""
    meta = ObjectMeta(name=RBAC_NAME)
    return [
        ClusterRole(
            metadata=meta,
            rules=[
                PolicyRule(
                    api_groups=[""], resources=[audience], verbs=["request-serviceaccounts-token-audience"]
                )
            ],
        ),
        ClusterRoleBinding(
            metadata=meta, role_ref=RoleRef(name=RBAC_NAME), subjects=[Subject(name="system:nodes")]
        ),
    ]


# --- the CredentialProviderConfig ---------------------------------------------------------------


class Rendered(msgspec.Struct, kw_only=True, rename="camel"):
    """``--output json``: the document and where its pieces go on the node."""

    flavor: str
    bin_dir: str
    kubelet_config: str
    kubelet_config_flag: str
    provider_config: str
    kubelet_flags: list[str]
    notes: list[str]
    warnings: list[str]
    config: CredentialProviderConfig


def match_images(config: ProviderConfig, *, partial: bool) -> tuple[list[str], list[str]]:
    """``matchImages`` for our rules, and warnings about what was left out."""
    warnings: list[str] = []
    texts: list[str] = []
    for index, rule in enumerate(config.rules):
        backend = rule.backend
        if rule.match is None:
            message = (
                f"rules[{index}] ({backend}) has no 'match': it answers every image, but the kubelet's "
                "matchImages cannot say 'every image' ('*' is one host label and ports must be equal)"
            )
            if not partial:
                raise RenderError(
                    message + "; give the rule a 'match' list of the registries it serves, or pass --partial "
                    "to render the other rules only"
                )
            warnings.append(
                message + "; left out (--partial): the kubelet never asks for images only it serves"
            )
            continue
        texts += rule.match
    unique = list(dict.fromkeys(texts))
    parsed = {text: globs.parse(text) for text in unique}
    by_host: globs.GlobIndex[int] = globs.GlobIndex()
    for position, text in enumerate(unique):
        glob = parsed[text]
        if glob is not None:
            by_host.add(glob, position)
    kept = []
    for position, text in enumerate(unique):
        glob = parsed[text]
        covered = glob is not None and any(
            # Two globs covering each other: keep the first.
            not globs.covers(glob, wider) or other_position < position
            for wider, other_position in by_host.covering(glob)
            if wider.text != text
        )
        if not covered:
            kept.append(text)
    if not kept:
        raise RenderError("no rule has a 'match' glob: there is nothing for matchImages")
    return kept, warnings


# Backends whose token audience is the operator's choice (Vault's bound_audiences, or none at
# all when only the token's claims are read): a platform's federation audience would mint
# tokens valid at that cloud's STS for pulls that never go there.
OWN_AUDIENCE_BACKENDS = ("vault", "files")


def explicit_audience_reason(config: ProviderConfig) -> str | None:
    """Why token mode needs an explicit audience for ``config`` (the rules that choose their
    own), or None when a platform's default audience fits every rule."""
    rules = [
        f"rules[{index}] ({rule.backend}{', an identity rule' if rule.identity_rule else ''})"
        for index, rule in enumerate(config.rules)
        if rule.backend in OWN_AUDIENCE_BACKENDS or rule.identity_rule
    ]
    if not rules:
        return None
    return (
        f"{', '.join(rules[:3])}{' ...' if len(rules) > 3 else ''} read the service account token for "
        "an audience only you can name (for vault, the role's bound_audiences): pass --audience"
    )


def token_attributes(
    config: ProviderConfig, audience: str, extra_keys: list[str], cache_type: str
) -> tuple[TokenAttributes, list[str]]:
    """Token mode's ``tokenAttributes`` for our rules (the annotations they read, and
    ``extra_keys``), and warnings about it."""
    warnings: list[str] = []
    from provider.backends import BACKENDS, BY_NAME

    keys: list[str] = []
    for rule in config.rules:
        keys += BY_NAME[rule.backend].token_annotations(rule)
        keys += sorted(rule.service_account_annotations or {})  # an identity rule's annotations
    keys = list(dict.fromkeys(keys + extra_keys))
    if not any(BY_NAME[rule.backend].uses_token or rule.identity_rule for rule in config.rules):
        users = ", ".join(spec.name for spec in BACKENDS if spec.uses_token)
        warnings.append(
            f"token mode, but no rule's backend uses the service account token (only {users} do) "
            "and no rule matches on namespaces or service accounts: "
            "the kubelet would request a token on every pull for nothing"
        )
    if cache_type != config.cache.service_account_cache_type:
        # Our disk cache must key answers at least as finely as the kubelet's cache does.
        warnings.append(
            f"cacheType {cache_type} but our config's cache.serviceAccountCacheType is "
            f"{config.cache.service_account_cache_type}: set both to the same value"
        )
    attributes = TokenAttributes(
        service_account_token_audience=audience,
        cache_type=cache_type,
        require_service_account=False,
        optional_service_account_annotation_keys=keys or None,
    )
    return attributes, warnings


def build(
    config: ProviderConfig,
    platform: Platform,
    *,
    name: str,
    provider_config: str,
    partial: bool,
    token: TokenAttributes | None = None,
) -> tuple[CredentialProviderConfig, list[str]]:
    """The kubelet's config with our one provider in it, and warnings about what was left out;
    ``RenderError`` when our config cannot become one."""
    images, warnings = match_images(config, partial=partial)
    provider = CredentialProvider(
        name=name,
        match_images=images,
        default_cache_duration=config.default_cache_duration,
        api_version=PLUGIN_V1,
        args=["get-credentials", "--config", provider_config],
        token_attributes=token,
    )
    document = CredentialProviderConfig.v1([provider])
    problems = validate([provider])
    if problems:  # our config's own checks should make this impossible
        raise RenderError(
            "the rendered config would not pass the kubelet's validation: " + "; ".join(problems)
        )
    return document, warnings


def _notes(platform: Platform, name: str, provider_config: str, config_source: str) -> list[str]:
    return [
        f"{platform.title}: generated by '{PROVIDER_NAME} render --flavor {platform.name}' "
        f"from {config_source}",
        f"this file:    {platform.kubelet_config}",
        f"executable:   {os.path.join(platform.bin_dir, name)}",
        f"our config:   {provider_config} (a copy of {config_source})",
        f"kubelet:      {platform.flags}",
    ]


def _kubelet_flags(platform: Platform) -> list[str]:
    return [
        f"--image-credential-provider-config={platform.kubelet_config_flag}",
        f"--image-credential-provider-bin-dir={platform.bin_dir}",
    ]


class TokenMode(msgspec.Struct, frozen=True, kw_only=True):
    """Token mode: the audience the kubelet requests tokens for, the ServiceAccount annotations
    it passes beside our rules' own (``annotation_keys``), and what it keys its cache by."""

    audience: str
    annotation_keys: list[str] = msgspec.field(default_factory=list)
    cache_type: str = "ServiceAccount"


class RenderOptions(msgspec.Struct, frozen=True, kw_only=True):
    """What to render: our ``config`` (read from ``config_source``, a path or a description),
    for ``platform``, with our config at ``provider_config`` (an absolute path on the node) and
    the executable named ``name``; ``partial`` leaves out rules without ``match``."""

    platform: Platform
    config: ProviderConfig
    config_source: str
    provider_config: str
    name: str = PROVIDER_NAME
    partial: bool = False
    token: Optional[TokenMode] = None


def render(options: RenderOptions) -> Rendered:
    """The document and where its pieces go on the node; ``RenderError`` when there is none."""
    platform = options.platform
    token = None
    warnings: list[str] = []
    if options.token is not None:
        token, warnings = token_attributes(
            options.config, options.token.audience, options.token.annotation_keys, options.token.cache_type
        )
    document, more = build(
        options.config,
        platform,
        name=options.name,
        provider_config=options.provider_config,
        partial=options.partial,
        token=token,
    )
    notes = _notes(platform, options.name, options.provider_config, options.config_source)
    if token is not None:
        audience = token.service_account_token_audience
        notes.append(
            f"token mode: the cluster must let nodes request tokens for {audience!r}: "
            f"'{PROVIDER_NAME} render --rbac --audience {audience}'"
        )
    return Rendered(
        flavor=platform.name,
        bin_dir=platform.bin_dir,
        kubelet_config=platform.kubelet_config,
        kubelet_config_flag=platform.kubelet_config_flag,
        provider_config=options.provider_config,
        kubelet_flags=_kubelet_flags(platform),
        notes=notes,
        warnings=warnings + more,
        config=document,
    )
