"""Options before or after the command: both orders mean the same, or exit 2.

The top-level help shows ``[--config FILE] [--timeout DURATION] COMMAND``, and a kubelet
``args:`` list may be written in that order; the command's own parser must not replace a value
given before it with its default.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provider.__main__ import build_parser, fast_kubelet_args
from tests.cmdutil import V1, provider_config, run

REQUEST = json.dumps({"kind": "CredentialProviderRequest", "apiVersion": V1, "image": "r.test/app"}).encode()


def _config(tmp_path: Path) -> Path:
    # A cacheDuration no default gives, so the answer shows which config was used.
    return provider_config(
        tmp_path, "  - backend: anonymous\n    cacheDuration: 7m\n", extra="cache:\n  enabled: false\n"
    )


@pytest.mark.parametrize(
    "order",
    [
        ["--config", "{c}", "get-credentials"],
        ["get-credentials", "--config", "{c}"],
        ["--config={c}", "get-credentials", "--timeout", "20s"],
        ["--timeout", "20s", "get-credentials", "--config", "{c}"],
        ["-v", "2", "--config", "{c}", "get-credentials"],
    ],
    ids=" ".join,
)
def test_kubelet_mode_honours_config_in_any_order(tmp_path: Path, order: list[str]) -> None:
    config = _config(tmp_path)
    args = [word.format(c=config) for word in order]
    result = run(args, REQUEST)
    assert result.code == 0, result.stderr
    assert result.json()["cacheDuration"] == "7m0s"
    parsed = fast_kubelet_args(args) or build_parser().parse_args(args)
    assert parsed.config == str(config)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--config", "/nonexistent/provider.yaml", "get-credentials"], 1, "/nonexistent/provider.yaml"),
        (["--timeout", "abc", "get-credentials"], 2, "--timeout"),
        (["get-credentials", "--timeout", "abc"], 2, "--timeout"),
        (["--timeout", "abc"], 2, "--timeout"),
        (["--timeout", "90s", "validate"], 2, "--timeout"),
        (["validate", "--timeout=abc"], 2, "--timeout"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else str(value),
)
def test_bad_options_before_the_command_are_not_ignored(args: list[str], code: int, message: str) -> None:
    result = run(args, REQUEST)
    assert result.code == code, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr, result.stderr


def test_operator_commands_take_config_before_the_command(tmp_path: Path) -> None:
    config = _config(tmp_path)
    for args in (["--config", str(config), "validate"], ["validate", "--config", str(config)]):
        result = run([*args, "--output", "json"])
        assert result.code == 0, result.stderr
        assert result.json()["config"] == str(config)


@pytest.mark.parametrize(
    "command",
    [[], ["get-credentials"], ["test", "r.test/app"], ["validate"], ["render", "--flavor", "kubeadm"]],
    ids=str,
)
def test_a_missing_config_named_by_the_environment_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    monkeypatch.setenv("REGISTRY_CREDENTIAL_PROVIDER_CONFIG", str(missing))
    result = run(command, REQUEST)
    assert result.code == 1
    assert (
        f"{missing} does not exist (named by REGISTRY_CREDENTIAL_PROVIDER_CONFIG)"
        in result.stdout + result.stderr
    )


def test_cache_takes_dash_o_like_every_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR", str(tmp_path / "cache"))
    config = provider_config(tmp_path, "  - backend: anonymous\n")
    result = run(["cache", "list", "-o", "json", "--config", str(config)])
    assert result.code == 0, result.stderr
    assert result.json() == []
