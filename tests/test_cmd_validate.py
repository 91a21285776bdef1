"""``validate``: the kubelet's own verdict on its CredentialProviderConfig, plus the traps it accepts.

Every validation case is cross-checked against the kubelet simulator (``tests/kubelet_sim.py``,
written independently from the kubelet's Go code): the same messages, in the same order.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from provider import backends, kubeletconfig
from tests import kubelet_sim as sim
from tests.cmdutil import SECRET, V1, Result, auth_file, check_golden, normalize, provider_config, run
from tests.conftest import run_zipapp

KUBELET_V1 = "kubelet.config.k8s.io/v1"


def provider(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "registry-credential-provider",
        "matchImages": ["registry.example.com"],
        "defaultCacheDuration": "5m",
        "apiVersion": V1,
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not DROP}


DROP: Any = object()


def document(*providers: dict[str, Any], api_version: str = KUBELET_V1) -> bytes:
    return json.dumps(
        {"apiVersion": api_version, "kind": "CredentialProviderConfig", "providers": list(providers)}
    ).encode()


def ours(data: bytes, *, token_gate: bool = True) -> list[str]:
    _, providers = kubeletconfig.decode_document(data, "f")
    return kubeletconfig.validate(providers, token_gate=token_gate)


def theirs(data: bytes, *, token_gate: bool = True) -> list[str]:
    return sim.validate_config(sim.decode_config(data, source="f"), service_account_tokens=token_gate)


def token(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "serviceAccountTokenAudience": "sts.amazonaws.com",
        "cacheType": "ServiceAccount",
        "requireServiceAccount": False,
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not DROP}


VALIDATION_CASES: list[tuple[str, bytes, str]] = [
    ("valid", document(provider()), ""),
    ("no providers", document(), "providers: Required value: at least 1 item in plugins is required"),
    ("name with slash", document(provider(name="a/b")), "provider name cannot contain '/'"),
    ("name with space", document(provider(name="a b")), "provider name cannot contain spaces"),
    ("name dot", document(provider(name=".")), "provider name cannot be '.'"),
    ("name dotdot", document(provider(name="..")), "provider name cannot be '..'"),
    ("apiVersion missing", document(provider(apiVersion=DROP)), "providers.apiVersion: Required value"),
    (
        "apiVersion unsupported",
        document(provider(apiVersion="v1")),
        'Unsupported value: "v1": supported values',
    ),
    (
        "matchImages missing",
        document(provider(matchImages=DROP)),
        "at least 1 item in matchImages is required",
    ),
    ("matchImages empty", document(provider(matchImages=[])), "at least 1 item in matchImages is required"),
    (
        "matchImages bad port",
        document(provider(matchImages=["r.io:port"])),
        'invalid port ":port" after host',
    ),
    ("matchImages bad escape", document(provider(matchImages=["r.io/%zz"])), 'invalid URL escape "%zz"'),
    ("matchImages ipv4 literal", document(provider(matchImages=["[1.2.3.4]"])), "invalid IP-literal"),
    ("matchImages no bracket", document(provider(matchImages=["[::1"])), "missing ']' in host"),
    (
        "matchImages control",
        document(provider(matchImages=["r.io/\x01"])),
        "invalid control character in URL",
    ),
    ("matchImages bad char", document(provider(matchImages=["r io"])), 'invalid character " " in host name'),
    ("matchImages two ports", document(provider(matchImages=["r.io:1:2"])), 'invalid port ":1:2" after host'),
    (
        "duration missing",
        document(provider(defaultCacheDuration=DROP)),
        "defaultCacheDuration: Required value",
    ),
    (
        "duration negative",
        document(provider(defaultCacheDuration="-1m")),
        'Invalid value: "-1m0s": must be greater than or equal to 0',
    ),
    ("duration zero", document(provider(defaultCacheDuration="0")), ""),
    ("token valid", document(provider(tokenAttributes=token())), ""),
    (
        "token audience missing",
        document(provider(tokenAttributes=token(serviceAccountTokenAudience=DROP))),
        "tokenAttributes.serviceAccountTokenAudience: Required value",
    ),
    (
        "token requireServiceAccount missing",
        document(provider(tokenAttributes=token(requireServiceAccount=DROP))),
        "tokenAttributes.requireServiceAccount: Required value",
    ),
    (
        "token with v1beta1 provider",
        document(provider(apiVersion="credentialprovider.kubelet.k8s.io/v1beta1", tokenAttributes=token())),
        "tokenAttributes is only supported for credentialprovider.kubelet.k8s.io/v1 API version",
    ),
    (
        "token required keys without requireServiceAccount",
        document(provider(tokenAttributes=token(requiredServiceAccountAnnotationKeys=["a.io/b"]))),
        "requireServiceAccount cannot be false when requiredServiceAccountAnnotationKeys is set",
    ),
    (
        "token bad key",
        document(provider(tokenAttributes=token(optionalServiceAccountAnnotationKeys=["bad key"]))),
        'optionalServiceAccountAnnotationKeys: Invalid value: "bad key": name part must consist',
    ),
    (
        "token key empty prefix",
        document(provider(tokenAttributes=token(optionalServiceAccountAnnotationKeys=["/x"]))),
        "prefix part must be non-empty",
    ),
    (
        "token key bad prefix",
        document(provider(tokenAttributes=token(optionalServiceAccountAnnotationKeys=["a_b.io/x"]))),
        "prefix part a lowercase RFC 1123 subdomain",
    ),
    (
        "token key long name",
        document(provider(tokenAttributes=token(optionalServiceAccountAnnotationKeys=["a" * 64]))),
        "name part must be no more than 63 bytes",
    ),
    (
        "token key long prefix",
        document(provider(tokenAttributes=token(optionalServiceAccountAnnotationKeys=["a" * 254 + "/x"]))),
        "prefix part must be no more than 253 bytes",
    ),
    (
        "token key two slashes",
        document(provider(tokenAttributes=token(optionalServiceAccountAnnotationKeys=["a/b/c"]))),
        "a valid label key must consist",
    ),
    (
        "token key empty",
        document(provider(tokenAttributes=token(optionalServiceAccountAnnotationKeys=[""]))),
        "name part must be non-empty",
    ),
    (
        "token key upper case is fine",
        document(provider(tokenAttributes=token(optionalServiceAccountAnnotationKeys=["Example.COM/Key"]))),
        "",
    ),
    (
        "token duplicate key",
        document(provider(tokenAttributes=token(optionalServiceAccountAnnotationKeys=["a", "a"]))),
        'optionalServiceAccountAnnotationKeys: Duplicate value: "a"',
    ),
    (
        "token key both required and optional",
        document(
            provider(
                tokenAttributes=token(
                    requireServiceAccount=True,
                    requiredServiceAccountAnnotationKeys=["b", "a"],
                    optionalServiceAccountAnnotationKeys=["a", "b"],
                )
            )
        ),
        'Invalid value: ["a","b"]: annotation keys cannot be both required and optional',
    ),
    (
        "token cacheType missing",
        document(provider(tokenAttributes=token(cacheType=DROP))),
        "cacheType is required to be set when tokenAttributes is specified. Supported values are: "
        "ServiceAccount, Token",
    ),
    (
        "token cacheType unsupported",
        document(provider(tokenAttributes=token(cacheType="Pod"))),
        'cacheType: Unsupported value: "Pod": supported values: "ServiceAccount", "Token"',
    ),
    (
        "everything wrong at once",
        document(
            provider(
                name="a/ b",
                apiVersion="x",
                matchImages=["r.io:x", "[1.1.1.1]"],
                defaultCacheDuration="-5s",
                tokenAttributes={
                    "cacheType": "x",
                    "requireServiceAccount": False,
                    "requiredServiceAccountAnnotationKeys": ["k", "k"],
                },
            ),
            provider(name="other", defaultCacheDuration=DROP, matchImages=DROP),
        ),
        "provider name cannot contain spaces",
    ),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in VALIDATION_CASES], ids=[c[0] for c in VALIDATION_CASES]
)
def test_validation_matches_the_kubelet(data: bytes, expected: str) -> None:
    found = ours(data)
    assert found == theirs(data)
    if expected:
        assert any(expected in message for message in found), found
    else:
        assert found == []


def test_token_attributes_need_the_feature_gate() -> None:
    data = document(provider(tokenAttributes=token()))
    found = ours(data, token_gate=False)
    assert found == theirs(data, token_gate=False)
    assert found == [
        "providers.tokenAttributes: Forbidden: tokenAttributes is not supported when "
        "KubeletServiceAccountTokenForCredentialProviders feature gate is disabled"
    ]


def _decode(data: bytes) -> tuple[str | None, str | None]:
    """(our error, the simulator's error); None where it decodes."""
    mine = their = None
    try:
        kubeletconfig.decode_document(data, "f")
    except kubeletconfig.KubeletConfigError as exc:
        mine = str(exc)
    try:
        sim.decode_config(data, source="f")
    except sim.ConfigError as exc:
        their = str(exc)
    return mine, their


YAML_HEAD = "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\n"
YAML_PROVIDER = (
    f"providers:\n  - name: p\n    matchImages: [r.io]\n    defaultCacheDuration: 5m\n    apiVersion: {V1}\n"
)
DECODING_CASES: list[tuple[str, bytes, str | None]] = [
    ("yaml ok", (YAML_HEAD + YAML_PROVIDER).encode(), None),
    ("json ok", document(provider()), None),
    ("unknown top-level field", (YAML_HEAD + "extra: 1\n" + YAML_PROVIDER).encode(), 'unknown field "extra"'),
    (
        "unknown provider field",
        (YAML_HEAD + YAML_PROVIDER + "    cacheDuration: 1m\n").encode(),
        'unknown field "providers[0].cacheDuration"',
    ),
    (
        "field names are case-sensitive",
        document(provider(MatchImages=["x.io"])),
        'unknown field "providers[0].MatchImages"',
    ),
    (
        "unknown token field",
        document(provider(tokenAttributes=token(audience="x"))),
        'unknown field "providers[0].tokenAttributes.audience"',
    ),
    (
        "yaml duplicate key",
        (YAML_HEAD + YAML_PROVIDER + "    name: q\n").encode(),
        'key "name" already set in map',
    ),
    (
        "json duplicate field",
        b'{"apiVersion":"kubelet.config.k8s.io/v1","kind":"CredentialProviderConfig","providers":[],"providers":[]}',
        'duplicate field "providers"',
    ),
    (
        "tokenAttributes in v1beta1",
        document(provider(tokenAttributes=token()), api_version="kubelet.config.k8s.io/v1beta1"),
        'unknown field "providers[0].tokenAttributes"',
    ),
    (
        "tokenAttributes in v1alpha1",
        document(provider(tokenAttributes=token()), api_version="kubelet.config.k8s.io/v1alpha1"),
        'unknown field "providers[0].tokenAttributes"',
    ),
    ("v1beta1 ok", document(provider(), api_version="kubelet.config.k8s.io/v1beta1"), None),
    ("v1alpha1 ok", document(provider(), api_version="kubelet.config.k8s.io/v1alpha1"), None),
    (
        "unknown version",
        document(provider(), api_version="kubelet.config.k8s.io/v2"),
        'no kind "CredentialProviderConfig" is registered',
    ),
    ("wrong kind", b"apiVersion: kubelet.config.k8s.io/v1\nkind: Config\n", 'no kind "Config" is registered'),
    (
        "kubelet's own config",
        b"apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n",
        "(wrong Kind)",
    ),
    ("kind missing", b"apiVersion: kubelet.config.k8s.io/v1\nproviders: []\n", "Object 'Kind' is missing"),
    (
        "apiVersion missing",
        b"kind: CredentialProviderConfig\nproviders: []\n",
        "Object 'apiVersion' is missing",
    ),
    ("empty file", b"", "Object 'Kind' is missing"),
    ("a list", b"- a\n- b\n", "cannot unmarshal array"),
    ("duration as a number", (YAML_HEAD + YAML_PROVIDER.replace("5m", "0")).encode(), "quote it"),
    (
        "duration unit",
        (YAML_HEAD + YAML_PROVIDER.replace("5m", "5x")).encode(),
        'time: unknown unit "x" in duration "5x"',
    ),
    (
        "duration without unit",
        (YAML_HEAD + YAML_PROVIDER.replace("5m", '"5"')).encode(),
        'missing unit in duration "5"',
    ),
    (
        "duration garbage",
        (YAML_HEAD + YAML_PROVIDER.replace("5m", "soon")).encode(),
        'time: invalid duration "soon"',
    ),
    (
        "a YAML date stays a string",
        (YAML_HEAD + YAML_PROVIDER.replace("5m", "2001-12-14")).encode(),
        "invalid duration",
    ),
    (
        "yes is a boolean",
        (YAML_HEAD + YAML_PROVIDER.replace("name: p", "name: yes")).encode(),
        "cannot unmarshal bool",
    ),
    (
        "y is a boolean too",
        (YAML_HEAD + YAML_PROVIDER.replace("name: p", "name: y")).encode(),
        "cannot unmarshal bool",
    ),
    (
        "string list as string",
        (YAML_HEAD + YAML_PROVIDER.replace("[r.io]", "r.io")).encode(),
        "cannot unmarshal string",
    ),
    ("null fields are zero values", document(provider(args=None, env=None)), None),
    ("only the first YAML document", (YAML_HEAD + YAML_PROVIDER + "---\nfoo: bar\n").encode(), None),
    ("bad yaml", b"apiVersion: [\n", "error converting YAML to JSON"),
    ("bad json", b'{"apiVersion": ', "invalid JSON"),
    ("NaN in json", b'{"apiVersion": NaN}', "invalid character 'N'"),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in DECODING_CASES], ids=[c[0] for c in DECODING_CASES]
)
def test_decoding_is_as_strict_as_the_kubelets(data: bytes, expected: str | None) -> None:
    mine, their = _decode(data)
    assert (mine is None) == (their is None), (mine, their)
    if expected is None:
        assert mine is None
    else:
        assert mine is not None
        assert expected in mine, mine
        assert mine.startswith('error decoding config "f": ')


