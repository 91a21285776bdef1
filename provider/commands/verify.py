"""``verify IMAGE``: get credentials as the kubelet would, then prove them against the registry.

Steps, one line each, stopping at the first that fails: the plugin's answer for the image;
``GET /v2/`` and its challenge; for ``Bearer`` a token for ``repository:<repo>:pull`` from
the realm (with the credentials as Basic auth), for ``Basic`` the credentials themselves; then
the repository (the manifest for a tag or digest, else its tag list). The failing line says
exactly where it broke: no credentials, credentials rejected, no pull scope, TLS, the network.
Nothing secret is printed: not the password, not the token.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

import msgspec

from provider.commands import Streams
from provider.commands.common import (
    EXIT_CODES,
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    timeout_seconds,
)
from provider.deadline import Deadline
from provider.errors import ProviderError
from provider.identity import jwt_claims
from provider.imageref import ImageRef, ImageRefError, normalize, registry_endpoint
from provider.kubelet import API_VERSIONS, AuthConfig, decode_response, request_bytes
from provider.locations import config_path
from provider.matching import urls_match
from provider.output import Check, Status, add_output_argument, checks_table, emit_json, paint, use_colour
from provider.redact import excerpt, register
from provider.registryclient import (
    Challenge,
    Client,
    RegistryError,
    Response,
    basic_authorization,
    parse_challenges,
    token_url,
)

HELP = "get credentials for an image as the kubelet would, then prove them against the registry"
EPILOG = EXIT_CODES.format(
    ok="the registry accepted the credentials (or anonymous access) for pulling the image",
    failure="a step failed: the report says which (no credentials, rejected, no pull scope, TLS, network)",
)
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_EXCERPT_CHARS = 200


class VerifyReport(msgspec.Struct, kw_only=True):
    """``--output json``."""

    ok: bool
    image: str
    registry: str
    steps: list[Check]
    proxies: list[str] = msgspec.field(default_factory=list)


class _Failed(Exception):
    """A step failed; the report already says why."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="an image reference (reg:5000/team/app:v1, nginx)")
    parser.add_argument(
        "--ca-file", metavar="FILE", help="a CA certificate (PEM) to trust besides the system's", default=None
    )
    parser.add_argument(
        "--plain-http", action="store_true", default=False, help="talk plain http to the registry (not https)"
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        default=False,
        help="bypass the disk cache when getting credentials",
    )
    add_output_argument(parser)
    parser.epilog = EPILOG


def _excerpt(response: Response, secrets: list[str]) -> str:
    """What the registry said, briefly: its JSON error codes and messages, else a text excerpt."""
    text = ""
    try:
        document = msgspec.json.decode(response.body)
    except msgspec.DecodeError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("errors"), list):
        parts = []
        for error in document["errors"][:3]:
            if isinstance(error, dict):
                parts.append(f"{error.get('code', '')}: {error.get('message', '')}".strip(": "))
        text = "; ".join(parts)
    elif isinstance(document, dict) and isinstance(document.get("details"), str):
        text = document["details"]
    elif response.body and not isinstance(document, dict):
        text = response.body.decode("utf-8", "replace")
    # Redact before the whitespace is collapsed and the text cut: a secret with a tab, or one
    # that straddles the cut, must not come out in part.
    register(*secrets)
    return excerpt(text, MAX_EXCERPT_CHARS)


def _granted_actions(claims: dict[str, Any], repository: str) -> list[str] | None:
    """The actions a distribution-style token grants on ``repository`` (None: no ``access`` claim)."""
    access = claims.get("access")
    if not isinstance(access, list):
        return None
    actions: list[str] = []
    for entry in access:
        if isinstance(entry, dict) and entry.get("type") == "repository" and entry.get("name") == repository:
            actions += [str(action) for action in entry.get("actions") or ()]
    return actions


