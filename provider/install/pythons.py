"""Which CPython the kubelet's exec of our zipapp will find, and so which release form a node gets.

The zipapp's boot script looks for ``python3.9`` ... ``python3.13`` (and ``python3``) on the
kubelet's ``PATH``; with one of CPython 3.9-3.13 there the node gets the zipapp, otherwise the
self-contained form, which brings its own CPython (``choose_form``). The advice table (what
to install for the zipapp instead) is a fallback only. ``node-config/install.sh`` makes the
same choice and has the same advice table for the bootstrap case, where no interpreter can run
this module (a test keeps the two in step).
"""

from __future__ import annotations

import os
import shlex

from provider.install.files import Root

__all__ = ["STANDALONE", "SUPPORTED", "ZIPAPP", "advice", "choose_form", "kubelet_pythons", "os_release"]

SUPPORTED = ((3, 9), (3, 10), (3, 11), (3, 12), (3, 13))
ZIPAPP = "zipapp"
STANDALONE = "standalone"
NAMES = tuple(f"python{major}.{minor}" for major, minor in reversed(SUPPORTED))
OS_RELEASE = ("/etc/os-release", "/usr/lib/os-release")


def kubelet_pythons(root: Root, path: str) -> list[str]:
    """Node paths of the supported interpreters on ``path`` (the kubelet's PATH) under ``root``."""
    found = []
    for directory in path.split(":"):
        for name in NAMES:
            candidate = f"{directory.rstrip('/')}/{name}"
            host = root.host(candidate)
            if os.path.lexists(host):
                found.append(candidate)
    return found


def choose_form(root: Root, path: str) -> tuple[str, str]:
    """The release form for this node (``ZIPAPP`` or ``STANDALONE``) and why (one line)."""
    found = kubelet_pythons(root, path)
    if found:
        return ZIPAPP, f"CPython 3.9-3.13 on the kubelet's PATH ({found[0]}) runs the zipapp"
    return STANDALONE, (
        "no CPython 3.9-3.13 on the kubelet's PATH: the self-contained form brings its own "
        f"(or, for the zipapp: {advice(os_release(root))})"
    )


def os_release(root: Root) -> dict[str, str]:
    for path in OS_RELEASE:
        data = root.read(path)
        if data is None:
            continue
        values = {}
        for line in data.decode("utf-8", "replace").splitlines():
            name, equals, value = line.partition("=")
            if equals and name.strip() and not name.startswith("#"):
                try:
                    words = shlex.split(value)
                except ValueError:
                    words = [value]
                values[name.strip()] = words[0] if words else ""
        return values
    return {}


def _advice_table(release: dict[str, str]) -> list[tuple[bool, str]]:
    distro = release.get("ID", "")
    version = release.get("VERSION_ID", "")
    major = version.split(".")[0]
    like = release.get("ID_LIKE", "").split()
    name = release.get("NAME", distro)
    return [
        (
            distro == "amzn" and version == "2023",
            "dnf install -y python3  (Amazon Linux 2023's python3 is 3.9)",
        ),
        (
            distro == "amzn",
            "Amazon Linux 2 packages no CPython 3.9+: move the node group to Amazon Linux 2023 "
            "(dnf install -y python3)",
        ),
        (
            distro in ("rhel", "centos", "rocky", "almalinux", "ol") and major == "8",
            "dnf install -y python39",
        ),
        (distro in ("rhel", "centos", "rocky", "almalinux", "ol") and major == "9", "dnf install -y python3"),
        (distro == "fedora" or "fedora" in like, "dnf install -y python3"),
        # AKS's Azure Linux node images: 3.0's python3 is 3.12; CBL-Mariner 2.0's is 3.9.
        (distro == "azurelinux", "tdnf install -y python3"),
        (distro == "mariner", f"tdnf install -y python3  (CBL-Mariner {version}'s python3 is 3.9)"),
        (
            distro == "ubuntu" and version in ("18.04", "20.04"),
            f"Ubuntu {version} packages no CPython 3.9+: upgrade the node image to Ubuntu 22.04 or later",
        ),
        (distro == "ubuntu" or "ubuntu" in like, "apt-get install -y python3"),
        (
            distro == "debian" and major == "10",
            "Debian 10 packages no CPython 3.9+: upgrade the node image to Debian 11 or later",
        ),
        (distro == "debian" or "debian" in like, "apt-get install -y python3"),
        (distro in ("sles", "opensuse-leap", "sle-micro") or "suse" in like, "zypper install -y python311"),
        (
            distro in ("flatcar", "bottlerocket", "cos", "talos", "rhcos", "fedora-coreos"),
            f"{name} has no package manager for CPython: build it into the image (install --layout venv at "
            "image build time) or use a node image with CPython 3.9-3.13",
        ),
    ]


def advice(release: dict[str, str]) -> str:
    """What to run to get a supported CPython on this distribution (one line)."""
    for applies, text in _advice_table(release):
        if applies:
            return text
    return "install CPython 3.9, 3.10, 3.11, 3.12 or 3.13 with the distribution's package manager"
