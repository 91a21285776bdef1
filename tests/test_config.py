"""Our config file: what it accepts, and the one-line errors for what it does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from provider.config import AnonymousRule, DockerConfigRule, ProviderConfig, decode_config, load_config
from provider.defaults import DEFAULT_CONFIG
from provider.errors import ConfigError
from provider.fullpath import find_rule

HEAD = "apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\n"

ERRORS = [
    ("rules: []\nfoo: 1\n", "$: Object contains unknown field `foo`"),
    (
        "rules:\n  - backend: nope\n",
        "$.rules[0].backend: Invalid value 'nope' (expected one of: dockerconfig",
    ),
    ("rules:\n  - match: [a.io]\n", "$.rules[0]: Object missing required field `backend`"),
    (
        "rules:\n  - backend: dockerconfig\n    files: /x\n",
        "$.rules[0].files: Expected `array | null`, got `str`",
    ),
    (
        "rules:\n  - backend: anonymous\n    files: [/x]\n",
        "$.rules[0]: Object contains unknown field `files`",
    ),
    (
        "rules:\n  - backend: anonymous\n    cacheDuration: 5\n",
        "$.rules[0].cacheDuration: Expected `str | null`",
    ),
    (
        "rules:\n  - backend: anonymous\n    cacheDuration: 5 minutes\n",
        "$.rules[0].cacheDuration: expected a Go duration",
    ),
    (
        "rules:\n  - backend: anonymous\n    cacheDuration: -5m\n",
        "$.rules[0].cacheDuration: expected a non-negative",
    ),
    ("timeout: 2m\nrules: []\n", "$.timeout: at most 55s"),
    ("timeout: 0s\nrules: []\n", "$.timeout: expected a positive duration"),
    ("rules:\n  - backend: dockerconfig\n    helperTimeout: 1m\n", "$.rules[0].helperTimeout: at most 55s"),
    (
        "rules:\n  - backend: dockerconfig\n    files: [relative/config.json]\n",
        "$.rules[0].files[0]: expected an absolute path",
    ),
    ("rules:\n  - match: []\n    backend: anonymous\n", "$.rules[0].match: expected at least one image glob"),
    (
        "rules:\n  - match: ['https://r.io']\n    backend: anonymous\n",
        "$.rules[0].match[0]: 'https://r.io' has a scheme",
    ),
    (
        "rules:\n  - match: ['r.io:abc']\n    backend: anonymous\n",
        "$.rules[0].match[0]: 'r.io:abc' is not an image glob",
    ),
    (
        "rules:\n  - match: ['']\n    backend: anonymous\n",
        "$.rules[0].match[0]: expected a kubelet image glob",
    ),
    (
        "rules:\n  - backend: anonymous\n  - match: [r.io]\n    backend: dockerconfig\n",
        "$.rules[1]: unreachable, rules[0] has no 'match'",
    ),
]


@pytest.mark.parametrize(
    ("body", "message"), ERRORS, ids=[m.split(":")[0] + " " + m.split(": ")[1][:30] for _, m in ERRORS]
)
def test_config_errors_name_the_field_and_what_was_expected(body: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        decode_config((HEAD + body).encode(), "cfg.yaml")
    text = str(caught.value)
    assert text.startswith(f"cfg.yaml: {message}"), text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"kind: ProviderConfig\nrules: []\n", "cfg.yaml: $: Object missing required field `apiVersion`"),
        (
            b"apiVersion: v1\nkind: ProviderConfig\nrules: []\n",
            "cfg.yaml: $.apiVersion: expected 'registry-credential-provider/v1alpha1'",
        ),
        (
            b"apiVersion: registry-credential-provider/v1alpha1\nkind: Config\nrules: []\n",
            "cfg.yaml: $.kind: expected 'ProviderConfig'",
        ),
        (b"a: [\n", "cfg.yaml: not valid YAML or JSON"),
        (b'{"rules": [', "cfg.yaml: not valid YAML or JSON"),
        (b"- just\n- a list\n", "cfg.yaml: $: Expected `object`, got `array`"),
        (b'{"apiVersion": "\xff"}', "cfg.yaml: not valid YAML or JSON: the file is not UTF-8"),
        (b"apiVersion: \xff\n", "cfg.yaml: not valid YAML or JSON"),
    ],
)
def test_document_level_errors(document: bytes, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        decode_config(document, "cfg.yaml")
    assert str(caught.value).startswith(message), str(caught.value)


def test_yaml_and_json_give_the_same_config() -> None:
    yaml_config = decode_config(
        (
            HEAD + "timeout: 10s\nrules:\n  - match: [r.io]\n    backend: anonymous\n    cacheDuration: 2h\n"
        ).encode(),
        "x",
    )
    json_config = decode_config(
        b'{"apiVersion":"registry-credential-provider/v1alpha1","kind":"ProviderConfig","timeout":"10s",'
        b'"rules":[{"match":["r.io"],"backend":"anonymous","cacheDuration":"2h"}]}',
        "x",
    )
    assert yaml_config == json_config
    assert json_config.rules == [AnonymousRule(match=["r.io"], cache_duration="2h")]
    assert json_config.timeout_seconds == 10


def test_load_config_reports_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path))  # a directory


def test_load_config_without_a_path_is_the_embedded_default() -> None:
    assert load_config(None) is DEFAULT_CONFIG


DEFAULT_ROUTES = [
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com/app", "ecr"),
    ("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/app", "ecr"),
    ("123456789012.dkr-ecr.eu-west-1.on.aws/app", "ecr"),
    ("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app", "ecr"),
    ("123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu/app", "ecr"),
    ("public.ecr.aws/nginx/nginx", "ecr"),
    ("gcr.io/project/app", "gar"),
    ("eu.gcr.io/project/app", "gar"),
    ("europe-west3-docker.pkg.dev/project/repo/app", "gar"),
    ("myregistry.azurecr.io/app", "acr"),
    ("myregistry.westeurope.geo.azurecr.io/app", "acr"),
    ("myregistry.azurecr.cn/app", "acr"),
    ("docker.io/library/nginx", "dockerconfig"),
    ("registry.example.com:5000/app", "dockerconfig"),
    ("myregistry.azurecr.io.evil.io/app", "dockerconfig"),
    ("123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.io/app", "dockerconfig"),
    ("gcr.io.evil.io/app", "dockerconfig"),
]


@pytest.mark.parametrize(("image", "backend"), DEFAULT_ROUTES, ids=[i for i, _ in DEFAULT_ROUTES])
def test_embedded_default_routes_cloud_hosts_to_their_backends(image: str, backend: str) -> None:
    match = find_rule(DEFAULT_CONFIG, image)
    assert match is not None
    assert match.backend == backend


def test_embedded_default_is_valid_and_ends_with_docker_config_files() -> None:
    from provider.config import validate

    assert validate(DEFAULT_CONFIG) is DEFAULT_CONFIG
    assert DEFAULT_CONFIG.rules[-1] == DockerConfigRule()


def test_first_matching_rule_wins() -> None:
    config = ProviderConfig(
        api_version="registry-credential-provider/v1alpha1",
        kind="ProviderConfig",
        rules=[AnonymousRule(match=["r.io/public"]), DockerConfigRule(match=["r.io", "*.r.io"])],
    )
    assert find_rule(config, "r.io/public/app").index == 0  # type: ignore[union-attr]
    assert find_rule(config, "r.io/private/app").index == 1  # type: ignore[union-attr]
    assert find_rule(config, "a.r.io/app").glob == "*.r.io"  # type: ignore[union-attr]
    assert find_rule(config, "other.io/app") is None


@pytest.mark.parametrize(
    "body",
    [
        "rules: " + "[" * 50000 + "]" * 50000 + "\n",
        "rules:\n" + "".join(" " * i + "- \n" for i in range(0, 400)),
        "rules: " + "{a: " * 101 + "1" + "}" * 101 + "\n",
    ],
    ids=["flow", "block", "mapping"],
)
def test_yaml_nested_too_deeply_is_one_error_not_a_crash(body: str) -> None:
    # The flow case crashed the process with PyYAML 6.0.3 (CPython 3.9's newest) before the check.
    with pytest.raises(ConfigError) as caught:
        decode_config((HEAD + body).encode(), "cfg.yaml")
    assert str(caught.value) == "cfg.yaml: not valid YAML or JSON: nested more than 100 levels deep"


def test_yaml_nesting_of_a_real_config_passes_the_depth_check() -> None:
    body = "rules:\n  - match: ['a.io']\n    backend: anonymous\n" + "# " + "[" * 500 + "\n"
    assert decode_config((HEAD + body).encode(), "cfg.yaml").rules[0].backend == "anonymous"