class _Verification:
    def __init__(self, args: argparse.Namespace, ref: ImageRef, deadline: Deadline) -> None:
        self.args = args
        self.ref = ref
        self.steps: list[Check] = []
        scheme = "http" if args.plain_http else "https"
        self.base = f"{scheme}://{registry_endpoint(ref.host)}"
        self.deadline = deadline
        self.secrets: list[str] = []
        self.client = Client(environ=os.environ, remaining=deadline.remaining, ca_file=args.ca_file)

    def add(self, status: Status, check: str, detail: str) -> None:
        self.steps.append(Check(status=status, check=check, detail=detail))

    def fail(self, check: str, detail: str) -> _Failed:
        self.add("fail", check, detail)
        return _Failed()

    def get(
        self, check: str, url: str, headers: dict[str, str] | None = None, *, method: str = "GET"
    ) -> Response:
        try:
            return self.client.get(url, headers, method=method)
        except RegistryError as exc:
            raise self.fail(check, f"{exc.kind}: {exc}") from None

    # --- 1: the plugin ----------------------------------------------------------------------------

    def credentials(self, warn: Callable[[str], None]) -> AuthConfig | None:
        from provider import core

        try:
            reply = core.answer(
                request_bytes(API_VERSIONS[0], self.ref.repository),
                config_path=config_path(self.args.config, os.environ),
                environ=os.environ,
                timeout=self.deadline.remaining(),
                use_cache=not self.args.no_cache,
                warn=warn,
            )
        except ProviderError as exc:
            raise self.fail("credentials", f"the plugin fails for {self.ref.repository}: {exc}") from None
        response = decode_response(reply.stdout)
        rule = reply.outcome.match if reply.outcome is not None else None
        origin = f"rules[{rule.index}] ({rule.backend})" if rule else "no rule"
        if reply.path == "fast":
            origin = "the disk cache's fast path"
        # The kubelet tries every key that matches, most specific (reverse lexical) first.
        keys = sorted((k for k in response.auth if urls_match(k, self.ref.repository)), reverse=True)
        if not keys:
            self.add("warn", "credentials", f"{origin}: empty auth, so the runtime pulls anonymously")
            return None
        entry = response.auth[keys[0]]
        self.secrets.append(entry.password)
        self.add(
            "ok",
            "credentials",
            f"{origin}: user {entry.username!r} for key {keys[0]} (cache {reply.cache})",
        )
        return entry

    # --- 2: the challenge -------------------------------------------------------------------------

    def challenge(self) -> Challenge | None:
        response = self.get("GET /v2/", self.base + "/v2/")
        if response.status == 200:
            self.add("ok", "GET /v2/", f"{self.base}/v2/: 200 without credentials (anonymous access)")
            return None
        if response.status != 401:
            detail = _excerpt(response, self.secrets)
            raise self.fail(
                "GET /v2/", f"{self.base}/v2/: unexpected status {response.status} {detail}".rstrip()
            )
        challenges = parse_challenges(response.header_values("WWW-Authenticate"))
        usable = [c for c in challenges if c.scheme == "bearer" and c.params.get("realm")]
        usable += [c for c in challenges if c.scheme == "basic"]
        if not usable:
            raise self.fail(
                "GET /v2/", "401 without a Bearer (with realm) or Basic challenge: not a registry?"
            )
        self.add("ok", "GET /v2/", f"401, challenge {usable[0].describe()}")
        return usable[0]

    # --- 3: authentication --------------------------------------------------------------------------

    def authenticate(self, challenge: Challenge | None, auth: AuthConfig | None) -> str | None:
        """The Authorization header for the repository requests."""
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            if auth is None:
                raise self.fail(
                    "credentials", "no credentials: the registry requires Basic auth and the plugin gave none"
                )
            header = basic_authorization(auth.username, auth.password)
            self.secrets.append(header)
            response = self.get("Basic auth", self.base + "/v2/", {"Authorization": header})
            if response.status == 200:
                self.add(
                    "ok", "Basic auth", f"GET /v2/ with user {auth.username!r}: 200, credentials accepted"
                )
                return header
            raise self.fail(
                "Basic auth",
                f"rejected: GET /v2/ with user {auth.username!r} answered {response.status} "
                f"{_excerpt(response, self.secrets)}".rstrip(),
            )
        return self._bearer(challenge, auth)

    def _bearer(self, challenge: Challenge, auth: AuthConfig | None) -> str:
        repository = self.ref.path
        scope = f"repository:{repository}:pull"
        url = token_url(challenge, scope)
        headers = {}
        who = "anonymously"
        if auth is not None:
            headers["Authorization"] = basic_authorization(auth.username, auth.password)
            self.secrets.append(headers["Authorization"])
            who = f"as {auth.username!r}"
        response = self.get("token", url, headers)
        realm = challenge.params.get("realm", "")
        if response.status in (401, 403):
            detail = _excerpt(response, self.secrets)
            if auth is None:
                raise self.fail(
                    "token",
                    f"no credentials: {realm} refused an anonymous token ({response.status}) "
                    "and the plugin gave "
                    f"none {detail}".rstrip(),
                )
            raise self.fail(
                "token",
                f"rejected: {realm} refused the credentials of {auth.username!r} "
                f"({response.status}) {detail}".rstrip(),
            )
        if response.status != 200:
            raise self.fail(
                "token", f"{realm} answered {response.status} {_excerpt(response, self.secrets)}".rstrip()
            )
        try:
            document = msgspec.json.decode(response.body)
        except msgspec.DecodeError:
            document = None
        token = ""
        if isinstance(document, dict):
            token = str(document.get("token") or document.get("access_token") or "")
        if not token:
            raise self.fail("token", f"{realm} answered 200 without a token")
        self.secrets.append(token)
        claims = jwt_claims(token)
        granted = _granted_actions(claims, repository) if claims is not None else None
        if granted is not None and "pull" not in granted:
            if auth is None:
                raise self.fail(
                    "token",
                    f"no credentials: anonymous access may not pull {repository} ({realm} granted "
                    f"{granted or 'nothing'} for {scope!r}) and the plugin gave none",
                )
            raise self.fail(
                "token",
                f"no pull scope: asked as {auth.username!r} for {scope!r}, "
                f"{realm} granted {granted or 'nothing'}; "
                f"user {auth.username!r} may not pull {repository}",
            )
        what = f"grants {granted}" if granted is not None else "(an opaque token)"
        self.add("ok", "token", f"{who} for {scope!r} from {realm}: token {what}")
        return f"Bearer {token}"

    # --- 4: the repository ------------------------------------------------------------------------

    def pull(self, authorization: str | None) -> None:
        repository = self.ref.path
        headers = {"Authorization": authorization} if authorization else {}
        if self.ref.tag or self.ref.digest:
            check = "manifest"
            url = f"{self.base}/v2/{repository}/manifests/{self.ref.reference}"
            response = self.get(check, url, {**headers, "Accept": MANIFEST_TYPES}, method="HEAD")
            what = (
                f"{repository}:{self.ref.tag}" if not self.ref.digest else f"{repository}@{self.ref.digest}"
            )
        else:
            check = "tags/list"
            url = f"{self.base}/v2/{repository}/tags/list?n=10"
            response = self.get(check, url, headers)
            what = repository
        if response.status == 200:
            digest = response.header("Docker-Content-Digest")
            detail = f"{what}: 200" + (f", digest {digest}" if digest else "")
            self.add("ok", check, detail + ": the pull would be authorized")
            return
        detail = _excerpt(response, self.secrets)
        if response.status in (401, 403):
            errors = [
                c.params.get("error", "")
                for c in parse_challenges(response.header_values("WWW-Authenticate"))
            ]
            reason = (
                "no pull scope" if "insufficient_scope" in errors or response.status == 403 else "rejected"
            )
            if authorization is None:
                reason = "no credentials"
            raise self.fail(check, f"{reason}: {what} answered {response.status} {detail}".rstrip())
        if response.status == 404:
            raise self.fail(
                check, f"not found: {what} does not exist (the credentials were accepted) {detail}".rstrip()
            )
        raise self.fail(check, f"{what} answered {response.status} {detail}".rstrip())


