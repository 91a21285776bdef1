"""The metrics textfile for node_exporter: what each exec adds, through the built zipapp, under
parallel execs, with failures, and never a secret in it."""

from __future__ import annotations

import json
import stat
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from provider import metrics
from provider.config import decode_config
from provider.errors import CloudCredentialError, ConfigError, CredentialHelperError, NoIdentityError
from tests.cmdutil import run
from tests.conftest import run_zipapp
from tests.infra.imds import ImdsFake
from tests.infra.moto import AwsFront
from tests.test_ecr_backend import sa_token

REQUEST = b'{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"registry.example.com/team/app"}'
HOST = "registry.example.com"
SECRET = "helper-secret-sentinel-5c2e"
USER = "helper-user-sentinel-91ab"
ECR_HOST = "123456789012.dkr.ecr.us-east-1.amazonaws.com"


def labels(**values: str) -> metrics.Labels:
    return tuple(sorted(values.items()))


class Node:
    """A dockerconfig rule whose credsStore helper counts its calls, with the metrics textfile on."""

    def __init__(self, root: Path, *, helper_fails: bool = False) -> None:
        self.root = root
        self.textfile = root / "textfile" / "rcp.prom"
        self.textfile.parent.mkdir()
        bindir = root / "bin"
        bindir.mkdir()
        helper = bindir / "docker-credential-counting"
        reply = json.dumps({"ServerURL": HOST, "Username": USER, "Secret": SECRET})
        body = f"echo '{SECRET}' >&2\nexit 1\n" if helper_fails else f"echo '{reply}'\n"
        helper.write_text(f"#!/bin/sh\necho call >> {root / 'calls'}\n{body}")
        helper.chmod(0o700)
        (root / "config.json").write_text('{"credsStore": "counting"}')
        self.config = root / "provider.json"
        self.config.write_text(
            json.dumps(
                {
                    "apiVersion": "registry-credential-provider/v1alpha1",
                    "kind": "ProviderConfig",
                    "metrics": {"textfile": str(self.textfile)},
                    "rules": [{"backend": "dockerconfig", "files": [str(root / "config.json")]}],
                }
            )
        )
        self.env = {
            "PATH": f"{bindir}:/usr/bin:/bin",
            "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(root / "cache"),
        }

    def run(self, zipapp: Path, stdin: bytes = REQUEST) -> subprocess.CompletedProcess[bytes]:
        return run_zipapp(zipapp, ["get-credentials", "--config", str(self.config)], stdin, env=self.env)

    def series(self) -> metrics.Series:
        return metrics.read_series(str(self.textfile))


def test_render_and_parse_round_trip_with_hostile_label_values() -> None:
    update = metrics.Update()
    host = 'evil"host\\\nname'
    update.inc(metrics.UPSTREAM_CALLS, backend="ecr", registry=host)
    update.inc(metrics.UPSTREAM_CALLS, backend="ecr", registry=host)
    update.at_least(metrics.LAST_SUCCESS, 5.0, backend="ecr", registry=host)
    update.at_least(metrics.LAST_SUCCESS, 3.0, backend="ecr", registry=host)
    series: metrics.Series = {}
    update.apply(series)
    text = metrics.render(series)
    assert len(text.splitlines()) == 6  # no label value breaks a line
    assert metrics.parse(text) == {
        (metrics.UPSTREAM_CALLS, labels(backend="ecr", registry=host)): 2.0,
        (metrics.LAST_SUCCESS, labels(backend="ecr", registry=host)): 5.0,
    }


def test_new_series_beyond_the_bound_are_dropped_but_existing_ones_still_count() -> None:
    series: metrics.Series = {}
    for number in range(metrics.MAX_SERIES + 10):
        update = metrics.Update()
        update.inc(metrics.UPSTREAM_CALLS, backend="ecr", registry=f"r{number}.example.com")
        update.apply(series)
    assert len(series) == metrics.MAX_SERIES
    update = metrics.Update()
    update.inc(metrics.UPSTREAM_CALLS, backend="ecr", registry="r0.example.com")
    update.apply(series)
    assert series[(metrics.UPSTREAM_CALLS, labels(backend="ecr", registry="r0.example.com"))] == 2.0


