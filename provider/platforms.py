"""Where each Kubernetes platform keeps the kubelet's credential provider files.

``render`` writes a CredentialProviderConfig for one of these, ``validate --flavor`` checks
one in place. The paths are the platforms' own (see the table in the project's KUBELET.md
reference); only ``provider_config`` (our own config, passed with ``--config``) is our choice,
next to the kubelet's file so the two are installed together.
"""

from __future__ import annotations

import msgspec

__all__ = ["FLAVORS", "TOKEN_AUDIENCES", "Platform", "paths_table"]

PROVIDER_NAME = "registry-credential-provider"


class Platform(msgspec.Struct, frozen=True, kw_only=True):
    """One platform's layout.

    ``kubelet_config``: the file to write. ``kubelet_config_flag``: what
    ``--image-credential-provider-config`` points at (a directory on OpenShift: every file
    in it is merged, which needs kubelet 1.34+). ``flags``: how the kubelet gets its flags.
    """

    name: str
    title: str
    bin_dir: str
    kubelet_config: str
    kubelet_config_flag: str
    provider_config: str
    flags: str


FLAVORS: dict[str, Platform] = {
    platform.name: platform
    for platform in (
        Platform(
            name="eks",
            title="Amazon EKS (AL2023, nodeadm)",
            bin_dir="/etc/eks/image-credential-provider",
            kubelet_config="/etc/eks/image-credential-provider/config.json",
            kubelet_config_flag="/etc/eks/image-credential-provider/config.json",
            provider_config="/etc/eks/image-credential-provider/registry-credential-provider.json",
            flags="nodeadm already passes both flags; this file replaces its ecr-credential-provider entry",
        ),
        Platform(
            name="gke",
            title="Google GKE / GCE (COS, Ubuntu)",
            bin_dir="/home/kubernetes/bin",
            kubelet_config="/home/kubernetes/cri-auth-config.yaml",
            kubelet_config_flag="/home/kubernetes/cri-auth-config.yaml",
            provider_config="/home/kubernetes/registry-credential-provider.json",
            flags="the node's configure-helper passes both flags (kube-env)",
        ),
        Platform(
            name="aks",
            title="Azure AKS",
            bin_dir="/var/lib/kubelet/credential-provider",
            kubelet_config="/var/lib/kubelet/credential-provider-config.yaml",
            kubelet_config_flag="/var/lib/kubelet/credential-provider-config.yaml",
            provider_config="/var/lib/kubelet/registry-credential-provider.json",
            flags="AKS passes both flags to the kubelet",
        ),
        Platform(
            name="kubeadm",
            title="kubeadm",
            bin_dir="/usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec",
            kubelet_config="/etc/kubernetes/credential-provider-config.yaml",
            kubelet_config_flag="/etc/kubernetes/credential-provider-config.yaml",
            provider_config="/etc/registry-credential-provider/config.json",
            flags="add both flags to KUBELET_KUBEADM_ARGS in /var/lib/kubelet/kubeadm-flags.env "
            "(or a systemd drop-in), then restart the kubelet",
        ),
        Platform(
            name="k3s",
            title="K3s",
            bin_dir="/var/lib/rancher/credentialprovider/bin",
            kubelet_config="/var/lib/rancher/credentialprovider/config.yaml",
            kubelet_config_flag="/var/lib/rancher/credentialprovider/config.yaml",
            provider_config="/var/lib/rancher/credentialprovider/registry-credential-provider.json",
            flags="k3s passes these two paths by default (its image-credential-provider-bin-dir and "
            "image-credential-provider-config options); restart k3s or k3s-agent",
        ),
        Platform(
            name="rke2",
            title="RKE2",
            bin_dir="/var/lib/rancher/credentialprovider/bin",
            kubelet_config="/var/lib/rancher/credentialprovider/config.yaml",
            kubelet_config_flag="/var/lib/rancher/credentialprovider/config.yaml",
            provider_config="/var/lib/rancher/credentialprovider/registry-credential-provider.json",
            flags="rke2 passes these two paths by default (its image-credential-provider-bin-dir and "
            "image-credential-provider-config options); restart rke2-server or rke2-agent",
        ),
        Platform(
            name="openshift",
            title="OpenShift",
            bin_dir="/usr/libexec/kubelet-image-credential-provider-plugins",
            kubelet_config="/etc/kubernetes/credential-providers/registry-credential-provider.yaml",
            kubelet_config_flag="/etc/kubernetes/credential-providers",
            provider_config="/etc/kubernetes/registry-credential-provider.json",
            flags="ship the files with a MachineConfig; the kubelet reads every file of "
            "/etc/kubernetes/credential-providers (merging a directory needs kubelet 1.34+)",
        ),
    )
}

# Token mode: the audience the kubelet asks the API server to put in the pod's token, where a
# platform has a conventional one (the identity provider's federation audience).
TOKEN_AUDIENCES = {
    "eks": "sts.amazonaws.com",
    "aks": "api://AzureADTokenExchange",
}


def paths_table() -> str:
    """Where each platform keeps the kubelet's bin dir, the kubelet's config and ours, as the
    Markdown table the README shows (a test keeps the two equal)."""
    lines = [
        "| platform | bin dir | kubelet config (`--image-credential-provider-config`) "
        "| our config (`--config`) |",
        "|---|---|---|---|",
    ]
    for platform in FLAVORS.values():
        flag = platform.kubelet_config_flag
        kubelet = f"`{platform.kubelet_config}`" + (
            f" (in `{flag}`)" if flag != platform.kubelet_config else ""
        )
        lines.append(
            f"| {platform.title} | `{platform.bin_dir}` | {kubelet} | `{platform.provider_config}` |"
        )
    return "\n".join(lines) + "\n"
