"""pytest fixtures for end-to-end tests; load with ``pytest_plugins = ["tests.infra.fixtures"]``.

The fixtures start and stop every server themselves. A missing binary fails the test (never skips)
with the apt package to install. Passwords are random per session and never printed.

Session-scoped:
  ``test_tls``          TLSFiles: test CA + server cert for 127.0.0.1, ::1, localhost
  ``test_image``        OCIImage: the tiny umoci-built image (``/hello.txt``), built once
  ``registry_factory``  start extra registries: ``registry_factory(tls=False, users=None, repos=REPOS)``
  ``registry_http``     RegistryFixture: plain-http registry, user + password, REPOS pushed
  ``registry_tls``      RegistryFixture: the same over TLS (signed by ``test_tls``)
  ``containerd_session``  Containerd trusting ``registry_tls``; shared by every test
Function-scoped:
  ``containerd``        the shared Containerd, reset after the test (images removed, host mappings
                        the test added removed), so the next test pulls for real again
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

from tests.infra._util import MissingToolError, require_binary, tail
from tests.infra.containerd import Containerd, start_containerd
from tests.infra.images import OCIImage, build_test_image, push_image
from tests.infra.registry import Registry, start_registry
from tests.infra.tls import TLSFiles, make_tls_files

REPOS = ("team/app:v1", "other/app:v1")
DEFAULT_USER = "testuser"
T = TypeVar("T")


def _setup(step: Callable[[], T]) -> T:
    """Run a setup step; a missing binary fails the test (never skips) naming the package to install."""
    __tracebackhide__ = True
    try:
        return step()
    except MissingToolError as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)  # outside the except block: no chained traceback


def require_tools(*names: str) -> None:
    """Fail the current test (not skip) unless every binary is installed."""

    def check() -> None:
        for name in names:
            require_binary(name)

    _setup(check)


@dataclass(frozen=True)
class RegistryFixture:
    """A running registry with one user and the test image pushed under ``repos``."""

    registry: Registry
    username: str
    password: str = field(repr=False)
    repos: tuple[str, ...]
    image: OCIImage

    @property
    def host(self) -> str:
        return self.registry.host

    @property
    def url(self) -> str:
        return self.registry.url

    @property
    def tls(self) -> bool:
        return self.registry.tls

    @property
    def ca_file(self) -> Path | None:
        return self.registry.ca_file

    @property
    def ca_dir(self) -> Path | None:
        return self.registry.ca_dir

    @property
    def creds(self) -> tuple[str, str]:
        return (self.username, self.password)

    def ref(self, repo_tag: str = REPOS[0]) -> str:
        """``127.0.0.1:PORT/team/app:v1`` by default."""
        return self.registry.ref(repo_tag)

    def add_user(self, username: str, password: str, *, allow_long_password: bool = False) -> None:
        __tracebackhide__ = True  # never show the secrets in its arguments
        self.registry.add_user(username, password, allow_long_password=allow_long_password)

    def remove_user(self, username: str) -> None:
        self.registry.remove_user(username)


RegistryFactory = Callable[..., RegistryFixture]


@pytest.fixture(scope="session")
def test_tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return _setup(lambda: make_tls_files(tmp_path_factory.mktemp("tls")))


@pytest.fixture(scope="session")
def test_image(tmp_path_factory: pytest.TempPathFactory) -> OCIImage:
    return _setup(lambda: build_test_image(tmp_path_factory.mktemp("image")))


@pytest.fixture(scope="session")
def registry_factory(
    tmp_path_factory: pytest.TempPathFactory, test_image: OCIImage, test_tls: TLSFiles
) -> Iterator[RegistryFactory]:
    """``registry_factory(tls=False, users=None, repos=REPOS)`` -> RegistryFixture; stopped at session end.

    ``users`` maps user -> password; the first one pushes. Default: ``testuser`` with a random password.
    """
    started: list[Registry] = []

    def factory(
        *, tls: bool = False, users: Mapping[str, str] | None = None, repos: Iterable[str] = REPOS
    ) -> RegistryFixture:
        __tracebackhide__ = True  # never show the secrets in its arguments
        all_users = dict(users) if users else {DEFAULT_USER: secrets.token_urlsafe(18)}
        username, password = next(iter(all_users.items()))
        repo_list = tuple(repos)

        def start() -> Registry:
            require_binary("skopeo")
            workdir = tmp_path_factory.mktemp("registry-tls" if tls else "registry-http")
            registry = start_registry(workdir, tls=test_tls if tls else None, users=all_users)
            started.append(registry)
            for repo in repo_list:
                push_image(test_image, registry, repo, username=username, password=password)
            return registry

        return RegistryFixture(_setup(start), username, password, repo_list, test_image)

    yield factory
    for registry in reversed(started):
        registry.stop()


@pytest.fixture(scope="session")
def registry_http(registry_factory: RegistryFactory) -> RegistryFixture:
    return registry_factory(tls=False)


@pytest.fixture(scope="session")
def registry_tls(registry_factory: RegistryFactory) -> RegistryFixture:
    return registry_factory(tls=True)


@pytest.fixture(scope="session")
def containerd_session(
    tmp_path_factory: pytest.TempPathFactory, registry_tls: RegistryFixture
) -> Iterator[Containerd]:
    ctd = _setup(lambda: start_containerd(tmp_path_factory.mktemp("containerd")))
    try:
        ctd.trust_registry(registry_tls.registry)
        ctd.mark_baseline()
        yield ctd
    finally:
        ctd.stop()


@pytest.fixture
def containerd(containerd_session: Containerd) -> Iterator[Containerd]:
    if not containerd_session.running:
        pytest.fail(f"containerd died; log tail:\n{tail(containerd_session.log_file)}", pytrace=False)
    containerd_session.reset()
    yield containerd_session
    if containerd_session.running:
        containerd_session.reset()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure, attach the tail of the servers' logs the test used (passwords redacted)."""
    report: pytest.TestReport = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name, value in funcargs.items():
            if isinstance(value, RegistryFixture):
                text = value.registry.log_text()
            elif isinstance(value, Containerd):
                text = value.log_text()
            else:
                continue
            report.sections.append((f"{name} log (last 30 lines)", "\n".join(text.splitlines()[-30:])))
    return report


# --- AWS: moto (ECR, STS), a recording front for it, and a strict IMDSv2 fake -----------------
# Appended for the ECR backend's tests; see tests/infra/moto.py and tests/infra/imds.py.

from tests.infra.imds import ImdsFake  # noqa: E402 - kept with the AWS fixtures
from tests.infra.moto import AwsFront, MotoServer, start_moto_server  # noqa: E402


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """``moto_server`` on a loopback port for the whole session; stopped at the end."""
    server = _setup(lambda: start_moto_server(tmp_path_factory.mktemp("moto")))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def aws_front(moto_server: MotoServer) -> Iterator[AwsFront]:
    """A fresh ``AwsFront`` (no faults, no recorded calls) in front of the session's moto."""
    front = AwsFront(moto_server)
    try:
        yield front
    finally:
        front.stop()


@pytest.fixture
def imds() -> Iterator[ImdsFake]:
    """A fresh strict IMDSv2 fake (region us-east-1, an instance role)."""
    with ImdsFake() as fake:
        yield fake