def test_failure_kinds_are_class_names_never_messages() -> None:
    assert metrics.failure_kind(NoIdentityError("token sentinel")) == "no_identity"
    assert metrics.failure_kind(CloudCredentialError("x")) == "cloud"
    assert metrics.failure_kind(CredentialHelperError("x")) == "helper"
    assert metrics.failure_kind(RuntimeError("x")) == "other"


@pytest.mark.parametrize("textfile", ["relative.prom", "/var/lib/node_exporter/rcp.txt"])
def test_the_textfile_must_be_an_absolute_prom_file(textfile: str) -> None:
    document = {"apiVersion": "registry-credential-provider/v1alpha1", "kind": "ProviderConfig", "rules": []}
    data = json.dumps({**document, "metrics": {"textfile": textfile}}).encode()
    with pytest.raises(ConfigError, match=r"\$\.metrics\.textfile"):
        decode_config(data, "c.json")


def test_off_by_default(zipapp: Path, tmp_path: Path) -> None:
    node = Node(tmp_path)
    config = json.loads(node.config.read_text())
    del config["metrics"]
    node.config.write_text(json.dumps(config))
    for _ in range(2):
        assert node.run(zipapp).returncode == 0
    assert list(node.textfile.parent.iterdir()) == []


def test_a_miss_then_fast_path_hits_are_counted(zipapp: Path, tmp_path: Path) -> None:
    node = Node(tmp_path)
    for _ in range(3):
        result = node.run(zipapp)
        assert result.returncode == 0, result.stderr
        assert result.stderr == b""
    series = node.series()
    assert series[(metrics.ANSWERS, labels(backend="dockerconfig", outcome="credentials"))] == 3
    assert series[(metrics.CACHE_HITS, labels(path="fast"))] == 2
    assert series[(metrics.UPSTREAM_CALLS, labels(backend="dockerconfig", registry=HOST))] == 1
    assert (metrics.LAST_SUCCESS, labels(backend="dockerconfig", registry=HOST)) in series
    assert (tmp_path / "calls").read_text().count("call") == 1
    mode = node.textfile.stat().st_mode
    assert stat.S_IMODE(mode) == 0o644
    assert [p.name for p in node.textfile.parent.iterdir() if not p.name.endswith((".prom", ".lock"))] == []
    text = node.textfile.read_text()
    assert SECRET not in text
    assert USER not in text


def test_16_parallel_execs_lose_no_count(zipapp: Path, tmp_path: Path) -> None:
    node = Node(tmp_path)
    assert node.run(zipapp).returncode == 0  # fills the cache: the rest are fast path hits
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda _: node.run(zipapp), range(16)))
    assert all(result.returncode == 0 for result in results)
    series = node.series()
    assert series[(metrics.ANSWERS, labels(backend="dockerconfig", outcome="credentials"))] == 17
    assert series[(metrics.CACHE_HITS, labels(path="fast"))] == 16


def test_failures_are_counted_by_kind_without_their_message(zipapp: Path, tmp_path: Path) -> None:
    node = Node(tmp_path, helper_fails=True)
    for _ in range(2):
        result = node.run(zipapp)
        assert result.returncode == 1
    series = node.series()
    assert series[(metrics.ANSWERS, labels(backend="dockerconfig", outcome="error"))] == 2
    failed = labels(backend="dockerconfig", kind="helper", registry=HOST)
    assert series[(metrics.UPSTREAM_FAILURES, failed)] == 2
    assert SECRET not in node.textfile.read_text()


