"""The backend contract (``tests/backend_contract.py``) for every built backend, and the table
itself: every backend in ``BACKENDS`` that is built has a subclass here."""

from __future__ import annotations

import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provider.backends import BACKENDS
from provider.backends.acr import AcrRule
from provider.backends.anonymous import AnonymousRule
from provider.backends.base import Lookup, RuleBase
from provider.backends.dockerconfig import DockerConfigRule
from provider.backends.ecr import EcrRule
from provider.backends.files import FilesRule
from provider.backends.gar import GarRule
from provider.backends.vault import VaultRule
from provider.deadline import Deadline
from provider.kubelet import CredentialProviderRequest
from provider.matching import parse_schemeless
from tests.backend_contract import BackendContract
from tests.infra.azure import SP_CLIENT, SP_SECRET, AzureWorld, start_azure
from tests.infra.azure import TENANT as AZURE_TENANT
from tests.infra.google import GoogleFake
from tests.infra.imds import ImdsFake
from tests.infra.moto import AwsFront
from tests.test_ecr_backend import sa_token

PASSWORD = "contract-password-that-must-never-leak"
HELPER_SECRET = "contract-helper-secret-that-must-never-leak"
TOKEN = sa_token("team-a", "puller")
HOSTILE_HOSTS = (
    "gcr.io.evil.example",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.example",
    "[::1]:5000",
    "xn--80ak6aa92e.com",
    "a" * 63 + ".example",
    "127.0.0.1:1",
)
HOSTILE_TOKENS = ("", "not-a-jwt", "a.b.c", "e30.e30.e30", TOKEN + "x")
HOSTILE_ANNOTATIONS: tuple[dict[str, str], ...] = (
    {},
    {"eks.amazonaws.com/ecr-role-arn": "not-an-arn"},
    {"eks.amazonaws.com/ecr-role-arn": "arn:aws-cn:iam::123456789012:role/other-partition"},
    {"eks.amazonaws.com/ecr-role-arn": "\x00" * 10},
    {"eks.amazonaws.com/ecr-role-arn": " "},
)


def lookup(
    image: str,
    rule: RuleBase,
    environ: dict[str, str],
    *,
    token: str = "",
    annotations: dict[str, str] | None = None,
    deadline: float = 20.0,
) -> Lookup:
    url = parse_schemeless(image)
    frozen = time.time()  # one instant per lookup, as the backend and the checks must agree on it
    request = CredentialProviderRequest(
        api_version="credentialprovider.kubelet.k8s.io/v1",
        kind="CredentialProviderRequest",
        image=image,
        service_account_token=token,
        service_account_annotations=dict(annotations or {}),
    )
    return Lookup(
        request=request,
        image=image,
        host=url.host,
        path=url.path,
        rule=rule,
        deadline=Deadline(deadline),
        environ=environ,
        warn=lambda message: None,
        now=lambda: frozen,
    )


def hostile(rule: RuleBase, environ: dict[str, str], path: str = "/team/app") -> list[Lookup]:
    found = [lookup(host + path, rule, environ) for host in HOSTILE_HOSTS]
    for token in HOSTILE_TOKENS:
        for extra in HOSTILE_ANNOTATIONS:
            found.append(
                lookup("registry.example.com/team/app", rule, environ, token=token, annotations=extra)
            )
    return found


def test_every_built_backend_keeps_the_contract() -> None:
    covered = {cls.name for cls in BackendContract.__subclasses__()}
    built = {spec.name for spec in BACKENDS if spec.backend is not None}
    assert built <= covered, f"backends without a contract subclass: {sorted(built - covered)}"


def test_every_name_and_rule_is_unique() -> None:
    names = [spec.name for spec in BACKENDS]
    assert len(set(names)) == len(names)
    assert len({spec.rule for spec in BACKENDS}) == len(BACKENDS)


# --- anonymous ---------------------------------------------------------------------------------


