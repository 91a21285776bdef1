"""A real containerd with its CRI plugin, driven over CRI gRPC exactly as the kubelet pulls images.

containerd runs with a private root, state, gRPC socket, CNI dirs and registry hosts dir under a
work directory, so it shares nothing with a system containerd. Registries are reached through
``hosts.toml`` files in that hosts dir (``config_path``): a TLS registry on 127.0.0.1 is trusted
with ``ca = ...``, and any name (``123456789012.dkr.ecr.us-east-1.amazonaws.com``) can be served by
a loopback registry. The hosts dir is read on every pull, so mappings take effect immediately.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple

import grpc
from grpc_tools import protoc

from tests.infra._util import (
    InfraError,
    redact,
    require_binary,
    scratch_dir,
    start_server,
    stop_process,
    tail,
    wait_until,
)
from tests.infra.registry import Registry

PROTO_FILE = Path(__file__).with_name("cri.proto")
CRI_NAMESPACE = "k8s.io"
# The snapshotter used by default. `native` copies layers instead of mounting them: it works in
# every sandbox (no overlay mounts, nothing left mounted if a test run is killed), and image pulls,
# which is all these tests do, behave the same with either.
DEFAULT_SNAPSHOTTER = "native"
_UNIX_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room for the ".ttrpc" socket


class CRIModules(NamedTuple):
    pb2: ModuleType  # messages: cri_pb2
    pb2_grpc: ModuleType  # ImageServiceStub: cri_pb2_grpc


@functools.cache
def load_cri() -> CRIModules:
    """Generate the CRI stubs from ``cri.proto`` with grpc_tools.protoc into a temp dir and import them."""
    out = scratch_dir() / "cri-stubs"
    out.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_FILE.parent}",
            f"-I{include}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            str(PROTO_FILE),
        ]
    )
    if status != 0:
        raise InfraError(f"grpc_tools.protoc failed ({status}) on {PROTO_FILE}")
    modules: list[ModuleType] = []
    for name in ("cri_pb2", "cri_pb2_grpc"):  # cri_pb2_grpc does `import cri_pb2`
        if name in sys.modules:
            modules.append(sys.modules[name])
            continue
        spec = importlib.util.spec_from_file_location(name, out / f"{name}.py")
        if spec is None or spec.loader is None:
            raise InfraError(f"cannot import generated {name}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        modules.append(module)
    return CRIModules(modules[0], modules[1])


class PullError(Exception):
    """CRI PullImage failed. ``code`` is the gRPC status name (e.g. ``UNKNOWN``), ``details`` its message."""

    def __init__(self, image: str, code: str, details: str) -> None:
        super().__init__(f"PullImage {image!r} failed: {code}: {details}")
        self.image = image
        self.code = code
        self.details = details

    @property
    def unauthorized(self) -> bool:
        """True when the registry refused the credentials (or their absence): HTTP 401."""
        return "401 unauthorized" in self.details.lower()


@dataclass(frozen=True)
class CRIImage:
    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]


def _toml_str(value: str | Path) -> str:
    return json.dumps(str(value))  # a JSON string of printable text is a valid TOML basic string


def hosts_toml(registry: Registry) -> str:
    """A containerd ``hosts.toml`` that sends every pull for a name to ``registry`` (and nowhere else).

    containerd 1.6 rejects a hosts.toml without a ``[host."..."]`` table ("invalid `host` tree") and
    then silently falls back to its defaults (plain http for 127.0.0.1, the real name otherwise).
    So the registry is the one ``[host]`` entry that may pull and resolve; the root ``server`` (tried
    after the ``[host]`` entries) is the same URL but only allowed to push, so a failed pull is
    neither retried nor sent to the real name.
    """
    url = _toml_str(registry.url)
    ca = ""
    if registry.tls and registry.ca_file is not None:
        ca = f"  ca = {_toml_str(registry.ca_file)}\n"
    return (
        "# written by tests/infra/containerd.py\n"
        f"server = {url}\n"
        'capabilities = ["push"]\n'
        "\n"
        f"[host.{url}]\n"
        '  capabilities = ["pull", "resolve"]\n'
        f"{ca}"
    )


@dataclass(eq=False)
class Containerd:
    workdir: Path
    socket: Path
    hosts_dir: Path
    config_file: Path
    log_file: Path
    snapshotter: str
    process: subprocess.Popen[bytes] = field(repr=False)
    _cri: CRIModules = field(repr=False)
    _channel: grpc.Channel = field(repr=False)
    _stub: Any = field(repr=False)
    _baseline_hosts: frozenset[str] = field(default=frozenset(), repr=False)
    _seen_secrets: set[str] = field(default_factory=set, repr=False)

    # --- CRI ImageService ---------------------------------------------------------------
    def pull(
        self,
        image: str,
        username: str | None = None,
        password: str | None = None,
        *,
        server_address: str | None = None,
        timeout: float = 60.0,
    ) -> str:
        """CRI ``PullImage`` as the kubelet sends it; return ``image_ref`` (the image ID) or raise PullError.

        With neither username nor password the request carries no ``auth`` (the kubelet's anonymous
        pull); otherwise ``AuthConfig{username, password[, server_address]}``.
        """
        __tracebackhide__ = True  # never show the secrets in its arguments
        pb2 = self._cri.pb2
        request = pb2.PullImageRequest(
            image=pb2.ImageSpec(image=image), sandbox_config=pb2.PodSandboxConfig()
        )
        if username is not None or password is not None:
            request.auth.CopyFrom(
                pb2.AuthConfig(
                    username=username or "", password=password or "", server_address=server_address or ""
                )
            )
            if password:
                self._seen_secrets.add(password)
        try:
            response = self._stub.PullImage(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise self._pull_error(image, exc, password) from None
        image_ref: str = response.image_ref
        return image_ref

    def pull_like_kubelet(self, image: str, credentials: Sequence[tuple[str, str]]) -> str:
        """The kubelet's loop: no credentials -> one anonymous pull; otherwise one ``PullImage`` per
        ``(username, password)`` in order until one succeeds. All failing -> PullError with every error."""
        __tracebackhide__ = True  # never show the secrets in its arguments
        if not credentials:
            return self.pull(image)
        errors: list[PullError] = []
        for username, password in credentials:
            try:
                return self.pull(image, username, password)
            except PullError as exc:
                errors.append(exc)
        codes = {e.code for e in errors}
        code = codes.pop() if len(codes) == 1 else "UNKNOWN"
        raise PullError(image, code, "[" + ", ".join(e.details for e in errors) + "]")

    def _pull_error(self, image: str, exc: grpc.RpcError, password: str | None) -> PullError:
        __tracebackhide__ = True  # never show the secrets in its arguments
        code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
        details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
        return PullError(image, code, redact(details or "", [password or ""]))

    def remove(self, image: str) -> None:
        """CRI ``RemoveImage`` (by reference or ID; idempotent), so the next pull fetches again."""
        pb2 = self._cri.pb2
        self._stub.RemoveImage(pb2.RemoveImageRequest(image=pb2.ImageSpec(image=image)), timeout=30)

    def images(self) -> list[CRIImage]:
        response = self._stub.ListImages(self._cri.pb2.ListImagesRequest(), timeout=30)
        return [CRIImage(i.id, tuple(i.repo_tags), tuple(i.repo_digests)) for i in response.images]

    def has_image(self, ref_or_id: str) -> bool:
        return any(ref_or_id == i.id or ref_or_id in i.repo_tags for i in self.images())

    # --- registry hosts -----------------------------------------------------------------
    def map_host(self, name: str, registry: Registry) -> Path:
        """Serve image name ``name`` (``host`` or ``host:port``) from ``registry``; return the hosts.toml."""
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"not a registry host name: {name!r}")
        directory = self.hosts_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "hosts.toml"
        path.write_text(hosts_toml(registry))
        return path

    def trust_registry(self, registry: Registry) -> Path:
        """Make containerd reach ``registry`` under its own ``127.0.0.1:PORT`` name (needed for TLS:
        containerd otherwise talks plain http to 127.0.0.1)."""
        return self.map_host(registry.host, registry)

    def unmap_host(self, name: str) -> None:
        shutil.rmtree(self.hosts_dir / name, ignore_errors=True)

    def mark_baseline(self) -> None:
        """Remember the current host mappings: :meth:`reset` keeps them."""
        self._baseline_hosts = frozenset(p.name for p in self.hosts_dir.iterdir())

    def reset(self) -> None:
        """Remove every image and every host mapping added since :meth:`mark_baseline`."""
        for image in self.images():
            self.remove(image.id)
        for entry in self.hosts_dir.iterdir():
            if entry.name not in self._baseline_hosts:
                shutil.rmtree(entry, ignore_errors=True)

    # --- process ------------------------------------------------------------------------
    def log_text(self) -> str:
        return redact(self.log_file.read_text(errors="replace"), self._seen_secrets)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self._channel.close()
        stop_process(self.process, timeout=15)
        if self.socket.parent != self.workdir:  # the short socket dir made for a long workdir path
            shutil.rmtree(self.socket.parent, ignore_errors=True)


def _config_toml(root: Path, state: Path, socket: Path, hosts_dir: Path, snapshotter: str) -> str:
    q = _toml_str
    disabled = [
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.tracing.processor.v1.otlp",
        "io.containerd.internal.v1.tracing",
    ]
    if snapshotter != "overlayfs":
        disabled.append("io.containerd.snapshotter.v1.overlayfs")
    cri = '[plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = {q(root)}
state = {q(state)}
disabled_plugins = [{", ".join(q(d) for d in disabled)}]

[grpc]
  address = {q(socket)}

[ttrpc]
  address = {q(str(socket) + ".ttrpc")}

[debug]
  level = "info"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {q(root / "opt")}
  {cri}]
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    disable_tcp_service = true
    enable_selinux = false
    disable_apparmor = true
  {cri}.containerd]
    snapshotter = {q(snapshotter)}
  {cri}.cni]
    bin_dir = {q(root / "cni-bin")}
    conf_dir = {q(root / "cni-conf")}
  {cri}.registry]
    config_path = {q(hosts_dir)}
"""


