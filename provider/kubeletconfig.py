"""The kubelet's side: its CredentialProviderConfig, read and judged the way the kubelet does.

The kubelet reads ``--image-credential-provider-config`` at start-up and exits on any error,
so an operator wants its verdict before a restart. This module reproduces
``pkg/credentialprovider/plugin/config.go`` (Kubernetes 1.26-1.36):

- one file, or (since 1.34) a directory whose ``*.json``, ``*.yaml`` and ``*.yml`` files are
  merged in lexical order, a provider name repeated across them being an error;
- each document decoded strictly (k8s' strict serializer: field names case-sensitive, unknown
  and duplicate fields are errors, reported together once the types decode);
  ``tokenAttributes`` exists only in ``kubelet.config.k8s.io/v1``;
- ``validateCredentialProviderConfig``, with its messages word for word (``validate``).

The same typed structs build the documents ``render`` prints, so what we generate and what we
check cannot drift apart. Nothing here runs on the kubelet's path.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any, Optional

import msgspec
import msgspec.inspect as mi

from provider import goduration
from provider.goquote import go_quote
from provider.kubelet import API_VERSIONS as PLUGIN_API_VERSIONS
from provider.matching import BadURLError, parse_schemeless
from provider.safefile import FileTooLargeError, UnsafeFileError, read_regular_file

__all__ = [
    "CACHE_TYPES",
    "CONFIG_API_VERSIONS",
    "KIND",
    "CredentialProvider",
    "CredentialProviderConfig",
    "ExecEnvVar",
    "KubeletConfigError",
    "LoadedConfig",
    "LoadedProvider",
    "TokenAttributes",
    "decode_document",
    "encode",
    "go_quote",
    "load",
    "validate",
]

CONFIG_GROUP = "kubelet.config.k8s.io"
CONFIG_API_VERSIONS = (f"{CONFIG_GROUP}/v1", f"{CONFIG_GROUP}/v1beta1", f"{CONFIG_GROUP}/v1alpha1")
KIND = "CredentialProviderConfig"
PLUGIN_V1 = "credentialprovider.kubelet.k8s.io/v1"
# The kubelet lists these from Go sets (random order); sorted here, so messages are stable.
SUPPORTED_PLUGIN_API_VERSIONS = tuple(sorted(PLUGIN_API_VERSIONS))
CACHE_TYPES = ("ServiceAccount", "Token")
CONFIG_EXTENSIONS = (".json", ".yaml", ".yml")
MAX_FILE_BYTES = 4 * 1024 * 1024
_SCHEME = "pkg/credentialprovider/plugin/plugin.go"


# --- the documents ------------------------------------------------------------------------------


class _Document(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """Base of the kubelet's config types: Go field names (camelCase), zero values left out on
    output. Unknown fields are not rejected by msgspec itself: ``decode_document`` collects
    them (with duplicates) the way the kubelet's strict decoder reports them."""


class ExecEnvVar(_Document):
    """One ``env`` entry: appended to the kubelet's own environment for the plugin."""

    name: str = ""
    value: str = ""


class TokenAttributes(_Document):
    """``tokenAttributes`` (v1 only): the kubelet then sends the pod's service account token."""

    service_account_token_audience: str = ""
    cache_type: str = ""
    require_service_account: Optional[bool] = None
    required_service_account_annotation_keys: Optional[list[str]] = None
    optional_service_account_annotation_keys: Optional[list[str]] = None


class CredentialProviderBase(_Document):
    """A provider as ``kubelet.config.k8s.io/v1beta1`` and ``v1alpha1`` define it."""

    name: str = ""
    match_images: Optional[list[str]] = None
    default_cache_duration: Optional[str] = None  # a Go duration; absent is an error
    api_version: str = ""
    args: Optional[list[str]] = None
    env: Optional[list[ExecEnvVar]] = None


class CredentialProvider(CredentialProviderBase):
    """A provider as ``kubelet.config.k8s.io/v1`` defines it (the others convert to it)."""

    token_attributes: Optional[TokenAttributes] = None


class CredentialProviderConfig(_Document):
    """A ``kubelet.config.k8s.io/v1`` document (what ``render`` prints)."""

    api_version: str
    kind: str
    providers: list[CredentialProvider]

    @classmethod
    def v1(cls, providers: list[CredentialProvider]) -> CredentialProviderConfig:
        return cls(api_version=CONFIG_API_VERSIONS[0], kind=KIND, providers=providers)


