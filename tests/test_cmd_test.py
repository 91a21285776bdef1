"""``test IMAGE``: the request the kubelet would send, the whole answer path, secrets redacted."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from provider.imageref import ImageRefError, normalize, registry_endpoint
from tests import kubelet_sim as sim
from tests.cmdutil import SECRET, V1, auth_file, check_golden, provider_config, run
from tests.cmdutil import normalize as scrub
from tests.conftest import run_zipapp

IMAGES = [
    ("nginx", "docker.io/library/nginx"),
    ("nginx:1.27", "docker.io/library/nginx"),
    ("library/nginx:latest", "docker.io/library/nginx"),
    ("docker.io/nginx", "docker.io/library/nginx"),
    ("index.docker.io/team/app", "docker.io/team/app"),
    ("team/app:v1", "docker.io/team/app"),
    ("localhost/app", "localhost/app"),
    ("localhost:5000/a/b/c:v2", "localhost:5000/a/b/c"),
    ("registry.example.com:5000/team-a/app@sha256:" + "a" * 64, "registry.example.com:5000/team-a/app"),
    ("quay.io/org/app:v1@sha256:" + "b" * 64, "quay.io/org/app"),
    ("Registry.Example.com/app", "Registry.Example.com/app"),
    ("[::1]:5000/app:v1", "[::1]:5000/app"),
    ("127.0.0.1:5000/a__b/c.d-e:tag_1", "127.0.0.1:5000/a__b/c.d-e"),
    (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:latest",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/app",
    ),
]
BAD_IMAGES = [
    "",
    "Nginx",
    "a" * 64,
    "registry.example.com/App",
    "r.io/app:bad tag",
    "r.io/app@sha256:abc",
    "r.io/app@md5:" + "a" * 32,
    "r.io//app",
    "r.io/" + "a" * 260,
]


@pytest.mark.parametrize(("reference", "repository"), IMAGES, ids=[i[0][:40] for i in IMAGES])
def test_images_are_normalized_as_the_kubelet_does(reference: str, repository: str) -> None:
    assert normalize(reference).repository == repository
    assert sim.normalize_image(reference) == repository


@pytest.mark.parametrize("reference", BAD_IMAGES, ids=[b[:30] or "empty" for b in BAD_IMAGES])
def test_invalid_references_are_refused_like_the_kubelet(reference: str) -> None:
    with pytest.raises(ImageRefError):
        normalize(reference)
    if reference:
        with pytest.raises(sim.ImageReferenceError):
            sim.normalize_image(reference)


def test_reference_parts() -> None:
    ref = normalize("registry.example.com:5000/team/app:v1")
    assert (ref.host, ref.path, ref.tag, ref.reference) == (
        "registry.example.com:5000",
        "team/app",
        "v1",
        "v1",
    )
    assert normalize("nginx").reference == "latest"
    assert registry_endpoint("docker.io") == "registry-1.docker.io"
    assert registry_endpoint("quay.io") == "quay.io"


def _setup(tmp_path: Path) -> Path:
    auth = auth_file(tmp_path, {"registry.example.com:5000": ("alice", SECRET)})
    return provider_config(
        tmp_path,
        f"  - match: ['registry.example.com:5000/team-a']\n    backend: anonymous\n"
        f"  - match: ['registry.example.com:5000']\n    backend: dockerconfig\n    files: [{auth}]\n"
        "    cacheDuration: 7m\n",
    )


def test_the_report_names_rule_backend_and_redacts(tmp_path: Path) -> None:
    config = _setup(tmp_path)
    result = run(["test", "registry.example.com:5000/other/app:v1", "--config", str(config)])
    assert result.code == 0, result.stderr
    assert SECRET not in result.stdout
    assert (
        "registry.example.com:5000/other/app  (from registry.example.com:5000/other/app:v1)" in result.stdout
    )
    assert "rules[1] (dockerconfig), matched by 'registry.example.com:5000'" in result.stdout
    assert "credentials for registry.example.com:5000 (user 'alice')" in result.stdout
    assert '"password": "<redacted>"' in result.stdout
    assert "cacheDuration  7m0s" in result.stdout
    # the other images of the host get another answer: the kubelet must cache per image
    assert "cacheKeyType   Image" in result.stdout
    shown = run(["test", "registry.example.com:5000/other/app", "--config", str(config), "--show-secrets"])
    assert SECRET in shown.stdout


def test_json_report(tmp_path: Path) -> None:
    config = _setup(tmp_path)
    report = run(
        ["test", "registry.example.com:5000/team-a/app", "--config", str(config), "-o", "json"]
    ).json()
    assert report["ok"] is True
    assert report["image"] == "registry.example.com:5000/team-a/app"
    assert report["rule"] == {"index": 0, "backend": "anonymous", "glob": "registry.example.com:5000/team-a"}
    assert report["response"]["auth"] == {}
    assert report["response"]["apiVersion"] == V1
    assert report["cache"] == "off"  # anonymous answers never go through the disk cache
    assert isinstance(report["elapsedMs"], (int, float))  # present, a number (its value is timing)


def test_golden_text(tmp_path: Path) -> None:
    config = _setup(tmp_path)
    result = run(["test", "registry.example.com:5000/other/app:v1", "--config", str(config), "--no-cache"])
    check_golden("test-dockerconfig.txt", scrub(result.stdout, tmp_path))


def test_no_rule_means_empty_auth(tmp_path: Path) -> None:
    result = run(["test", "nginx", "--config", str(_setup(tmp_path)), "--api-version", "v1alpha1"])
    assert result.code == 0
    assert "docker.io/library/nginx  (from nginx)" in result.stdout
    assert "credentialprovider.kubelet.k8s.io/v1alpha1" in result.stdout
    assert "none matches: empty auth" in result.stdout


def test_a_failing_backend_exits_1_with_its_message(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    config = provider_config(tmp_path, f"  - backend: dockerconfig\n    files: [{broken}]\n")
    result = run(["test", "registry.example.com/app", "--config", str(config)])
    assert result.code == 1
    assert "failed: " in result.stdout
    assert "not valid JSON" in result.stdout
    assert "rules[0] (dockerconfig)" in result.stdout


def test_raw_request_on_stdin(tmp_path: Path) -> None:
    config = _setup(tmp_path)
    request = {
        "kind": "CredentialProviderRequest",
        "apiVersion": V1,
        "image": "registry.example.com:5000/x/y:v1",
    }
    result = run(["test", "-", "--config", str(config)], json.dumps(request).encode())
    assert result.code == 0
    assert "the kubelet would send 'registry.example.com:5000/x/y' for this image" in result.stdout
    result = run(["test", "-", "--config", str(config)], b"not json")
    assert result.code == 1
    assert "stdin is not a JSON CredentialProviderRequest" in result.stdout
    result = run(["test", "-", "--config", str(config), "--api-version", "v1"], b"{}")
    assert result.code == 2


def _jwt(claims: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return part({"alg": "RS256"}) + "." + part(claims) + "." + "c2lnbmF0dXJl" + SECRET


def test_token_mode_shows_claims_never_the_token(tmp_path: Path) -> None:
    config = _setup(tmp_path)
    token = tmp_path / "token"
    token.write_text(
        _jwt({"sub": "system:serviceaccount:team:builder", "aud": ["sts.amazonaws.com"], "exp": 1}) + "\n"
    )
    result = run(
        ["test", "registry.example.com:5000/team-a/app", "--config", str(config), "--service-account", "team/builder",
         "--token-file", str(token), "--annotation", "eks.amazonaws.com/role-arn=arn:aws:iam::1:role/x", "-o", "json"]
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert SECRET not in result.stdout
    report = result.json()
    assert report["token"]["sub"] == "system:serviceaccount:team:builder"
    assert report["token"]["aud"] == ["sts.amazonaws.com"]
    assert report["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}
    assert report["warnings"] == []
    result = run(
        ["test", "registry.example.com:5000/team-a/app", "--config", str(config), "--service-account", "other/sa",
         "--token-file", str(token)]
    )  # fmt: skip
    assert "the token's subject is 'system:serviceaccount:team:builder'" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["Nginx"],
        ["nginx", "--service-account", "team/builder"],
        ["nginx", "--service-account", "builder", "--token-file", "/dev/null"],
        ["nginx", "--annotation", "novalue"],
        ["nginx", "--annotation", "a=b", "--api-version", "v1beta1"],
        ["nginx", "--token-file", "/nonexistent"],
        ["nginx", "--timeout", "2m"],
    ],
    ids=["bad image", "sa without token", "sa without namespace", "annotation", "annotation v1beta1", "token file",
         "timeout"],
)  # fmt: skip
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = run(["test", *args, "--config", str(_setup(tmp_path))])
    assert result.code == 2, result.stdout
    assert result.stdout == ""
    assert result.stderr.startswith("registry-credential-provider: error: ")


def test_kubelet_config_says_whether_the_plugin_runs(tmp_path: Path) -> None:
    config = _setup(tmp_path)
    kubelet = tmp_path / "kubelet.yaml"
    kubelet.write_text(
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
        "  - name: registry-credential-provider\n    matchImages: ['registry.example.com:5000']\n"
        "    defaultCacheDuration: 5m\n    apiVersion: credentialprovider.kubelet.k8s.io/v1beta1\n"
    )
    result = run(
        ["test", "registry.example.com:5000/app", "--config", str(config), "--kubelet-config", str(kubelet)]
    )
    assert result.code == 0
    assert (
        "matchImages 'registry.example.com:5000' of registry-credential-provider: the kubelet runs"
        in result.stdout
    )
    assert "credentialprovider.kubelet.k8s.io/v1beta1" in result.stdout  # the kubelet config's version
    result = run(
        ["test", "registry.example.com/app", "--config", str(config), "--kubelet-config", str(kubelet)]
    )
    assert result.code == 1
    assert "the kubelet would not run the plugin" in result.stdout
    result = run(
        ["test", "x.io/app", "--config", str(config), "--kubelet-config", str(kubelet), "--name", "nope"]
    )
    assert result.code == 2


def _helper(tmp_path: Path, calls: Path) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-counting"
    helper.write_text(
        f"#!/bin/sh\necho x >> {calls}\ncat >/dev/null\n"
        f'echo \'{{"ServerURL":"registry.example.com","Username":"helper-user","Secret":"{SECRET}"}}\'\n'
    )
    helper.chmod(0o755)
    return bindir


def test_cache_miss_then_hit_through_a_credential_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls"
    bindir = _helper(tmp_path, calls)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    monkeypatch.setenv("REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR", str(tmp_path / "cache"))
    files = tmp_path / "config.json"
    files.write_text('{"credHelpers": {"registry.example.com": "counting"}}')
    config = provider_config(tmp_path, f"  - backend: dockerconfig\n    files: [{files}]\n")
    first = run(["test", "registry.example.com/app", "--config", str(config), "-o", "json"]).json()
    second = run(["test", "registry.example.com/app", "--config", str(config), "-o", "json"]).json()
    bypass = run(
        ["test", "registry.example.com/app", "--config", str(config), "-o", "json", "--no-cache"]
    ).json()
    assert (first["cache"], second["cache"], bypass["cache"]) == ("miss", "hit", "off")
    assert (first["path"], second["path"], bypass["path"]) == ("full", "fast", "full")
    assert calls.read_text().count("x") == 2  # the hit did not run the helper
    for report in (first, second, bypass):
        assert report["response"]["auth"]["registry.example.com"] == {
            "username": "helper-user",
            "password": "<redacted>",
        }


def test_test_through_the_zipapp(zipapp: Path, tmp_path: Path) -> None:
    config = _setup(tmp_path)
    result = run_zipapp(
        zipapp, ["test", "registry.example.com:5000/other/app:v1", "--config", str(config)], b""
    )
    assert result.returncode == 0, result.stderr
    assert SECRET.encode() not in result.stdout + result.stderr
    assert b"rules[1] (dockerconfig)" in result.stdout
    assert b"\x1b[" not in result.stdout  # not a terminal: no colour
    result = run_zipapp(zipapp, ["test", "--help"], b"")
    assert result.returncode == 0
    assert b"exit codes:" in result.stdout
    assert b"IMAGE '-' reads a raw CredentialProviderRequest on stdin." in result.stdout


def test_a_rule_whose_credential_file_is_missing_is_warned_about(tmp_path: Path) -> None:
    missing = tmp_path / "gone.json"
    config = provider_config(tmp_path, f"  - backend: dockerconfig\n    files: [{missing}]\n")
    result = run(["test", "r.test/app", "--config", str(config), "-o", "json"])
    assert result.code == 0, result.stderr
    assert result.json()["warnings"] == [
        f"rules[0].files[0]: {missing} does not exist: no credentials come from it (empty auth: an anonymous pull)"
    ]
