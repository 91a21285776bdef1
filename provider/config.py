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

import os
from typing import Literal

import msgspec

from provider import goduration
from provider.errors import ConfigError
from provider.locations import CONFIG_ENV
from provider.matching import BadURLError, parse_schemeless
from provider.protocol import MAX_TIMEOUT_SECONDS

__all__ = [
    "API_VERSION",
    "CONFIG_ENV",
    "KIND",
    "AnonymousRule",
    "CloudRule",
    "DockerConfigRule",
    "ProviderConfig",
    "Rule",
    "load_config",
]

API_VERSION = "registry-credential-provider/v1alpha1"
KIND = "ProviderConfig"
MAX_CONFIG_BYTES = 4 * 1024 * 1024


class RuleBase(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel", tag_field="backend", frozen=True
):
    """Fields every rule has.

    ``match``: kubelet globs this rule answers (absent: every image). ``cacheDuration``: how long
    the kubelet may keep our answer, overriding what the backend would suggest (it is still
    capped by the credential's own expiry).
    """

    match: list[str] | None = None
    cache_duration: str | None = None


class DockerConfigRule(RuleBase, tag="dockerconfig", frozen=True):
    """Credentials from docker ``config.json`` / containers ``auth.json`` files and their helpers.

    ``files``: the files to search, in order (absent: the node's usual files, see
    ``provider.backends.dockerconfig.default_files``). ``helperTimeout``: the longest a
    ``docker-credential-*`` helper may run. ``helperCacheDuration``: how long a helper's answer
    is kept in the disk cache (``0s``: ask the helper every time).
    """

    files: list[str] | None = None
    helper_timeout: str = "10s"
    helper_cache_duration: str = "5m"


class AnonymousRule(RuleBase, tag="anonymous", frozen=True):
    """Public images: answer with no credentials, so the kubelet pulls anonymously."""


class CloudRule(RuleBase, frozen=True):
    """A cloud registry backend (its options arrive with the backend itself)."""


class EcrRule(CloudRule, tag="ecr", frozen=True):
    """AWS Elastic Container Registry, through the node's or the pod's IAM identity.

    ``region`` / ``registryId``: the registry, when the image host does not say (a mirror, a
    pull-through cache or a VPC endpoint name served under another host; such a rule needs
    ``match``) or to override what it says. ``endpoint``: the ECR API URL to call instead of the
    region's (``https://vpce-....api.ecr.<region>.vpce.amazonaws.com``). ``roleArnAnnotations``:
    ServiceAccount annotations naming the role to assume for a pod, first present wins (the
    kubelet must list them in ``tokenAttributes``). ``requirePodIdentity``: fail instead of
    falling back to the node's identity when a request has no token or no role.
    """

    region: str | None = None
    registry_id: str | None = None
    endpoint: str | None = None
    role_arn_annotations: tuple[str, ...] = ("eks.amazonaws.com/ecr-role-arn",)
    require_pod_identity: bool = False


class GarRule(CloudRule, tag="gar", frozen=True):
    """Google Artifact Registry and Container Registry, through Google identities."""


class AcrRule(CloudRule, tag="acr", frozen=True):
    """Azure Container Registry, through Entra identities."""


Rule = DockerConfigRule | AnonymousRule | EcrRule | GarRule | AcrRule


class CacheConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel", frozen=True):
    """The disk cache. ``dir``: where (the environment variable
    ``REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR`` wins; default
    ``/var/cache/registry-credential-provider``). ``enabled``: false answers every request
    uncached. ``serviceAccountCacheType``: mirror of the kubelet's ``tokenAttributes.cacheType``:
    ``ServiceAccount`` shares a pod identity's credentials across its pods, ``Token`` keys them
    by the token itself."""

    dir: str | None = None
    enabled: bool = True
    service_account_cache_type: Literal["ServiceAccount", "Token"] = "ServiceAccount"


class ProviderConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename="camel", frozen=True):
    """The whole file. ``timeout``: one deadline for a call. ``defaultCacheDuration``: what we tell
    the kubelet when neither the rule nor the backend knows better."""

    api_version: str
    kind: str
    rules: list[Rule]
    timeout: str = "30s"
    default_cache_duration: str = "5m"
    cache: CacheConfig = CacheConfig()

    @property
    def timeout_seconds(self) -> float:
        return goduration.parse_seconds(self.timeout)

    @property
    def default_cache_seconds(self) -> float:
        return goduration.parse_seconds(self.default_cache_duration)


def _duration_error(path: str, value: str) -> ConfigError:
    return ConfigError(f"{path}: expected a Go duration such as '30s', '5m' or '12h', got {value!r}")


def _check_duration(path: str, value: str, *, maximum: float | None = None, positive: bool = False) -> None:
    try:
        seconds = goduration.parse_seconds(value)
    except ValueError:
        raise _duration_error(path, value) from None
    if seconds < 0 or (positive and seconds == 0):
        kind = "positive" if positive else "non-negative"
        raise ConfigError(f"{path}: expected a {kind} duration, got {value!r}")
    if maximum is not None and seconds > maximum:
        raise ConfigError(f"{path}: at most {maximum:g}s (the kubelet kills plugins at 60s), got {value!r}")


def _check_glob(path: str, glob: str) -> None:
    if not glob:
        raise ConfigError(f"{path}: expected a kubelet image glob such as '*.example.com', got ''")
    if "://" in glob:
        raise ConfigError(f"{path}: {glob!r} has a scheme; write it without 'https://', as in matchImages")
    try:
        parse_schemeless(glob)
    except BadURLError as exc:
        raise ConfigError(f"{path}: {glob!r} is not an image glob the kubelet can parse ({exc})") from None


def validate(config: ProviderConfig) -> ProviderConfig:
    """Check what the types alone cannot; raises ``ConfigError`` naming the field."""
    if config.api_version != API_VERSION:
        raise ConfigError(f"$.apiVersion: expected {API_VERSION!r}, got {config.api_version!r}")
    if config.kind != KIND:
        raise ConfigError(f"$.kind: expected {KIND!r}, got {config.kind!r}")
    _check_duration("$.timeout", config.timeout, maximum=MAX_TIMEOUT_SECONDS, positive=True)
    _check_duration("$.defaultCacheDuration", config.default_cache_duration)
    if config.cache.dir is not None and not os.path.isabs(config.cache.dir):
        raise ConfigError(f"$.cache.dir: expected an absolute path, got {config.cache.dir!r}")
    catch_all: int | None = None
    for index, rule in enumerate(config.rules):
        path = f"$.rules[{index}]"
        if catch_all is not None:
            raise ConfigError(
                f"{path}: unreachable, rules[{catch_all}] has no 'match' and already answers every image"
            )
        if rule.match is None:
            catch_all = index
        elif not rule.match:
            raise ConfigError(f"{path}.match: expected at least one image glob (omit 'match' to match all)")
        for position, glob in enumerate(rule.match or ()):
            _check_glob(f"{path}.match[{position}]", glob)
        if rule.cache_duration is not None:
            _check_duration(f"{path}.cacheDuration", rule.cache_duration)
        if isinstance(rule, DockerConfigRule):
            _check_duration(
                f"{path}.helperTimeout", rule.helper_timeout, maximum=MAX_TIMEOUT_SECONDS, positive=True
            )
            _check_duration(f"{path}.helperCacheDuration", rule.helper_cache_duration)
            for position, file in enumerate(rule.files or ()):
                if not os.path.isabs(file):
                    raise ConfigError(f"{path}.files[{position}]: expected an absolute path, got {file!r}")
        _check_ecr_rule(path, rule)
    return config