class _LegacyConfig(_Document):
    api_version: str = ""
    kind: str = ""
    providers: Optional[list[CredentialProviderBase]] = None


class _V1Config(_Document):
    api_version: str = ""
    kind: str = ""
    providers: Optional[list[CredentialProvider]] = None


_DOCUMENT_TYPES: dict[str, type[_LegacyConfig] | type[_V1Config]] = {
    CONFIG_API_VERSIONS[0]: _V1Config,
    CONFIG_API_VERSIONS[1]: _LegacyConfig,
    CONFIG_API_VERSIONS[2]: _LegacyConfig,
}


class LoadedProvider(msgspec.Struct, frozen=True, kw_only=True):
    """A provider and the file it came from."""

    provider: CredentialProvider
    source: str
    config_api_version: str


class LoadedConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What the kubelet would run with: providers in merge order, and the files read."""

    path: str
    directory: bool
    files: list[str]
    providers: list[LoadedProvider]


class KubeletConfigError(Exception):
    """The kubelet would exit at start-up; ``str()`` is (close to) what it logs."""


def encode(config: CredentialProviderConfig, fmt: str) -> bytes:
    """The document as YAML or indented JSON, fields in the kubelet's order."""
    if fmt == "json":
        return msgspec.json.format(msgspec.json.encode(config), indent=2) + b"\n"
    from msgspec import yaml

    return yaml.encode(config)


# --- Go's quoting -------------------------------------------------------------------------------

# --- reading one document -----------------------------------------------------------------------


