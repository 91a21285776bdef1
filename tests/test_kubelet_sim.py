"""The kubelet simulator is strict: every rule of KUBELET.md, proved with small fake plugins."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.kubelet_sim import (
    GLOBAL_CACHE_KEY,
    V1,
    V1ALPHA1,
    V1BETA1,
    AuthConfig,
    BadPattern,
    ConfigDecodeError,
    ConfigError,
    ConfigValidationError,
    FakeClock,
    GoDurationError,
    GoURLError,
    ImageReferenceError,
    Keyring,
    KubeletSimulator,
    PluginBinaryError,
    ProviderStatus,
    Reason,
    ResponseRejected,
    ServiceAccount,
    decode_config,
    decode_response,
    encode_request,
    format_go_duration,
    go_filepath_match,
    go_split_host_port,
    go_url_parse,
    is_default_registry_match,
    judge_response,
    load_config,
    normalize_image,
    parse_go_duration,
    split_image,
    urls_match,
    validate_config,
)

CONFIG_V1 = "kubelet.config.k8s.io/v1"
KIND = "CredentialProviderResponse"
IMAGE = "registry.example.com/app"
ABSENT: Any = object()
GENERIC = "error decoding credential provider plugin response from stdout"


# ---------------------------------------------------------------------------------------------------------------
# helpers: fake plugins, responses, configs
# ---------------------------------------------------------------------------------------------------------------


def write_plugin(
    bin_dir: Path,
    name: str = "plugin",
    stdout: bytes | str = b"",
    *,
    exit_code: int = 0,
    stderr: bytes | str = b"",
    body: str | None = None,
) -> Path:
    """An executable Python script answering with fixed bytes (or running ``body``)."""
    out = stdout.encode() if isinstance(stdout, str) else stdout
    err = stderr.encode() if isinstance(stderr, str) else stderr
    code = body or (
        "import sys\n"
        "sys.stdin.buffer.read()\n"
        f"sys.stdout.buffer.write({out!r})\n"
        f"sys.stderr.buffer.write({err!r})\n"
        "sys.stdout.flush()\n"
        f"sys.exit({exit_code})\n"
    )
    path = bin_dir / name
    path.write_text(f"#!{sys.executable} -I\n" + textwrap.dedent(code))
    path.chmod(0o755)
    return path


def response(
    auth: Any = ABSENT,
    *,
    cache_key_type: Any = "Registry",
    cache_duration: Any = "6h",
    api_version: Any = V1,
    kind: Any = KIND,
    **extra: Any,
) -> str:
    doc: dict[str, Any] = {}
    for key, value in (
        ("apiVersion", api_version),
        ("kind", kind),
        ("cacheKeyType", cache_key_type),
        ("cacheDuration", cache_duration),
        ("auth", auth),
    ):
        if value is not ABSENT:
            doc[key] = value
    doc.update(extra)
    return json.dumps(doc)


def creds(username: str = "u", password: str = "p") -> dict[str, str]:  # noqa: S107
    return {"username": username, "password": password}


GOOD = response({"registry.example.com": creds()})


def provider(
    name: str = "plugin",
    match: tuple[str, ...] = ("registry.example.com",),
    default_cache: Any = "1h",
    api_version: Any = V1,
    **extra: Any,
) -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "matchImages": list(match), "apiVersion": api_version}
    if default_cache is not ABSENT:
        p["defaultCacheDuration"] = default_cache
    p.update(extra)
    return p


def config(*providers: dict[str, Any], api_version: str = CONFIG_V1) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "CredentialProviderConfig", "providers": list(providers)}


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    return d


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def simulator(
    bin_dir: Path,
    stdout: bytes | str = GOOD,
    *,
    clock: FakeClock | None = None,
    exit_code: int = 0,
    stderr: str = "",
    body: str | None = None,
    **provider_fields: Any,
) -> KubeletSimulator:
    """One provider named ``plugin`` with the given answer."""
    write_plugin(bin_dir, "plugin", stdout, exit_code=exit_code, stderr=stderr, body=body)
    return KubeletSimulator(config(provider(**provider_fields)), bin_dir, clock=clock or FakeClock())


# ---------------------------------------------------------------------------------------------------------------
# Go ports: durations
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("12h", 12 * 3600 * 10**9),
        ("0", 0),
        ("-0", 0),
        ("+0", 0),
        ("0s", 0),
        ("+5s", 5 * 10**9),
        ("1.5h", 5400 * 10**9),
        (".5s", 500_000_000),
        ("1.s", 10**9),
        ("1h30m", 5400 * 10**9),
        ("1h1h", 7200 * 10**9),
        ("-1m", -60 * 10**9),
        ("1ns", 1),
        ("1us", 1000),
        ("1\u00b5s", 1000),
        ("1\u03bcs", 1000),
        ("1.0000000001s", 10**9),
        ("9223372036854775807ns", 2**63 - 1),
        ("-9223372036854775808ns", -(2**63)),
        ("2562047h47m16.854775807s", 2**63 - 1),
    ],
)
def test_parse_go_duration(text: str, ns: int) -> None:
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("1", 'time: missing unit in duration "1"'),
        ("3600", 'time: missing unit in duration "3600"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("1H", 'time: unknown unit "H" in duration "1H"'),
        ("1h ", 'time: unknown unit "h " in duration "1h "'),
        (" 1h", 'time: invalid duration " 1h"'),
        ("h", 'time: invalid duration "h"'),
        (".s", 'time: invalid duration ".s"'),
        ("-", 'time: invalid duration "-"'),
        ("--1s", 'time: invalid duration "--1s"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        ("2562048h", 'time: invalid duration "2562048h"'),
        ("1\u00e9", 'time: unknown unit "\\xc3\\xa9" in duration "1\\xc3\\xa9"'),
    ],
)
def test_parse_go_duration_errors(text: str, message: str) -> None:
    with pytest.raises(GoDurationError) as e:
        parse_go_duration(text)
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1500, "1.5\u00b5s"),
        (1_000_001, "1.000001ms"),
        (1_500_000_000, "1.5s"),
        (90 * 10**9, "1m30s"),
        (12 * 3600 * 10**9, "12h0m0s"),
        (-3600 * 10**9, "-1h0m0s"),
        (-(2**63), "-2562047h47m16.854775808s"),
        (2**63 - 1, "2562047h47m16.854775807s"),
    ],
)
def test_format_go_duration(ns: int, text: str) -> None:
    assert format_go_duration(ns) == text
    assert parse_go_duration(text) == ns


# ---------------------------------------------------------------------------------------------------------------
# Go ports: url.Parse, SplitHostPort, filepath.Match
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("https://a b", 'invalid character " " in host name'),
        ("https://a{b}.io", 'invalid character "{" in host name'),
        ("https://r.io:abc", 'invalid port ":abc" after host'),
        ("https://r.io:80:80", 'invalid port ":80:80" after host'),
        ("https://::1", 'invalid port "::1" after host'),
        ("https://[::1", "missing ']' in host"),
        ("https://r[a].io", "invalid IP-literal"),
        ("https://[1.2.3.4]", "invalid IP-literal"),
        ("https://[nope]", 'invalid host: ParseAddr("nope"): unable to parse IP'),
        ("https://r.io/%zz", 'invalid URL escape "%zz"'),
        ("https://r%41.io", 'invalid URL escape "%41"'),
        ("https://r.io/a\tb", "net/url: invalid control character in URL"),
        ("https://a b@r.io", "net/url: invalid userinfo"),
    ],
)
def test_go_url_parse_errors(raw: str, why: str) -> None:
    with pytest.raises(GoURLError) as e:
        go_url_parse(raw)
    assert e.value.why == why
    assert str(e.value).startswith("parse ")


def test_go_url_parse_parts() -> None:
    u = go_url_parse("https://user:pw@[::1]:5000/a/%62?q=1#frag")
    assert (u.scheme, u.host, u.path, u.raw_query, u.fragment) == (
        "https",
        "[::1]:5000",
        "/a/b",
        "q=1",
        "frag",
    )
    assert go_url_parse("https://r.io:").host == "r.io:"
    assert go_url_parse("HTTPS://R.io/X").host == "R.io"
    assert (
        go_url_parse("https://r.io:80:80", strict_colons=False).host == "r.io:80:80"
    )  # GODEBUG urlstrictcolons=0


@pytest.mark.parametrize(
    ("hostport", "expected"),
    [
        ("r.io:5000", ("r.io", "5000")),
        ("r.io:", ("r.io", "")),
        ("[::1]:5000", ("::1", "5000")),
        ("r.io", None),
        ("[::1]", None),
        ("a:b:c", None),
        ("[::1]x:1", None),
    ],
)
def test_go_split_host_port(hostport: str, expected: tuple[str, str] | None) -> None:
    if expected is None:
        with pytest.raises(ValueError, match="address"):
            go_split_host_port(hostport)
    else:
        assert go_split_host_port(hostport) == expected


@pytest.mark.parametrize(
    ("pattern", "name", "matched"),
    [
        ("*", "abc", True),
        ("*", "", True),
        ("*", "a/b", False),
        ("a*c", "abc", True),
        ("a*c", "abcd", False),
        ("a*", "", False),
        ("", "", True),
        ("", "a", False),
        ("a?c", "abc", True),
        ("[a-c]x", "bx", True),
        ("[^a-c]x", "bx", False),
        ("\\*", "*", True),
        ("\\*", "a", False),
        ("*b*", "abc", True),
        ("Reg*", "registry", False),
    ],
)
def test_go_filepath_match(pattern: str, name: str, matched: bool) -> None:
    assert go_filepath_match(pattern, name) is matched


@pytest.mark.parametrize("pattern", ["[", "[a-", "a\\", "[]a]"])
def test_go_filepath_match_bad_pattern(pattern: str) -> None:
    with pytest.raises(BadPattern):
        go_filepath_match(pattern, "a")


# ---------------------------------------------------------------------------------------------------------------
# Matching table (matchImages and auth keys use the same rule)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob", "image", "matched"),
    [
        ("registry.example.com", "registry.example.com/app", True),
        ("registry.example.com", "registry.example.com/team/app", True),
        ("*.example.com", "registry.example.com/app", True),
        ("reg*.example.com", "registry.example.com/app", True),
        ("*istry.*.com", "registry.example.com/app", True),
        # same number of labels, * inside one label
        ("*.example.com", "a.b.example.com/app", False),
        ("*.example.com", "example.com/app", False),
        ("*.io", "a.b.io/x", False),
        ("*.*.io", "a.b.io/x", True),
        ("*", "localhost/x", True),
        ("*", "docker.io/library/nginx", False),
        ("*.*", "docker.io/library/nginx", True),
        # look-alikes
        ("registry.example.com", "registry.example.com.evil.io/app", False),
        ("registry.example.com", "evilregistry.example.com/app", False),
        ("*.example.com", "registry.example.com.evil.io/app", False),
        ("example.com", "example.com.evil.io/x", False),
        # ports: the same port string
        ("r.io:5000", "r.io:5000/x", True),
        ("r.io", "r.io:5000/x", False),
        ("r.io:5000", "r.io/x", False),
        ("r.io:443", "r.io/x", False),
        ("r.io:05000", "r.io:5000/x", False),
        ("*.r.io", "a.r.io:5000/x", False),
        ("*.r.io:5000", "a.r.io:5000/x", True),
        ("r.io:", "r.io/x", True),  # an empty port is no port
        # paths: a raw string prefix, no globs
        ("r.io/team", "r.io/team/app", True),
        ("r.io/team", "r.io/teamx/img", True),
        ("r.io/team/", "r.io/teamx/img", False),
        ("r.io/team/", "r.io/team/img", True),
        ("r.io/team/*", "r.io/team/img", False),
        ("r.io/Team", "r.io/team/img", False),
        ("r.io/team/app", "r.io/team", False),
        # case-sensitive hosts
        ("R.io", "r.io/x", False),
        ("*.Example.com", "a.example.com/x", False),
        ("*.example.com", "a.Example.com/x", False),
        # IPv6
        ("[::1]:5000", "[::1]:5000/x", True),
        ("[::1]:5000", "[::1]:5001/x", False),
        ("[::1]", "[::1]/x", False),  # no port: the label is "[::1]", a character class
        # accepted by validation, never matching
        ("https://x.io", "x.io/a", False),
        ("x.io/team/*", "x.io/team/a", False),
        # ? and [...] are unusable
        ("r?.io", "ra.io/x", False),
        ("r[a-z].io", "ra.io/x", False),
    ],
)
def test_urls_match(glob: str, image: str, matched: bool) -> None:
    assert urls_match(glob, image) is matched


def test_match_images_decide_whether_the_plugin_runs(bin_dir: Path) -> None:
    sim = simulator(bin_dir, match=("*.example.com", "r.io:5000/team"))
    assert sim.pull("registry.example.com/app") == [("u", "p")]
    for image in ("a.b.example.com/x", "registry.example.com.evil.io/app", "r.io/team/x", "r.io:5000/other"):
        result = sim.lookup(image)
        assert result.credentials == []
        assert result.by_provider("plugin").status is ProviderStatus.NOT_MATCHED
    assert len(sim.execs) == 1
    sim.pull("r.io:5000/teamx/y")  # raw prefix: teamx starts with team
    assert len(sim.execs) == 2


# ---------------------------------------------------------------------------------------------------------------
# Image normalization
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "repo"),
    [
        ("nginx", "docker.io/library/nginx"),
        ("nginx:1.2", "docker.io/library/nginx"),
        ("library/nginx@sha256:" + "a" * 64, "docker.io/library/nginx"),
        ("nginx:1.2@sha256:" + "b" * 64, "docker.io/library/nginx"),
        ("docker.io/nginx", "docker.io/library/nginx"),
        ("index.docker.io/nginx", "docker.io/library/nginx"),
        ("foo/bar", "docker.io/foo/bar"),
        ("host:5000/a/b:tag", "host:5000/a/b"),
        ("reg:5000/a/b@sha256:" + "c" * 64, "reg:5000/a/b"),
        ("localhost/x", "localhost/x"),
        ("localhost:5000/x:1", "localhost:5000/x"),
        ("[::1]:5000/x:1", "[::1]:5000/x"),
        ("Foo.io/bar", "Foo.io/bar"),
        ("registry.example.com/app", "registry.example.com/app"),
    ],
)
def test_normalize_image(ref: str, repo: str) -> None:
    assert normalize_image(ref) == repo
    assert normalize_image(repo) == repo


def test_split_image_keeps_tag_and_digest() -> None:
    digest = "sha256:" + "d" * 64
    assert split_image(f"host:5000/a/b:v1@{digest}") == ("host:5000/a/b", "v1", digest)


@pytest.mark.parametrize(
    "ref", ["", "Nginx", "r.io/a/B", "a@sha256:abc", "a@sha256:" + "A" * 64, "a" * 64, "r.io/a b", "r.io/-a"]
)
def test_normalize_image_rejects(ref: str) -> None:
    with pytest.raises(ImageReferenceError):
        normalize_image(ref)


def test_default_registry_match() -> None:
    assert is_default_registry_match("docker.io/library/nginx")
    assert is_default_registry_match("index.docker.io/library/nginx")
    assert is_default_registry_match("library/nginx")
    assert not is_default_registry_match("r.io/x")
    assert not is_default_registry_match("host:5000/x")
    assert not is_default_registry_match("/x")


# ---------------------------------------------------------------------------------------------------------------
# Config: decoding
# ---------------------------------------------------------------------------------------------------------------

YAML_CONFIG = """\
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: plugin
    matchImages: ["*.example.com", "r.io:5000"]
    defaultCacheDuration: 12h
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args: [get-credentials, --verbose]
    env:
      - name: AWS_REGION
        value: eu-west-1
