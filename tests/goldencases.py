"""The golden requests (``tests/data/golden``) run against one built plugin, however it is exec'd.

Each case is answered twice: exec'd directly with the exact request bytes (the answer must be the
golden response, byte for byte), and, where the kubelet would send that very request, pulled
through the kubelet simulator (its request, its strict reading of our answer, same bytes). The
token case carries a field from a future kubelet, which the simulator never sends: it is checked
by the direct exec only.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from tests.kubelet_sim import KubeletSimulator, ProviderStatus, encode_request

GOLDEN = Path(__file__).parent / "data" / "golden"
CASES = sorted(path.name for path in GOLDEN.iterdir() if path.is_dir())


class Case(NamedTuple):
    name: str
    config: str  # the provider config's path as the plugin sees it
    request: bytes
    response: bytes


def prepare(name: str, host_dir: Path, plugin_dir: str) -> Case:
    """Copy case ``name`` to ``host_dir``, which the plugin sees as ``plugin_dir``."""
    workdir = host_dir / name
    shutil.copytree(GOLDEN / name, workdir)
    (config,) = [p for p in workdir.iterdir() if p.stem == "provider-config"]
    config.write_text(config.read_text().replace("{dir}", f"{plugin_dir}/{name}"))
    return Case(
        name,
        f"{plugin_dir}/{name}/{config.name}",
        (workdir / "request.json").read_bytes(),
        (workdir / "response.json").read_bytes(),
    )


def kubelet_would_send(case: Case) -> bool:
    request = json.loads(case.request)
    sent = encode_request(request["apiVersion"], request["image"])
    return bool(json.loads(sent) == request)


def check_direct(case: Case, plugin: Path, env: Mapping[str, str]) -> None:
    result = subprocess.run(
        [str(plugin), "get-credentials", "--config", case.config],
        input=case.request,
        capture_output=True,
        env=dict(env),
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, b""), case.name
    assert result.stdout == case.response, case.name


def check_simulated(case: Case, plugin: Path, env: Mapping[str, str]) -> None:
    request = json.loads(case.request)
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [
            {
                "name": plugin.name,
                "apiVersion": request["apiVersion"],
                "matchImages": [request["image"].split("/")[0]],
                "defaultCacheDuration": "1m",
                "args": ["get-credentials", "--config", case.config],
            }
        ],
    }
    sim = KubeletSimulator(config, plugin.parent, base_env=env, timeout=120)
    result = sim.lookup(request["image"]).by_provider(plugin.name)
    assert result.exec is not None, case.name
    assert result.status is ProviderStatus.OK, (case.name, result.reason, result.exec.stderr)
    assert json.loads(result.exec.stdin) == request
    assert result.exec.stdout == case.response, case.name


def check_all(host_dir: Path, plugin_dir: str, plugin: Path, env: Mapping[str, str]) -> list[str]:
    """Every golden case against ``plugin``; the names of those also pulled through the simulator."""
    simulated = []
    for name in CASES:
        case = prepare(name, host_dir, plugin_dir)
        check_direct(case, plugin, env)
        if kubelet_would_send(case):
            check_simulated(case, plugin, env)
            simulated.append(name)
    return simulated