def start_containerd(
    workdir: Path, *, snapshotter: str = DEFAULT_SNAPSHOTTER, timeout: float = 30.0
) -> Containerd:
    """Start ``containerd --config`` with everything private under ``workdir``; return once CRI answers.

    The log is ``workdir/containerd.log``.
    """
    binary = require_binary("containerd")
    cri = load_cri()
    workdir.mkdir(parents=True, exist_ok=True)
    root, state, hosts_dir = workdir / "root", workdir / "state", workdir / "hosts.d"
    for d in (root, state, hosts_dir, root / "cni-bin", root / "cni-conf"):
        d.mkdir(parents=True, exist_ok=True)
    socket = workdir / "containerd.sock"
    if len(str(socket)) > _UNIX_SOCKET_PATH_MAX:
        socket = Path(tempfile.mkdtemp(prefix="ctd-", dir="/tmp")) / "containerd.sock"
    config = workdir / "config.toml"
    config.write_text(_config_toml(root, state, socket, hosts_dir, snapshotter))
    log_file = workdir / "containerd.log"
    process = start_server([binary, "--config", str(config)], log_file)
    channel = grpc.insecure_channel(f"unix://{socket}", options=[("grpc.enable_http_proxy", 0)])
    ctd = Containerd(
        workdir=workdir,
        socket=socket,
        hosts_dir=hosts_dir,
        config_file=config,
        log_file=log_file,
        snapshotter=snapshotter,
        process=process,
        _cri=cri,
        _channel=channel,
        _stub=cri.pb2_grpc.ImageServiceStub(channel),
    )

    def cri_answers() -> bool:
        if not socket.exists():
            return False
        try:
            ctd.images()
        except grpc.RpcError:
            return False
        return True

    def died() -> str | None:
        code = process.poll()
        return None if code is None else f"containerd exited with {code}"

    try:
        wait_until(
            cri_answers, timeout=timeout, what="containerd CRI ImageService", interval=0.05, abort=died
        )
    except InfraError as exc:
        ctd.stop()
        raise InfraError(f"{exc}\n--- {log_file} (tail) ---\n{tail(log_file)}") from None
    return ctd
