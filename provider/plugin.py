"""The core: one CredentialProviderRequest in, one CredentialProviderResponse out.

Nothing here touches the process (argv, stdin, stdout, exit codes, signals); ``provider.__main__``
does. Response policy:

- the first rule with a ``match`` glob covering the image answers (a rule without ``match``
  covers every image); no rule: empty auth;
- the auth key is the narrowest that covers the image for that rule: the image's exact
  ``host[:port]``, plus a path when the rule's glob or the credential is path-scoped;
- ``cacheKeyType`` is ``Registry`` for a host key, ``Image`` whenever other images of the same
  host could get a different answer (a path key, a path-scoped rule or file entry elsewhere);
  the kubelet's cache otherwise hands one image's answer to another;
- ``cacheDuration`` is the rule's, else the backend's suggestion, else the config default, and
  never outlives the credential;
- nothing valid to offer means empty ``auth`` (the kubelet then pulls anonymously), never a
  placeholder credential.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import msgspec

from provider import goduration
from provider.backends import Answer, Lookup, load_backend
from provider.config import ProviderConfig, Rule
from provider.deadline import Deadline
from provider.errors import RequestError, ResponseError
from provider.kubelet import AuthConfig, CacheKeyType, CredentialProviderRequest, CredentialProviderResponse
from provider.matching import BadURLError, SchemelessURL, parse_schemeless, urls_match

__all__ = ["Outcome", "RuleMatch", "find_rule", "respond"]


class RuleMatch(msgspec.Struct, frozen=True, kw_only=True):
    """The rule that answers an image, its position in the config, and the glob that matched
    (None for a rule without ``match``)."""

    index: int
    rule: Rule
    glob: str | None

    @property
    def backend(self) -> str:
        name: str = self.rule.__struct_config__.tag  # type: ignore[assignment]
        return name


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """A response and how it was reached (for the operator's tools)."""

    response: CredentialProviderResponse
    match: RuleMatch | None
    answer: Answer | None


def find_rule(config: ProviderConfig, image: str) -> RuleMatch | None:
    """The first rule whose globs cover ``image``, with the kubelet's matching semantics."""
    for index, rule in enumerate(config.rules):
        if rule.match is None:
            return RuleMatch(index=index, rule=rule, glob=None)
        for glob in rule.match:
            if urls_match(glob, image):
                return RuleMatch(index=index, rule=rule, glob=glob)
    return None


def _significant_path(path: str) -> str:
    """A glob or key path that narrows anything (``""`` and ``/`` cover the whole host)."""
    return "" if path in ("", "/") else path


def _host_is_partitioned(config: ProviderConfig, host: str) -> bool:
    """Whether some rule serves only part of ``host`` (a glob with a path for this host)."""
    for rule in config.rules:
        for glob in rule.match or ():
            glob_url = parse_schemeless(glob)
            if _significant_path(glob_url.path) and urls_match(glob_url.host, host):
                return True
    return False


def _parse_image(image: str) -> SchemelessURL:
    try:
        url = parse_schemeless(image)
    except BadURLError as exc:
        raise RequestError(f"image {image!r} is not a repository the kubelet could send ({exc})") from None
    if not url.host:
        raise RequestError(f"image {image!r} has no registry host")
    return url


def _cache_seconds(config: ProviderConfig, rule: Rule, answer: Answer, now: float) -> float:
    if rule.cache_duration is not None:
        seconds = goduration.parse_seconds(rule.cache_duration)
    elif answer.cache_seconds is not None:
        seconds = answer.cache_seconds
    else:
        seconds = config.default_cache_seconds
    credential = answer.credential
    if credential is not None and credential.expires_at is not None:
        seconds = min(seconds, max(0.0, credential.expires_at - now))
    return seconds


def respond(
    request: CredentialProviderRequest,
    config: ProviderConfig,
    *,
    deadline: Deadline,
    environ: Mapping[str, str],
    warn: Callable[[str], None],
    now: Callable[[], float] = time.time,
) -> Outcome:
    """Answer one request under ``config``; raises a ``ProviderError`` subclass on failure."""
    url = _parse_image(request.image)
    match = find_rule(config, request.image)
    if match is None:
        response = CredentialProviderResponse(
            api_version=request.api_version,
            kind="CredentialProviderResponse",
            cache_key_type="Registry",
            cache_duration=goduration.format_seconds(config.default_cache_seconds),
            auth={},
        )
        return Outcome(response=response, match=None, answer=None)

    backend = load_backend(match.backend)
    answer = backend.get_credentials(
        Lookup(
            request=request,
            image=request.image,
            host=url.host,
            path=url.path,
            rule=match.rule,
            deadline=deadline,
            environ=environ,
            warn=warn,
            now=now,
        )
    )
    glob_path = _significant_path(parse_schemeless(match.glob).path) if match.glob else ""
    credential = answer.credential
    key_path = max(glob_path, credential.path_scope if credential else "", key=len)
    per_image = bool(key_path) or answer.per_image or _host_is_partitioned(config, url.host)
    cache_key_type: CacheKeyType = "Image" if per_image else "Registry"

    auth: dict[str, AuthConfig] = {}
    if credential is not None:
        key = url.host + key_path
        if not urls_match(key, request.image):
            raise ResponseError(f"internal error: auth key {key!r} would not cover image {request.image!r}")
        auth[key] = AuthConfig(username=credential.username, password=credential.password)

    response = CredentialProviderResponse(
        api_version=request.api_version,
        kind="CredentialProviderResponse",
        cache_key_type=cache_key_type,
        cache_duration=goduration.format_seconds(_cache_seconds(config, match.rule, answer, now())),
        auth=auth,
    )
    return Outcome(response=response, match=match, answer=answer)
