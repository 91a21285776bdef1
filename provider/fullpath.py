"""The full path: one decoded request in, one response out, under our config.

Everything the disk cache's fast path (``provider.fastpath``) cannot answer comes here, through
``provider.core.answer``. Response policy:

- the first rule with a ``match`` glob covering the image answers (a rule without ``match``
  covers every image); no rule: empty auth. A cloud rule with ``onNoIdentity: next`` whose
  backend finds no identity on this node (or is not in this build) hands over to the next
  matching rule, with one warning;
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

import random
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Optional

import msgspec

from provider import goduration
from provider.backends import BY_NAME, Answer, Lookup, load_backend
from provider.backends.base import CloudRule
from provider.cache import CredentialStore, Plan
from provider.cachekeys import cache_dir, cache_seconds, environment_version, file_version, plan_key
from provider.config import ProviderConfig, Rule
from provider.credcache import Fetched, obtain
from provider.deadline import Deadline
from provider.errors import BackendUnavailableError, NoIdentityError, RequestError, ResponseError
from provider.identity import identity, token_claims
from provider.kubelet import AuthConfig, CacheKeyType, CredentialProviderRequest, CredentialProviderResponse
from provider.matching import BadURLError, SchemelessURL, parse_schemeless, rule_matches, urls_match
from provider.metrics import UpstreamCall

__all__ = ["CacheContext", "Outcome", "RuleMatch", "find_rule", "matching_rules", "respond"]

# A plan only saves work; a day bounds what an unused one occupies.
PLAN_LIFETIME_SECONDS = 86400.0


class RuleMatch(msgspec.Struct, frozen=True, kw_only=True):
    """The rule that answers an image, its position in the config, and the glob that matched
    (None for a rule without ``match``)."""

    index: int
    rule: Rule
    glob: Optional[str]

    @property
    def backend(self) -> str:
        return self.rule.backend


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """A response and how it was reached (for the operator's tools). ``cache``: ``off``, ``hit``,
    ``miss``, ``refresh`` or ``stale`` (see ``provider.credcache``)."""

    response: CredentialProviderResponse
    match: Optional[RuleMatch]
    answer: Optional[Answer]
    cache: str = "off"


def _caller_claims(request: CredentialProviderRequest | None) -> tuple[str, str, dict[str, str]]:
    """The pod's namespace and service account name from the request's token (read, not
    verified: the kubelet obtained the token for the pod it pulls for), and the ServiceAccount
    annotations the kubelet passed; empty names without a service account token."""
    if request is None or not request.service_account_token:
        return "", "", {}
    claims = token_claims(request.service_account_token)
    if claims is None:
        return "", "", {}
    return claims.namespace, claims.name, request.service_account_annotations


def matching_rules(
    config: ProviderConfig, image: str, request: CredentialProviderRequest | None = None
) -> Iterator[RuleMatch]:
    """The rules whose globs cover ``image`` and whose identity fields select the pod that
    ``request`` pulls for, in order: the kubelet's matching, paths on whole segments
    (``provider.matching.rule_matches``). Without a request (or a token in it), identity
    rules never match."""
    namespace, name, annotations = _caller_claims(request)
    for index, rule in enumerate(config.rules):
        if not rule.selects(namespace, name, annotations):
            continue
        if rule.match is None:
            yield RuleMatch(index=index, rule=rule, glob=None)
            continue
        glob = next((glob for glob in rule.match if rule_matches(glob, image)), None)
        if glob is not None:
            yield RuleMatch(index=index, rule=rule, glob=glob)


def find_rule(
    config: ProviderConfig, image: str, request: CredentialProviderRequest | None = None
) -> RuleMatch | None:
    """The first rule whose globs cover ``image`` for the pod ``request`` pulls for (the one
    that answers unless it hands over)."""
    return next(matching_rules(config, image, request), None)


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


def _cap_seconds(config: ProviderConfig, rule: Rule, answer: Answer) -> float:
    """The cacheDuration before the credential's expiry is considered."""
    if rule.cache_duration is not None:
        return goduration.parse_seconds(rule.cache_duration)
    if answer.cache_seconds is not None:
        return answer.cache_seconds
    return config.default_cache_seconds


class CacheContext:
    """What the disk cache needs to know beyond the request: where it is, and the versions of
    the config and environment this answer was computed under (for the fast path's plans)."""

    def __init__(
        self,
        store: CredentialStore,
        *,
        config_version: str,
        environment_version: str,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.config_version = config_version
        self.environment_version = environment_version
        self.rng = rng or random.Random()

    @classmethod
    def open(
        cls,
        config: ProviderConfig,
        *,
        config_version: str,
        environ: Mapping[str, str],
        warn: Callable[[str], None],
    ) -> CacheContext | None:
        """The disk cache as ``config`` and ``environ`` place it, or None when the config turns it
        off. ``config_version`` must be taken before the config was read."""
        if not config.cache.enabled:
            return None
        store = CredentialStore(cache_dir(config.cache.dir, environ), warn)
        return cls(store, config_version=config_version, environment_version=environment_version(environ))


def respond(
    request: CredentialProviderRequest,
    config: ProviderConfig,
    *,
    deadline: Deadline,
    environ: Mapping[str, str],
    warn: Callable[[str], None],
    now: Callable[[], float] = time.time,
    cache: CacheContext | None = None,
    calls: list[UpstreamCall] | None = None,
) -> Outcome:
    """Answer one request under ``config``; raises a ``ProviderError`` subclass on failure.
    Every call to a backend's credential source is appended to ``calls`` (for the metrics)."""
    url = _parse_image(request.image)
    per_token = config.cache.service_account_cache_type == "Token"
    caller = identity(request.service_account_token, request.service_account_annotations, per_token=per_token)
    store = cache.store if cache is not None and config.cache.enabled else None
    rng = cache.rng if cache is not None else random.Random()
    found: tuple[RuleMatch, Fetched] | None = None
    for match in matching_rules(config, request.image, request):
        lookup = Lookup(
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
        try:
            found = match, _fetch(match, lookup, store, caller, rng, calls)
        except (NoIdentityError, BackendUnavailableError) as exc:
            if not (isinstance(match.rule, CloudRule) and match.rule.on_no_identity == "next"):
                raise
            warn(f"{exc}; rules[{match.index}] ({match.backend}) hands over to the next matching rule")
            continue
        break
    if found is None:
        response = CredentialProviderResponse(
            api_version=request.api_version,
            kind="CredentialProviderResponse",
            cache_key_type="Registry",
            cache_duration=goduration.format_seconds(config.default_cache_seconds),
            auth={},
        )
        return Outcome(response=response, match=None, answer=None)
    match, fetched = found
    answer = fetched.answer
    glob_path = _significant_path(parse_schemeless(match.glob).path) if match.glob else ""
    credential = answer.credential
    key_path = max(glob_path, credential.path_scope if credential else "", key=len)
    per_image = bool(key_path) or answer.per_image or _host_is_partitioned(config, url.host)
    cache_key_type: CacheKeyType = "Image" if per_image else "Registry"

    auth: dict[str, AuthConfig] = {}
    key = url.host + key_path
    token = request.service_account_token
    if credential is not None and token and credential.password == token and not per_token:
        # The kubelet would share this answer across the service account's pods, and rejects it.
        raise ResponseError(
            f"rules[{match.index}] ({match.backend}) answered with the pod's service account token as "
            "the password, which only 'cacheType: Token' allows: set the kubelet's "
            "tokenAttributes.cacheType and our cache.serviceAccountCacheType to Token"
        )
    if credential is not None:
        if not urls_match(key, request.image):
            raise ResponseError(f"internal error: auth key {key!r} would not cover image {request.image!r}")
        auth[key] = AuthConfig(username=credential.username, password=credential.password)

    cap = _cap_seconds(config, match.rule, answer)
    response = CredentialProviderResponse(
        api_version=request.api_version,
        kind="CredentialProviderResponse",
        cache_key_type=cache_key_type,
        cache_duration=goduration.format_seconds(
            cache_seconds(cap, credential.expires_at if credential else None, now())
        ),
        auth=auth,
    )
    if cache is not None and fetched.parts is not None and fetched.state in ("hit", "miss", "refresh"):
        _remember_plan(
            cache,
            request,
            url.host,
            match.backend,
            fetched.parts,
            per_token,
            key,
            cache_key_type,
            cap,
            answer,
            config.metrics.textfile,
        )
    return Outcome(response=response, match=match, answer=answer, cache=fetched.state)


def _fetch(
    match: RuleMatch,
    lookup: Lookup,
    store: CredentialStore | None,
    caller: str,
    rng: random.Random,
    calls: list[UpstreamCall] | None,
) -> Fetched:
    """The rule's backend's answer, through the disk cache; ``BackendUnavailableError`` when this
    build or node cannot run the backend."""
    why = BY_NAME[match.backend].unavailable(lookup.environ)
    if why is not None:
        raise BackendUnavailableError(f"backend {match.backend!r} cannot run here: {why}")
    return obtain(load_backend(match.backend), match.backend, lookup, store, caller, rng=rng, calls=calls)


def _remember_plan(
    cache: CacheContext,
    request: CredentialProviderRequest,
    registry: str,
    backend: str,
    parts: tuple[str, ...],
    per_token: bool,
    key: str,
    cache_key_type: str,
    cap: float,
    answer: Answer,
    metrics_textfile: str | None,
) -> None:
    """Record how this request was answered, so the next identical one can skip all of it."""
    caller = identity(request.service_account_token, request.service_account_annotations, per_token=False)
    plan = Plan(
        backend=backend,
        registry=registry,
        parts=list(parts),
        per_token=per_token,
        key=key,
        cache_key_type=cache_key_type,
        cap_seconds=cap,
        deps=[file_version(path) for path in answer.depends_on],
        metrics_textfile=metrics_textfile,
    )
    now = time.time()
    plan_id = plan_key(cache.config_version, request.image, caller, cache.environment_version)
    cache.store.put_plan(plan_id, plan, now + PLAN_LIFETIME_SECONDS, now)