"""


def test_decode_yaml_and_json_configs() -> None:
    cfg = decode_config(YAML_CONFIG)
    (p,) = cfg.providers
    assert p.name == "plugin"
    assert p.match_images == ("*.example.com", "r.io:5000")
    assert p.default_cache_duration == 12 * 3600 * 10**9
    assert p.args == ("get-credentials", "--verbose")
    assert [(e.name, e.value) for e in p.env] == [("AWS_REGION", "eu-west-1")]
    assert p.token_attributes is None
    as_json = json.dumps(config(provider(args=["get-credentials", "--verbose"])))
    assert decode_config(as_json).providers[0].args == ("get-credentials", "--verbose")
    assert decode_config(config(provider())).providers[0].name == "plugin"


@pytest.mark.parametrize("version", ["kubelet.config.k8s.io/v1beta1", "kubelet.config.k8s.io/v1alpha1"])
def test_older_config_versions_decode_but_have_no_token_attributes(version: str) -> None:
    assert (
        decode_config(config(provider(api_version=V1BETA1), api_version=version)).providers[0].name
        == "plugin"
    )
    ta = {"serviceAccountTokenAudience": "a", "cacheType": "Token", "requireServiceAccount": True}
    with pytest.raises(ConfigDecodeError, match=r'unknown field \\?"providers\[0\].tokenAttributes'):
        decode_config(config(provider(tokenAttributes=ta), api_version=version))


@pytest.mark.parametrize(
    ("doc", "unknown"),
    [
        ({**config(provider()), "extra": 1}, "extra"),
        (config(provider(matchimages=["x"])), "providers[0].matchimages"),
        (config(provider(MatchImages=["x"])), "providers[0].MatchImages"),
        (
            config(provider(env=[{"name": "A", "value": "b", "valueFrom": "c"}])),
            "providers[0].env[0].valueFrom",
        ),
        (
            config(
                provider(
                    tokenAttributes={
                        "serviceAccountTokenAudience": "a",
                        "cacheType": "Token",
                        "requireServiceAccount": True,
                        "audience": "b",
                    }
                )
            ),
            "providers[0].tokenAttributes.audience",
        ),
        ({**config(provider()), "metadata": {"name": "x"}}, "metadata"),
    ],
)
def test_config_unknown_fields(doc: dict[str, Any], unknown: str) -> None:
    with pytest.raises(ConfigDecodeError) as e:
        decode_config(json.dumps(doc), source="c.json")
    assert unknown in e.value.unknown_fields
    assert "strict decoding error: unknown field" in str(e.value)
    with pytest.raises(ConfigDecodeError):
        decode_config(doc)  # the same as a Python mapping


def test_yaml_merge_keys_are_not_duplicates() -> None:
    text = YAML_CONFIG.replace(
        "  - name: plugin\n", "  - <<: {name: base, apiVersion: x}\n    name: plugin\n"
    )
    (p,) = decode_config(text).providers
    assert (p.name, p.api_version) == ("plugin", V1)


def test_config_duplicate_fields_json_and_yaml() -> None:
    text = json.dumps(config(provider()))
    dup = text.replace('"name": "plugin"', '"name": "plugin", "name": "other"')
    with pytest.raises(ConfigDecodeError, match="duplicate field") as e:
        decode_config(dup)
    assert e.value.duplicate_fields == ["providers[0].name"]
    with pytest.raises(
        ConfigDecodeError, match=r'line 12: key "defaultCacheDuration" already set in map'
    ) as e:
        decode_config(YAML_CONFIG + "    defaultCacheDuration: 1h\n")
    assert len(e.value.duplicate_fields) == 1


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p.update(defaultCacheDuration=3600), "cannot unmarshal number"),
        (lambda p: p.update(defaultCacheDuration="12"), 'time: missing unit in duration "12"'),
        (lambda p: p.update(defaultCacheDuration="1d"), 'time: unknown unit "d" in duration "1d"'),
        (
            lambda p: p.update(name=1),
            "cannot unmarshal number into Go struct field providers[0].name of type string",
        ),
        (lambda p: p.update(matchImages="r.io"), "cannot unmarshal string"),
        (lambda p: p.update(args="--x"), "cannot unmarshal string"),
        (lambda p: p.update(env={"A": "b"}), "cannot unmarshal object"),
    ],
)
def test_config_type_errors(mutate: Callable[[dict[str, Any]], None], message: str) -> None:
    p = provider()
    mutate(p)
    with pytest.raises(ConfigDecodeError) as e:
        decode_config(json.dumps(config(p)))
    assert message in str(e.value)


def test_config_yaml_scalars_are_not_strings() -> None:
    # YAML 1.1 as goyaml.v2 reads it: an unquoted number or y/yes/on is not a string
    for value in ("123", "y", "yes", "on", "3600"):
        text = YAML_CONFIG.replace("name: plugin", f"name: {value}")
        with pytest.raises(ConfigDecodeError, match="cannot unmarshal"):
            decode_config(text)
    # timestamps stay strings
    assert (
        decode_config(YAML_CONFIG.replace("name: plugin", "name: 2001-12-14")).providers[0].name
        == "2001-12-14"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Object 'Kind' is missing"),
        ("{}", "Object 'Kind' is missing"),
        ('{"kind": "CredentialProviderConfig"}', "Object 'apiVersion' is missing"),
        ('{"kind": "Config", "apiVersion": "kubelet.config.k8s.io/v1"}', 'no kind "Config" is registered'),
        (
            '{"kind": "CredentialProviderConfig", "apiVersion": "kubelet.config.k8s.io/v2"}',
            'no kind "CredentialProviderConfig" is registered for version "kubelet.config.k8s.io/v2"',
        ),
        ('{"kind": "KubeletConfiguration", "apiVersion": "kubelet.config.k8s.io/v1beta1"}', "(wrong Kind)"),
        ('{"kind": "CredentialProviderConfig", "apiVersion": "a/b/c"}', "unexpected GroupVersion string"),
        ('{"kind": "CredentialProviderConfig",}', "invalid character"),
        ('{"kind": "CredentialProviderConfig"} {}', "after top-level value"),
        ("[1]", "cannot unmarshal array"),
        ("kind: [", "error converting YAML to JSON"),
    ],
)
def test_config_envelope_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigDecodeError) as e:
        decode_config(text, source="/etc/kubernetes/cp.yaml")
    assert message in str(e.value)
    assert str(e.value).startswith('error decoding config "/etc/kubernetes/cp.yaml": ')


# ---------------------------------------------------------------------------------------------------------------
# Config: validation messages
# ---------------------------------------------------------------------------------------------------------------

TA = {
    "serviceAccountTokenAudience": "registry.example.com",
    "cacheType": "ServiceAccount",
    "requireServiceAccount": True,
}


def errors_of(*providers: dict[str, Any]) -> list[str]:
    return validate_config(decode_config(config(*providers)))


def test_valid_config_has_no_errors() -> None:
    assert errors_of(provider(), provider("other", default_cache="0s", tokenAttributes=TA)) == []
    # accepted by validation although they never match as intended
    assert errors_of(provider(match=("https://x.io", "x.io/team/*", "*"))) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"default_cache": ABSENT}, "providers.defaultCacheDuration: Required value"),
        ({"default_cache": None}, "providers.defaultCacheDuration: Required value"),
        (
            {"default_cache": "-1h"},
            'providers.defaultCacheDuration: Invalid value: "-1h0m0s": must be greater than or equal to 0',
        ),
        ({"match": ()}, "providers.matchImages: Required value: at least 1 item in matchImages is required"),
        (
            {"match": ("a b",)},
            'providers.matchImages: Invalid value: "a b": match image is invalid: parse "https://a b": invalid '
            'character " " in host name',
        ),
        (
            {"match": ("r.io:port",)},
            'providers.matchImages: Invalid value: "r.io:port": match image is invalid: parse "https://r.io:port": '
            'invalid port ":port" after host',
        ),
        ({"name": "a/b"}, "providers.name: Invalid value: \"a/b\": provider name cannot contain '/'"),
        ({"name": "a b"}, 'providers.name: Invalid value: "a b": provider name cannot contain spaces'),
        ({"name": "."}, "providers.name: Invalid value: \".\": provider name cannot be '.'"),
        ({"name": ".."}, "providers.name: Invalid value: \"..\": provider name cannot be '..'"),
        ({"api_version": ""}, "providers.apiVersion: Required value"),
        (
            {"api_version": "credentialprovider.kubelet.k8s.io/v2"},
            'providers.apiVersion: Unsupported value: "credentialprovider.kubelet.k8s.io/v2": supported values: '
            '"credentialprovider.kubelet.k8s.io/v1", "credentialprovider.kubelet.k8s.io/v1alpha1", '
            '"credentialprovider.kubelet.k8s.io/v1beta1"',
        ),
    ],
)
def test_provider_validation_messages(fields: dict[str, Any], message: str) -> None:
    assert errors_of(provider(**fields)) == [message]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"cacheType": None},
            "providers.tokenAttributes.cacheType: Required value: cacheType is required to be set when "
            "tokenAttributes is specified. Supported values are: ServiceAccount, Token",
        ),
        (
            {"cacheType": "token"},
            'providers.tokenAttributes.cacheType: Unsupported value: "token": supported values: "ServiceAccount", '
            '"Token"',
        ),
        (
            {"serviceAccountTokenAudience": ""},
            "providers.tokenAttributes.serviceAccountTokenAudience: Required value",
        ),
        ({"requireServiceAccount": None}, "providers.tokenAttributes.requireServiceAccount: Required value"),
        (
            {"requireServiceAccount": False, "requiredServiceAccountAnnotationKeys": ["example.com/role"]},
            "providers.tokenAttributes.requiredServiceAccountAnnotationKeys: Forbidden: requireServiceAccount cannot "
            "be false when requiredServiceAccountAnnotationKeys is set",
        ),
        (
            {"optionalServiceAccountAnnotationKeys": ["a", "a"]},
            'providers.tokenAttributes.optionalServiceAccountAnnotationKeys: Duplicate value: "a"',
        ),
        (
            {
                "requiredServiceAccountAnnotationKeys": ["b", "a"],
                "optionalServiceAccountAnnotationKeys": ["a", "b"],
            },
            'providers.tokenAttributes: Invalid value: ["a","b"]: annotation keys cannot be both required '
            "and optional",
        ),
        (
            {"optionalServiceAccountAnnotationKeys": ["bad key"]},
            'providers.tokenAttributes.optionalServiceAccountAnnotationKeys: Invalid value: "bad key": name part '
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
            "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "  # Go's double spaces
            "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ),
        (
            {"requiredServiceAccountAnnotationKeys": ["Example_Com/x"]},
            'providers.tokenAttributes.requiredServiceAccountAnnotationKeys: Invalid value: "Example_Com/x": prefix '
            "part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
            "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
            "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ),
    ],
)
def test_token_attributes_validation_messages(changes: dict[str, Any], message: str) -> None:
    ta = {**TA, **changes}
    assert errors_of(provider(tokenAttributes=ta)) == [message]


def test_token_attributes_need_v1_provider_and_feature_gate() -> None:
    assert errors_of(provider(api_version=V1BETA1, tokenAttributes=TA)) == [
        "providers.tokenAttributes: Forbidden: tokenAttributes is only supported for "
        "credentialprovider.kubelet.k8s.io/v1 API version"
    ]
    cfg = decode_config(config(provider(tokenAttributes=TA)))
    assert validate_config(cfg, service_account_tokens=False) == [
        "providers.tokenAttributes: Forbidden: tokenAttributes is not supported when "
        "KubeletServiceAccountTokenForCredentialProviders feature gate is disabled"
    ]
    # annotation keys are case-insensitive for validation
    assert (
        errors_of(
            provider(tokenAttributes={**TA, "optionalServiceAccountAnnotationKeys": ["Example.COM/Key"]})
        )
        == []
    )


def test_validation_aggregate_message(bin_dir: Path) -> None:
    assert validate_config(decode_config(config())) == [
        "providers: Required value: at least 1 item in plugins is required"
    ]
    with pytest.raises(ConfigValidationError) as e:
        KubeletSimulator(
            config(provider("a", default_cache=ABSENT), provider("b", default_cache=ABSENT, match=())),
            bin_dir,
        )
    assert e.value.errors == [
        "providers.defaultCacheDuration: Required value",
        "providers.matchImages: Required value: at least 1 item in matchImages is required",
        "providers.defaultCacheDuration: Required value",
    ]
    assert str(e.value) == (
        "failed to validate credential provider config: [providers.defaultCacheDuration: Required value, "
        "providers.matchImages: Required value: at least 1 item in matchImages is required]"
    )
    with pytest.raises(ConfigValidationError) as e:
        KubeletSimulator(config(provider(default_cache=ABSENT)), bin_dir)
    assert (
        str(e.value)
        == "failed to validate credential provider config: providers.defaultCacheDuration: Required value"
    )


# ---------------------------------------------------------------------------------------------------------------
# Config: files, directories, start-up checks
# ---------------------------------------------------------------------------------------------------------------


def test_config_directory_is_merged_in_lexical_order(tmp_path: Path) -> None:
    d = tmp_path / "conf.d"
    d.mkdir()
    (d / "20-b.json").write_text(json.dumps(config(provider("b"))))
    (d / "10-a.yaml").write_text(YAML_CONFIG.replace("name: plugin", "name: a"))
    (d / "30-c.yml").write_text(json.dumps(config(provider("c"), provider("d"))))
    (d / ".00-hidden.yaml").write_text(json.dumps(config(provider("hidden"))))
    (d / "notes.txt").write_text("not a config")
    (d / "40-upper.YAML").write_text("ignored: the extension is case-sensitive")
    (d / "sub.yaml").mkdir()  # directories are skipped
    cfg = load_config(d)
    assert [p.name for p in cfg.providers] == ["hidden", "a", "b", "c", "d"]
    assert [Path(s).name for s in cfg.sources] == [".00-hidden.yaml", "10-a.yaml", "20-b.json", "30-c.yml"]


def test_config_directory_errors(tmp_path: Path) -> None:
    d = tmp_path / "conf.d"
    d.mkdir()
    with pytest.raises(ConfigError, match="no configuration files found in directory"):
        load_config(d)
    (d / "a.yaml").write_text(json.dumps(config(provider("x"))))
    (d / "b.json").write_text(json.dumps(config(provider("x"))))
    with pytest.raises(ConfigError, match='duplicate provider name "x" found in configuration file'):
        load_config(d)
    (d / "b.json").write_text(
        '{"kind": "CredentialProviderConfig", "apiVersion": "kubelet.config.k8s.io/v1", "x": 1}'
    )
    with pytest.raises(ConfigDecodeError, match=r'error decoding config ".*b\.json": strict decoding error'):
        load_config(d)
    with pytest.raises(
        ConfigError, match=r"unable to access path \".*\": stat .*: no such file or directory$"
    ):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="path is empty"):
        load_config("")


def test_duplicate_names_in_one_file_fail_before_validation() -> None:
    with pytest.raises(ConfigError, match='duplicate provider name "x"'):
        load_config(config(provider("x"), provider("x")))
    # validation has its own check, reachable with a config built by hand
    cfg = decode_config(config(provider("x"), provider("x")))
    assert validate_config(cfg) == ['providers.name: Duplicate value: "x"']


def test_startup_checks(tmp_path: Path, bin_dir: Path) -> None:
    cfg = config(provider("plugin"))
    with pytest.raises(PluginBinaryError, match=r"plugin binary directory .* did not exist"):
        KubeletSimulator(cfg, tmp_path / "nope")
    with pytest.raises(PluginBinaryError, match="plugin binary executable  did not exist"):
        KubeletSimulator(cfg, bin_dir)
    (bin_dir / "plugin").write_text("#!/bin/sh\n")
    (bin_dir / "plugin").chmod(0o644)
    with pytest.raises(PluginBinaryError, match="permission denied"):
        KubeletSimulator(cfg, bin_dir)
    (bin_dir / "plugin").chmod(0o755)
    sim = KubeletSimulator(cfg, bin_dir)
    assert sim.provider_names() == ["plugin"]
    f = tmp_path / "cp.yaml"
    f.write_text(YAML_CONFIG)
    assert KubeletSimulator(f, bin_dir).config.sources == (str(f),)


# ---------------------------------------------------------------------------------------------------------------
# One call: argv, env, cwd, stdin
# ---------------------------------------------------------------------------------------------------------------

DUMP_BODY = """\
import json, os, sys
request = sys.stdin.buffer.read()
with open({dump!r}, "w") as f:
    json.dump({{"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd(), "stdin": request.decode()}}, f)
print({answer!r})
"""


def test_exec_argv_env_cwd_and_stdin(tmp_path: Path, bin_dir: Path) -> None:
    dump = tmp_path / "dump.json"
    write_plugin(bin_dir, "plugin", body=DUMP_BODY.format(dump=str(dump), answer=GOOD))
    cwd = tmp_path / "kubelet-cwd"
    cwd.mkdir()
    env = [
        {"name": "PATH", "value": "/opt/plugin/bin"},
        {"name": "HOME", "value": "/var/lib/plugin"},
        {"name": "EXTRA", "value": "a=b"},
        {"name": "EXTRA", "value": "c"},
    ]
    sim = KubeletSimulator(
        config(provider(args=["get-credentials", "$HOME", "a b;c", ""], env=env)),
        bin_dir,
        base_env={"PATH": "/usr/bin:/bin", "HOME": "/root", "KEEP": "1"},
        cwd=cwd,
    )
    assert sim.pull(IMAGE) == [("u", "p")]
    seen = json.loads(dump.read_text())
    assert seen["argv"] == [str(bin_dir / "plugin"), "get-credentials", "$HOME", "a b;c", ""]  # no shell
    assert seen["env"]["HOME"] == "/var/lib/plugin"  # provider env overrides the kubelet's
    assert seen["env"]["EXTRA"] == "c"  # the last one wins
    assert seen["env"]["KEEP"] == "1"
    assert seen["env"]["PATH"] == "/opt/plugin/bin"
    assert seen["cwd"] == str(cwd)
    (record,) = sim.execs
    assert seen["stdin"].encode() == record.stdin
    assert record.stdin == (
        b'{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1",'
        b'"image":"registry.example.com/app"}\n'
    )
    assert record.argv == (str(bin_dir / "plugin"), "get-credentials", "$HOME", "a b;c", "")
    assert record.exit_code == 0
    assert record.stdout.decode().strip() == GOOD
    assert 0 < record.duration < 30
    assert record.request == {"kind": "CredentialProviderRequest", "apiVersion": V1, "image": IMAGE}


@pytest.mark.parametrize("api_version", [V1, V1BETA1, V1ALPHA1])
def test_request_and_response_use_the_configured_api_version(bin_dir: Path, api_version: str) -> None:
    answer = response({"registry.example.com": creds()}, api_version=api_version)
    sim = simulator(bin_dir, answer, api_version=api_version)
    assert sim.pull("registry.example.com/app:v1") == [("u", "p")]
    assert sim.execs[0].request == {
        "kind": "CredentialProviderRequest",
        "apiVersion": api_version,
        "image": IMAGE,
    }


def test_request_encoding_is_go_json() -> None:
    assert encode_request(V1, "r.io/a", "t<k>&", {"b": "2", "a": "\u2028"}) == (
        b'{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1",'
        b'"image":"r.io/a","serviceAccountToken":"t\\u003ck\\u003e\\u0026",'
        b'"serviceAccountAnnotations":{"a":"\\u2028","b":"2"}}\n'
    )
    # v1beta1 and v1alpha1 requests carry only the image; empty token and annotations are left out
    assert b"serviceAccount" not in encode_request(V1BETA1, "r.io/a", "tok", {"a": "1"})
    assert b"serviceAccount" not in encode_request(V1, "r.io/a", "", {})


def test_image_is_normalized_before_the_plugin_sees_it(bin_dir: Path) -> None:
    answer = response({"docker.io": creds()})
    sim = simulator(bin_dir, answer, match=("docker.io", "host:5000"))
    assert sim.pull("nginx:1.2") == [("u", "p")]
    assert sim.execs[-1].request["image"] == "docker.io/library/nginx"
    sim.pull("host:5000/a/b@sha256:" + "e" * 64)
    assert sim.execs[-1].request["image"] == "host:5000/a/b"


# ---------------------------------------------------------------------------------------------------------------
# The answer: what is rejected, and why
# ---------------------------------------------------------------------------------------------------------------

_AUTH = {"registry.example.com": creds()}
REJECTED: list[tuple[str, str, Reason]] = [
    ("log-line-first", "fetching credentials...\n" + GOOD, Reason.UNREADABLE),
    ("log-line-after", GOOD + "\ndone\n", Reason.UNREADABLE),
    ("bom", "\ufeff" + GOOD, Reason.UNREADABLE),
    ("two-documents", GOOD + GOOD, Reason.UNREADABLE),
    ("two-documents-lines", GOOD + "\n" + GOOD + "\n", Reason.UNREADABLE),
    ("yaml", f"apiVersion: {V1}\nkind: {KIND}\ncacheKeyType: Registry\n", Reason.UNREADABLE),
    ("empty", "", Reason.UNREADABLE),
    ("whitespace-only", " \n", Reason.UNREADABLE),
    ("array", "[" + GOOD + "]", Reason.UNREADABLE),
    ("null", "null", Reason.API_VERSION_MISMATCH),
    ("nan", GOOD[:-1] + ', "x": NaN}', Reason.UNREADABLE),
    ("trailing-comma", GOOD[:-1] + ",}", Reason.UNREADABLE),
    ("single-quotes", GOOD.replace('"', "'"), Reason.UNREADABLE),
    ("api-version-number", response(_AUTH, api_version=1), Reason.UNREADABLE),
    ("other-api-version", response(_AUTH, api_version=V1BETA1), Reason.API_VERSION_MISMATCH),
    ("no-api-version", response(_AUTH, api_version=ABSENT), Reason.API_VERSION_MISMATCH),
    ("api-version-case", response(_AUTH, api_version=V1.upper()), Reason.API_VERSION_MISMATCH),
    ("api-version-space", response(_AUTH, api_version=V1 + " "), Reason.API_VERSION_MISMATCH),
    ("no-kind", response(_AUTH, kind=ABSENT), Reason.WRONG_KIND),
    ("kind-case", response(_AUTH, kind=KIND.lower()), Reason.WRONG_KIND),
    ("kind-request", response(_AUTH, kind="CredentialProviderRequest"), Reason.WRONG_KIND),
    ("unknown-top-field", response(_AUTH, metadata={}), Reason.UNKNOWN_FIELD),
    ("entry-auth", response({"registry.example.com": {**creds(), "auth": "dTpw"}}), Reason.UNKNOWN_FIELD),
    ("entry-email", response({"registry.example.com": {**creds(), "email": "a@b.c"}}), Reason.UNKNOWN_FIELD),
    ("entry-identitytoken", response({"registry.example.com": {"identitytoken": "x"}}), Reason.UNKNOWN_FIELD),
    (
        "entry-field-case",
        response({"registry.example.com": {"Username": "u", "password": "p"}}),
        Reason.UNKNOWN_FIELD,
    ),
    (
        "field-case",
        response(cache_key_type=ABSENT, Auth=_AUTH, cacheKeyType="Registry"),
        Reason.UNKNOWN_FIELD,
    ),
    ("kelvin-kind", GOOD.replace('"kind"', '"\\u212aind"'), Reason.UNKNOWN_FIELD),
    ("duplicate-field", GOOD[:-1] + ', "cacheKeyType": "Registry"}', Reason.DUPLICATE_FIELD),
    (
        "duplicate-auth-key",
        GOOD.replace('"auth": {', '"auth": {"registry.example.com": {"username": "a", "password": "b"}, '),
        Reason.DUPLICATE_FIELD,
    ),
    ("duration-number", response(_AUTH, cache_duration=3600), Reason.WRONG_TYPE),
    ("duration-no-unit", response(_AUTH, cache_duration="3600"), Reason.BAD_DURATION),
    ("duration-days", response(_AUTH, cache_duration="1d"), Reason.BAD_DURATION),
    ("duration-empty", response(_AUTH, cache_duration=""), Reason.BAD_DURATION),
    ("duration-iso", response(_AUTH, cache_duration="PT6H"), Reason.BAD_DURATION),
    (
        "username-number",
        response({"registry.example.com": {"username": 1, "password": "p"}}),
        Reason.WRONG_TYPE,
    ),
    ("auth-list", response([_AUTH]), Reason.WRONG_TYPE),
    ("auth-string", response("registry.example.com"), Reason.WRONG_TYPE),
    ("entry-string", response({"registry.example.com": "u:p"}), Reason.WRONG_TYPE),
    ("cache-key-type-number", response(_AUTH, cache_key_type=1), Reason.WRONG_TYPE),
    ("no-cache-key-type", response(_AUTH, cache_key_type=ABSENT), Reason.INVALID_CACHE_KEY_TYPE),
    ("null-cache-key-type", response(_AUTH, cache_key_type=None), Reason.INVALID_CACHE_KEY_TYPE),
    ("cache-key-type-lower", response(_AUTH, cache_key_type="registry"), Reason.INVALID_CACHE_KEY_TYPE),
    ("cache-key-type-other", response(_AUTH, cache_key_type="Repository"), Reason.INVALID_CACHE_KEY_TYPE),
    ("cache-key-type-empty", response(_AUTH, cache_key_type=""), Reason.INVALID_CACHE_KEY_TYPE),
]


@pytest.mark.parametrize(
    ("stdout", "reason"), [(s, r) for _, s, r in REJECTED], ids=[i for i, _, _ in REJECTED]
)
def test_rejected_answers(bin_dir: Path, stdout: str, reason: Reason) -> None:
    sim = simulator(bin_dir, stdout)
    result = sim.lookup(IMAGE)
    assert result.credentials == []
    pr = result.by_provider("plugin")
    assert pr.status is ProviderStatus.REJECTED
    assert pr.reason is reason, pr.rejection
    assert pr.auth == {}
    assert pr.cache_key is None
    assert sim.log
    if reason in (
        Reason.WRONG_KIND,
        Reason.UNKNOWN_FIELD,
        Reason.DUPLICATE_FIELD,
        Reason.WRONG_TYPE,
        Reason.BAD_DURATION,
    ):
        assert pr.rejection is not None
        assert pr.rejection.kubelet_error == GENERIC  # the kubelet hides details: stdout may hold secrets
        assert sim.log == [f"Failed getting credential from external registry credential provider: {GENERIC}"]
    # errors are never cached: the next pull runs the plugin again
    sim.pull(IMAGE)
    assert len(sim.execs) == 2


def test_judge_response() -> None:
    assert judge_response(GOOD) is None
    rejection = judge_response(GOOD, api_version=V1BETA1)
    assert rejection is not None
    assert rejection.reason is Reason.API_VERSION_MISMATCH
    echo = response({"registry.example.com": creds("sa", "the-token")})
    rejection = judge_response(echo, token="the-token", cache_type="ServiceAccount")
    assert rejection is not None
    assert rejection.reason is Reason.TOKEN_ECHOED
    assert judge_response(echo, token="the-token", cache_type="Token") is None
    assert judge_response(echo) is None  # no token sent


def test_rejection_messages(bin_dir: Path) -> None:
    with pytest.raises(ResponseRejected) as e:
        decode_response(b"log\n" + GOOD.encode(), V1)
    assert (
        e.value.rejection.kubelet_error
        == "error reading GVK from response: invalid character 'l' looking for beginning of value"
    )
    with pytest.raises(ResponseRejected) as e:
        decode_response(("\ufeff" + GOOD).encode(), V1)
    assert "invalid character '\u00ef'" in e.value.rejection.kubelet_error
    with pytest.raises(ResponseRejected) as e:
        decode_response(b"", V1)
    assert e.value.rejection.kubelet_error == "error reading GVK from response: unexpected end of JSON input"
    with pytest.raises(ResponseRejected) as e:
        decode_response(response(_AUTH, api_version=V1BETA1).encode(), V1)
    assert e.value.rejection.kubelet_error == (
        "apiVersion from credential plugin response did not match expected apiVersion:"
        "credentialprovider.kubelet.k8s.io/v1, actual apiVersion:credentialprovider.kubelet.k8s.io/v1beta1"
    )
    with pytest.raises(ResponseRejected) as e:
        decode_response(
            response({"r.io": {"username": "u", "password": "p", "email": "e", "auth": "x"}}).encode(), V1
        )
    assert e.value.reason is Reason.UNKNOWN_FIELD
    assert e.value.rejection.detail == (
        'strict decoding error: unknown field "auth[r.io].email", unknown field "auth[r.io].auth"'
    )
    sim = simulator(bin_dir, response(_AUTH, cache_key_type="registry"))
    sim.pull(IMAGE)
    assert sim.log == ['credential provider plugin did not return a valid cacheKeyType: "registry"']


@pytest.mark.parametrize(
    ("stdout", "expected"),
    [
        ("  \n\t" + GOOD + "\n\r\n", [("u", "p")]),
        (json.dumps(json.loads(GOOD), indent=4), [("u", "p")]),
        (response(None), []),
        (response({}), []),
        (response(), []),
        (response({"registry.example.com": None}), [("", "")]),
        (response({"registry.example.com": {}}), [("", "")]),
        (response({"registry.example.com": {"username": None, "password": "p"}}), [("", "p")]),
        (response(_AUTH, cache_duration=None), [("u", "p")]),
        (response(_AUTH, cache_duration=ABSENT), [("u", "p")]),
        (response({"registry.example.com": creds("\u00fcser", "p\\u00e4ss")}), [("\u00fcser", "p\\u00e4ss")]),
        (GOOD.replace('"u"', '"\\u0075"'), [("u", "p")]),
    ],
)
def test_accepted_answers(bin_dir: Path, stdout: str, expected: list[tuple[str, str]]) -> None:
    sim = simulator(bin_dir, stdout)
    result = sim.lookup(IMAGE)
    assert result.credentials == expected
    assert result.by_provider("plugin").status is ProviderStatus.OK
    assert result.by_provider("plugin").rejection is None
    assert sim.log == []


def test_nonzero_exit_is_an_error_even_with_a_good_answer(bin_dir: Path) -> None:
    sim = simulator(bin_dir, GOOD, exit_code=3, stderr="boom: no credentials\n")
    result = sim.lookup(IMAGE)
    assert result.credentials == []
    pr = result.by_provider("plugin")
    assert pr.reason is Reason.EXEC_FAILED
    assert pr.exec is not None
    assert pr.exec.exit_code == 3
    assert pr.exec.stderr == b"boom: no credentials\n"
    assert sim.log == [
        "Failed getting credential from external registry credential provider: error execing credential provider "
        f"plugin plugin for image {IMAGE}: exit status 3: boom: no credentials\n"
    ]


def test_killed_by_a_signal(bin_dir: Path) -> None:
    body = "import os, signal, sys\nsys.stdin.read()\nos.kill(os.getpid(), signal.SIGTERM)\n"
    sim = simulator(bin_dir, body=body)
    pr = sim.lookup(IMAGE).by_provider("plugin")
    assert pr.reason is Reason.EXEC_FAILED
    assert pr.exec is not None
    assert pr.exec.exit_code == -signal.SIGTERM
    assert "signal: terminated" in sim.log[0]


def test_plugin_that_cannot_start(bin_dir: Path) -> None:
    sim = simulator(bin_dir)
    (bin_dir / "plugin").write_text("no shebang here\n")
    pr = sim.lookup(IMAGE).by_provider("plugin")
    assert pr.reason is Reason.EXEC_FAILED
    assert pr.exec is not None
    assert pr.exec.start_error == f"fork/exec {bin_dir / 'plugin'}: exec format error"
    (bin_dir / "plugin").unlink()
    pr = sim.lookup(IMAGE).by_provider("plugin")
    assert pr.exec is not None
    assert pr.exec.start_error == f"fork/exec {bin_dir / 'plugin'}: no such file or directory"


def test_plugin_that_ignores_stdin(bin_dir: Path) -> None:
    body = f"import sys\nsys.stdout.write({GOOD!r})\n"
    assert simulator(bin_dir, body=body).pull(IMAGE) == [("u", "p")]


# ---------------------------------------------------------------------------------------------------------------
# Timeout: hard deadline, only the direct child is killed
# ---------------------------------------------------------------------------------------------------------------


def test_timeout_kills_the_plugin(bin_dir: Path) -> None:
    body = "import sys, time\nsys.stderr.write('working\\n')\nsys.stderr.flush()\ntime.sleep(30)\n"
    write_plugin(bin_dir, body=body)
    sim = KubeletSimulator(config(provider()), bin_dir, timeout=0.5)
    pr = sim.lookup(IMAGE).by_provider("plugin")
    assert pr.reason is Reason.TIMEOUT
    assert pr.exec is not None
    assert pr.exec.timed_out
    assert pr.exec.exit_code == -signal.SIGKILL
    assert "context deadline exceeded: working\n" in sim.log[0]
    assert sim.timeout == 0.5
    assert KubeletSimulator(config(provider()), bin_dir).timeout == 60.0


def test_timeout_kills_only_the_direct_child(tmp_path: Path, bin_dir: Path) -> None:
    marker = tmp_path / "grandchild-survived"
    body = f"""\
    import subprocess, sys, time
    subprocess.Popen(
        [sys.executable, "-I", "-c", "import pathlib, time; time.sleep(1.0); pathlib.Path({str(marker)!r}).write_text('x')"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(30)
    """
    write_plugin(bin_dir, body=body)
    sim = KubeletSimulator(config(provider()), bin_dir, timeout=0.5)
    assert sim.lookup(IMAGE).by_provider("plugin").reason is Reason.TIMEOUT
    deadline = time.monotonic() + 10
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()


def test_grandchild_holding_stdout_runs_into_the_deadline(bin_dir: Path) -> None:
    body = f"""\
    import subprocess, sys
    subprocess.Popen([sys.executable, "-I", "-c", "import time; time.sleep(3)"], stdin=subprocess.DEVNULL)
    sys.stdout.write({GOOD!r})
    """
    write_plugin(bin_dir, body=body)
    sim = KubeletSimulator(config(provider()), bin_dir, timeout=0.5, pipe_grace=0.2)
    pr = sim.lookup(IMAGE).by_provider("plugin")
    assert pr.reason is Reason.TIMEOUT
    assert pr.exec is not None
    assert pr.exec.exit_code == 0
    assert pr.exec.pipes_held_open


# ---------------------------------------------------------------------------------------------------------------
# The kubelet's cache
# ---------------------------------------------------------------------------------------------------------------


def test_registry_cache_and_expiry(bin_dir: Path, clock: FakeClock) -> None:
    sim = simulator(bin_dir, response(_AUTH, cache_key_type="Registry", cache_duration="6h"), clock=clock)
    assert sim.pull("registry.example.com/a") == [("u", "p")]
    assert sim.pull("registry.example.com/b") == [("u", "p")]
    assert len(sim.execs) == 1
    assert sim.lookup("registry.example.com/c").by_provider("plugin").status is ProviderStatus.CACHE_HIT
    ((key, (auth, expires)),) = sim.cache_entries("plugin").items()
    assert key == ("registry.example.com", "")
    assert auth == {"registry.example.com": AuthConfig("u", "p")}
    assert expires == clock.now_ns() + parse_go_duration("6h")
    clock.advance("6h")
    sim.pull("registry.example.com/a")
    assert len(sim.execs) == 1  # expired only when now is after expiresAt
    clock.advance("1ns")
    sim.pull("registry.example.com/a")
    assert len(sim.execs) == 2


def test_registry_key_includes_the_port(bin_dir: Path, clock: FakeClock) -> None:
    answer = response({"r.io": creds(), "r.io:5000": creds("v", "q")}, cache_key_type="Registry")
    sim = simulator(bin_dir, answer, clock=clock, match=("r.io", "r.io:5000"))
    assert sim.pull("r.io:5000/a") == [("v", "q")]
    assert sim.pull("r.io/a") == [("u", "p")]
    assert len(sim.execs) == 2
    assert set(sim.cache_entries("plugin")) == {("r.io:5000", ""), ("r.io", "")}


def test_image_cache(bin_dir: Path, clock: FakeClock) -> None:
    sim = simulator(bin_dir, response(_AUTH, cache_key_type="Image"), clock=clock)
    sim.pull("registry.example.com/a:v1")
    sim.pull("registry.example.com/a:v2")
    assert len(sim.execs) == 1
    sim.pull("registry.example.com/b")
    assert len(sim.execs) == 2
    assert set(sim.cache_entries("plugin")) == {
        ("registry.example.com/a", ""),
        ("registry.example.com/b", ""),
    }


def test_global_cache_returns_the_whole_map_even_when_it_does_not_match(
    bin_dir: Path, clock: FakeClock
) -> None:
    answer = response({"a.example.com": creds()}, cache_key_type="Global")
    sim = simulator(bin_dir, answer, clock=clock, match=("*.example.com",))
    assert sim.pull("a.example.com/x") == [("u", "p")]
    result = sim.lookup("b.example.com/y")
    assert result.credentials == []  # anonymous: the cached map holds no key for b.example.com
    pr = result.by_provider("plugin")
    assert pr.status is ProviderStatus.CACHE_HIT
    assert pr.auth == {"a.example.com": AuthConfig("u", "p")}
    assert pr.cache_key == (GLOBAL_CACHE_KEY, "")
    assert len(sim.execs) == 1


@pytest.mark.parametrize(
    ("cache_duration", "default", "cached_for"),
    [
        ("6h", "1h", "6h"),
        ("0s", "1h", None),
        ("0", "1h", None),
        ("0h0m", "1h", None),
        ("-1m", "1h", None),
        (ABSENT, "1h", "1h"),
        (None, "1h", "1h"),
        (ABSENT, "0s", None),
        ("1.5s", "0s", "1.5s"),
    ],
)
def test_cache_duration(
    bin_dir: Path, clock: FakeClock, cache_duration: Any, default: str, cached_for: str | None
) -> None:
    sim = simulator(
        bin_dir, response(_AUTH, cache_duration=cache_duration), clock=clock, default_cache=default
    )
    sim.pull(IMAGE)
    sim.pull(IMAGE)
    if cached_for is None:
        assert len(sim.execs) == 2
        return
    assert len(sim.execs) == 1
    clock.advance(cached_for)
    sim.pull(IMAGE)
    assert len(sim.execs) == 1
    clock.advance("1ns")
    sim.pull(IMAGE)
    assert len(sim.execs) == 2


def test_cache_lookup_order_image_registry_global(bin_dir: Path, clock: FakeClock) -> None:
    # /a answers Image-keyed creds A; anything else Registry-keyed creds B
    body = """\
    import json, sys
    image = json.load(sys.stdin)["image"]
    mine = image.endswith("/a")
    print(json.dumps({
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": "CredentialProviderResponse",
        "cacheKeyType": "Image" if mine else "Registry", "cacheDuration": "1h",
        "auth": {"registry.example.com": {"username": "A" if mine else "B", "password": "p"}},
    }))
    """
    sim = simulator(bin_dir, body=body, clock=clock)
    assert sim.pull("registry.example.com/a") == [("A", "p")]
    assert sim.pull("registry.example.com/b") == [("B", "p")]
    assert sim.pull("registry.example.com/a") == [("A", "p")]  # the image entry is looked up first
    assert sim.pull("registry.example.com/c") == [("B", "p")]
    assert len(sim.execs) == 2
    sim.restart()  # the cache is memory only
    sim.pull("registry.example.com/c")
    assert len(sim.execs) == 3


def test_each_provider_has_its_own_cache(bin_dir: Path, clock: FakeClock) -> None:
    write_plugin(bin_dir, "one", response({"registry.example.com": creds("1", "p")}))
    write_plugin(bin_dir, "two", response({"registry.example.com": creds("2", "p")}, cache_duration="0s"))
    sim = KubeletSimulator(config(provider("one"), provider("two")), bin_dir, clock=clock)
    assert sim.pull(IMAGE) == [("1", "p"), ("2", "p")]
    assert sim.pull(IMAGE) == [("1", "p"), ("2", "p")]
    assert [r.provider for r in sim.execs] == ["one", "two", "two"]


# ---------------------------------------------------------------------------------------------------------------
# The keyring: key normalization, order, Docker Hub
# ---------------------------------------------------------------------------------------------------------------


def test_keyring_order_is_reverse_lexical_and_every_match_counts(bin_dir: Path) -> None:
    auth = {
        "registry.example.com": creds("A"),
        "*.example.com": creds("D"),
        "registry.example.com/team": creds("B"),
        "https://registry.example.com/v2/": creds("E"),
        "registry.example.com/team/app": creds("C"),
        "registry.example.com/te": creds("F"),
        "registry.example.com/other": creds("X"),
        "other.io": creds("Y"),
        "registry.example.com:5000": creds("Z"),
    }
    sim = simulator(bin_dir, response(auth), match=("*.example.com",))
    result = sim.lookup("registry.example.com/team/app/x")
    assert [u for u, _ in result.credentials] == ["C", "B", "F", "A", "E", "D"]
    assert [m.key for m in result.matches] == [
        "registry.example.com/team/app",
        "registry.example.com/team",
        "registry.example.com/te",
        "registry.example.com",
        "registry.example.com",
        "*.example.com",
    ]


@pytest.mark.parametrize(
    ("key", "normalized"),
    [
        ("r.io", "r.io"),
        ("https://r.io", "r.io"),
        ("http://r.io", "r.io"),
        ("https://r.io/", "r.io"),
        ("https://r.io/v1/", "r.io"),
        ("r.io/v2/", "r.io"),
        ("r.io/v2/team", "r.io/team"),
        ("r.io/v2", "r.io/v2"),
        ("r.io/team/", "r.io/team/"),
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("user@r.io", "r.io"),
        ("r.io?x=1", "r.io"),
    ],
)
def test_keyring_key_normalization(key: str, normalized: str) -> None:
    keyring = Keyring()
    keyring.add({key: AuthConfig("u", "p")})
    assert keyring.keys == [normalized]


def test_keyring_ignores_invalid_keys() -> None:
    keyring = Keyring()
    keyring.add({"bad key": AuthConfig("u", "p"), "r.io": AuthConfig("v", "q")})
    assert keyring.keys == ["r.io"]
    assert keyring.log == [
        'Entry "bad key" in dockercfg invalid (parse "https://bad key": invalid character " " in host name), ignoring'
    ]


@pytest.mark.parametrize(
    ("auth", "image", "expected"),
    [
        ({"index.docker.io": creds("X")}, "nginx", ["X"]),
        ({"https://index.docker.io/v1/": creds("X")}, "docker.io/library/nginx", ["X"]),
        ({"docker.io": creds("Y"), "index.docker.io": creds("X")}, "nginx", ["Y"]),
        ({"index.docker.io": creds("X")}, "registry.io/x", []),
        ({"docker.io/library": creds("L"), "docker.io": creds("Y")}, "nginx", ["L", "Y"]),
        ({"docker.io/library": creds("L")}, "someone/app", []),
        ({"*.io": creds("W")}, "nginx", ["W"]),
    ],
)
def test_docker_hub_keys(bin_dir: Path, auth: dict[str, Any], image: str, expected: list[str]) -> None:
    sim = simulator(bin_dir, response(auth), match=("*.io",))
    assert [u for u, _ in sim.pull(image)] == expected


def test_credentials_for_another_registry_mean_anonymous(bin_dir: Path) -> None:
    sim = simulator(bin_dir, response({"other.example.com": creds()}))
    result = sim.lookup(IMAGE)
    assert result.by_provider("plugin").status is ProviderStatus.OK
    assert result.credentials == []
    assert result.anonymous


def test_providers_are_combined_in_config_order(bin_dir: Path) -> None:
    write_plugin(bin_dir, "zeta", response({"registry.example.com": creds("z")}))
    write_plugin(
        bin_dir, "alpha", response({"registry.example.com": creds("a"), "*.example.com": creds("w")})
    )
    write_plugin(bin_dir, "broken", "not json")
    write_plugin(bin_dir, "elsewhere", response({"registry.example.com": creds("e")}))
    sim = KubeletSimulator(
        config(
            provider("zeta"), provider("broken"), provider("alpha"), provider("elsewhere", match=("r.io",))
        ),
        bin_dir,
    )
    result = sim.lookup(IMAGE)
    assert [u for u, _ in result.credentials] == ["z", "a", "w"]
    assert [m.provider for m in result.matches] == ["zeta", "alpha", "alpha"]
    assert [r.status for r in result.providers] == [
        ProviderStatus.OK,
        ProviderStatus.REJECTED,
        ProviderStatus.OK,
        ProviderStatus.NOT_MATCHED,
    ]


# ---------------------------------------------------------------------------------------------------------------
# Service account token mode
# ---------------------------------------------------------------------------------------------------------------

ECHO_BODY = """\
import json, sys
request = json.load(sys.stdin)
print(json.dumps({{
    "apiVersion": "credentialprovider.kubelet.k8s.io/v1", "kind": "CredentialProviderResponse",
    "cacheKeyType": "Registry", "cacheDuration": "1h",
    "auth": {{"registry.example.com": {{"username": "sa", "password": {password}}}}},
}}))
"""
ECHO_TOKEN = ECHO_BODY.format(password='request.get("serviceAccountToken", "none")')
FIXED_PASSWORD = ECHO_BODY.format(password='"registry-password"')


def token_provider(**changes: Any) -> dict[str, Any]:
    ta = {
        **TA,
        "requiredServiceAccountAnnotationKeys": ["example.com/role"],
        "optionalServiceAccountAnnotationKeys": ["example.com/opt", "example.com/absent"],
        **changes,
    }
    return provider(tokenAttributes={k: v for k, v in ta.items() if v is not None})


def token_sim(bin_dir: Path, body: str, clock: FakeClock, **changes: Any) -> KubeletSimulator:
    write_plugin(bin_dir, body=body)
    return KubeletSimulator(config(token_provider(**changes)), bin_dir, clock=clock)


def account(token: str | Callable[[], str] = "tok-1", **changes: Any) -> ServiceAccount:  # noqa: S107
    annotations: Mapping[str, str] = changes.pop(
        "annotations", {"example.com/role": "puller", "example.com/opt": "o", "other": "x"}
    )
    fields: dict[str, Any] = {"name": "builder", "namespace": "ci", "uid": "uid-1", **changes}
    return ServiceAccount(annotations=annotations, token=token, **fields)


def test_token_request_carries_token_and_configured_annotations(bin_dir: Path, clock: FakeClock) -> None:
    sim = token_sim(bin_dir, FIXED_PASSWORD, clock)
    assert sim.pull(IMAGE, account()) == [("sa", "registry-password")]
    assert sim.execs[0].stdin == (
        b'{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1",'
        b'"image":"registry.example.com/app","serviceAccountToken":"tok-1",'
        b'"serviceAccountAnnotations":{"example.com/opt":"o","example.com/role":"puller"}}\n'
    )


def test_service_account_required(bin_dir: Path, clock: FakeClock) -> None:
    sim = token_sim(bin_dir, FIXED_PASSWORD, clock)
    result = sim.lookup(IMAGE)
    assert result.credentials == []
    assert result.by_provider("plugin").reason is Reason.SERVICE_ACCOUNT_REQUIRED
    assert (
        sim.lookup(IMAGE, ServiceAccount(name="")).by_provider("plugin").reason
        is Reason.SERVICE_ACCOUNT_REQUIRED
    )
    assert sim.execs == []


def test_service_account_optional(bin_dir: Path, clock: FakeClock) -> None:
    sim = token_sim(
        bin_dir, ECHO_TOKEN, clock, requireServiceAccount=False, requiredServiceAccountAnnotationKeys=None
    )
    assert sim.pull(IMAGE) == [("sa", "none")]
    assert sim.execs[0].request == {"kind": "CredentialProviderRequest", "apiVersion": V1, "image": IMAGE}


def test_required_annotation_missing_means_no_call(bin_dir: Path, clock: FakeClock) -> None:
    sim = token_sim(bin_dir, FIXED_PASSWORD, clock)
    result = sim.lookup(IMAGE, account(annotations={"example.com/opt": "o"}))
    assert result.by_provider("plugin").reason is Reason.REQUIRED_ANNOTATION_MISSING
    assert sim.execs == []


def test_token_request_failure_means_no_call(bin_dir: Path, clock: FakeClock) -> None:
    def refused() -> str:
        raise PermissionError("nodes cannot request tokens for audience registry.example.com")

    sim = token_sim(bin_dir, FIXED_PASSWORD, clock)
    assert sim.lookup(IMAGE, account(refused)).by_provider("plugin").reason is Reason.TOKEN_REQUEST_FAILED
    assert sim.execs == []


def test_echoed_token_is_rejected_unless_cache_type_token(bin_dir: Path, clock: FakeClock) -> None:
    sim = token_sim(bin_dir, ECHO_TOKEN, clock)
    result = sim.lookup(IMAGE, account())
    assert result.credentials == []
    assert result.by_provider("plugin").reason is Reason.TOKEN_ECHOED
    assert sim.log == [
        'Credential provider plugin returned the service account token as the password for image "'
        + IMAGE
        + "\", which is not allowed when service account cache type is not set to 'Token'"
    ]
    sim.pull(IMAGE, account())
    assert len(sim.execs) == 2  # not cached
    (bin_dir / "plugin").unlink()
    sim = token_sim(bin_dir, ECHO_TOKEN, clock, cacheType="Token")
    assert sim.pull(IMAGE, account()) == [("sa", "tok-1")]


def test_cache_type_service_account(bin_dir: Path, clock: FakeClock) -> None:
    tokens = iter(f"tok-{i}" for i in range(100))
    calls: list[str] = []

    def fresh() -> str:
        calls.append(token := next(tokens))
        return token

    sim = token_sim(bin_dir, FIXED_PASSWORD, clock)
    sim.pull(IMAGE, account(fresh))
    sim.pull(IMAGE, account(fresh))  # another token, same service account: cached
    assert len(sim.execs) == 1
    assert len(calls) == 2  # a fresh token on every lookup, before the cache check
    sim.pull(IMAGE, account(fresh, uid="uid-2"))  # the same name recreated
    sim.pull(IMAGE, account(fresh, annotations={"example.com/role": "admin"}))
    sim.pull(IMAGE, account(fresh, namespace="other"))
    assert len(sim.execs) == 4
    sim.pull(
        IMAGE,
        account(fresh, annotations={"example.com/role": "puller", "example.com/opt": "o", "unrelated": "y"}),
    )
    assert len(sim.execs) == 4  # annotations not configured do not matter
    sim.pull(IMAGE)  # no service account at all: never served from a service account's entry
    assert len(sim.execs) == 4
    assert sim.lookup(IMAGE).by_provider("plugin").reason is Reason.SERVICE_ACCOUNT_REQUIRED


def test_cache_type_token(bin_dir: Path, clock: FakeClock) -> None:
    sim = token_sim(bin_dir, FIXED_PASSWORD, clock, cacheType="Token")
    sim.pull(IMAGE, account("tok-1"))
    sim.pull(IMAGE, account("tok-1"))
    assert len(sim.execs) == 1
    sim.pull(IMAGE, account("tok-2"))
    assert len(sim.execs) == 2


def test_providers_without_token_attributes_ignore_the_service_account(bin_dir: Path) -> None:
    sim = simulator(bin_dir)
    sim.pull(IMAGE, account())
    assert "serviceAccountToken" not in sim.execs[0].request


def test_environment_of_the_test_process_is_the_default(
    bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBELET_SIM_MARKER", "present")
    sim = simulator(bin_dir)
    sim.pull(IMAGE)
    assert sim.execs[0].env["KUBELET_SIM_MARKER"] == "present"
    assert dict(sim.execs[0].env).items() >= dict(os.environ).items()