class _Pairs(list[tuple[str, Any]]):
    """A mapping as its members in order, duplicates kept (the strict decoder reports them)."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid character {name[0]!r} looking for beginning of value")


def _parse_json(data: bytes) -> Any:
    text = data.decode("utf-8", "replace")
    try:
        return json.loads(text, object_pairs_hook=_Pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise ValueError("invalid JSON: nested too deeply") from None


_YAML_TRUE = frozenset({"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"})


def _yaml_loader() -> Any:
    """A PyYAML loader that reads YAML as the kubelet's goyaml.v2 does for sigs.k8s.io/yaml:
    ``y``/``n`` are booleans too, timestamps stay strings, duplicate keys are recorded."""
    import yaml

    class Loader(yaml.SafeLoader):
        duplicates: list[str]

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            own = {id(key) for key, _ in node.value}
            self.flatten_mapping(node)  # "<<" merges first; the node's own keys override them
            seen: set[str] = set()
            merged: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = _yaml_key(self.construct_object(key_node, deep=True))
                if id(key_node) in own:
                    if key in seen:
                        line = key_node.start_mark.line + 1
                        self.duplicates.append(f"line {line}: key {go_quote(key)} already set in map")
                    seen.add(key)
                merged.pop(key, None)
                merged[key] = self.construct_object(value_node, deep=True)
            return _Pairs(merged.items())

    def construct_bool(loader: Any, node: Any) -> bool:
        return loader.construct_scalar(node) in _YAML_TRUE

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))
    Loader.add_constructor("tag:yaml.org,2002:bool", construct_bool)

    def construct_map(loader: Any, node: Any) -> Any:
        return loader.construct_mapping(node)  # the whole mapping at once, duplicates recorded

    Loader.add_constructor("tag:yaml.org,2002:map", construct_map)
    return Loader


def _yaml_key(key: object) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    return str(key)


def _parse_yaml(data: bytes) -> tuple[Any, list[str]]:
    import yaml

    loader = _yaml_loader()(data)
    loader.duplicates = []
    try:
        node = loader.get_node() if loader.check_node() else None  # the first document only
        tree = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise ValueError("error converting YAML to JSON: yaml: " + " ".join(str(exc).split())) from None
    finally:
        loader.dispose()
    return tree, loader.duplicates


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, _Pairs):
        return "object"
    return "array" if isinstance(value, list) else "null"


def _members(tree: Any) -> dict[str, Any]:
    return dict(tree) if isinstance(tree, _Pairs) else {}


def _bare(kind: mi.Type) -> mi.Type:
    """``X | None`` -> ``X`` (the only unions in these documents)."""
    if isinstance(kind, mi.UnionType):
        others = [t for t in kind.types if not isinstance(t, mi.NoneType)]
        if len(others) == 1:
            return others[0]
    return kind


def _clean(node: Any, kind: mi.Type, path: str, strict: list[str]) -> Any:
    """The tree as plain values for ``msgspec.convert``, collecting unknown and duplicate fields.

    Go leaves a field at its zero value for ``null``, so null members are dropped and null
    list items become the item type's zero value.
    """
    kind = _bare(kind)
    if isinstance(kind, mi.StructType) and isinstance(node, _Pairs):
        fields = {field.encode_name: field for field in kind.fields}
        seen: set[str] = set()
        plain: dict[str, Any] = {}
        for key, value in node:
            where = f"{path}.{key}" if path else key
            field = fields.get(key)
            if field is None:
                strict.append(f"unknown field {go_quote(where)}")
                continue
            if key in seen:
                strict.append(f"duplicate field {go_quote(where)}")
            seen.add(key)
            if value is None:
                plain.pop(key, None)
                continue
            plain[key] = _clean(value, field.type, where, strict)
        return plain
    if isinstance(kind, mi.ListType) and isinstance(node, list) and not isinstance(node, _Pairs):
        item_kind = _bare(kind.item_type)
        items = []
        for index, item in enumerate(node):
            if item is None:
                items.append({} if isinstance(item_kind, mi.StructType) else "")
            else:
                items.append(_clean(item, item_kind, f"{path}[{index}]", strict))
        return items
    if isinstance(node, _Pairs):
        return dict(node)
    return node


_GO_TYPES = {"str": "string", "bool": "bool", "int": "number", "float": "number", "array": "array"}


def _type_error(message: str) -> str:
    """msgspec's 'Expected `str`, got `int` - at `$.providers[0].name`' in encoding/json's words."""
    what, sep, where = message.rpartition(" - at ")
    found = re.fullmatch(r"Expected `([a-z]+)(?: \| null)?`, got `([a-z]+)`", what)
    if not sep or found is None:
        return message
    where = where.strip("`").removeprefix("$.")
    expected = _GO_TYPES.get(found.group(1), "struct" if found.group(1) == "object" else found.group(1))
    got = _GO_TYPES.get(found.group(2), "object" if found.group(2) == "object" else found.group(2))
    hint = ""
    if where.endswith("defaultCacheDuration") and got == "number":
        hint = ' (a Go duration is a string: quote it, e.g. "0s" or "12h")'
    return f"json: cannot unmarshal {got} into Go struct field {where} of type {expected}{hint}"


def _duration_error(text: str) -> str:
    """Go's ``time.ParseDuration`` error for ``text``."""
    quoted = go_quote(text)
    body = text.lstrip("+-")
    unit = re.search(r"[^0-9.]+", body)
    if body and unit is None and re.fullmatch(r"[0-9.]+", body) and body.strip(".") != "":
        return f"time: missing unit in duration {quoted}"
    if unit is not None and re.fullmatch(r"([0-9]*\.?[0-9]*[^0-9.]+)+", body):
        for component in re.findall(r"[0-9.]+([^0-9.]+)", body):
            if component not in ("ns", "us", "\u00b5s", "\u03bcs", "ms", "s", "m", "h"):
                return f"time: unknown unit {go_quote(component)} in duration {quoted}"
    return f"time: invalid duration {quoted}"


