"""``render``: the kubelet's CredentialProviderConfig, generated from our own rules.

Our config is the one source of truth: ``matchImages`` is the union of the rules' ``match``
globs (minus those another one already covers), so the kubelet asks us for exactly the images
some rule serves. A rule without ``match`` answers every image, which ``matchImages`` cannot
express (``*`` is one host label, ports must be equal): rendering refuses it unless
``--partial`` says to leave it out. The document is built from typed structs
(``provider.kubeletconfig``) with the platform's paths (``provider.platforms``), and always
passes ``validate``. ``--rbac`` prints instead what the cluster needs for token mode: the
nodes' permission to request tokens for the audience.
"""

from __future__ import annotations

import argparse
import os

import msgspec

from provider import globs
from provider.commands import Streams
from provider.commands.common import (
    EXIT_CODES,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    load_provider_config,
)
from provider.config import ProviderConfig
from provider.kubeletconfig import (
    PLUGIN_V1,
    CredentialProvider,
    CredentialProviderConfig,
    TokenAttributes,
    encode,
    validate,
)
from provider.output import add_output_argument, emit_json
from provider.platforms import FLAVORS, PROVIDER_NAME, TOKEN_AUDIENCES, Platform

HELP = "print the kubelet's CredentialProviderConfig for a platform, generated from our rules"
EPILOG = (
    EXIT_CODES.format(
        ok="the document was printed on stdout",
        failure="our config cannot be rendered (a rule without 'match', a broken config); stderr says why",
    )
    + "\nflavours and their paths:\n"
    + "".join(
        f"  {p.name:<10} bin dir {p.bin_dir}\n{'':<13}config  {p.kubelet_config}\n" for p in FLAVORS.values()
    )
)
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
    items: list[ClusterRole | ClusterRoleBinding]


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
        backend = rule.__struct_config__.tag
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
    kept = []
    for position, text in enumerate(unique):
        glob = parsed[text]
        covered = False
        for other_position, other in enumerate(unique):
            wider = parsed[other]
            if other == text or glob is None or wider is None or not globs.covers(wider, glob):
                continue
            # Two globs covering each other: keep the first.
            covered = not globs.covers(glob, wider) or other_position < position
            if covered:
                break
        if not covered:
            kept.append(text)
    if not kept:
        raise RenderError("no rule has a 'match' glob: there is nothing for matchImages")
    return kept, warnings


def token_attributes(
    config: ProviderConfig, audience: str, extra_keys: list[str], cache_type: str
) -> tuple[TokenAttributes, list[str]]:
    from provider.backends import BACKENDS, BY_NAME

    warnings: list[str] = []
    keys: list[str] = []
    for rule in config.rules:
        keys += BY_NAME[rule.backend].token_annotations(rule)
    keys = list(dict.fromkeys(keys + extra_keys))
    if not any(BY_NAME[rule.backend].uses_token for rule in config.rules):
        users = ", ".join(spec.name for spec in BACKENDS if spec.uses_token)
        warnings.append(
            f"token mode, but no rule's backend uses the service account token (only {users} do): "
            "the kubelet would request a token on every pull for nothing"
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--flavor", choices=sorted(FLAVORS), help="the platform whose paths to use", default=None
    )
    parser.add_argument(
        "--format",
        choices=("yaml", "json"),
        help="document format (default: json where the platform's file is .json, else yaml)",
        default=None,
    )
    parser.add_argument(
        "--token-mode",
        action="store_true",
        default=False,
        help="have the kubelet send pods' service account tokens",
    )
    parser.add_argument(
        "--audience",
        help="token audience (default for eks: sts.amazonaws.com, aks: api://AzureADTokenExchange)",
        default=None,
    )
    parser.add_argument(
        "--annotation-key",
        action="append",
        default=[],
        metavar="KEY",
        help="a ServiceAccount annotation to pass to the plugin in token mode (repeatable)",
    )
    parser.add_argument(
        "--cache-type",
        choices=("ServiceAccount", "Token"),
        default="ServiceAccount",
        help="token mode: what the kubelet keys its cache by (default: ServiceAccount)",
    )
    parser.add_argument(
        "--name", default=PROVIDER_NAME, help=f"the executable's name (default: {PROVIDER_NAME})"
    )
    parser.add_argument(
        "--provider-config",
        metavar="PATH",
        help="where our config will be on the node (default: the platform's, see below)",
        default=None,
    )
    parser.add_argument(
        "--partial",
        action="store_true",
        default=False,
        help="leave out rules without 'match' instead of failing",
    )
    parser.add_argument(
        "--rbac",
        action="store_true",
        default=False,
        help="print the cluster RBAC that token mode needs (kubectl apply -f -) instead",
    )
    add_output_argument(parser)
    parser.epilog = EPILOG