def test_an_unwritable_textfile_warns_and_still_answers(zipapp: Path, tmp_path: Path) -> None:
    node = Node(tmp_path)
    node.textfile.mkdir()  # a directory where the file should be: the rename fails
    result = node.run(zipapp)
    assert result.returncode == 0
    assert json.loads(result.stdout)["auth"]
    assert b"cannot update the metrics textfile" in result.stderr
    assert node.run(zipapp).returncode == 0  # the fast path's hit stays quiet


def test_ecr_expiry_and_no_token_or_password_in_the_file(
    zipapp: Path, tmp_path: Path, aws_front: AwsFront, imds: ImdsFake
) -> None:
    aws_front.expires_in = 7200.0
    textfile = tmp_path / "rcp.prom"
    config = tmp_path / "provider.json"
    rule = {"match": [ECR_HOST], "backend": "ecr"}
    config.write_text(
        json.dumps(
            {
                "apiVersion": "registry-credential-provider/v1alpha1",
                "kind": "ProviderConfig",
                "metrics": {"textfile": str(textfile)},
                "rules": [rule],
            }
        )
    )
    env = {
        "AWS_ENDPOINT_URL_ECR": aws_front.url,
        "AWS_ENDPOINT_URL_STS": aws_front.url,
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": imds.url,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(tmp_path / "cache"),
    }
    token = sa_token("team-a", "puller", "00000000-0000-0000-0000-000000000001")
    request = {
        "kind": "CredentialProviderRequest",
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "image": f"{ECR_HOST}/team/app",
        "serviceAccountToken": token,
        "serviceAccountAnnotations": {"example.com/x": "annotation-sentinel-77"},
    }
    answers = []
    for _ in range(2):
        result = run_zipapp(zipapp, ["--config", str(config)], json.dumps(request).encode(), env=env)
        assert result.returncode == 0, result.stderr
        answers.append(json.loads(result.stdout))
    password = answers[0]["auth"][ECR_HOST]["password"]
    series = metrics.read_series(str(textfile))
    expiry = series[(metrics.CREDENTIAL_EXPIRY, labels(backend="ecr", registry=ECR_HOST))]
    last = series[(metrics.LAST_SUCCESS, labels(backend="ecr", registry=ECR_HOST))]
    assert 7000 < expiry - last <= 7200
    assert series[(metrics.UPSTREAM_CALLS, labels(backend="ecr", registry=ECR_HOST))] == 1
    assert len(aws_front.calls_of("GetAuthorizationToken")) == 1
    text = textfile.read_text()
    parts = token.split(".")
    for sentinel in (password, token, parts[1], parts[2], "annotation-sentinel-77", "team-a", "puller"):
        assert sentinel not in text


def doctor_metrics(config: Path) -> list[tuple[str, str]]:
    result = run(["doctor", "--config", str(config), "-o", "json"])
    return [
        (c["status"], c["detail"]) for c in json.loads(result.stdout)["checks"] if c["check"] == "metrics"
    ]


def test_doctor_reads_the_textfile_back(
    zipapp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = Node(tmp_path)
    for name, value in node.env.items():
        monkeypatch.setenv(name, value)
    assert doctor_metrics(node.config) == [
        ("warn", f"{node.textfile} does not exist yet; the next kubelet-mode exec writes it")
    ]
    for _ in range(2):
        assert node.run(zipapp).returncode == 0
    [(status, detail)] = doctor_metrics(node.config)
    assert status == "ok"
    assert detail.startswith(f"{node.textfile}, updated ")
    assert (
        "2 answers (0 failed, 0 stale), 1 fast-path and 0 full-path cache hits, 1 upstream calls (0 failed)"
        in (detail)
    )
    expired = metrics.Update()
    expired.at_least(metrics.CREDENTIAL_EXPIRY, time.time() - 60, backend="ecr", registry=ECR_HOST)
    metrics.record(str(node.textfile), expired)
    checks = doctor_metrics(node.config)
    assert checks[1][0] == "warn"
    assert checks[1][1].startswith(f"{ECR_HOST}: its freshest credential expired ")