def _document_type(tree: Any, prefix: str) -> tuple[str, type[_LegacyConfig] | type[_V1Config]]:
    """The document's apiVersion and type, or the kubelet's error for its kind and version."""
    if tree is not None and not isinstance(tree, _Pairs):
        raise KubeletConfigError(
            prefix + f"json: cannot unmarshal {_json_type(tree)} into Go value of type struct "
            "{ APIVersion string; Kind string } (expected a mapping with apiVersion, kind and providers)"
        )
    members = _members(tree)
    api_version, kind = members.get("apiVersion"), members.get("kind")
    if not isinstance(kind, str) or not kind:
        raise KubeletConfigError(prefix + f"Object 'Kind' is missing (expected kind: {KIND})")
    if not isinstance(api_version, str) or not api_version:
        raise KubeletConfigError(
            prefix + f"Object 'apiVersion' is missing (expected apiVersion: {CONFIG_API_VERSIONS[0]})"
        )
    document_type = _DOCUMENT_TYPES.get(api_version) if kind == KIND else None
    if document_type is None:
        if kind == "KubeletConfiguration" and api_version.startswith(CONFIG_GROUP + "/"):
            raise KubeletConfigError(
                prefix + f"failed to decode {go_quote(kind)} (wrong Kind): this is the kubelet's own config "
                "file, not its --image-credential-provider-config"
            )
        raise KubeletConfigError(
            prefix + f"no kind {go_quote(kind)} is registered for version {go_quote(api_version)} in scheme "
            f"{go_quote(_SCHEME)} (expected kind {KIND}, apiVersion one of {', '.join(CONFIG_API_VERSIONS)})"
        )
    return api_version, document_type


def decode_document(data: bytes, source: str) -> tuple[str, list[CredentialProvider]]:
    """One config document's apiVersion and providers; ``KubeletConfigError`` like the kubelet's."""
    prefix = f"error decoding config {go_quote(source)}: "
    yaml_duplicates: list[str] = []
    try:
        if data.decode("utf-8", "replace").lstrip().startswith("{"):
            tree = _parse_json(data)
        else:
            tree, yaml_duplicates = _parse_yaml(data)
    except ValueError as exc:
        raise KubeletConfigError(prefix + str(exc)) from None
    api_version, document_type = _document_type(tree, prefix)
    strict: list[str] = []
    plain = _clean(tree, mi.type_info(document_type), "", strict)
    try:
        document = msgspec.convert(plain, document_type)
    except msgspec.ValidationError as exc:
        raise KubeletConfigError(prefix + _type_error(str(exc))) from None
    providers = [_as_v1(provider) for provider in document.providers or ()]
    for provider in providers:
        if provider.default_cache_duration is not None:
            try:
                goduration.parse(provider.default_cache_duration)
            except ValueError:
                raise KubeletConfigError(prefix + _duration_error(provider.default_cache_duration)) from None
    errors = [f"yaml: unmarshal errors:\n  {duplicate}" for duplicate in yaml_duplicates] + strict
    if errors:
        hint = ""
        if any("tokenAttributes" in error for error in strict) and api_version != CONFIG_API_VERSIONS[0]:
            hint = f" (tokenAttributes exists only in apiVersion {CONFIG_API_VERSIONS[0]})"
        raise KubeletConfigError(prefix + "strict decoding error: " + ", ".join(errors) + hint)
    return api_version, providers


def _as_v1(provider: CredentialProviderBase) -> CredentialProvider:
    if isinstance(provider, CredentialProvider):
        return provider
    return CredentialProvider(**msgspec.structs.asdict(provider))


# --- reading a file or a directory --------------------------------------------------------------


def _go_errno(exc: OSError) -> str:
    """Go's text of an errno (syscall.Errno): the C library's, lower-cased at the start."""
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def config_files(path: str) -> tuple[bool, list[str]]:
    """Whether ``path`` is a directory, and the files the kubelet reads there, in merge order."""
    try:
        is_dir = os.path.isdir(path)
        os.stat(path)
    except OSError as exc:
        raise KubeletConfigError(
            f"unable to access path {go_quote(path)}: stat {path}: {_go_errno(exc)}"
        ) from None
    if not is_dir:
        return False, [path]
    with os.scandir(path) as entries:
        files = [
            os.path.join(path, entry.name)
            for entry in entries
            if not entry.is_dir(follow_symlinks=False)
            and os.path.splitext(entry.name)[1] in CONFIG_EXTENSIONS
        ]
    files.sort(key=lambda name: name.encode("utf-8", "surrogateescape"))
    if not files:
        raise KubeletConfigError(f"no configuration files found in directory {go_quote(path)}")
    return True, files