def run(args: argparse.Namespace, streams: Streams) -> int:
    try:
        try:
            ref = normalize(args.image)
        except ImageRefError as exc:
            raise UsageError(f"IMAGE: {exc}") from None
        deadline = Deadline(timeout_seconds(args, DEFAULT_TIMEOUT_SECONDS))
    except UsageError as exc:
        streams.stderr.write(f"registry-credential-provider: error: {exc} (see --help)\n")
        return EXIT_USAGE
    try:
        verification = _Verification(args, ref, deadline)
    except RegistryError as exc:
        streams.stderr.write(f"registry-credential-provider: error: {exc}\n")
        return EXIT_FAILURE
    warnings: list[str] = []
    ok = False
    try:
        auth = verification.credentials(warnings.append)
        challenge = verification.challenge()
        authorization = verification.authenticate(challenge, auth)
        verification.pull(authorization)
        ok = True
    except _Failed:
        pass
    for warning in warnings:
        verification.add("warn", "plugin", warning)
    report = VerifyReport(
        ok=ok,
        image=ref.repository,
        registry=verification.base,
        steps=verification.steps,
        proxies=list(dict.fromkeys(verification.client.proxies_used)),
    )
    if args.output == "json":
        emit_json(streams, report)
    else:
        colour = use_colour(streams)
        text = checks_table(report.steps, colour=colour)
        if report.proxies:
            text += f"proxy: {', '.join(report.proxies)}\n"
        verdict = "pull authorized" if ok else "pull would fail"
        text += (
            paint(verdict, "ok" if ok else "fail", colour) + f": {ref.repository} at {verification.base}\n"
        )
        streams.out(text)
    return EXIT_OK if ok else EXIT_FAILURE