class TestAnonymousContract(BackendContract):
    name = "anonymous"

    def answering_lookups(self) -> list[Lookup]:
        return [lookup("quay.io/org/app", AnonymousRule(), {}), lookup("r.io:5000/a/b", AnonymousRule(), {})]

    def hostile_lookups(self) -> list[Lookup]:
        return hostile(AnonymousRule(), {})

    def stuck_lookup(self, deadline_seconds: float) -> Lookup | None:
        return None

    def secrets(self) -> list[str]:
        return [TOKEN]  # the token it is handed and never uses


# --- dockerconfig ------------------------------------------------------------------------------


class TestDockerConfigContract(BackendContract):
    name = "dockerconfig"

    @pytest.fixture(autouse=True)
    def _files(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        helper_dir = tmp_path / "bin"
        helper_dir.mkdir()
        helper = helper_dir / "docker-credential-contract"
        helper.write_text(
            "#!/bin/sh\nread server\n"
            f'printf \'{{"ServerURL":"%s","Username":"robot","Secret":"{HELPER_SECRET}"}}\' "$server"\n'
        )
        hung = helper_dir / "docker-credential-hung"
        hung.write_text("#!/bin/sh\nexec sleep 60\n")
        for script in (helper, hung):
            script.chmod(script.stat().st_mode | stat.S_IXUSR)
        self.environ = {"PATH": f"{helper_dir}:{os.environ['PATH']}"}
        auth = {
            "auths": {
                "registry.example.com": {"username": "u", "password": PASSWORD},
                "scoped.example.com/team-a": {"username": "a", "password": PASSWORD},
            },
            "credHelpers": {"helper.example.com": "contract", "hung.example.com": "hung"},
        }
        self.config = tmp_path / "config.json"
        self.config.write_text(json.dumps(auth))
        self.broken = tmp_path / "broken.json"
        self.broken.write_text('{"auths": {"registry.example.com": {"auth": "' + PASSWORD + '!"}}')
        self.not_json = tmp_path / "not-json.json"
        self.not_json.write_text(PASSWORD)

    def rule(self, *files: Path, helper_timeout: str = "5s") -> DockerConfigRule:
        return DockerConfigRule(files=[str(file) for file in files], helper_timeout=helper_timeout)

    def answering_lookups(self) -> list[Lookup]:
        rule = self.rule(self.config)
        return [
            lookup("registry.example.com/team/app", rule, self.environ),
            lookup("scoped.example.com/team-a/app", rule, self.environ),
            lookup("helper.example.com/team/app", rule, self.environ),
            lookup("elsewhere.example.com/app", rule, self.environ),
        ]

    def hostile_lookups(self) -> list[Lookup]:
        found = hostile(self.rule(self.config), self.environ)
        for files in ((self.broken,), (self.not_json,), (self.tmp,), (self.tmp / "missing.json",)):
            found.append(lookup("registry.example.com/team/app", self.rule(*files), self.environ))
        found.append(lookup("registry.example.com/app", self.rule(self.config), {"PATH": "/nonexistent"}))
        return found

    def stuck_lookup(self, deadline_seconds: float) -> Lookup | None:
        rule = self.rule(self.config, helper_timeout="50s")
        return lookup("hung.example.com/app", rule, self.environ, deadline=deadline_seconds)

    def secrets(self) -> list[str]:
        return [PASSWORD, HELPER_SECRET, TOKEN]


# --- ecr ---------------------------------------------------------------------------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(50)
    yield sock.getsockname()[1]
    sock.close()


class TestEcrContract(BackendContract):
    name = "ecr"
    host = "123456789012.dkr.ecr.us-east-1.amazonaws.com"

    @pytest.fixture(autouse=True)
    def _aws(
        self,
        aws_front: AwsFront,
        imds: ImdsFake,
        silent_port: int,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> Iterator[None]:
        from provider.aws import sdk

        for name in list(os.environ):
            if name.startswith("AWS_") or name.lower().endswith("_proxy"):
                monkeypatch.delenv(name)
        self.environ = {
            "AWS_ENDPOINT_URL_ECR": aws_front.url,
            "AWS_ENDPOINT_URL_ECR_PUBLIC": aws_front.url,
            "AWS_ENDPOINT_URL_STS": aws_front.url,
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
            "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        }
        for name, value in self.environ.items():
            monkeypatch.setenv(name, value)
        self.silent = f"http://127.0.0.1:{silent_port}"
        self.imds = imds
        sdk.reset_session()
        yield
        sdk.reset_session()

    def answering_lookups(self) -> list[Lookup]:
        return [
            lookup(f"{self.host}/team/app", EcrRule(), self.environ),
            lookup(
                "mirror.example.com/team/app",
                EcrRule(match=["mirror.example.com"], region="us-east-1"),
                self.environ,
            ),
        ]

    def hostile_lookups(self) -> list[Lookup]:
        found = hostile(EcrRule(), self.environ)
        for token in HOSTILE_TOKENS:
            for extra in HOSTILE_ANNOTATIONS:
                found.append(
                    lookup(f"{self.host}/app", EcrRule(), self.environ, token=token, annotations=extra)
                )
        found.append(lookup(f"{self.host}/app", EcrRule(require_pod_identity=True), self.environ))
        no_identity = {**self.environ, "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.silent}
        found.append(lookup(f"{self.host}/app", EcrRule(), no_identity, deadline=3.0))
        return found

    def stuck_lookup(self, deadline_seconds: float) -> Lookup | None:
        rule = EcrRule(endpoint=self.silent)
        return lookup(f"{self.host}/app", rule, self.environ, deadline=deadline_seconds)

    def secrets(self) -> list[str]:
        creds = self.imds.credentials
        return [TOKEN, creds.secret_access_key, creds.token]


@pytest.fixture(scope="module")
def azure_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureWorld]:
    world = start_azure(tmp_path_factory.mktemp("azure"))
    yield world
    world.stop()


class TestAcrContract(BackendContract):
    name = "acr"

    @pytest.fixture(autouse=True)
    def _azure(
        self, azure_world: AzureWorld, silent_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        for name, value in azure_world.environ.items():
            monkeypatch.setenv(name, value)
        self.world = azure_world
        self.environ = dict(azure_world.environ)
        self.silent = f"127.0.0.1:{silent_port}"
        self.sp_config = tmp_path / "azure.json"
        self.sp_config.write_text(
            json.dumps({"tenantId": AZURE_TENANT, "aadClientId": SP_CLIENT, "aadClientSecret": SP_SECRET})
        )
        self.broken_config = tmp_path / "broken.json"
        self.broken_config.write_text('{"useManagedIdentityExtension": "yes", "aadClientSecret": 1')

    def rule(self, **fields: object) -> AcrRule:
        fields.setdefault("azure_config", "/nonexistent/azure.json")
        return AcrRule(match=[self.world.login_server], **fields)  # type: ignore[arg-type]

    def answering_lookups(self) -> list[Lookup]:
        server = self.world.login_server
        return [
            lookup(f"{server}/team/app", self.rule(), self.environ),
            lookup(f"{server}/team/app", self.rule(azure_config=str(self.sp_config)), self.environ),
        ]

    def hostile_lookups(self) -> list[Lookup]:
        server = self.world.login_server
        found = hostile(AcrRule(azure_config="/nonexistent/azure.json"), self.environ)
        for token in HOSTILE_TOKENS:
            for extra in (
                {},
                {"kubernetes.azure.com/acr-client-id": "\x00" * 10},
                {"azure.workload.identity/client-id": "not-a-guid", "azure.workload.identity/tenant-id": " "},
            ):
                found.append(
                    lookup(f"{server}/app", self.rule(), self.environ, token=token, annotations=extra)
                )
        found.append(lookup(f"{server}/app", self.rule(azure_config=str(self.broken_config)), self.environ))
        found.append(lookup(f"{server}/app", self.rule(require_pod_identity=True), self.environ))
        no_identity = {**self.environ, "AZURE_POD_IDENTITY_AUTHORITY_HOST": f"http://{self.silent}"}
        found.append(lookup(f"{server}/app", self.rule(), no_identity, deadline=3.0))
        return found

    def stuck_lookup(self, deadline_seconds: float) -> Lookup | None:
        rule = AcrRule(match=[self.silent], azure_config=str(self.sp_config))
        return lookup(f"{self.silent}/app", rule, self.environ, deadline=deadline_seconds)

    def secrets(self) -> list[str]:
        return [TOKEN, SP_SECRET, *self.world.book.secrets()]


# --- files -------------------------------------------------------------------------------------


class TestFilesContract(BackendContract):
    name = "files"

    @pytest.fixture(autouse=True)
    def _files(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        (tmp_path / "team-a").mkdir()
        auth = {"auths": {"registry.example.com": {"username": "u", "password": PASSWORD}}}
        (tmp_path / "team-a" / "puller.json").write_text(json.dumps(auth))
        (tmp_path / "team-a" / "broken.json").write_text('{"auths": {"registry.example.com": {"auth": "!"}}')
        (tmp_path / "team-a" / "dir.json").mkdir()

    def rule(self, name: str = "{serviceAccount}") -> FilesRule:
        return FilesRule(paths=[f"{self.tmp}/{{namespace}}/{name}.json"])

    def answering_lookups(self) -> list[Lookup]:
        return [
            lookup("registry.example.com/team/app", self.rule(), {}, token=TOKEN),
            lookup("elsewhere.example.com/app", self.rule(), {}, token=TOKEN),
            lookup("registry.example.com/team/app", self.rule(), {}, token=sa_token("team-b", "puller")),
        ]

    def hostile_lookups(self) -> list[Lookup]:
        found = hostile(self.rule(), {})
        for name in ("broken", "dir"):
            found.append(lookup("registry.example.com/app", self.rule(name), {}, token=TOKEN))
        for namespace in ("..", "../..", "team-a/../x", "A", ""):
            found.append(lookup("registry.example.com/app", self.rule(), {}, token=sa_token(namespace, "..")))
        return found

    def stuck_lookup(self, deadline_seconds: float) -> Lookup | None:
        return None

    def secrets(self) -> list[str]:
        return [PASSWORD, TOKEN]


# --- vault -------------------------------------------------------------------------------------


class TestVaultContract(BackendContract):
    name = "vault"

    @pytest.fixture(autouse=True)
    def _vault(self, silent_port: int, tmp_path: Path) -> Iterator[None]:
        from tests.infra.vault import VaultFake, VaultRole

        self.vault = VaultFake().start()
        self.vault.mount(
            "kubernetes",
            "kubernetes",
            {"puller": VaultRole(paths=("registry/{namespace}/{serviceAccount}",))},
        )
        self.vault.mount(
            "approle",
            "approle",
            {"node": VaultRole(paths=("registry/node",), role_id="rid", secret_id=HELPER_SECRET)},
        )
        self.vault.put_secret("registry/team-a/puller", {"username": "robot-a", "password": PASSWORD})
        self.vault.put_secret("registry/node", {"username": "node", "password": PASSWORD})
        self.vault.trusted_jwts.add(TOKEN)
        (tmp_path / "role-id").write_text("rid")
        (tmp_path / "secret-id").write_text(HELPER_SECRET)
        self.node = VaultRule(
            address=self.vault.url,
            role="puller",
            node_auth="approle",
            node_role_id_file=str(tmp_path / "role-id"),
            node_secret_id_file=str(tmp_path / "secret-id"),
            node_secret_path="registry/node",
        )
        self.silent = f"http://127.0.0.1:{silent_port}"
        yield
        self.vault.stop()

    def answering_lookups(self) -> list[Lookup]:
        return [
            lookup("registry.example.com/team/app", self.node, {}, token=TOKEN),
            lookup("registry.example.com/team/app", self.node, {}),
            lookup("registry.example.com/app", VaultRule(address=self.vault.url, role="puller"), {}),
        ]

    def hostile_lookups(self) -> list[Lookup]:
        found = hostile(self.node, {})
        found.append(
            lookup("r.example.com/app", VaultRule(address=self.vault.url, role="other"), {}, token=TOKEN)
        )
        found.append(lookup("r.example.com/app", VaultRule(address=self.vault.url), {}, token=TOKEN))
        other = sa_token("team-b", "puller")
        self.vault.trusted_jwts.add(other)
        found.append(lookup("r.example.com/app", self.node, {}, token=other))
        found.append(
            lookup(
                "r.example.com/app", VaultRule(address="http://127.0.0.1:1", role="puller"), {}, token=TOKEN
            )
        )
        return found

    def stuck_lookup(self, deadline_seconds: float) -> Lookup | None:
        rule = VaultRule(address=self.silent, role="puller")
        return lookup("registry.example.com/app", rule, {}, token=TOKEN, deadline=deadline_seconds)

    def secrets(self) -> list[str]:
        return [PASSWORD, HELPER_SECRET, TOKEN]


# --- gar ---------------------------------------------------------------------------------------


class TestGarContract(BackendContract):
    name = "gar"
    image = "europe-docker.pkg.dev/project/repo/app"

    @pytest.fixture(autouse=True)
    def _google(self, silent_port: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
        from provider.backends.gar import OPT_IN_ANNOTATION, SERVICE_ACCOUNT_ANNOTATION

        for name in list(os.environ):
            if name.startswith("GCE_METADATA") or name.lower().endswith("_proxy"):
                monkeypatch.delenv(name)
        self.gsa = "puller@project.iam.gserviceaccount.com"
        self.opted_in = {OPT_IN_ANNOTATION: "true", SERVICE_ACCOUNT_ANNOTATION: self.gsa}
        audience = "identitynamespace:project.svc.id.goog:https://issuer.example"
        with GoogleFake(
            audience=audience, subjects=(TOKEN,), impersonable={self.gsa: "ya29.impersonated"}
        ) as fake:
            self.google = fake
            self.environ = {"GCE_METADATA_HOST": fake.host}
            self.pod_rule = GarRule(
                audience=audience, sts_endpoint=fake.url, iam_credentials_endpoint=fake.url
            )
            self.silent = f"127.0.0.1:{silent_port}"
            yield

    def answering_lookups(self) -> list[Lookup]:
        return [
            lookup(self.image, GarRule(), self.environ),
            lookup("gcr.io/project/app", GarRule(match=["gcr.io"]), self.environ),
            lookup(self.image, self.pod_rule, self.environ, token=TOKEN, annotations=self.opted_in),
        ]

    def hostile_lookups(self) -> list[Lookup]:
        from provider.backends.gar import OPT_IN_ANNOTATION, SERVICE_ACCOUNT_ANNOTATION

        found = hostile(GarRule(), self.environ)
        found.append(lookup("evilgcr.io/app", GarRule(), self.environ))
        for token in HOSTILE_TOKENS:
            for extra in (
                {OPT_IN_ANNOTATION: "true"},
                {OPT_IN_ANNOTATION: "true", SERVICE_ACCOUNT_ANNOTATION: "not-an-email"},
                {OPT_IN_ANNOTATION: "true", SERVICE_ACCOUNT_ANNOTATION: "other@p.iam.gserviceaccount.com"},
                {OPT_IN_ANNOTATION: "TRUE\x00", SERVICE_ACCOUNT_ANNOTATION: "\x00" * 10},
            ):
                found.append(lookup(self.image, self.pod_rule, self.environ, token=token, annotations=extra))
                found.append(lookup(self.image, GarRule(), self.environ, token=token, annotations=extra))
        found.append(
            lookup(self.image, GarRule(service_account="absent@p.iam.gserviceaccount.com"), self.environ)
        )
        found.append(lookup(self.image, GarRule(), {"GCE_METADATA_HOST": self.silent}, deadline=3.0))
        return found

    def stuck_lookup(self, deadline_seconds: float) -> Lookup | None:
        rule = GarRule(
            audience=self.pod_rule.audience, sts_endpoint=f"http://{self.silent}", pod_identity="always"
        )
        return lookup(self.image, rule, self.environ, token=TOKEN, deadline=deadline_seconds)

    def secrets(self) -> list[str]:
        return [TOKEN, *self.google.secrets()]
