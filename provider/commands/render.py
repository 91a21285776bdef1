"""``render``: the kubelet's CredentialProviderConfig, generated from our own rules.

The document is ``provider.ops.rendering``'s; this command turns the options into its
inputs (the platform, our config, token mode's audience) and prints the document, its JSON
description, or with ``--rbac`` what the cluster needs for token mode.
"""

from __future__ import annotations

import argparse
import os

import msgspec

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
from provider.kubeletconfig import encode
from provider.ops.rendering import (
    ObjectList,
    Rendered,
    RenderError,
    RenderOptions,
    TokenMode,
    explicit_audience_reason,
    rbac_objects,
    render,
)
from provider.output import add_output_argument, emit_json
from provider.platforms import FLAVORS, PROVIDER_NAME, TOKEN_AUDIENCES

HELP = "print the kubelet's CredentialProviderConfig for a platform, generated from our rules"
EPILOG = (
    EXIT_CODES.format(
        ok="the document was printed on stdout",
        failure="our config cannot be rendered (a rule without 'match', a broken config); stderr says why",
    )
    + "\nflavours and their paths:\n"
    + "".join(
        f"  {p.name:<10} bin dir {p.bin_dir}\n{'':<13}config  {p.kubelet_config}\n"
        f"{'':<13}ours    {p.provider_config}\n"
        for p in FLAVORS.values()
    )
)


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
        help=(
            "token audience (default for eks: sts.amazonaws.com, aks: api://AzureADTokenExchange; "
            "required with vault, files or identity rules)"
        ),
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
        help=(
            "token mode: what the kubelet keys its cache by: ServiceAccount shares an answer across a "
            "service account's pods, Token is per pod (default: ServiceAccount; match our "
            "cache.serviceAccountCacheType)"
        ),
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
        "--default-config",
        action="store_true",
        default=False,
        help="print the embedded default config (JSON that --config accepts) instead",
    )
    parser.add_argument(
        "--rbac",
        action="store_true",
        default=False,
        help="print the cluster RBAC that token mode needs (kubectl apply -f -) instead",
    )
    add_output_argument(parser)
    parser.epilog = EPILOG


def _audience(args: argparse.Namespace, config: ProviderConfig) -> str:
    """``--audience``, else the flavour's default when it fits every rule of ``config``."""
    if args.audience:
        given: str = args.audience
        return given
    default = TOKEN_AUDIENCES.get(args.flavor or "")
    if not default:
        raise UsageError(f"token mode needs --audience (no default for flavor {args.flavor or 'none'})")
    reason = explicit_audience_reason(config)
    if reason is not None:
        raise UsageError(
            f"token mode needs --audience: {reason} (the {args.flavor} default {default} does not fit)"
        )
    return default


def _render_rbac(args: argparse.Namespace, streams: Streams) -> int:
    audience = args.audience or _audience(args, load_provider_config(args.config)[1])
    items = rbac_objects(audience)
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
    if args.token_mode:
        token = TokenMode(
            audience=_audience(args, config),
            annotation_keys=list(args.annotation_key),
            cache_type=args.cache_type,
        )
    elif args.annotation_key or args.audience:
        raise UsageError("--audience and --annotation-key only apply with --token-mode")
    options = RenderOptions(
        platform=platform,
        config=config,
        config_source=path or "the embedded default config",
        provider_config=provider_config,
        name=args.name,
        partial=args.partial,
        token=token,
    )
    return render(options)


def run(args: argparse.Namespace, streams: Streams) -> int:
    if args.default_config:
        from provider.ops.configdoc import default_config_json

        streams.out(default_config_json())
        return EXIT_OK
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
