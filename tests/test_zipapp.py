"""The built artifact: reproducible, self-contained, and lean on the kubelet's path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, kubelet_environ, run_zipapp

CLOUD_SDK_PREFIXES = ("boto3", "botocore", "google.auth", "google.oauth2", "azure", "requests", "urllib3")
# Modules the kubelet path must not pay for unless it needs them.
LAZY_MODULES = (
    "argparse",
    "subprocess",
    "traceback",
    "yaml",
    "dataclasses",
    "urllib.parse",
    "pathlib",
    "logging",
)


def _build(output: Path) -> bytes:
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "packaging" / "build_zipapp.py"),
            "--output",
            str(output),
            "--runtime-pex-root",
            "/var/lib/registry-credential-provider/pex",
        ],
        check=True,
        capture_output=True,
    )
    return output.read_bytes()


def test_rebuild_is_byte_identical(tmp_path: Path) -> None:
    first = _build(tmp_path / "first" / "registry-credential-provider")
    second = _build(tmp_path / "second" / "registry-credential-provider")
    assert first == second


def test_is_a_sh_boot_venv_pex_with_an_absolute_runtime_root(zipapp: Path) -> None:
    head = zipapp.read_bytes()[:2048].decode("utf-8", "replace")
    assert head.startswith("#!/bin/sh\n")
    assert 'DEFAULT_PEX_ROOT="$(echo /var/lib/registry-credential-provider/pex)"' in head
    assert 'VENV="1"' in head


def _modules_after_request(zipapp: Path, tmp_path: Path, rule: str, image: str) -> list[str]:
    config = tmp_path / "provider.yaml"
    config.write_text(
        f"apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\nrules:\n{rule}"
    )
    request = {
        "kind": "CredentialProviderRequest",
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "image": image,
    }
    (tmp_path / "request.json").write_text(json.dumps(request))
    code = (
        "import io, json, sys\n"
        "from provider.__main__ import main\n"
        "out = io.BytesIO()\n"
        f"rc = main(['--config', {str(config)!r}], stdin=open({str(tmp_path / 'request.json')!r}, 'rb'), stdout=out)\n"
        "assert rc == 0, rc\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = run_zipapp(zipapp, ["-c", code], b"", env={"PEX_INTERPRETER": "1"})
    assert result.returncode == 0, result.stderr.decode()
    modules: list[str] = json.loads(result.stdout)
    return modules


def _config_json_rule(tmp_path: Path) -> str:
    files = tmp_path / "config.json"
    files.write_text('{"auths": {"registry.example.com": {"username": "u", "password": "p"}}}')
    return f"  - backend: dockerconfig\n    files: [{files}]\n"


def test_dockerconfig_and_anonymous_import_no_cloud_sdk(zipapp: Path, tmp_path: Path) -> None:
    for rule in (_config_json_rule(tmp_path), "  - backend: anonymous\n"):
        modules = _modules_after_request(zipapp, tmp_path, rule, "registry.example.com/app")
        assert "provider.fullpath" in modules  # the request really went through the plugin
        assert [m for m in modules if m.startswith(CLOUD_SDK_PREFIXES)] == []


def test_plain_auths_answer_skips_heavy_standard_modules(zipapp: Path, tmp_path: Path) -> None:
    modules = _modules_after_request(
        zipapp, tmp_path, _config_json_rule(tmp_path), "registry.example.com/app"
    )
    assert "provider.backends.dockerconfig" in modules
    # YAML configs do import yaml; this one is YAML, so only check the rest.
    assert [m for m in LAZY_MODULES if m in modules and m != "yaml"] == []


def test_answers_with_no_home_from_any_directory(zipapp: Path, tmp_path: Path) -> None:
    request = b'{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"r.io/x"}'
    config = tmp_path / "p.json"
    config.write_text(
        '{"apiVersion":"registry-credential-provider/v1alpha1","kind":"ProviderConfig","rules":[{"backend":"anonymous"}]}'
    )
    env = kubelet_environ()
    assert "HOME" not in env
    result = subprocess.run(
        [str(zipapp), "get-credentials", "--config", str(config)],
        input=request,
        capture_output=True,
        env=env,
        cwd="/",
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cacheKeyType"] == "Registry"
