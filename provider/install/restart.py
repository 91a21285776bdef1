"""Restarting the kubelet through systemd (only when the operator asks)."""

from __future__ import annotations

import subprocess

from provider.install.flavours import Flavour
from provider.install.options import InstallError, Say

__all__ = ["restart_kubelet"]


def restart_kubelet(flavour: Flavour, say: Say) -> None:
    units = [unit for unit in flavour.services if _unit_exists(unit)]
    if not units:
        raise InstallError(
            f"no {' or '.join(flavour.services)} service here to restart: restart the kubelet yourself"
        )
    result = subprocess.run(["systemctl", "restart", units[0]], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InstallError(f"systemctl restart {units[0]} failed: {result.stderr.strip()}")
    say(f"restarted {units[0]}")


def _unit_exists(unit: str) -> bool:
    try:
        result = subprocess.run(
            ["systemctl", "show", "--property=LoadState", "--value", unit],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return False
    return result.stdout.strip() == "loaded"
