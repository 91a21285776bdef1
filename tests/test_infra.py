"""Proof that the end-to-end infrastructure works: real registry auth, real containerd CRI pulls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.infra._util import MissingToolError, require_binary
from tests.infra.containerd import Containerd, PullError
from tests.infra.images import OCIImage, skopeo_inspect, write_authfile

if TYPE_CHECKING:  # importing the plugin module here would stop pytest from rewriting its asserts
    from tests.infra.fixtures import RegistryFixture

# tests/conftest.py loads the plugin for the whole suite; naming it here too is harmless (loaded once)
# and lets this module run on its own.
pytestmark = pytest.mark.e2e

ECR_NAME = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
BOTH = pytest.mark.parametrize("registry_name", ["registry_http", "registry_tls"])


@pytest.fixture
def registry(request: pytest.FixtureRequest, registry_name: str) -> RegistryFixture:
    value: RegistryFixture = request.getfixturevalue(registry_name)
    return value


@BOTH
def test_skopeo_right_credentials(registry: RegistryFixture, test_image: OCIImage) -> None:
    for repo in registry.repos:
        result = skopeo_inspect(registry.ref(repo), creds=registry.creds, registry=registry.registry)
        assert result.returncode == 0, result
        assert json.loads(result.stdout)["Digest"] == test_image.manifest_digest
        leaked = registry.password in " ".join(result.args)
        assert not leaked, "skopeo_inspect returned the password in its args"


@BOTH
def test_skopeo_wrong_or_missing_credentials(registry: RegistryFixture) -> None:
    wrong = skopeo_inspect(
        registry.ref(), creds=(registry.username, "not-the-password"), registry=registry.registry
    )
    assert wrong.returncode != 0
    assert "unauthorized" in wrong.stderr.lower(), wrong
    nobody = skopeo_inspect(registry.ref(), registry=registry.registry)
    assert nobody.returncode != 0
    assert "unauthorized" in nobody.stderr.lower(), nobody


def test_skopeo_tls_needs_the_ca(registry_tls: RegistryFixture) -> None:
    result = skopeo_inspect(registry_tls.ref(), creds=registry_tls.creds)  # system roots only
    assert result.returncode != 0
    assert "certificate" in result.stderr, result


@BOTH
def test_skopeo_authfile(registry: RegistryFixture, tmp_path: Path) -> None:
    good = write_authfile(tmp_path / "good.json", {registry.host: registry.creds})
    assert skopeo_inspect(registry.ref(), authfile=good, registry=registry.registry).returncode == 0
    bad = write_authfile(tmp_path / "bad.json", {registry.host: (registry.username, "nope")})
    assert skopeo_inspect(registry.ref(), authfile=bad, registry=registry.registry).returncode != 0


def test_users_added_while_running(registry_http: RegistryFixture) -> None:
    reg = registry_http.registry
    assert reg.v2_status("late-user", "late-password") == 401
    registry_http.add_user("late-user", "late-password")
    assert reg.v2_status("late-user", "late-password") == 200
    registry_http.add_user("late-user", "changed-password")
    assert reg.v2_status("late-user", "late-password") == 401
    assert reg.v2_status("late-user", "changed-password") == 200
    registry_http.remove_user("late-user")
    assert reg.v2_status("late-user", "changed-password") == 401
    assert reg.v2_status(*registry_http.creds) == 200


def test_bcrypt_truncation_is_refused(registry_http: RegistryFixture) -> None:
    with pytest.raises(ValueError, match="72 bytes"):
        registry_http.add_user("long", "x" * 73)


@BOTH
def test_cri_pull_with_right_credentials(
    registry: RegistryFixture, containerd: Containerd, test_image: OCIImage
) -> None:
    ref = registry.ref("other/app:v1")
    assert not containerd.has_image(ref)
    image_ref = containerd.pull(ref, registry.username, registry.password)
    assert image_ref == test_image.image_id
    assert containerd.has_image(ref)
    containerd.remove(ref)
    assert not containerd.has_image(ref)
    assert containerd.pull(ref, registry.username, registry.password) == test_image.image_id


@BOTH
@pytest.mark.parametrize(
    ("username", "password"),
    [("testuser", "wrong-password"), ("someone-else", "whatever"), (None, None), ("", "")],
    ids=["wrong-password", "unknown-user", "no-auth", "empty-auth"],
)
def test_cri_pull_with_bad_or_missing_credentials(
    registry: RegistryFixture, containerd: Containerd, username: str | None, password: str | None
) -> None:
    with pytest.raises(PullError) as info:
        containerd.pull(registry.ref(), username, password)
    assert "401 Unauthorized" in info.value.details
    assert not containerd.has_image(registry.ref())


def test_kubelet_style_credential_loop(registry_http: RegistryFixture, containerd: Containerd) -> None:
    ref = registry_http.ref()
    wrong = (registry_http.username, "wrong-password")
    assert containerd.pull_like_kubelet(ref, [wrong, registry_http.creds]) == registry_http.image.image_id
    with pytest.raises(PullError) as info:
        containerd.pull_like_kubelet(ref, [wrong, ("other", "also-wrong")])
    assert info.value.details.count("401 Unauthorized") == 2


@BOTH
def test_cloud_name_served_by_loopback_registry(
    registry: RegistryFixture, containerd: Containerd, test_image: OCIImage
) -> None:
    ref = f"{ECR_NAME}/team/app:v1"
    containerd.map_host(ECR_NAME, registry.registry)
    with pytest.raises(PullError, match="401 Unauthorized"):
        containerd.pull(ref, "AWS", "not-the-token")
    assert containerd.pull(ref, registry.username, registry.password) == test_image.image_id
    assert containerd.has_image(ref)


def test_containerd_is_reset_between_tests(containerd: Containerd, registry_tls: RegistryFixture) -> None:
    assert containerd.images() == []
    assert [p.name for p in containerd.hosts_dir.iterdir()] == [registry_tls.host]


def test_secrets_stay_out_of_logs(
    registry_http: RegistryFixture, registry_tls: RegistryFixture, containerd: Containerd
) -> None:
    containerd.pull(registry_http.ref(), *registry_http.creds)
    with pytest.raises(PullError) as info:
        containerd.pull(registry_tls.ref(), registry_tls.username, "wrong-" + registry_tls.password)
    # Booleans first: a failing `assert secret not in text` would print the secret.
    leaked = registry_tls.password in str(info.value)
    assert not leaked, "PullError message contains the password"
    for reg in (registry_http, registry_tls):
        leaked = reg.password in reg.registry.log_file.read_text()
        assert not leaked, f"{reg.registry.log_file} contains the password"
    ctd_log = containerd.log_file.read_text()
    leaked = registry_http.password in ctd_log or registry_tls.password in ctd_log
    assert not leaked, f"{containerd.log_file} contains a password"


def test_missing_binary_fails_with_the_package_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(MissingToolError, match="apt-get install --no-install-recommends apache2-utils"):
        require_binary("htpasswd")