def _audience(args: argparse.Namespace) -> str:
    audience: str | None = args.audience or TOKEN_AUDIENCES.get(args.flavor or "")
    if not audience:
        raise UsageError(f"token mode needs --audience (no default for flavor {args.flavor or 'none'})")
    return audience


def _render_rbac(args: argparse.Namespace, streams: Streams) -> int:
    items = rbac_objects(_audience(args))
    if (args.format or "yaml") == "json" or args.output == "json":
        emit_json(streams, ObjectList(items=items))
        return EXIT_OK
    import yaml

    documents = [msgspec.to_builtins(item) for item in items]
    streams.out(yaml.safe_dump_all(documents, sort_keys=False))
    return EXIT_OK


def _render(args: argparse.Namespace) -> Rendered:
    """The document for ``args``; ``UsageError`` or ``RenderError`` when there is none."""
    if args.flavor is None:
        raise UsageError("--flavor is required (one of: " + ", ".join(sorted(FLAVORS)) + ")")
    platform = FLAVORS[args.flavor]
    path, config = load_provider_config(args.config)
    provider_config = args.provider_config or platform.provider_config
    if not os.path.isabs(provider_config):
        raise UsageError(f"--provider-config: expected an absolute path on the node, got {provider_config!r}")
    token = None
    warnings: list[str] = []
    if args.token_mode:
        token, warnings = token_attributes(config, _audience(args), args.annotation_key, args.cache_type)
    elif args.annotation_key or args.audience:
        raise UsageError("--audience and --annotation-key only apply with --token-mode")
    document, more = build(
        config, platform, name=args.name, provider_config=provider_config, partial=args.partial, token=token
    )
    notes = _notes(platform, args.name, provider_config, path or "the embedded default config")
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
        provider_config=provider_config,
        kubelet_flags=_kubelet_flags(platform),
        notes=notes,
        warnings=warnings + more,
        config=document,
    )


def run(args: argparse.Namespace, streams: Streams) -> int:
    try:
        if args.rbac:
            return _render_rbac(args, streams)
        rendered = _render(args)
    except UsageError as exc:
        streams.stderr.write(f"registry-credential-provider: error: {exc} (see --help)\n")
        return EXIT_USAGE
    except RenderError as exc:
        streams.stderr.write(f"registry-credential-provider: error: {exc}\n")
        return EXIT_FAILURE
    for warning in rendered.warnings:
        streams.stderr.write(f"registry-credential-provider: warning: {warning}\n")
    if args.output == "json":
        emit_json(streams, rendered)
        return EXIT_OK
    fmt = args.format or ("json" if rendered.kubelet_config.endswith(".json") else "yaml")
    data = encode(rendered.config, fmt)
    if fmt == "yaml":
        notes = [*rendered.notes, "flags:        " + " ".join(rendered.kubelet_flags)]
        data = "".join(f"# {note}\n" for note in notes).encode() + data
    streams.stdout.write(data)
    streams.stdout.flush()
    return EXIT_OK
