"""A tiny OCI test image built with umoci, pushed with skopeo; ``skopeo inspect`` to prove credentials."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.infra._util import (
    clean_env,
    redact,
    redact_args,
    require_binary,
    run_checked,
    scratch_dir,
)
from tests.infra.registry import Registry

TEST_FILE_PATH = "/hello.txt"
TEST_FILE_CONTENT = b"hello from registry-credential-provider tests\n"


@dataclass(frozen=True)
class OCIImage:
    """An OCI image layout on disk holding one small image under ``tag``."""

    layout: Path
    tag: str
    manifest_digest: str  # sha256:... of the manifest (stays the same after a push)
    image_id: str  # sha256:... of the config blob: what CRI PullImage returns as image_ref
    file_path: str = TEST_FILE_PATH
    file_content: bytes = TEST_FILE_CONTENT

    @property
    def source_ref(self) -> str:
        """The skopeo reference of the local image: ``oci:DIR:TAG``."""
        return f"oci:{self.layout}:{self.tag}"


def _blob(layout: Path, digest: str) -> Any:
    algorithm, hexdigest = digest.split(":", 1)
    return json.loads((layout / "blobs" / algorithm / hexdigest).read_text())


def build_test_image(workdir: Path, tag: str = "v1") -> OCIImage:
    """Build the test image (one layer with ``/hello.txt``) into ``workdir/oci`` with umoci."""
    umoci = require_binary("umoci")
    workdir.mkdir(parents=True, exist_ok=True)
    layout = workdir / "oci"
    image = f"{layout}:{tag}"
    source = workdir / "hello.txt"
    source.write_bytes(TEST_FILE_CONTENT)
    run_checked([umoci, "init", "--layout", str(layout)], what="umoci init")
    run_checked([umoci, "new", "--image", image], what="umoci new")
    run_checked([umoci, "insert", "--image", image, str(source), TEST_FILE_PATH], what="umoci insert")
    run_checked(
        [umoci, "config", "--image", image, "--author", "registry-credential-provider tests",
         "--config.cmd", TEST_FILE_PATH, "--config.label", "org.example.test=registry-credential-provider"],
        what="umoci config",
    )  # fmt: skip
    run_checked([umoci, "gc", "--layout", str(layout)], what="umoci gc")
    index = json.loads((layout / "index.json").read_text())
    manifests = [
        m
        for m in index["manifests"]
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    if len(manifests) != 1:
        raise RuntimeError(f"umoci layout {layout} has {len(manifests)} manifests tagged {tag!r}")
    manifest_digest: str = manifests[0]["digest"]
    image_id: str = _blob(layout, manifest_digest)["config"]["digest"]
    return OCIImage(layout=layout, tag=tag, manifest_digest=manifest_digest, image_id=image_id)


def _skopeo_env() -> dict[str, str]:
    """An isolated environment: no ambient auth files, registries.conf or proxies can change a result."""
    base = scratch_dir() / "skopeo"
    home = base / "home"
    (home / ".docker").mkdir(parents=True, exist_ok=True)
    (base / "run").mkdir(parents=True, exist_ok=True)
    (base / "run").chmod(0o700)
    empty_auth = base / "empty-auth.json"
    if not empty_auth.exists():
        empty_auth.write_text('{"auths": {}}\n')
    registries_conf = base / "registries.conf"
    if not registries_conf.exists():
        registries_conf.write_text("# empty: no mirrors, no search registries\n")
    return clean_env(
        {
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(base / "run"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "DOCKER_CONFIG": str(home / ".docker"),
            "REGISTRY_AUTH_FILE": str(empty_auth),
            "CONTAINERS_REGISTRIES_CONF": str(registries_conf),
        }
    )


def _policy_file() -> Path:
    policy = scratch_dir() / "skopeo" / "policy.json"
    policy.parent.mkdir(parents=True, exist_ok=True)
    if not policy.exists():
        policy.write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
    return policy


def _docker_ref(ref: str) -> str:
    return ref if ref.startswith("docker://") else "docker://" + ref


def _tls_args(
    prefix: str, registry: Registry | None, ca_dir: Path | None, tls_verify: bool | None
) -> list[str]:
    """``--{prefix}tls-verify`` / ``--{prefix}cert-dir`` for a registry (explicit arguments win)."""
    if registry is not None:
        ca_dir = ca_dir if ca_dir is not None else registry.ca_dir
        tls_verify = tls_verify if tls_verify is not None else registry.tls
    args: list[str] = []
    if tls_verify is False:
        args.append(f"--{prefix}tls-verify=false")
    else:
        args.append(f"--{prefix}tls-verify=true")
        if ca_dir is not None:
            args += [f"--{prefix}cert-dir", str(ca_dir)]
    return args


def push_image(
    image: OCIImage,
    registry: Registry,
    repo_tag: str,
    *,
    username: str,
    password: str,
    timeout: float = 120.0,
    every_platform: bool = False,
) -> str:
    """``skopeo copy`` the image to ``registry/repo_tag``; return the pushed reference (no transport).

    ``every_platform``: an index goes with every image it lists (``--all``), not only this CPU's,
    and keeps its digest (``--preserve-digests``: what a kustomization pins)."""
    __tracebackhide__ = True  # never show the secrets in its arguments
    skopeo = require_binary("skopeo")
    dest = registry.ref(repo_tag)
    run_checked(
        [skopeo, "--command-timeout", f"{int(timeout)}s", "copy", "--quiet", "--policy", str(_policy_file()),
         "--dest-creds", f"{username}:{password}", *_tls_args("dest-", registry, None, None),
         *(["--all", "--preserve-digests"] if every_platform else []), image.source_ref, _docker_ref(dest)],
        secrets=[password, f"{username}:{password}"],
        env=_skopeo_env(),
        timeout=timeout + 10,
        what=f"skopeo copy to {dest}",
    )  # fmt: skip
    return dest


def write_authfile(path: Path, auths: Mapping[str, tuple[str, str]]) -> Path:
    """Write a docker ``config.json``-style auth file: ``{"auths": {host: {"auth": b64(user:pass)}}}``."""
    __tracebackhide__ = True  # never show the secrets in its arguments
    content = {
        "auths": {
            host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
            for host, (user, password) in auths.items()
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")
    path.chmod(0o600)
    return path


def skopeo_inspect(
    ref: str,
    *,
    creds: tuple[str, str] | None = None,
    authfile: Path | None = None,
    registry: Registry | None = None,
    ca_dir: Path | None = None,
    tls_verify: bool | None = None,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``skopeo inspect docker://REF`` and return the result (never raises on a non-zero exit).

    Credentials: ``creds=(user, password)`` (``--creds``), or ``authfile`` (``--authfile``), or neither
    (anonymous: skopeo runs with an empty auth file and a private HOME). TLS: pass ``registry`` to take
    its CA / plain-http setting, or ``ca_dir`` / ``tls_verify`` explicitly (plain http needs
    ``tls_verify=False``). The returned ``args``, ``stdout`` and ``stderr`` have the password redacted,
    so asserting on the result never prints it.
    """
    __tracebackhide__ = True  # never show the secrets in its arguments
    if creds is not None and authfile is not None:
        raise ValueError("pass creds or authfile, not both")
    skopeo = require_binary("skopeo")
    secrets: list[str] = []
    auth_args: list[str] = []
    if creds is not None:
        user, password = creds
        secrets = [f"{user}:{password}", password]
        auth_args = ["--creds", f"{user}:{password}"]
    elif authfile is not None:
        auth_args = ["--authfile", str(authfile)]
    else:
        auth_args = ["--no-creds"]
    args = [
        skopeo, "--command-timeout", f"{int(timeout)}s", "inspect", *auth_args,
        *_tls_args("", registry, ca_dir, tls_verify), _docker_ref(ref),
    ]  # fmt: skip
    try:
        result = subprocess.run(
            args, capture_output=True, text=True, env=_skopeo_env(), timeout=timeout + 10, check=False
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(redact_args(args, secrets), -1, "", "timed out")
    return subprocess.CompletedProcess(
        redact_args(args, secrets),
        result.returncode,
        redact(result.stdout, secrets),
        redact(result.stderr, secrets),
    )
