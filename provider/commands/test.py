"""``test IMAGE``: what the kubelet would get for an image, and how the answer was reached.

The image is normalized as the kubelet does (tag and digest stripped, ``docker.io/library/``
for short names), the request built with the chosen API version (and, for token mode, a
service account token and annotations), and the full path run: rule choice, backend, disk
cache. The report names the rule and backend, cache hit or miss, the response (passwords
redacted unless ``--show-secrets``), its cacheDuration and the time taken. ``test -`` takes a
raw CredentialProviderRequest on stdin instead. With ``--kubelet-config`` it also says whether
the kubelet would run the plugin for this image at all.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, Optional

import msgspec

from provider.commands import Streams
from provider.commands.common import (
    EXIT_CODES,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    load_provider_config,
    timeout_seconds,
)
from provider.errors import ProviderError
from provider.imageref import ImageRefError, normalize
from provider.kubelet import API_VERSIONS, CredentialProviderRequest, decode_request, request_bytes
from provider.matching import urls_match
from provider.ops.validation import missing_file_warning, missing_files
from provider.output import add_output_argument, emit_json, paint, table, use_colour

HELP = "show what the kubelet would get for an image: rule, backend, cache, response (secrets redacted)"
EPILOG = (
    EXIT_CODES.format(
        ok="the plugin answered (empty auth too: the kubelet then pulls anonymously)",
        failure="the plugin would fail for this image (or the kubelet would not run it); the report says why",
    )
    + "\nIMAGE '-' reads a raw CredentialProviderRequest on stdin.\n"
)
REDACTED = "<redacted>"
PROVIDER_NAME = "registry-credential-provider"


class RuleInfo(msgspec.Struct, kw_only=True):
    index: int
    backend: str
    glob: Optional[str]


class KubeletView(msgspec.Struct, kw_only=True, rename="camel"):
    """Whether the kubelet's own config sends this image to us."""

    provider: str
    runs_plugin: bool
    match_image: Optional[str]
    api_version: str
    token_mode: bool


class TestReport(msgspec.Struct, kw_only=True, rename="camel"):
    """``--output json``."""

    ok: bool
    reference: str
    image: str
    api_version: str
    service_account: Optional[str] = None
    token: Optional[dict[str, Any]] = None
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    kubelet: Optional[KubeletView] = None
    rule: Optional[RuleInfo] = None
    cache: str = "off"
    path: Optional[str] = None  # "fast": the disk cache's fast path served it, "full": the full path
    error: Optional[str] = None
    response: Optional[dict[str, Any]] = None
    elapsed_ms: float = 0.0
    warnings: list[str] = msgspec.field(default_factory=list)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "image", metavar="IMAGE", help="an image reference (nginx:1.27, reg:5000/a/b@sha256:...) or -"
    )
    parser.add_argument(
        "--api-version",
        choices=("v1", "v1beta1", "v1alpha1"),
        help="the request's API version (default: the kubelet config's, else v1)",
        default=None,
    )
    parser.add_argument(
        "--service-account",
        metavar="NS/NAME",
        help="token mode: the pod's service account (needs --token-file)",
        default=None,
    )
    parser.add_argument(
        "--annotation",
        action="append",
        default=[],
        metavar="K=V",
        help="token mode: a service account annotation the kubelet would pass (repeatable)",
    )
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        help="token mode: a service account token (a JWT) to send",
        default=None,
    )
    parser.add_argument(
        "--show-secrets", action="store_true", default=False, help="print passwords instead of <redacted>"
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        default=False,
        help="bypass the disk cache (neither read nor write it)",
    )
    parser.add_argument(
        "--kubelet-config",
        metavar="FILE|DIR",
        help="also check that the kubelet's matchImages send this image to the plugin",
        default=None,
    )
    parser.add_argument("--name", default=PROVIDER_NAME, help="our provider's name in the kubelet config")
    add_output_argument(parser)
    parser.epilog = EPILOG


def _token_claims(token: str) -> dict[str, Any]:
    """The few JWT claims worth showing (never the token itself); {} if it is no JWT."""
    from provider.identity import jwt_claims

    claims = jwt_claims(token)
    if claims is None:
        return {"bytes": len(token), "jwt": False}
    shown: dict[str, Any] = {"bytes": len(token), "jwt": True}
    for claim in ("sub", "aud", "exp", "iss"):
        if claim in claims:
            shown[claim] = claims[claim]
    return shown


