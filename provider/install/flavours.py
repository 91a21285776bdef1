"""The node flavours ``install`` knows: the platform's paths (``provider.platforms``) plus how the
kubelet gets its two flags there, which service runs the kubelet, and how to recognise the node.

Flags, per flavour:

- ``platform``: the platform already passes ``--image-credential-provider-config`` and
  ``--image-credential-provider-bin-dir`` (EKS nodeadm, GKE, AKS, OpenShift); we only add files.
- ``kubeadm-flags-env``: ``KUBELET_KUBEADM_ARGS`` in ``/var/lib/kubelet/kubeadm-flags.env``.
- ``rancher``: ``kubelet-arg+`` in a ``config.yaml.d`` drop-in of k3s or rke2 (appended to the
  user's own ``kubelet-arg``, never replacing it).
- ``systemd``: a kubelet.service drop-in that repeats the unit's ``ExecStart`` with the flags.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal

import msgspec

from provider.platforms import FLAVORS, PROVIDER_NAME, Platform

__all__ = ["FLAVOURS", "FlagsMechanism", "Flavour", "detect", "generic"]

FlagsMechanism = Literal["platform", "kubeadm-flags-env", "rancher", "systemd"]

ECR_PROVIDER_NAME = "ecr-credential-provider"


class Flavour(msgspec.Struct, frozen=True, kw_only=True):
    """One flavour.

    ``needs_kubelet_config``: the platform's kubelet config must already exist (it proves the
    kubelet is started with the flags; we cannot add them there). ``needs_bin_dir``: the bin dir
    must exist (the platform creates it; its absence means another platform). ``services``: the
    systemd units that run the kubelet, first found is restarted. ``evidence``: paths whose
    existence identifies the flavour, in order of confidence. ``remerge``: the platform rewrites
    the kubelet config at boot (nodeadm), so a kubelet drop-in merges our entry back first.
    """

    name: str
    platform: Platform
    flags: FlagsMechanism
    needs_kubelet_config: bool = False
    needs_bin_dir: bool = False
    services: tuple[str, ...] = ("kubelet",)
    evidence: tuple[str, ...] = ()
    remerge: bool = False
    rancher_dir: str = ""


FLAVOURS: dict[str, Flavour] = {
    flavour.name: flavour
    for flavour in (
        Flavour(
            name="eks",
            platform=FLAVORS["eks"],
            flags="platform",
            needs_kubelet_config=True,
            needs_bin_dir=True,
            evidence=("/etc/eks/image-credential-provider", "/usr/bin/nodeadm", "/etc/eks"),
            remerge=True,
        ),
        Flavour(
            name="gke",
            platform=FLAVORS["gke"],
            flags="platform",
            needs_kubelet_config=True,
            needs_bin_dir=True,
            evidence=(
                "/home/kubernetes/bin",
                "/home/kubernetes/kube-env",
                "/home/kubernetes/cri-auth-config.yaml",
            ),
        ),
        Flavour(
            name="aks",
            platform=FLAVORS["aks"],
            flags="platform",
            needs_kubelet_config=True,
            needs_bin_dir=True,
            evidence=("/etc/kubernetes/azure.json", "/var/lib/kubelet/credential-provider"),
        ),
        Flavour(
            name="kubeadm",
            platform=FLAVORS["kubeadm"],
            flags="kubeadm-flags-env",
            evidence=("/var/lib/kubelet/kubeadm-flags.env",),
        ),
        Flavour(
            name="k3s",
            platform=FLAVORS["k3s"],
            flags="rancher",
            services=("k3s", "k3s-agent"),
            evidence=("/etc/rancher/k3s",),
            rancher_dir="/etc/rancher/k3s",
        ),
        Flavour(
            name="rke2",
            platform=FLAVORS["rke2"],
            flags="rancher",
            services=("rke2-server", "rke2-agent"),
            evidence=("/etc/rancher/rke2",),
            rancher_dir="/etc/rancher/rke2",
        ),
        Flavour(
            name="openshift",
            platform=FLAVORS["openshift"],
            flags="platform",
            needs_bin_dir=False,
            evidence=("/etc/mcs-machine-config-content.json", "/etc/machine-config-daemon"),
        ),
    )
}

# Most specific first: an rke2 node also has kubeadm-like files, an EKS node a kubelet unit.
DETECTION_ORDER = ("rke2", "k3s", "openshift", "eks", "gke", "aks", "kubeadm")


def generic(bin_dir: str, kubelet_config: str, provider_config: str) -> Flavour:
    """``generic``: explicit paths, flags through a kubelet.service drop-in."""
    return Flavour(
        name="generic",
        platform=Platform(
            name="generic",
            title="generic (explicit paths)",
            bin_dir=bin_dir,
            kubelet_config=kubelet_config,
            kubelet_config_flag=kubelet_config,
            provider_config=provider_config,
            flags="a kubelet.service drop-in passes both flags",
        ),
        flags="systemd",
    )


GENERIC_PROVIDER_CONFIG = f"/etc/{PROVIDER_NAME}/config.json"


def detect(exists: Callable[[str], bool]) -> tuple[Flavour, str] | None:
    """The flavour this node looks like, and the path that gave it away (None: no idea)."""
    for name in DETECTION_ORDER:
        flavour = FLAVOURS[name]
        for path in flavour.evidence:
            if exists(path):
                return flavour, path
    return None


def describe_detection(found: tuple[Flavour, str] | None) -> str:
    if found is None:
        return "no flavour recognised"
    flavour, path = found
    return f"{flavour.name} ({flavour.platform.title}): {path} exists"


def node_exists(root: str) -> Callable[[str], bool]:
    """``exists`` for ``detect`` under ``root``."""
    return lambda path: os.path.lexists(os.path.join(root, path.lstrip("/")))