def _check_ecr_rule(path: str, rule: Rule) -> None:
    if not isinstance(rule, EcrRule):
        return
    from provider.aws.hosts import is_region  # the patterns load only for configs with an ECR rule

    if rule.region is not None and not is_region(rule.region):
        raise ConfigError(f"{path}.region: expected an AWS region such as 'us-east-1', got {rule.region!r}")
    if rule.region is not None and rule.match is None:
        raise ConfigError(
            f"{path}.region: a rule naming its registry needs 'match', or every image would get ECR tokens"
        )
    registry_id = rule.registry_id
    if registry_id is not None and not (
        len(registry_id) == 12 and registry_id.isascii() and registry_id.isdigit()
    ):
        raise ConfigError(f"{path}.registryId: expected a 12-digit AWS account id, got {registry_id!r}")
    if rule.endpoint is not None:
        _check_endpoint(f"{path}.endpoint", rule.endpoint)
    for position, key in enumerate(rule.role_arn_annotations):
        _check_annotation_key(f"{path}.roleArnAnnotations[{position}]", key)


def _check_endpoint(path: str, endpoint: str) -> None:
    from urllib.parse import urlsplit

    url = urlsplit("")
    try:
        url = urlsplit(endpoint)
        host = url.hostname or ""
        url.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        host = ""
    if not host or url.path not in ("", "/") or url.query or url.fragment or url.username:
        raise ConfigError(
            f"{path}: expected a URL such as 'https://api.ecr.us-east-1.amazonaws.com', got {endpoint!r}"
        )
    loopback = host in ("127.0.0.1", "::1", "localhost")
    if url.scheme != "https" and not (url.scheme == "http" and loopback):
        raise ConfigError(f"{path}: expected an https:// URL (http only on loopback), got {endpoint!r}")


def _check_annotation_key(path: str, key: str) -> None:
    """A Kubernetes qualified name, as the kubelet requires of tokenAttributes annotation keys."""
    prefix, slash, name = key.rpartition("/")
    name_ok = 0 < len(name) <= 63 and name[0].isalnum() and name[-1].isalnum()
    name_ok = name_ok and all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)
    labels = prefix.split(".")
    prefix_ok = not slash or (
        0 < len(prefix) <= 253
        and all(label and label[0].isalnum() and label[-1].isalnum() for label in labels)
        and all(c.isascii() and (c.islower() or c.isdigit() or c in "-.") for c in prefix)
    )
    if not (name_ok and prefix_ok):
        raise ConfigError(
            f"{path}: expected an annotation key such as 'eks.amazonaws.com/ecr-role-arn', got {key!r}"
        )


def decode_config(data: bytes, source: str) -> ProviderConfig:
    """Decode a config document (JSON when it starts with ``{``, else YAML) and validate it."""
    try:
        if data.lstrip()[:1] == b"{":
            config = msgspec.json.decode(data, type=ProviderConfig)
        else:
            from msgspec import yaml  # PyYAML is imported only for YAML files

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


def _one_line(text: str) -> str:
    return " ".join(text.split())


BACKEND_NAMES = ("dockerconfig", "anonymous", "ecr", "gar", "acr")


def _path_first(message: str) -> str:
    """msgspec says 'Expected `int`, got `str` - at `$.rules[0]`'; operators read the path first."""
    what, sep, where = message.rpartition(" - at ")
    if not sep:
        what, where = message, "$"
    where = where.strip("`")
    hint = ""
    if where.endswith(".backend") and what.startswith("Invalid value"):
        hint = f" (expected one of: {', '.join(BACKEND_NAMES)})"
    return f"{where}: {_one_line(what)}{hint}"


def load_config(path: str | None) -> ProviderConfig:
    """The config at ``path``, or the embedded default when ``path`` is None."""
    if path is None:
        from provider.defaults import DEFAULT_CONFIG

        return DEFAULT_CONFIG
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_CONFIG_BYTES} bytes")
    return decode_config(data, path)