def test_decoded_providers_equal_the_simulators() -> None:
    data = (
        YAML_HEAD
        + YAML_PROVIDER
        + "    args: [get-credentials, --config, /etc/x.json]\n    env: [{name: A, value: b}]\n"
    ).encode()
    _, providers = kubeletconfig.decode_document(data, "f")
    theirs_ = sim.decode_config(data, source="f").providers
    assert [(p.name, tuple(p.match_images or ()), tuple(p.args or ())) for p in providers] == [
        (p.name, p.match_images, p.args) for p in theirs_
    ]
    assert [(e.name, e.value) for e in providers[0].env or ()] == [("A", "b")]


def _write(directory: Path, name: str, *names: str) -> None:
    (directory / name).write_bytes(document(*(provider(name=n) for n in names)))


def test_directory_merge_order_and_ignored_entries(tmp_path: Path) -> None:
    _write(tmp_path, "b.json", "second")
    _write(tmp_path, "a.yaml", "first")
    _write(tmp_path, "c.yml", "third", "fourth")
    _write(tmp_path, "d.txt", "ignored")
    _write(tmp_path, "E.YAML", "ignored-too")  # extensions are case-sensitive
    (tmp_path / "sub.yaml").mkdir()
    loaded = kubeletconfig.load(str(tmp_path))
    names = [item.provider.name for item in loaded.providers]
    assert names == ["first", "second", "third", "fourth"]
    assert names == [p.name for p in sim.load_config(tmp_path).providers]
    assert loaded.providers[0].source.endswith("a.yaml")