def load(path: str) -> LoadedConfig:
    """``readCredentialProviderConfig``: a file or a directory, merged, not yet validated."""
    if not path:
        raise KubeletConfigError("credential provider config path is empty")
    directory, files = config_files(path)
    providers: list[LoadedProvider] = []
    names: set[str] = set()
    for file in files:
        try:
            if os.path.isdir(file):  # the kubelet's own words for it: "read <file>: is a directory"
                with open(file, "rb") as handle:
                    handle.read()
            # A FIFO or device would block the read (the kubelet hangs on it): never read one.
            data = read_regular_file(file, MAX_FILE_BYTES)
        except OSError as exc:
            step = "read" if os.path.isdir(file) else "open"
            raise KubeletConfigError(
                f"unable to read file {go_quote(file)}: {step} {file}: {_go_errno(exc)}"
            ) from None
        except FileTooLargeError:
            raise KubeletConfigError(f"{file} is larger than {MAX_FILE_BYTES} bytes") from None
        except UnsafeFileError as exc:
            raise KubeletConfigError(f"unable to read file {go_quote(file)}: {exc}") from None
        api_version, document_providers = decode_document(data, file)
        for provider in document_providers:
            if provider.name in names:
                raise KubeletConfigError(
                    f"duplicate provider name {go_quote(provider.name)} found in configuration file(s)"
                )
            names.add(provider.name)
            providers.append(LoadedProvider(provider=provider, source=file, config_api_version=api_version))
    return LoadedConfig(path=path, directory=directory, files=files, providers=providers)


# --- validateCredentialProviderConfig -----------------------------------------------------------

_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS1123_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    """``validation.RegexError``."""
    if not examples:
        return f"{message} (regex used for validation is '{fmt}')"
    quoted = " or ".join(f"'{example}', " for example in examples)
    return f"{message} (e.g. {quoted}regex used for validation is '{fmt}')"


def _go_len(text: str) -> int:
    """Go's ``len`` of a string: its UTF-8 bytes."""
    return len(text.encode("utf-8", "surrogateescape"))


