"""Our own configuration: an ordered list of rules, each naming a backend for matching images.

The file is YAML or JSON (JSON is parsed without importing a YAML library, so installers
write JSON for speed). It is decoded strictly: an unknown field, a wrong type or a malformed
duration is an error naming the field path and what was expected. Example::

    apiVersion: registry-credential-provider/v1alpha1
    kind: ProviderConfig
    timeout: 30s
    rules:
      - match: ["registry.example.com:5000"]
        backend: dockerconfig
        files: [/etc/registry-credential-provider/auth.json]
      - match: ["docker.io", "quay.io"]
        backend: anonymous
        cacheDuration: 1h
      - backend: dockerconfig        # no "match": every other image

``match`` entries are globs with exactly the kubelet's ``matchImages`` semantics; the first
rule with a matching entry answers. A rule without ``match`` answers every image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Optional, Union

import msgspec

from provider import goduration
from provider.backends import BACKENDS, BY_NAME
from provider.backends.acr import AcrRule
from provider.backends.anonymous import AnonymousRule
from provider.backends.base import CloudRule, RuleBase
from provider.backends.dockerconfig import DockerConfigRule
from provider.backends.ecr import EcrRule
from provider.backends.gar import GarRule
from provider.errors import ConfigError
from provider.fieldchecks import (
    check_absolute_path,
    check_annotation_key,
    check_duration,
    is_dns_label,
    is_dns_subdomain,
)
from provider.locations import CONFIG_ENV
from provider.matching import BadURLError, parse_schemeless
from provider.protocol import MAX_TIMEOUT_SECONDS

__all__ = [
    "API_VERSION",
    "CONFIG_ENV",
    "KIND",
    "AcrRule",
    "AnonymousRule",
    "CloudRule",
    "DockerConfigRule",
    "EcrRule",
    "GarRule",
    "MetricsConfig",
    "ProviderConfig",
    "Rule",
    "RuleBase",
    "load_config",
]

API_VERSION = "registry-credential-provider/v1alpha1"
KIND = "ProviderConfig"
# A real config is a few KiB; YAML at this size still loads in about 0.2 s (1 MiB: about 1 s).
MAX_CONFIG_BYTES = 256 * 1024


# The rule union: every backend's rule struct, told apart by its ``backend`` tag. mypy sees the
# common base; msgspec decodes the exact union.
if TYPE_CHECKING:
    Rule = RuleBase
else:
    Rule = Union[tuple(spec.rule for spec in BACKENDS)]


class CacheConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel", frozen=True):
    """The disk cache. ``dir``: where (the environment variable
    ``REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR`` wins; default
    ``/var/cache/registry-credential-provider``). ``enabled``: false answers every request
    uncached. ``serviceAccountCacheType``: mirror of the kubelet's ``tokenAttributes.cacheType``:
    ``ServiceAccount`` shares a pod identity's credentials across its pods, ``Token`` keys them
    by the token itself."""

    dir: Optional[str] = None
    enabled: bool = True
    service_account_cache_type: Literal["ServiceAccount", "Token"] = "ServiceAccount"


class MetricsConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel", frozen=True):
    """Metrics for node_exporter's textfile collector. ``textfile``: an absolute path ending in
    ``.prom`` (in the collector's ``--collector.textfile.directory``) that every kubelet-mode
    exec updates; absent: no metrics are written. Series: ``provider.metrics``."""

    textfile: Optional[str] = None


class ProviderConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel", frozen=True):
    """The whole file. ``timeout``: one deadline for a call. ``defaultCacheDuration``: what we tell
    the kubelet when neither the rule nor the backend knows better."""

    api_version: str
    kind: str
    rules: list[Rule]
    timeout: str = "30s"
    default_cache_duration: str = "5m"
    cache: CacheConfig = CacheConfig()
    metrics: MetricsConfig = MetricsConfig()

    @property
    def timeout_seconds(self) -> float:
        return goduration.parse_seconds(self.timeout)

    @property
    def default_cache_seconds(self) -> float:
        return goduration.parse_seconds(self.default_cache_duration)


def _check_glob(path: str, glob: str) -> None:
    if not glob:
        raise ConfigError(f"{path}: expected a kubelet image glob such as '*.example.com', got ''")
    if "://" in glob:
        raise ConfigError(f"{path}: {glob!r} has a scheme; write it without 'https://', as in matchImages")
    try:
        parse_schemeless(glob)
    except BadURLError as exc:
        raise ConfigError(f"{path}: {glob!r} is not an image glob the kubelet can parse ({exc})") from None


def _check_identity(path: str, rule: RuleBase) -> None:
    """The identity fields name what a token's claims can hold, and each names something."""
    if rule.namespaces is not None:
        if not rule.namespaces:
            raise ConfigError(f"{path}.namespaces: expected at least one namespace (omit it to match all)")
        for position, namespace in enumerate(rule.namespaces):
            if not is_dns_label(namespace):
                raise ConfigError(
                    f"{path}.namespaces[{position}]: expected a namespace name such as 'team-a', "
                    f"got {namespace!r}"
                )
    if rule.service_accounts is not None:
        if not rule.service_accounts:
            raise ConfigError(
                f"{path}.serviceAccounts: expected at least one '<namespace>/<name>' (omit it to match all)"
            )
        for position, account in enumerate(rule.service_accounts):
            namespace, slash, name = account.partition("/")
            if not (slash and is_dns_label(namespace) and is_dns_subdomain(name)):
                raise ConfigError(
                    f"{path}.serviceAccounts[{position}]: expected '<namespace>/<name>' such as "
                    f"'team-a/puller', got {account!r}"
                )
    if rule.service_account_annotations is not None:
        if not rule.service_account_annotations:
            raise ConfigError(
                f"{path}.serviceAccountAnnotations: expected at least one annotation (omit it to match all)"
            )
        for key in rule.service_account_annotations:
            check_annotation_key(
                f"{path}.serviceAccountAnnotations[{key!r}]", key, "registry.example.com/pull-group"
            )


def validate(config: ProviderConfig) -> ProviderConfig:
    """Check what the types alone cannot; raises ``ConfigError`` naming the field."""
    if config.api_version != API_VERSION:
        raise ConfigError(f"$.apiVersion: expected {API_VERSION!r}, got {config.api_version!r}")
    if config.kind != KIND:
        raise ConfigError(f"$.kind: expected {KIND!r}, got {config.kind!r}")
    check_duration("$.timeout", config.timeout, maximum=MAX_TIMEOUT_SECONDS, positive=True)
    check_duration("$.defaultCacheDuration", config.default_cache_duration)
    if config.cache.dir is not None:
        check_absolute_path("$.cache.dir", config.cache.dir)
    if config.metrics.textfile is not None:
        check_absolute_path("$.metrics.textfile", config.metrics.textfile)
        if not config.metrics.textfile.endswith(".prom"):
            raise ConfigError(
                f"$.metrics.textfile: expected a file name ending in '.prom' (node_exporter's textfile "
                f"collector reads only those), got {config.metrics.textfile!r}"
            )
    catch_all: int | None = None
    for index, rule in enumerate(config.rules):
        path = f"$.rules[{index}]"
        if catch_all is not None:
            raise ConfigError(
                f"{path}: unreachable, rules[{catch_all}] has no 'match' and already answers every image"
            )
        if rule.match is None:
            if not rule.identity_rule:
                catch_all = index
        elif not rule.match:
            raise ConfigError(f"{path}.match: expected at least one image glob (omit 'match' to match all)")
        for position, glob in enumerate(rule.match or ()):
            _check_glob(f"{path}.match[{position}]", glob)
        if rule.cache_duration is not None:
            check_duration(f"{path}.cacheDuration", rule.cache_duration)
        _check_identity(path, rule)
        BY_NAME[rule.backend].check_rule(path, rule)
    return config


def decode_config(data: bytes, source: str) -> ProviderConfig:
    """Decode a config document (JSON when it starts with ``{``, else YAML) and validate it."""
    try:
        if data.lstrip()[:1] == b"{":
            config = msgspec.json.decode(data, type=ProviderConfig)
        else:
            from msgspec import yaml  # PyYAML is imported only for YAML files

            _refuse_deep_yaml(data)
            config = yaml.decode(data, type=ProviderConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_path_first(str(exc))}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid YAML or JSON: {_one_line(str(exc))}") from None
    except UnicodeDecodeError:  # msgspec's (and PyYAML's) error for invalid UTF-8
        raise ConfigError(f"{source}: not valid YAML or JSON: the file is not UTF-8") from None
    try:
        return validate(config)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


# Our config nests a handful of levels; PyYAML before 6.0.4 (the newest for CPython 3.9) crashes
# the process in libyaml's composer on a few ten thousand nested flow collections.
MAX_YAML_DEPTH = 100


def _refuse_deep_yaml(data: bytes) -> None:
    """Raise DecodeError for YAML nested deeper than ``MAX_YAML_DEPTH``, found by libyaml's scanner
    (iterative, about 0.1 ms for our config) before its composer (recursive) ever runs."""
    import yaml

    opening = (yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken, yaml.BlockSequenceStartToken,
               yaml.BlockMappingStartToken)  # fmt: skip
    closing = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)
    depth = 0
    try:
        for token in yaml.scan(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
            if isinstance(token, opening):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise msgspec.DecodeError(f"nested more than {MAX_YAML_DEPTH} levels deep")
            elif isinstance(token, closing):
                depth -= 1
    except (yaml.YAMLError, UnicodeDecodeError):
        return  # the decoder reports it, in its words


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _path_first(message: str) -> str:
    """msgspec says 'Expected `int`, got `str` - at `$.rules[0]`'; operators read the path first."""
    what, sep, where = message.rpartition(" - at ")
    if not sep:
        what, where = message, "$"
    where = where.strip("`")
    hint = ""
    if where.endswith(".backend") and what.startswith("Invalid value"):
        hint = f" (expected one of: {', '.join(spec.name for spec in BACKENDS)})"
    return f"{where}: {_one_line(what)}{hint}"


def load_config(path: str | None) -> ProviderConfig:
    """The config at ``path``, or the embedded default when ``path`` is None."""
    if path is None:
        from provider.defaults import DEFAULT_CONFIG

        return DEFAULT_CONFIG
    from provider.safefile import UnsafeFileError, read_regular_file

    try:
        data = read_regular_file(path, MAX_CONFIG_BYTES)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnsafeFileError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    return decode_config(data, path)