def _read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read(1024 * 1024).strip()
    except OSError as exc:
        raise UsageError(f"--token-file: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"--token-file: {path} is not UTF-8 text") from None
    if not token:
        raise UsageError(f"--token-file: {path} is empty")
    return token


def _annotations(values: list[str]) -> dict[str, str]:
    annotations: dict[str, str] = {}
    for value in values:
        key, equals, text = value.partition("=")
        if not equals or not key:
            raise UsageError(f"--annotation: expected KEY=VALUE, got {value!r}")
        annotations[key] = text
    return annotations


class _Kubelet(msgspec.Struct):
    view: KubeletView
    problem: Optional[str]


def _kubelet_view(path: str, name: str, image: str) -> _Kubelet:
    from provider.kubeletconfig import KubeletConfigError, load

    try:
        loaded = load(path)
    except KubeletConfigError as exc:
        raise UsageError(f"--kubelet-config: {exc}") from None
    for item in loaded.providers:
        if item.provider.name != name:
            continue
        provider = item.provider
        glob = next((g for g in provider.match_images or () if urls_match(g, image)), None)
        view = KubeletView(
            provider=name,
            runs_plugin=glob is not None,
            match_image=glob,
            api_version=provider.api_version,
            token_mode=provider.token_attributes is not None,
        )
        problem = None
        if glob is None:
            problem = (
                f"no matchImages entry of {name} matches {image}: the kubelet would not run the plugin "
                "for this image (see 'validate')"
            )
        return _Kubelet(view=view, problem=problem)
    raise UsageError(f"--kubelet-config: no provider named {name!r} in {path} (see --name)")


def _redacted(response: dict[str, Any], show: bool) -> dict[str, Any]:
    if show:
        return response
    auth = {key: {**entry, "password": REDACTED} for key, entry in (response.get("auth") or {}).items()}
    return {**response, "auth": auth}


def _stdin_request(
    args: argparse.Namespace, streams: Streams, report: TestReport
) -> tuple[bytes, CredentialProviderRequest]:
    """``test -``: the request exactly as given, with a word where the kubelet would differ."""
    if args.api_version or args.annotation or args.token_file or args.service_account:
        raise UsageError(
            "IMAGE '-' takes the whole request from stdin; drop the token mode and version options"
        )
    from provider.kubelet import MAX_REQUEST_BYTES

    data = streams.stdin.read(MAX_REQUEST_BYTES + 1)
    request = decode_request(data)
    report.api_version = request.api_version
    report.image = request.image
    report.annotations = dict(request.service_account_annotations)
    if request.service_account_token:
        report.token = _token_claims(request.service_account_token)
    try:
        normalized = normalize(request.image).repository
    except ImageRefError as exc:
        report.warnings.append(f"the kubelet would never send this image: {exc}")
    else:
        if normalized != request.image:
            report.warnings.append(
                f"the kubelet would send {normalized!r} for this image, not {request.image!r}"
            )
    return data, request


def _service_account(args: argparse.Namespace, report: TestReport) -> str:
    """The token for ``--token-file`` (checked against ``--service-account``), or ""."""
    expected_subject = None
    if args.service_account:
        namespace, slash, name = args.service_account.partition("/")
        if not slash or not namespace or not name or "/" in name:
            raise UsageError(f"--service-account: expected NAMESPACE/NAME, got {args.service_account!r}")
        if not args.token_file:
            raise UsageError(
                "--service-account needs --token-file: in token mode the kubelet always sends a token"
            )
        report.service_account = args.service_account
        expected_subject = f"system:serviceaccount:{namespace}:{name}"
    if not args.token_file:
        return ""
    token = _read_token(args.token_file)
    report.token = _token_claims(token)
    subject = report.token.get("sub")
    if expected_subject and subject and subject != expected_subject:
        report.warnings.append(
            f"the token's subject is {subject!r}, not the service account {args.service_account!r}"
        )
    return token


def _request(
    args: argparse.Namespace, streams: Streams, report: TestReport, api_version: str
) -> tuple[bytes, CredentialProviderRequest]:
    """The request's bytes as the kubelet would write them (from stdin for '-'), and the request."""
    if args.image == "-":
        return _stdin_request(args, streams, report)
    report.image = _normalized(args.image)
    report.api_version = api_version
    annotations = _annotations(args.annotation)
    token = _service_account(args, report)
    if (token or annotations) and api_version != API_VERSIONS[0]:
        raise UsageError("a service account token and annotations exist only in API version v1 requests")
    report.annotations = annotations
    data = request_bytes(api_version, report.image, token, annotations)
    return data, decode_request(data)


def _normalized(image: str) -> str:
    try:
        return normalize(image).repository
    except ImageRefError as exc:
        raise UsageError(f"IMAGE: {exc}") from None


def _run(args: argparse.Namespace, streams: Streams, report: TestReport) -> None:
    from provider import core
    from provider.fullpath import find_rule

    path, config = load_provider_config(args.config)
    kubelet: _Kubelet | None = None
    if args.kubelet_config and args.image != "-":
        kubelet = _kubelet_view(args.kubelet_config, args.name, _normalized(args.image))
    version = args.api_version or (kubelet.view.api_version.rsplit("/", 1)[-1] if kubelet else "v1")
    api_version = f"credentialprovider.kubelet.k8s.io/{version}"
    if api_version not in API_VERSIONS:
        api_version = API_VERSIONS[0]
    data, request = _request(args, streams, report, api_version)
    if kubelet is not None:
        report.kubelet = kubelet.view
        if kubelet.view.token_mode and not request.service_account_token:
            report.warnings.append("the kubelet is in token mode: it would also send a token (--token-file)")
    match = find_rule(config, request.image, request)
    if match is not None:
        report.rule = RuleInfo(index=match.index, backend=match.backend, glob=match.glob)
        for position, file in missing_files(match.rule):
            report.warnings.append(f"rules[{match.index}].files[{position}]: {missing_file_warning(file)}")
    timeout = timeout_seconds(args, config.timeout_seconds)
    started = time.monotonic()
    try:
        reply = core.answer(
            data,
            config_path=path,
            environ=os.environ,
            timeout=timeout,
            started=started,
            use_cache=not args.no_cache,
            warn=report.warnings.append,
        )
    except ProviderError as exc:
        report.error = str(exc)
        return
    finally:
        report.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    report.cache = reply.cache
    report.path = reply.path
    answered = reply.outcome.match if reply.outcome is not None else None
    if answered is not None:
        report.rule = RuleInfo(index=answered.index, backend=answered.backend, glob=answered.glob)
    report.response = _redacted(msgspec.json.decode(reply.stdout), args.show_secrets)
    if kubelet is not None and kubelet.problem:
        report.error = kubelet.problem
        return
    report.ok = True


def _request_rows(report: TestReport) -> list[list[str]]:
    rows: list[list[str]] = []
    origin = f"  (from {report.reference})" if report.reference not in ("-", report.image) else ""
    rows.append(["image", report.image + origin])
    rows.append(["request", report.api_version])
    if report.service_account:
        rows.append(["service account", report.service_account])
    if report.token is not None:
        claims = ", ".join(f"{k}={v}" for k, v in report.token.items() if k not in ("bytes", "jwt"))
        rows.append(["token", f"{report.token['bytes']} bytes" + (f", {claims}" if claims else "")])
    for key, value in report.annotations.items():
        rows.append(["annotation", f"{key}={value}"])
    if report.kubelet is not None:
        view = report.kubelet
        verdict = (
            f"matchImages {view.match_image!r} of {view.provider}: the kubelet runs the plugin"
            if view.runs_plugin
            else f"no matchImages entry of {view.provider} matches: the kubelet would not run the plugin"
        )
        rows.append(["kubelet", verdict])
    if report.rule is None:
        rows.append(["rule", "none matches: empty auth (the kubelet pulls anonymously)"])
    else:
        by = f", matched by {report.rule.glob!r}" if report.rule.glob else " (no 'match': every image)"
        rows.append(["rule", f"rules[{report.rule.index}] ({report.rule.backend}){by}"])
    served = " (served by the fast path, as the kubelet would be)" if report.path == "fast" else ""
    rows.append(["cache", report.cache + served])
    return rows


def _result_rows(report: TestReport, colour: bool) -> list[list[str]]:
    response = report.response
    if response is None:
        return [["result", paint("failed: ", "fail", colour) + (report.error or "")]]
    auth = response.get("auth") or {}
    if report.error is not None:
        summary = paint("failed: ", "fail", colour) + report.error
    elif auth:
        creds = "; ".join(f"{key} (user {entry['username']!r})" for key, entry in auth.items())
        summary = paint("ok: ", "ok", colour) + f"credentials for {creds}"
    else:
        summary = paint("ok: ", "ok", colour) + "empty auth (the kubelet pulls anonymously)"
    return [
        ["result", summary],
        ["cacheKeyType", str(response.get("cacheKeyType"))],
        ["cacheDuration", str(response.get("cacheDuration"))],
    ]


def _text(report: TestReport, colour: bool) -> str:
    rows = _request_rows(report) + _result_rows(report, colour)
    rows.append(["time", f"{report.elapsed_ms:g} ms"])
    rows += [["warning", paint(warning, "warn", colour)] for warning in report.warnings]
    text = table(rows, colour=colour, styles=[["bold", ""] for _ in rows])
    if report.response is not None:
        text += (
            "response:\n"
            + msgspec.json.format(msgspec.json.encode(report.response), indent=2).decode()
            + "\n"
        )
    return text


def run(args: argparse.Namespace, streams: Streams) -> int:
    report = TestReport(ok=False, reference=args.image, image="", api_version="")
    try:
        _run(args, streams, report)
    except UsageError as exc:
        streams.stderr.write(f"registry-credential-provider: error: {exc} (see --help)\n")
        return EXIT_USAGE
    except ProviderError as exc:  # our config, the request on stdin
        report.error = str(exc)
    if args.show_secrets:  # the response's passwords only: what went wrong stays redacted
        from provider.redact import redact

        report.error = redact(report.error) if report.error else report.error
        report.warnings = [redact(warning) for warning in report.warnings]
        streams.reveal_secrets()
    if args.output == "json":
        emit_json(streams, report)
    else:
        streams.out(_text(report, use_colour(streams)))
    return EXIT_OK if report.ok else EXIT_FAILURE