def go_json_strings(values: Sequence[str]) -> str:
    """``json.Marshal`` of a Go ``[]string``, as field errors print a list value: no spaces,
    ``<``, ``>`` and ``&`` escaped."""
    text = json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def qualified_name_errors(value: str) -> list[str]:
    """``validation.IsQualifiedName`` (``content.IsLabelKey``): an annotation key such as
    ``example.com/my-key``."""
    parts = value.split("/")
    if len(parts) > 2:
        return [
            "a valid label key "
            + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    errors: list[str] = []
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            if _go_len(prefix) > 253:
                errors.append("prefix part must be no more than 253 bytes")
            if not re.fullmatch(_DNS1123_FMT, prefix):
                errors.append("prefix part " + _regex_error(_DNS1123_MSG, _DNS1123_FMT, "example.com"))
    if not name:
        errors.append("name part must be non-empty")
    elif _go_len(name) > 63:
        errors.append("name part must be no more than 63 bytes")
    if not re.fullmatch(_QNAME_FMT, name):
        errors.append("name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errors


def _go_url_error(glob: str, exc: BadURLError) -> str:
    """Go's ``*url.Error`` text for ``url.Parse("https://" + glob)``, from our parser's reason."""
    why = str(exc)
    quoted = re.fullmatch(r"(invalid URL escape |invalid character |invalid port )('.*'|\".*\")(.*)", why)
    if quoted is not None:  # Python's repr() quoting -> Go's %q
        import ast

        why = quoted.group(1) + go_quote(ast.literal_eval(quoted.group(2))) + quoted.group(3)
    if why in ("invalid control character in URL", "invalid userinfo"):
        why = "net/url: " + why
    return f"parse {go_quote('https://' + glob.partition('#')[0])}: {why}"


def _not_supported(path: str, value: str, supported: Iterable[str]) -> str:
    values = ", ".join(go_quote(v) for v in supported)
    return f"{path}: Unsupported value: {go_quote(value)}: supported values: {values}"


def validate(  # noqa: PLR0912 - one branch per kubelet check, in the kubelet's order
    providers: Sequence[CredentialProvider], *, token_gate: bool = True
) -> list[str]:
    """``validateCredentialProviderConfig``: its field errors in its words (empty: valid).

    ``token_gate`` is the ``KubeletServiceAccountTokenForCredentialProviders`` feature gate
    (beta and on by default since 1.34).
    """
    errors: list[str] = []
    if not providers:
        errors.append("providers: Required value: at least 1 item in plugins is required")
    seen: set[str] = set()
    for provider in providers:
        name = provider.name
        for bad, why in (("/", "cannot contain '/'"), (" ", "cannot contain spaces")):
            if bad in name:
                errors.append(f"providers.name: Invalid value: {go_quote(name)}: provider name {why}")
        if name in (".", ".."):
            errors.append(
                f"providers.name: Invalid value: {go_quote(name)}: provider name cannot be '{name}'"
            )
        if name in seen:
            errors.append(f"providers.name: Duplicate value: {go_quote(name)}")
        seen.add(name)
        if not provider.api_version:
            errors.append("providers.apiVersion: Required value")
        elif provider.api_version not in PLUGIN_API_VERSIONS:
            errors.append(
                _not_supported("providers.apiVersion", provider.api_version, SUPPORTED_PLUGIN_API_VERSIONS)
            )
        if not provider.match_images:
            errors.append("providers.matchImages: Required value: at least 1 item in matchImages is required")
        for glob in provider.match_images or ():
            try:
                parse_schemeless(glob)
            except BadURLError as exc:
                errors.append(
                    f"providers.matchImages: Invalid value: {go_quote(glob)}: match image is invalid: "
                    + _go_url_error(glob, exc)
                )
        if provider.default_cache_duration is None:
            errors.append("providers.defaultCacheDuration: Required value")
        else:
            nanoseconds = goduration.parse(provider.default_cache_duration)
            if nanoseconds < 0:
                shown = go_quote(goduration.format(nanoseconds))  # a metav1.Duration, JSON-encoded
                errors.append(
                    f"providers.defaultCacheDuration: Invalid value: {shown}: "
                    "must be greater than or equal to 0"
                )
        if provider.token_attributes is not None:
            errors += _validate_token_attributes(provider, token_gate=token_gate)
    return errors


def _validate_token_attributes(provider: CredentialProvider, *, token_gate: bool) -> list[str]:
    attributes = provider.token_attributes
    assert attributes is not None
    path = "providers.tokenAttributes"
    errors: list[str] = []
    if not token_gate:
        errors.append(
            f"{path}: Forbidden: tokenAttributes is not supported when "
            "KubeletServiceAccountTokenForCredentialProviders feature gate is disabled"
        )
    if not attributes.service_account_token_audience:
        errors.append(f"{path}.serviceAccountTokenAudience: Required value")
    if attributes.require_service_account is None:
        errors.append(f"{path}.requireServiceAccount: Required value")
    if provider.api_version != PLUGIN_V1:
        errors.append(f"{path}: Forbidden: tokenAttributes is only supported for {PLUGIN_V1} API version")
    required = attributes.required_service_account_annotation_keys or []
    optional = attributes.optional_service_account_annotation_keys or []
    if attributes.require_service_account is False and required:
        errors.append(
            f"{path}.requiredServiceAccountAnnotationKeys: Forbidden: requireServiceAccount cannot be false "
            "when requiredServiceAccountAnnotationKeys is set"
        )
    for field, keys in (
        ("requiredServiceAccountAnnotationKeys", required),
        ("optionalServiceAccountAnnotationKeys", optional),
    ):
        seen_keys: set[str] = set()
        for key in keys:
            # QualifiedName, except that case does not matter.
            errors += [
                f"{path}.{field}: Invalid value: {go_quote(key)}: {message}"
                for message in qualified_name_errors(key.lower())
            ]
            if key in seen_keys:
                errors.append(f"{path}.{field}: Duplicate value: {go_quote(key)}")
            seen_keys.add(key)
    both = sorted(set(required) & set(optional))
    if both:
        listed = go_json_strings(both)
        errors.append(
            f"{path}: Invalid value: {listed}: annotation keys cannot be both required and optional"
        )
    if not attributes.cache_type:
        errors.append(
            f"{path}.cacheType: Required value: cacheType is required to be set when tokenAttributes is "
            f"specified. Supported values are: {', '.join(CACHE_TYPES)}"
        )
    elif attributes.cache_type not in CACHE_TYPES:
        errors.append(_not_supported(f"{path}.cacheType", attributes.cache_type, CACHE_TYPES))
    return errors


def aggregate(messages: Sequence[str]) -> str:
    """``utilerrors.Aggregate``: one message as is, several (deduplicated) inside ``[...]``."""
    unique = list(dict.fromkeys(messages))
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"