def test_directory_duplicate_names_and_empty(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", "same")
    _write(tmp_path, "b.yaml", "same")
    with pytest.raises(kubeletconfig.KubeletConfigError) as mine:
        kubeletconfig.load(str(tmp_path))
    with pytest.raises(sim.ConfigError) as their:
        sim.load_config(tmp_path)
    assert (
        str(mine.value) == str(their.value) == 'duplicate provider name "same" found in configuration file(s)'
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(kubeletconfig.KubeletConfigError, match="no configuration files found in directory"):
        kubeletconfig.load(str(empty))
    missing = tmp_path / "missing"
    with pytest.raises(kubeletconfig.KubeletConfigError) as raised:
        kubeletconfig.load(str(missing))
    assert (
        str(raised.value) == f'unable to access path "{missing}": stat {missing}: no such file or directory'
    )


# --- the command ------------------------------------------------------------------------------------


def kubelet_config(tmp_path: Path, *providers: dict[str, Any], name: str = "kubelet.json") -> Path:
    path = tmp_path / name
    path.write_bytes(document(*providers))
    return path


def our_rules(tmp_path: Path) -> Path:
    return provider_config(
        tmp_path,
        "  - match: ['registry.example.com:5000']\n    backend: anonymous\n"
        "  - match: ['quay.io']\n    backend: anonymous\n",
    )


def lines(result_stdout: str, status: str) -> list[str]:
    """The report's lines of one status, columns separated by exactly two spaces."""
    return [
        re.sub(r" {2,}", "  ", line) for line in result_stdout.splitlines() if line.startswith(status + " ")
    ]


def test_kubelet_errors_are_reported_with_the_kubelets_words(tmp_path: Path) -> None:
    config = our_rules(tmp_path)
    bad = kubelet_config(
        tmp_path, provider(name="a b", defaultCacheDuration=DROP, args=["--config", str(config)])
    )
    result = run(["validate", "--kubelet-config", str(bad), "--config", str(config)])
    assert result.code == 1
    fails = lines(result.stdout, "fail")
    assert any(
        'providers.name: Invalid value: "a b": provider name cannot contain spaces' in f for f in fails
    )
    assert any("providers.defaultCacheDuration: Required value" in f for f in fails)
    assert "the kubelet would exit at start-up with the first of them, saying:" in result.stdout
    assert (
        "failed to validate credential provider config: "
        '[providers.name: Invalid value: "a b": provider name cannot contain spaces, '
        "providers.defaultCacheDuration: Required value]"
    ) in result.stdout
    report = run(["validate", "--kubelet-config", str(bad), "--config", str(config), "-o", "json"]).json()
    assert report["ok"] is False
    assert report["kubeletError"].startswith("failed to validate credential provider config: [")


def test_a_good_setup_passes(tmp_path: Path) -> None:
    config = our_rules(tmp_path)
    good = kubelet_config(
        tmp_path,
        provider(
            matchImages=["registry.example.com:5000", "quay.io"],
            args=["get-credentials", "--config", str(config)],
        ),
    )
    result = run(["validate", "--kubelet-config", str(good)])
    assert result.code == 0, result.stdout
    assert lines(result.stdout, "fail") == []
    assert lines(result.stdout, "warn") == []
    assert "passes the kubelet's validation" in result.stdout
    assert f"config {config}" in result.stdout  # found through the provider's args
    assert result.stdout.rstrip().endswith("valid: 0 error(s), 0 warning(s)")


TRAPS = [
    ("https://registry.example.com:5000", "has a scheme"),
    ("registry.example.com:5000/team/*", "a path is a plain prefix, not a glob"),
    ("registry.example.com:5000/team/app:v1", "without tag or digest"),
    ("quay.io:443", "port :443 only matches images written with ':443'"),
    ("*", "'*' alone matches single-label hosts only"),
    ("nginx", "cannot be a registry"),
    ("Quay.io", "case-sensitive"),
    ("index.docker.io", "use 'docker.io'"),
    ("registry.example.com?x=1", "'?' and '#' end the URL"),
]


@pytest.mark.parametrize(("glob", "message"), TRAPS, ids=[t[0] for t in TRAPS])
def test_traps_the_kubelet_accepts_are_warned_about(tmp_path: Path, glob: str, message: str) -> None:
    config = our_rules(tmp_path)
    path = kubelet_config(tmp_path, provider(matchImages=[glob], args=["--config", str(config)]))
    assert ours(path.read_bytes()) == []  # the kubelet itself is happy
    result = run(["validate", "--kubelet-config", str(path)])
    assert result.code == 0  # warnings only
    assert any(message in warning for warning in lines(result.stdout, "warn")), result.stdout
    rule_trap = provider_config(
        tmp_path, f"  - match: [{json.dumps(glob)}]\n    backend: anonymous\n", name="p2.yaml"
    )
    if "://" not in glob:  # our own config refuses schemes outright
        result = run(["validate", "--config", str(rule_trap)])
        assert any(message in warning for warning in lines(result.stdout, "warn")), result.stdout


def test_coverage_between_match_images_and_rules(tmp_path: Path) -> None:
    config = provider_config(
        tmp_path,
        "  - match: ['registry.example.com:5000']\n    backend: anonymous\n"  # reached
        "  - match: ['registry.example.com']\n    backend: anonymous\n"  # port differs: never reached
        "  - match: ['*.example.com']\n    backend: anonymous\n"  # partly reached
        "  - match: ['a.b.c.io']\n    backend: anonymous\n"  # label count
        "  - match: ['registry.example.com:5000/team']\n    backend: anonymous\n",  # shadowed by rules[0]
    )
    path = kubelet_config(
        tmp_path,
        provider(
            matchImages=["registry.example.com:5000", "x.example.com", "*.c.io", "docker.io"],
            args=["--config", str(config)],
        ),
    )
    result = run(["validate", "--kubelet-config", str(path)])
    assert result.code == 0
    warnings = "\n".join(lines(result.stdout, "warn"))
    assert "rules[1].match[0]  'registry.example.com' is never reached" in warnings
    assert "ports differ (port 5000 vs no port)" in warnings
    assert "rules[2].match[0]  '*.example.com' is reached only in part" in warnings
    assert "'*' stands for exactly one host label: '*.c.io' has 3 labels, 'a.b.c.io' has 4" in warnings
    assert "rules[4].match[0]  'registry.example.com:5000/team' is shadowed by rules[0]" in warnings
    assert "matchImages[3]  'docker.io': no rule serves it" in warnings
    assert "matchImages[2]  '*.c.io': no rule serves it" in warnings
    assert "matchImages[1]" not in warnings  # x.example.com is served by '*.example.com'


def test_a_catch_all_rule_serves_every_match_image(tmp_path: Path) -> None:
    config = provider_config(tmp_path, "  - backend: anonymous\n")
    path = kubelet_config(
        tmp_path, provider(matchImages=["docker.io", "*.gcr.io"], args=["--config", str(config)])
    )
    result = run(["validate", "--kubelet-config", str(path)])
    assert result.code == 0
    assert lines(result.stdout, "warn") == []


def test_token_mode_warnings(tmp_path: Path) -> None:
    config = our_rules(tmp_path)
    path = kubelet_config(
        tmp_path,
        provider(
            matchImages=["registry.example.com:5000", "quay.io"],
            args=["--config", str(config)],
            tokenAttributes=token(cacheType="Token"),
        ),
    )
    result = run(["validate", "--kubelet-config", str(path)])
    assert result.code == 0
    warnings = "\n".join(lines(result.stdout, "warn"))
    assert "nodes need RBAC to request tokens for audience 'sts.amazonaws.com'" in warnings
    assert "render --rbac --audience sts.amazonaws.com" in result.stdout
    assert "cacheType Token" in warnings
    assert "no rule's backend uses the service account token" in warnings
    assert "the kubelet caches per Token (tokenAttributes.cacheType) but our disk cache keys pod" in warnings


@pytest.mark.parametrize("cache_type", ["ServiceAccount", "Token"])
def test_kubelet_and_disk_cache_agree_on_the_cache_type(tmp_path: Path, cache_type: str) -> None:
    config = our_rules(tmp_path)
    config.write_text(config.read_text() + f"cache:\n  serviceAccountCacheType: {cache_type}\n")
    path = kubelet_config(
        tmp_path,
        provider(args=["--config", str(config)], tokenAttributes=token(cacheType=cache_type)),
    )
    result = run(["validate", "--kubelet-config", str(path)])
    assert result.code == 0
    assert f"ok    config             {config}: 2 rules" in result.stdout  # ours was read
    assert "no rule's backend uses the service account token" in result.stdout  # token checks ran
    assert "our disk cache keys pod credentials" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cache", "list"], "runs the operator command 'cache', not kubelet mode"),
        (["--timeout", "90s"], "the plugin would exit 2 on every pull"),
        (["--timeout", "abc", "get-credentials"], "the plugin would exit 2 on every pull"),
        (["--frobnicate"], "the plugin would exit 2 on every pull"),
    ],
    ids=["operator command", "timeout", "timeout before the command", "unknown flag"],
)
def test_our_provider_args_must_select_kubelet_mode(tmp_path: Path, args: list[str], message: str) -> None:
    path = kubelet_config(tmp_path, provider(args=args))
    result = run(["validate", "--kubelet-config", str(path), "--config", str(our_rules(tmp_path))])
    assert result.code == 1
    assert any(message in fail for fail in lines(result.stdout, "fail")), result.stdout


