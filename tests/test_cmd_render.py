"""``render``: the kubelet's config generated from our rules, for every platform; it always validates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from provider.platforms import FLAVORS
from tests import kubelet_sim as sim
from tests.cmdutil import GOLDEN, ROOT, check_golden, provider_config, run
from tests.conftest import kubelet_environ, run_zipapp
from tests.infra.fixtures import RegistryFixture

CONFIG = GOLDEN / "render-config.yaml"
FLAVOR_NAMES = sorted(FLAVORS)


def render(*args: str) -> tuple[int, str, str]:
    result = run(["render", "--config", str(CONFIG), *args])
    return result.code, result.stdout, result.stderr


def _validate_rendered(tmp_path: Path, text: str, suffix: str, *extra: str) -> None:
    path = tmp_path / f"kubelet{suffix}"
    path.write_text(text)
    result = run(["validate", "--kubelet-config", str(path), "--config", str(CONFIG), *extra])
    assert result.code == 0, result.stdout
    assert not [line for line in result.stdout.splitlines() if line.startswith("fail")]
    # and the kubelet (simulated) agrees
    loaded = sim.load_config(path)
    assert sim.validate_config(loaded) == []
    assert [p.name for p in loaded.providers] == ["registry-credential-provider"]


@pytest.mark.parametrize("token_mode", [False, True], ids=["node", "token"])
@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("flavor", FLAVOR_NAMES)
def test_every_flavour_renders_a_config_that_validates(
    tmp_path: Path, flavor: str, fmt: str, token_mode: bool
) -> None:
    args = ["--flavor", flavor, "--format", fmt]
    if token_mode:
        args += ["--token-mode", "--audience", "registry.example.com"]
    code, stdout, stderr = render(*args)
    assert code == 0, stderr
    document = yaml.safe_load(stdout) if fmt == "yaml" else json.loads(stdout)
    provider = document["providers"][0]
    assert provider["args"] == ["get-credentials", "--config", FLAVORS[flavor].provider_config]
    assert provider["matchImages"] == [
        "registry.example.com:5000",
        "*.registry.example.com",
        "*.dkr.ecr.*.amazonaws.com",
        "public.ecr.aws",
        "quay.io",
    ]
    assert provider["defaultCacheDuration"] == "10m"
    if token_mode:
        attributes = provider["tokenAttributes"]
        assert attributes["serviceAccountTokenAudience"] == "registry.example.com"
        assert attributes["requireServiceAccount"] is False
        assert attributes["cacheType"] == "ServiceAccount"
        assert "eks.amazonaws.com/ecr-role-arn" in attributes["optionalServiceAccountAnnotationKeys"]
    else:
        assert "tokenAttributes" not in provider
    _validate_rendered(tmp_path, stdout, "." + fmt)


@pytest.mark.parametrize("flavor", FLAVOR_NAMES)
def test_golden_output_per_flavour(flavor: str) -> None:
    code, stdout, _ = render("--flavor", flavor)
    assert code == 0
    check_golden(f"render/{flavor}.txt", stdout.replace(str(ROOT), "<repo>"))


def test_golden_token_mode_and_rbac() -> None:
    code, stdout, _ = render("--flavor", "eks", "--token-mode", "--format", "yaml")
    assert code == 0
    check_golden("render/eks-token.txt", stdout.replace(str(ROOT), "<repo>"))
    code, stdout, _ = render("--rbac", "--flavor", "aks")
    assert code == 0
    check_golden("render/rbac-aks.txt", stdout)
    documents = list(yaml.safe_load_all(stdout))
    assert [d["kind"] for d in documents] == ["ClusterRole", "ClusterRoleBinding"]
    assert documents[0]["rules"][0] == {
        "apiGroups": [""],
        "resources": ["api://AzureADTokenExchange"],
        "verbs": ["request-serviceaccounts-token-audience"],
    }
    assert documents[1]["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}
    ]
    code, stdout, _ = render("--rbac", "--audience", "sts.amazonaws.com", "-o", "json")
    assert code == 0
    assert [item["kind"] for item in json.loads(stdout)["items"]] == ["ClusterRole", "ClusterRoleBinding"]


def test_a_rule_without_match_cannot_be_rendered(tmp_path: Path) -> None:
    config = provider_config(
        tmp_path, "  - match: [quay.io]\n    backend: anonymous\n  - backend: dockerconfig\n"
    )
    result = run(["render", "--flavor", "kubeadm", "--config", str(config)])
    assert result.code == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "rules[1] (dockerconfig) has no 'match': it answers every image" in result.stderr
    assert "matchImages cannot say 'every image'" in result.stderr
    assert "--partial" in result.stderr
    result = run(["render", "--flavor", "kubeadm", "--config", str(config), "--partial"])
    assert result.code == 0
    assert "left out (--partial)" in result.stderr
    assert yaml.safe_load(result.stdout)["providers"][0]["matchImages"] == ["quay.io"]
    only_catch_all = provider_config(tmp_path, "  - backend: dockerconfig\n", name="all.yaml")
    result = run(["render", "--flavor", "kubeadm", "--config", str(only_catch_all), "--partial"])
    assert result.code == 1
    assert "nothing for matchImages" in result.stderr


def test_embedded_default_needs_partial() -> None:
    result = run(["render", "--flavor", "eks"])
    assert result.code == 1
    assert "has no 'match'" in result.stderr
    result = run(["render", "--flavor", "eks", "--partial", "-o", "json"])
    assert result.code == 0
    report = json.loads(result.stdout)
    assert report["kubeletConfig"] == "/etc/eks/image-credential-provider/config.json"
    assert "*.dkr.ecr.*.amazonaws.com" in report["config"]["providers"][0]["matchImages"]
    assert report["kubeletFlags"] == [
        "--image-credential-provider-config=/etc/eks/image-credential-provider/config.json",
        "--image-credential-provider-bin-dir=/etc/eks/image-credential-provider",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--flavor is required"),
        (["--flavor", "kubeadm", "--token-mode"], "token mode needs --audience"),
        (["--flavor", "kubeadm", "--audience", "x"], "only apply with --token-mode"),
        (["--flavor", "kubeadm", "--provider-config", "relative.json"], "expected an absolute path"),
        (["--rbac"], "token mode needs --audience"),
        (["--flavor", "nope"], "invalid choice"),
    ],
    ids=["no flavour", "no audience", "audience without token mode", "relative path", "rbac", "bad flavour"],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    code, stdout, stderr = render(*args)
    assert code == 2
    assert stdout == ""
    assert message in stderr


def test_rendered_config_works_end_to_end(
    tmp_path: Path, zipapp: Path, registry_http: RegistryFixture
) -> None:
    """render -> the kubelet (simulated) -> the zipapp -> credentials the real registry accepts."""
    user, password = registry_http.creds
    auth = tmp_path / "auth.json"
    from tests.cmdutil import auth_file

    auth_file(tmp_path, {registry_http.host: (user, password)})
    config = provider_config(
        tmp_path, f"  - match: ['{registry_http.host}']\n    backend: dockerconfig\n    files: [{auth}]\n"
    )
    result = run(
        [
            "render",
            "--flavor",
            "kubeadm",
            "--config",
            str(config),
            "--provider-config",
            str(config),
            "--format",
            "json",
        ]
    )
    assert result.code == 0, result.stderr
    kubelet_file = tmp_path / "kubelet.json"
    kubelet_file.write_text(result.stdout)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "registry-credential-provider").symlink_to(zipapp)
    kubelet = sim.KubeletSimulator(kubelet_file, bin_dir, base_env=kubelet_environ())
    assert kubelet.pull(registry_http.ref()) == [(user, password)]
    # the zipapp's own render gives the same document
    again = run_zipapp(
        zipapp,
        [
            "render",
            "--flavor",
            "kubeadm",
            "--config",
            str(config),
            "--provider-config",
            str(config),
            "--format",
            "json",
        ],
        b"",
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.decode() == result.stdout


# --- AKS token mode, and the audiences no platform default fits ---------------------------------

ACR_RULES = "  - match: ['*.azurecr.io']\n    backend: acr\n"
ACR_KEYS = [
    "kubernetes.azure.com/acr-client-id",
    "azure.workload.identity/client-id",
    "kubernetes.azure.com/acr-tenant-id",
    "azure.workload.identity/tenant-id",
]


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_aks_token_mode_sends_the_acr_annotations_for_the_federation_audience(
    tmp_path: Path, fmt: str
) -> None:
    config = provider_config(tmp_path, ACR_RULES)
    result = run(["render", "--config", str(config), "--flavor", "aks", "--token-mode", "--format", fmt])
    assert result.code == 0, result.stderr
    assert result.stderr == ""  # acr uses the token: no "token mode for nothing" warning
    document = yaml.safe_load(result.stdout) if fmt == "yaml" else json.loads(result.stdout)
    [provider] = document["providers"]
    assert provider["matchImages"] == ["*.azurecr.io"]
    assert provider["args"] == [
        "get-credentials",
        "--config",
        "/var/lib/kubelet/registry-credential-provider.json",
    ]
    assert provider["tokenAttributes"] == {
        "serviceAccountTokenAudience": "api://AzureADTokenExchange",
        "cacheType": "ServiceAccount",
        "requireServiceAccount": False,
        "optionalServiceAccountAnnotationKeys": ACR_KEYS,
    }
    path = tmp_path / f"credential-provider-config.{fmt}"
    path.write_text(result.stdout)
    checked = run(["validate", "--kubelet-config", str(path), "--config", str(config)])
    assert checked.code == 0, checked.stdout
    assert not [line for line in checked.stdout.splitlines() if line.startswith("fail")]
    loaded = sim.load_config(path)
    assert sim.validate_config(loaded) == []
    [simulated] = loaded.providers
    assert simulated.token_attributes is not None
    assert simulated.token_attributes.service_account_token_audience == "api://AzureADTokenExchange"
    assert list(simulated.token_attributes.optional_service_account_annotation_keys) == ACR_KEYS
    # The kubelet without the feature gate refuses tokenAttributes: the test can tell the two apart.
    assert sim.validate_config(loaded, service_account_tokens=False) != []


def test_aks_token_mode_lists_a_rules_own_annotation_keys(tmp_path: Path) -> None:
    rules = (
        "  - match: ['team.azurecr.io']\n    backend: acr\n"
        "    clientIdAnnotations: [example.com/acr-client]\n    tenantIdAnnotations: [example.com/acr-tenant]\n"
    )
    config = provider_config(tmp_path, rules)
    result = run(["render", "--config", str(config), "--flavor", "aks", "--token-mode", "-o", "json"])
    assert result.code == 0, result.stderr
    attributes = json.loads(result.stdout)["config"]["providers"][0]["tokenAttributes"]
    assert attributes["optionalServiceAccountAnnotationKeys"] == [
        "example.com/acr-client",
        "example.com/acr-tenant",
    ]


VAULT_RULE = "  - match: [r.example.com]\n    backend: vault\n    address: https://vault.example.com:8200\n    role: puller\n"
FILES_RULE = "  - match: [r.example.com]\n    backend: files\n    paths: ['/w/{namespace}.json']\n"
IDENTITY_RULE = "  - match: ['*.azurecr.io']\n    backend: acr\n    namespaces: [team-a]\n"


@pytest.mark.parametrize(
    ("rules", "named"),
    [
        (ACR_RULES + VAULT_RULE, "rules[1] (vault)"),
        (FILES_RULE, "rules[0] (files)"),
        (IDENTITY_RULE + ACR_RULES, "rules[0] (acr, an identity rule)"),
    ],
    ids=["vault", "files", "identity rule"],
)
@pytest.mark.parametrize("flavor", ["aks", "eks"])
def test_token_mode_for_per_workload_rules_needs_an_explicit_audience(
    tmp_path: Path, rules: str, named: str, flavor: str
) -> None:
    config = provider_config(tmp_path, rules)
    for extra in ([], ["--rbac"]):
        result = run(["render", "--config", str(config), "--flavor", flavor, "--token-mode", *extra])
        assert result.code == 2, result.stderr
        assert result.stdout == ""
        [line] = result.stderr.splitlines()
        assert line.startswith("registry-credential-provider: error: token mode needs --audience: ")
        assert named in line
        assert "does not fit" in line
    result = run(
        [
            "render",
            "--config",
            str(config),
            "--flavor",
            flavor,
            "--token-mode",
            "--audience",
            "vault.example.com",
        ]
    )
    assert result.code == 0, result.stderr
    attributes = yaml.safe_load(result.stdout)["providers"][0]["tokenAttributes"]
    assert attributes["serviceAccountTokenAudience"] == "vault.example.com"


def test_gke_token_mode_sends_the_google_annotations(tmp_path: Path) -> None:
    """GKE's token-mode config: the Workload Identity annotations the gar backend reads, the
    pool as audience, accepted by the kubelet (simulated) and by validate; its RBAC for nodes."""
    config = provider_config(tmp_path, "  - match: ['*.pkg.dev', 'gcr.io', '*.gcr.io']\n    backend: gar\n")
    audience = "my-project.svc.id.goog"
    result = run(
        [
            "render",
            "--config",
            str(config),
            "--flavor",
            "gke",
            "--token-mode",
            "--audience",
            audience,
            "--format",
            "yaml",
        ]
    )
    assert result.code == 0, result.stderr
    provider = yaml.safe_load(result.stdout)["providers"][0]
    attributes = provider["tokenAttributes"]
    assert attributes["serviceAccountTokenAudience"] == audience
    assert attributes["cacheType"] == "ServiceAccount"
    assert set(attributes["optionalServiceAccountAnnotationKeys"]) >= {
        "iam.gke.io/gcp-service-account",
        "iam.gke.io/enable-wi-image-pull",
    }
    assert provider["args"] == ["get-credentials", "--config", FLAVORS["gke"].provider_config]
    path = tmp_path / "cri-auth-config.yaml"
    path.write_text(result.stdout)
    assert sim.validate_config(sim.load_config(path)) == []
    checked = run(["validate", "--kubelet-config", str(path), "--config", str(config)])
    assert checked.code == 0, checked.stdout
    rbac = run(["render", "--rbac", "--audience", audience])
    assert rbac.code == 0
    documents = list(yaml.safe_load_all(rbac.stdout))
    assert documents[0]["rules"][0]["resources"] == [audience]