@pytest.mark.parametrize("command_first", [False, True], ids=["options first", "command first"])
def test_the_config_our_args_pass_is_the_one_checked(tmp_path: Path, command_first: bool) -> None:
    missing = str(tmp_path / "missing.yaml")
    args = ["--config", missing]
    args = ["get-credentials", *args] if command_first else [*args, "get-credentials"]
    result = run(["validate", "--kubelet-config", str(kubelet_config(tmp_path, provider(args=args)))])
    assert result.code == 1
    assert any(line.startswith("fail  config") and missing in line for line in lines(result.stdout, "fail"))


def test_config_from_the_providers_env_and_a_broken_one(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\nrules: 5\n")
    path = kubelet_config(
        tmp_path, provider(env=[{"name": "REGISTRY_CREDENTIAL_PROVIDER_CONFIG", "value": str(broken)}])
    )
    result = run(["validate", "--kubelet-config", str(path)])
    assert result.code == 1
    assert "fail  config" in result.stdout
    assert str(broken) in result.stdout


def test_no_provider_of_our_name(tmp_path: Path) -> None:
    path = kubelet_config(tmp_path, provider(name="ecr-credential-provider"))
    result = run(["validate", "--kubelet-config", str(path), "--config", str(our_rules(tmp_path))])
    assert result.code == 0
    assert "no provider of that name (providers: ecr-credential-provider)" in result.stdout
    assert "--name" in result.stdout


def _executable(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_bin_dir_checks(tmp_path: Path) -> None:
    config = our_rules(tmp_path)
    path = kubelet_config(
        tmp_path,
        provider(args=["--config", str(config)]),
        provider(name="other-plugin"),
        provider(name="not-executable"),
    )
    bin_dir = tmp_path / "bin"
    result = run(["validate", "--kubelet-config", str(path), "--bin-dir", str(bin_dir)])
    assert result.code == 1
    assert f"plugin binary directory {bin_dir} did not exist" in result.stdout
    bin_dir.mkdir()
    _executable(
        bin_dir / "registry-credential-provider",
        'echo "registry-credential-provider 0.1.0 (Python 3.11.7)"\n',
    )
    _executable(bin_dir / "other-plugin", "exit 0\n")
    (bin_dir / "not-executable").write_text("")
    result = run(["validate", "--kubelet-config", str(path), "--bin-dir", str(bin_dir)])
    assert result.code == 1
    assert "registry-credential-provider 0.1.0 (Python 3.11.7)" in result.stdout
    assert (
        f'error inspecting binary executable : exec: "{bin_dir}/not-executable": permission denied'
        in result.stdout
    )
    (bin_dir / "not-executable").unlink()
    result = run(["validate", "--kubelet-config", str(path), "--bin-dir", str(bin_dir)])
    assert f"plugin binary executable  did not exist ({bin_dir}/not-executable)" in result.stdout
    _executable(bin_dir / "not-executable", "exit 0\n")
    _executable(bin_dir / "registry-credential-provider", "echo 'python3: not found' >&2\nexit 127\n")
    result = run(["validate", "--kubelet-config", str(path), "--bin-dir", str(bin_dir)])
    assert result.code == 0
    assert "--version exited 127: python3: not found; is it this plugin?" in result.stdout


def test_kubelet_version_gates(tmp_path: Path) -> None:
    config = our_rules(tmp_path)
    directory = tmp_path / "providers.d"
    directory.mkdir()
    (directory / "ours.yaml").write_bytes(
        document(provider(args=["--config", str(config)], tokenAttributes=token()))
    )
    result = run(["validate", "--kubelet-config", str(directory), "--kubelet-version", "1.33"])
    assert result.code == 1
    assert "a directory needs kubelet 1.34+" in result.stdout
    single = directory / "ours.yaml"
    result = run(["validate", "--kubelet-config", str(single), "--kubelet-version", "v1.33.4"])
    assert result.code == 1
    assert "KubeletServiceAccountTokenForCredentialProviders feature gate is disabled" in result.stdout
    result = run(["validate", "--kubelet-config", str(single), "--kubelet-version", "1.32"])
    assert result.code == 1
    assert "kubelet 1.32 has no tokenAttributes" in result.stdout
    assert run(["validate", "--kubelet-config", str(directory)]).code == 0
    assert run(["validate", "--kubelet-version", "one"]).code == 2


def test_flavor_takes_the_platforms_paths(tmp_path: Path) -> None:
    result = run(["validate", "--flavor", "kubeadm", "--config", str(our_rules(tmp_path))])
    assert result.code == 1
    assert 'unable to access path "/etc/kubernetes/credential-provider-config.yaml"' in result.stdout


def test_our_config_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = run(["validate", "--config", str(our_rules(tmp_path))])
    assert result.code == 0
    assert "(our config only: pass --kubelet-config or --flavor)" in result.stdout
    ecr = provider_config(
        tmp_path, "  - match: ['*.dkr.ecr.*.amazonaws.com']\n    backend: gar\n", name="gar.yaml"
    )
    # A build without gar, whether or not this one has it.
    monkeypatch.setitem(backends.BY_NAME, "gar", backends.BY_NAME["gar"]._replace(backend=None))
    result = run(["validate", "--config", str(ecr)])
    assert "warn  rules[0]" in result.stdout
    assert "backend 'gar' is not in this build: images it matches fail until it ships" in result.stdout


def test_golden_text_output(tmp_path: Path) -> None:
    config = provider_config(
        tmp_path,
        "  - match: ['registry.example.com:5000/team-a']\n    backend: anonymous\n"
        "  - match: ['registry.example.com:5000', '*.registry.example.com']\n    backend: anonymous\n"
        "  - match: ['quay.io']\n    backend: anonymous\n",
    )
    path = kubelet_config(
        tmp_path,
        provider(
            matchImages=["registry.example.com", "*.registry.example.com", "quay.io/*"],
            args=["--config", str(config)],
        ),
    )
    result = run(["validate", "--kubelet-config", str(path)])
    check_golden("validate-traps.txt", normalize(result.stdout, tmp_path))


def test_no_colour_when_not_a_terminal_and_colour_on_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from provider.commands import Streams
    from provider.output import use_colour

    class Tty(io.BytesIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_colour(Streams(io.BytesIO(), Tty(), io.StringIO()))
    assert not use_colour(Streams(io.BytesIO(), io.BytesIO(), io.StringIO()))
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(Streams(io.BytesIO(), Tty(), io.StringIO()))
    assert "\033[" not in run(["validate", "--config", str(our_rules(tmp_path))]).stdout


def test_validate_through_the_zipapp(zipapp: Path, tmp_path: Path) -> None:
    config = our_rules(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "registry-credential-provider").symlink_to(zipapp)
    path = kubelet_config(
        tmp_path, provider(matchImages=["registry.example.com:5000"], args=["--config", str(config)])
    )
    result = run_zipapp(
        zipapp, ["validate", "--kubelet-config", str(path), "--bin-dir", str(bin_dir), "-o", "json"], b""
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert any(
        c["check"] == "binary registry-credential-provider" and c["status"] == "ok" for c in report["checks"]
    )
    bad = kubelet_config(tmp_path, provider(apiVersion=""), name="bad.json")
    result = run_zipapp(zipapp, ["validate", "--kubelet-config", str(bad)], b"")
    assert result.returncode == 1
    assert b"providers.apiVersion: Required value" in result.stdout


def test_missing_credential_files_are_warned_about(tmp_path: Path) -> None:
    present = auth_file(tmp_path, {"r.test": ("alice", SECRET)})
    missing = tmp_path / "gone.json"
    config = provider_config(tmp_path, f"  - backend: dockerconfig\n    files: [{present}, {missing}]\n")
    result = run(["validate", "--config", str(config)])
    assert result.code == 0, result.stdout
    warnings = lines(result.stdout, "warn")
    assert any("rules[0].files[1]" in line and f"{missing} does not exist" in line for line in warnings), (
        warnings
    )
    assert not any(str(present) in line for line in warnings), warnings


def test_the_summary_names_the_error_the_kubelet_prints_first(tmp_path: Path) -> None:
    """The kubelet validates the whole config before it looks for binaries."""
    path = kubelet_config(
        tmp_path, {"name": "h", "matchImages": [], "apiVersion": V1, "defaultCacheDuration": "1m"}
    )
    (tmp_path / "bin").mkdir()
    result = run(
        ["validate", "--kubelet-config", str(path), "--bin-dir", str(tmp_path / "bin"), "-o", "json"]
    )
    assert result.code == 1
    report = result.json()
    assert report["kubeletError"] == (
        "failed to validate credential provider config: "
        "providers.matchImages: Required value: at least 1 item in matchImages is required"
    )
    assert sum(check["status"] == "fail" for check in report["checks"]) == 2  # the binary too, in the table


def test_one_rule_is_not_plural(tmp_path: Path) -> None:
    result = run(["validate", "--config", str(provider_config(tmp_path, "  - backend: anonymous\n"))])
    assert f"{tmp_path / 'provider.yaml'}: 1 rule (anonymous)" in result.stdout


def test_a_path_in_match_images_reaching_other_repositories_is_warned_about(tmp_path: Path) -> None:
    path = kubelet_config(tmp_path, provider(matchImages=["shared.test/team-a", "other.test/team-b/"]))
    result = run(["validate", "--kubelet-config", str(path), "--config", str(our_rules(tmp_path))])
    warnings = lines(result.stdout, "warn")
    assert any(
        "providers[0].matchImages[0]" in line and "'shared.test/team-a-other/app'" in line
        for line in warnings
    ), warnings
    assert not any("providers[0].matchImages[1]" in line and "raw string" in line for line in warnings), (
        warnings
    )


def _many_rules(tmp_path: Path, count: int) -> tuple[Path, Path]:
    """Our config with ``count`` path rules on distinct hosts, a wildcard among them, and the
    kubelet config ``render`` makes for it."""
    rules = [{"match": [f"r{i}.example.com/team{i}"], "backend": "anonymous"} for i in range(count)]
    rules.append({"match": ["*.wild.example.com"], "backend": "anonymous"})
    config = tmp_path / f"many-{count}.json"
    config.write_text(
        json.dumps(
            {"apiVersion": "registry-credential-provider/v1alpha1", "kind": "ProviderConfig", "rules": rules}
        )
    )
    rendered = run(["render", "--flavor", "kubeadm", "--config", str(config)])
    assert rendered.code == 0, rendered.stderr
    kubelet = tmp_path / f"kubelet-{count}.yaml"
    kubelet.write_text(rendered.stdout)
    return config, kubelet


def test_validate_compares_globs_in_linear_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checking 4x the rules makes about 4x the glob comparisons, not 16x (the count, not the
    clock, is what is asserted)."""
    from provider import globs
    from provider.ops.validation import ValidateOptions, check

    calls = {"n": 0}
    real_covers, real_overlaps = globs.covers, globs.overlaps

    def counting_covers(outer: globs.Glob, inner: globs.Glob) -> bool:
        calls["n"] += 1
        return real_covers(outer, inner)

    def counting_overlaps(first: globs.Glob, second: globs.Glob) -> bool:
        calls["n"] += 1
        return real_overlaps(first, second)

    counts = []
    for count in (250, 1000):
        config, kubelet = _many_rules(tmp_path, count)
        monkeypatch.setattr(globs, "covers", counting_covers)
        monkeypatch.setattr(globs, "overlaps", counting_overlaps)
        calls["n"] = 0
        report = check(ValidateOptions(kubelet_config=str(kubelet), config=str(config)))
        monkeypatch.undo()
        assert report.ok, [c for c in report.checks if c.status == "fail"]
        counts.append(calls["n"])
    assert counts[0] > 0
    assert counts[1] <= 5 * counts[0], counts


def test_a_kubelet_config_that_is_a_fifo_is_refused_not_read(tmp_path: Path) -> None:
    """A FIFO never ends: reading it would hang validate (and install) for ever."""
    import os
    import threading

    fifo = tmp_path / "credential-provider-config.yaml"
    os.mkfifo(fifo)
    done: list[Result] = []
    thread = threading.Thread(
        target=lambda: done.append(run(["validate", "--kubelet-config", str(fifo)])), daemon=True
    )
    thread.start()
    thread.join(60)  # a watchdog: a hang would keep the thread here
    assert done, "validate blocked on the FIFO"
    result = done[0]
    assert result.code == 1
    assert "it is a FIFO, not a regular file" in result.stdout
