"""``install`` and ``uninstall`` into temporary roots, one per flavour, against golden trees.

Each flavour starts from ``tests/data/install/<flavour>/before`` (the files that platform has
on a node), installs the built zipapp with ``tests/data/install/config.yaml``, and must give
exactly ``after.tree``; a second install must change nothing and say so; ``uninstall`` must
give back the ``before`` tree byte for byte, modes included. Regenerate the goldens with
``UPDATE_GOLDEN=1 make pytest PYTEST_ARGS='-k test_install'`` and review the diff.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provider import __version__
from provider.__main__ import main
from provider.install import artifact as artifacts
from provider.install import files
from provider.install.flavours import FLAVOURS
from provider.install.kubeletfile import kubelet_config_providers
from provider.install.kubeletflags import flags_in, unit_view
from provider.install.pythons import ZIPAPP, advice, choose_form
from provider.install.record import RECORD
from provider.releasenames import standalone_dir, standalone_name
from tests import kubelet_sim as sim
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "install"
CONFIG = DATA / "config.yaml"
PYTHON = os.path.realpath(sys.executable)
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

# Per flavour: the extra command line, and directories the node has (git keeps no empty ones).
CASES: dict[str, tuple[list[str], list[str]]] = {
    "eks": (["--kubelet-version", "1.33"], []),
    "gke": (["--kubelet-version", "1.33"], []),
    "aks": (["--kubelet-version", "1.33"], []),
    "kubeadm": (["--kubelet-version", "1.33"], []),
    "k3s": (["--kubelet-version", "1.33"], []),
    "rke2": (["--kubelet-version", "1.33"], []),
    "openshift": (["--kubelet-version", "1.34"], []),
    "generic": (
        [
            "--flavor",
            "generic",
            "--bin-dir",
            "/usr/local/lib/kubelet-plugins",
            "--kubelet-config",
            "/etc/kubernetes/credential-provider-config.yaml",
            "--kubelet-version",
            "1.33",
        ],
        ["/usr/local/lib/kubelet-plugins"],
    ),
}


def make_root(tmp_path: Path, flavour: str, *, python: bool = True) -> Path:
    """A copy of the flavour's ``before`` tree, with git's modes made exact, and a python3.11."""
    root = tmp_path / "root"
    shutil.copytree(DATA / flavour / "before", root, symlinks=True)
    for path in [root, *root.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
        elif path.is_file():
            path.chmod(0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644)
    for directory in CASES.get(flavour, ([], []))[1]:
        (root / directory.lstrip("/")).mkdir(parents=True, mode=0o755)
    if python:
        (root / "usr" / "bin").mkdir(parents=True, exist_ok=True, mode=0o755)
        (root / "usr" / "bin" / "python3.11").symlink_to(PYTHON)
    return root


def dump(root: Path, artifact: bytes = b"") -> str:
    """Every path under ``root``: kind, mode, and text content (binaries and records named)."""
    lines = []
    for path in sorted(root.rglob("*"), key=lambda p: str(p.relative_to(root))):
        node = "/" + str(path.relative_to(root))
        info = path.lstat()
        mode = f"{stat.S_IMODE(info.st_mode):04o}"
        if path.is_symlink():
            target = os.readlink(path)
            lines.append(f"l {node} -> {'<python>' if target == PYTHON else target}")
        elif path.is_dir():
            lines.append(f"d {mode} {node}")
        else:
            data = path.read_bytes()
            if artifact and data == artifact:
                lines.append(f"f {mode} {node} <the release file>")
            elif node == RECORD:
                lines.append(f"f {mode} {node} <install record>")
            elif b"\0" in data:
                lines.append(f"f {mode} {node} <binary, sha256 {files.digest(data)}>")
            else:
                lines.append(f"f {mode} {node}")
                lines += ["  | " + line for line in data.decode().splitlines()]
    return "\n".join(lines) + "\n"


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.StringIO()
    code = main(list(args), stdin=io.BytesIO(), stdout=out, stderr=err)
    return code, out.getvalue().decode(), err.getvalue()


def install(root: Path, zipapp: Path, *extra: str, config: Path = CONFIG) -> tuple[int, str, str]:
    return cli("install", "--root", str(root), "--artifact", str(zipapp), "--config", str(config), *extra)


def golden(name: str, text: str) -> None:
    path = DATA / name
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1"
    assert text == path.read_text()


# --- every flavour --------------------------------------------------------------------------------


@pytest.mark.parametrize("flavour", sorted(CASES))
def test_install_then_uninstall_per_flavour(flavour: str, tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, flavour)
    artifact = zipapp.read_bytes()
    before = dump(root)
    code, out, err = install(root, zipapp, *CASES[flavour][0])
    assert code == 0, out + err
    assert f"flavour {flavour}" in out
    golden(f"{flavour}/after.tree", dump(root, artifact))

    code, again, err = install(root, zipapp, *CASES[flavour][0])
    assert code == 0, again + err
    assert "nothing to change: already installed" in again
    assert "create" not in again
    assert "update" not in again
    golden(f"{flavour}/after.tree", dump(root, artifact))

    code, out, err = cli("uninstall", "--root", str(root))
    assert code == 0, out + err
    assert "uninstalled: every file is as it was" in out
    assert dump(root) == before


@pytest.mark.parametrize("flavour", sorted(CASES))
def test_generated_configs_pass_validate(flavour: str, tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, flavour)
    code, out, err = install(root, zipapp, *CASES[flavour][0])
    assert code == 0, out + err
    record = json.loads((root / RECORD.lstrip("/")).read_text())
    flag = flags_of(root, flavour)
    args = [
        "validate",
        "--kubelet-config",
        str(root / flag["config"].lstrip("/")),
        "--bin-dir",
        str(root / flag["bin_dir"].lstrip("/")),
        "--config",
        str(root / record["provider_config"].lstrip("/")),
        "--kubelet-version",
        CASES[flavour][0][CASES[flavour][0].index("--kubelet-version") + 1],
    ]
    code, out, err = cli(*args)
    assert code == 0, out + err
    assert "valid: 0 error(s)" in out


def flags_of(root: Path, flavour: str) -> dict[str, str]:
    """The kubelet's two flags as the node would pass them after the install (read back from
    the files the flavour's mechanism uses, not from the installer's own record)."""
    if flavour in ("eks", "gke", "aks", "openshift"):
        platform = FLAVOURS[flavour].platform
        return {"config": platform.kubelet_config_flag, "bin_dir": platform.bin_dir}
    if flavour == "kubeadm":
        text = (root / "var/lib/kubelet/kubeadm-flags.env").read_text()
        found = flags_in(text.split('"')[1].split())
    elif flavour in ("k3s", "rke2"):
        import yaml

        drop_in = root / f"etc/rancher/{flavour}/config.yaml.d/90-registry-credential-provider.yaml"
        found = flags_in("--" + arg for arg in yaml.safe_load(drop_in.read_text())["kubelet-arg+"])
    else:
        view = unit_view(files.Root(str(root)), "kubelet.service")
        assert view is not None
        found = flags_in(view.exec_start.split())
    return {
        "config": found["image-credential-provider-config"],
        "bin_dir": found["image-credential-provider-bin-dir"],
    }


# --- EKS: merging into nodeadm's config ------------------------------------------------------------


def test_eks_beside_keeps_ecr_credential_provider_and_warns_on_overlap(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "eks")
    config = tmp_path / "with-ecr.yaml"
    config.write_text(CONFIG.read_text() + '  - match: ["*.dkr.ecr.*.amazonaws.com"]\n    backend: ecr\n')
    code, out, err = install(root, zipapp, "--kubelet-version", "1.33", "--dry-run", config=config)
    assert code == 0, out + err
    assert (
        "warning: ecr-credential-provider also matches '*.dkr.ecr.*.amazonaws.com'" in out
    )  # as the real run
    code, out, err = install(root, zipapp, "--kubelet-version", "1.33", config=config)
    assert code == 0, out + err
    names = [
        p.name
        for p in kubelet_config_providers(files.Root(str(root)), FLAVOURS["eks"].platform.kubelet_config)
    ]
    assert names == ["ecr-credential-provider", "registry-credential-provider"]
    assert "ecr-credential-provider also matches '*.dkr.ecr.*.amazonaws.com'" in out


def test_eks_instead_replaces_the_ecr_entry_and_uninstall_brings_it_back(
    tmp_path: Path, zipapp: Path
) -> None:
    root = make_root(tmp_path, "eks")
    before = dump(root)
    code, out, err = install(root, zipapp, "--kubelet-version", "1.33", "--eks-mode", "instead")
    assert code == 0, out + err
    names = [
        p.name
        for p in kubelet_config_providers(files.Root(str(root)), FLAVOURS["eks"].platform.kubelet_config)
    ]
    assert names == ["registry-credential-provider"]
    assert (root / "etc/eks/image-credential-provider/ecr-credential-provider").exists()  # only unlisted
    code, out, err = cli("uninstall", "--root", str(root))
    assert code == 0, out + err
    assert dump(root) == before


def test_eks_nodeadm_rewrite_is_merged_back_from_state(tmp_path: Path, zipapp: Path) -> None:
    """nodeadm rewrites config.json at boot; the kubelet drop-in's --from-state merges us back."""
    root = make_root(tmp_path, "eks")
    code, out, err = install(root, zipapp, "--kubelet-version", "1.33")
    assert code == 0, out + err
    after = dump(root, zipapp.read_bytes())
    drop_in = root / "etc/systemd/system/kubelet.service.d/90-registry-credential-provider-remerge.conf"
    assert "install --flavor eks --from-state --quiet" in drop_in.read_text()
    config_json = root / "etc/eks/image-credential-provider/config.json"
    shutil.copyfile(DATA / "eks/before/etc/eks/image-credential-provider/config.json", config_json)
    code, out, err = cli(
        "install", "--root", str(root), "--flavor", "eks", "--from-state", "--kubelet-version", "1.33"
    )
    assert code == 0, out + err
    assert "update    /etc/eks/image-credential-provider/config.json" in out
    assert dump(root, zipapp.read_bytes()) == after


# --- backups, dry runs and later edits -------------------------------------------------------------


def test_uninstall_restores_the_original_after_several_installs(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "kubeadm")
    before = dump(root)
    assert install(root, zipapp, "--kubelet-version", "1.33")[0] == 0
    changed = tmp_path / "changed.yaml"
    changed.write_text(CONFIG.read_text() + '  - match: ["ghcr.io"]\n    backend: anonymous\n')
    code, out, err = install(root, zipapp, "--kubelet-version", "1.33", config=changed)
    assert code == 0, out + err
    assert "update    /etc/kubernetes/credential-provider-config.yaml" in out
    assert "ghcr.io" in (root / "etc/kubernetes/credential-provider-config.yaml").read_text()
    backups = sorted(
        p.name for p in (root / "var/lib/registry-credential-provider/install/backups").iterdir()
    )
    assert backups == ["003-kubeadm-flags.env"]  # the original, saved once
    assert cli("uninstall", "--root", str(root))[0] == 0
    assert dump(root) == before


def test_dry_run_shows_the_diff_and_writes_nothing(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "kubeadm")
    before = dump(root)
    code, out, err = install(root, zipapp, "--kubelet-version", "1.33", "--dry-run")
    assert code == 0, out + err
    assert dump(root) == before
    assert (
        "create    /usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec/registry-credential-provider"
        in out
    )
    assert "binary: absent  =>  sha256" in out
    assert '+KUBELET_KUBEADM_ARGS="--container-runtime-endpoint' in out
    assert (
        "--image-credential-provider-bin-dir=/usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec"
        in out
    )
    assert "dry run: nothing written" in out
    code, out, err = cli("uninstall", "--root", str(root), "--dry-run")
    assert code == 0
    assert "nothing to uninstall" in out


def test_uninstall_refuses_a_root_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "does-not-exist"
    code, out, err = cli("uninstall", "--root", str(missing))
    assert code == 1
    assert out == ""
    assert err == f"registry-credential-provider: error: --root {missing} is not a directory\n"


def test_uninstall_takes_only_our_provider_out_of_a_config_changed_since(
    tmp_path: Path, zipapp: Path
) -> None:
    root = make_root(tmp_path, "aks")
    assert install(root, zipapp, "--kubelet-version", "1.33")[0] == 0
    config = root / "var/lib/kubelet/credential-provider-config.yaml"
    config.write_text(config.read_text() + "# edited by someone else\n")
    code, out, err = cli("uninstall", "--root", str(root))
    assert code == 0, out + err
    assert "unmerge   /var/lib/kubelet/credential-provider-config.yaml" in out
    names = [
        p.name
        for p in kubelet_config_providers(
            files.Root(str(root)), "/var/lib/kubelet/credential-provider-config.yaml"
        )
    ]
    assert names == ["acr-credential-provider"]
    assert not (root / "var/lib/kubelet/credential-provider/registry-credential-provider").exists()


def test_uninstall_leaves_a_file_someone_else_changed_unless_forced(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "k3s")
    before = dump(root)
    assert install(root, zipapp, "--kubelet-version", "1.33")[0] == 0
    ours = root / "var/lib/rancher/credentialprovider/registry-credential-provider.json"
    ours.write_text(ours.read_text().replace("quay.io", "quay.example"))
    code, out, err = cli("uninstall", "--root", str(root))
    assert code == 0, out + err
    assert "kept      /var/lib/rancher/credentialprovider/registry-credential-provider.json" in out
    assert ours.exists()
    code, out, err = cli("uninstall", "--root", str(root), "--force")
    assert code == 0, out + err
    assert dump(root) == before


def test_a_second_install_under_another_flavour_is_refused(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "kubeadm")
    assert install(root, zipapp, "--kubelet-version", "1.33")[0] == 0
    (root / "etc/rancher/k3s").mkdir(parents=True)
    code, _out, err = install(root, zipapp, "--kubelet-version", "1.33")
    assert code == 1
    assert "already installed here as flavour kubeadm" in err


# --- refusals: nothing is written ------------------------------------------------------------------


def refused(root: Path, zipapp: Path, *extra: str, config: Path = CONFIG) -> str:
    before = dump(root)
    code, out, err = install(root, zipapp, *extra, config=config)
    assert code == 1, out + err
    assert dump(root) == before, "a refused install wrote something"
    assert err.startswith("registry-credential-provider: error: ")
    return err


def test_refuses_a_node_without_a_suitable_python_and_says_what_to_install(
    tmp_path: Path, zipapp: Path
) -> None:
    root = make_root(tmp_path, "eks", python=False)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/python3.8").symlink_to(PYTHON)  # too old: the boot script never looks for it
    err = refused(root, zipapp, "--kubelet-version", "1.33")
    assert "no CPython 3.9-3.13 on the kubelet's PATH" in err
    assert (
        f"install registry-credential-provider-{__version__}-linux-{artifacts.node_arch()}-standalone.tar.gz"
        in err
    )
    assert "dnf install -y python3" in err


def test_a_node_with_cpython_3_9_gets_the_zipapp(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "eks", python=False)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/python3.9").symlink_to(PYTHON)  # AL2023's python3
    assert choose_form(files.Root(str(root)), artifacts.SYSTEMD_PATH) == (
        ZIPAPP,
        "CPython 3.9-3.13 on the kubelet's PATH (/usr/bin/python3.9) runs the zipapp",
    )
    code, out, err = install(root, zipapp, "--kubelet-version", "1.33")
    assert code == 0, out + err


def test_refuses_the_wrong_architecture(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "kubeadm")
    err = refused(root, zipapp, "--kubelet-version", "1.33", "--arch", "aarch64")
    assert "is built for x86_64, this node is aarch64" in err
    assert "-linux-aarch64" in err


def test_refuses_a_missing_bin_dir(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "gke")
    shutil.rmtree(root / "home/kubernetes/bin")
    err = refused(root, zipapp, "--kubelet-version", "1.33")
    assert "the kubelet's bin dir /home/kubernetes/bin does not exist" in err
    root2 = make_root(tmp_path / "generic", "generic")
    shutil.rmtree(root2 / "usr/local/lib/kubelet-plugins")
    err = refused(root2, zipapp, *CASES["generic"][0])
    assert "--create-bin-dir creates it" in err


def test_refuses_a_kubelet_config_the_kubelet_would_reject(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "eks")
    config_json = root / "etc/eks/image-credential-provider/config.json"
    config_json.write_text(
        config_json.read_text().replace('"defaultCacheDuration"', '"defaultCacheDurations"')
    )
    err = refused(root, zipapp, "--kubelet-version", "1.33")
    assert "would already stop the kubelet" in err
    assert 'unknown field "providers[0].defaultCacheDurations"' in err


def test_refuses_our_name_already_taken_in_a_config_directory(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "openshift")
    other = root / "etc/kubernetes/credential-providers/ecr-credential-provider.yaml"
    other.write_text(
        other.read_text().replace("name: ecr-credential-provider", "name: registry-credential-provider")
    )
    err = refused(root, zipapp, "--kubelet-version", "1.34")
    assert "already defines a provider named 'registry-credential-provider'" in err


def test_refuses_a_config_directory_on_an_old_kubelet(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "openshift")
    err = refused(root, zipapp, "--kubelet-version", "1.33")
    assert "which kubelet 1.33 cannot read (1.34+)" in err


def test_refuses_token_mode_on_a_kubelet_without_it(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "eks")
    err = refused(root, zipapp, "--kubelet-version", "1.32", "--token-mode")
    assert "kubelet 1.32 has no tokenAttributes" in err


def test_refuses_a_damaged_download(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "kubeadm")
    err = refused(root, zipapp, "--kubelet-version", "1.33", "--sha256", "0" * 64)
    assert "does not match" in err
    copy = tmp_path / "release" / "registry-credential-provider-0.0.0-linux-x86_64"
    copy.parent.mkdir()
    shutil.copyfile(zipapp, copy)
    (copy.parent / "SHA256SUMS").write_text(f"{'1' * 64}  {copy.name}\n")
    err = refused(root, copy, "--kubelet-version", "1.33")
    assert f"from {copy.parent / 'SHA256SUMS'}" in err


def test_refuses_a_rule_the_kubelet_cannot_route(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "kubeadm")
    catch_all = tmp_path / "catch-all.yaml"
    catch_all.write_text(
        "apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\nrules:\n  - backend: anonymous\n"
    )
    err = refused(root, zipapp, "--kubelet-version", "1.33", config=catch_all)
    assert "has no 'match'" in err


def test_refuses_an_undetectable_node(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "generic")
    err = refused(root, zipapp, "--kubelet-version", "1.33")
    assert "could not tell which platform this node is" in err


def test_kubeadm_keeps_flags_the_admin_already_passes(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "kubeadm")
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/default/kubelet").write_text(
        "KUBELET_EXTRA_ARGS=--image-credential-provider-config=/etc/kubernetes/cp.yaml "
        "--image-credential-provider-bin-dir=/opt/cp/bin\n"
    )
    (root / "opt/cp/bin").mkdir(parents=True)
    env_before = (root / "var/lib/kubelet/kubeadm-flags.env").read_text()
    code, out, err = install(root, zipapp, "--kubelet-version", "1.33")
    assert code == 0, out + err
    assert (root / "opt/cp/bin/registry-credential-provider").exists()
    assert (root / "etc/kubernetes/cp.yaml").exists()
    assert (root / "var/lib/kubelet/kubeadm-flags.env").read_text() == env_before
    err = refused(root, zipapp, "--kubelet-version", "1.33", "--bin-dir", "/elsewhere")
    assert "already runs with --image-credential-provider-bin-dir=/opt/cp/bin" in err


# --- the read-only layout and pre-warming ----------------------------------------------------------


def test_venv_layout_refused_under_root(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "kubeadm")
    err = refused(root, zipapp, "--kubelet-version", "1.33", "--layout", "venv")
    assert "run the install inside the image build" in err


REQUEST = b'{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"quay.io/x"}'
ANONYMOUS = '{"apiVersion":"registry-credential-provider/v1alpha1","kind":"ProviderConfig","rules":[{"backend":"anonymous"}]}'


def tree_state(directory: Path) -> list[tuple[str, int, float]]:
    return sorted((str(p), p.lstat().st_size, p.lstat().st_mtime) for p in directory.rglob("*"))


def test_read_only_venv_answers_and_writes_nothing_at_run_time(tmp_path: Path, zipapp: Path) -> None:
    venv = tmp_path / "usr-lib" / "venv"
    sha = files.digest(zipapp.read_bytes())
    assert artifacts.build_venv(str(zipapp), PYTHON, str(venv), sha) is True
    assert artifacts.build_venv(str(zipapp), PYTHON, str(venv), sha) is False  # idempotent
    link = tmp_path / "bin" / "registry-credential-provider"
    link.parent.mkdir()
    link.symlink_to(venv / "pex")
    config = tmp_path / "anonymous.json"
    config.write_text(ANONYMOUS)
    state = tree_state(venv)
    env = artifacts.kubelet_env({"REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR": str(tmp_path / "cache")})
    result = subprocess.run(
        [str(link), "get-credentials", "--config", str(config)],
        input=REQUEST,
        capture_output=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["auth"] == {}
    assert tree_state(venv) == state, "the venv changed at run time (bytecode or other writes)"


def test_prewarm_unpacks_once_and_the_next_exec_takes_the_fast_path(tmp_path: Path, zipapp: Path) -> None:
    pex_root = tmp_path / "pex-root"
    warm = artifacts.prewarm(
        str(zipapp), PYTHON, env={"PEX_ROOT": str(pex_root), "PYTHONDONTWRITEBYTECODE": "1"}
    )
    venvs = list((pex_root / "venvs").rglob("pyvenv.cfg"))
    assert len(venvs) == 1
    assert warm.second_exec_seconds < warm.seconds
    head = zipapp.read_bytes()[:4096].decode("utf-8", "replace")
    installed = head.split('INSTALLED_PEX="${PEX_ROOT}/')[1].split('"')[0]
    assert (pex_root / installed / "bin" / "python").exists(), (
        "pre-warm unpacked somewhere the boot script never looks"
    )


# --- install.sh ------------------------------------------------------------------------------------

INSTALL_SH = ROOT / "node-config" / "install.sh"


def shell_env(tmp_path: Path, pythons: dict[str, str], os_release: str) -> dict[str, str]:
    """A PATH with only the given pythons and the few tools install.sh uses."""
    bin_dir = tmp_path / "path"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("dirname", "uname", "mktemp", "rm", "ldd", "tar", "gzip"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    for name, target in pythons.items():
        (bin_dir / name).symlink_to(target)
    release = tmp_path / "os-release"
    release.write_text(os_release)
    return {"PATH": str(bin_dir), "REGISTRY_CREDENTIAL_PROVIDER_OS_RELEASE": str(release), "LANG": "C.UTF-8"}


def pyenv(version: str) -> str | None:
    found = sorted(Path("/root/.pyenv/versions").glob(f"{version}.*/bin/python{version}"))
    return str(found[-1]) if found else None


def test_install_sh_without_a_suitable_python_or_the_standalone_file_says_what_to_install(
    tmp_path: Path,
) -> None:
    env = shell_env(tmp_path, {}, 'NAME="Amazon Linux"\nID="amzn"\nVERSION_ID="2023"\n')
    result = subprocess.run(
        ["/bin/sh", str(INSTALL_SH), "--flavor", "eks"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 3, result.stderr
    assert "no CPython 3.9-3.13 found" in result.stderr
    assert "no self-contained release file" in result.stderr
    assert "dnf install -y python3  (Amazon Linux 2023's python3 is 3.9)" in result.stderr


def test_install_sh_without_a_suitable_python_runs_the_standalone_forms_installer(tmp_path: Path) -> None:
    """The self-contained tarball beside install.sh is unpacked and its own executable installs
    (here a stand-in that records its arguments)."""
    release = tmp_path / "release"
    release.mkdir()
    shutil.copyfile(INSTALL_SH, release / "install.sh")
    directory = standalone_dir(__version__, artifacts.node_arch())
    program = tmp_path / directory / "registry-credential-provider"
    program.parent.mkdir()
    program.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/ran\n')
    program.chmod(0o755)
    tarball = release / standalone_name(__version__, artifacts.node_arch())
    subprocess.run(["tar", "-czf", str(tarball), "-C", str(tmp_path), directory], check=True)
    env = shell_env(tmp_path, {}, "ID=flatcar\n")
    result = subprocess.run(
        ["/bin/sh", str(release / "install.sh"), "--flavor", "kubeadm"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "installing the self-contained form" in result.stderr
    assert (tmp_path / "ran").read_text() == f"install --artifact {tarball} --flavor kubeadm\n"


def test_install_sh_runs_the_zipapp_with_cpython_3_9(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "kubeadm")
    python39 = pyenv("3.9")
    assert python39 is not None, "no CPython 3.9 under /root/.pyenv/versions: pyenv install 3.9"
    env = shell_env(tmp_path, {"python3.9": python39}, "ID=debian\nVERSION_ID=11\n")
    result = subprocess.run(
        ["/bin/sh", str(INSTALL_SH), "--artifact", str(zipapp), "--root", str(root), "--config", str(CONFIG),
         "--kubelet-version", "1.33", "--dry-run"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "flavour kubeadm" in result.stdout


def test_install_sh_finds_a_python_and_runs_the_installer(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "kubeadm")
    env = shell_env(tmp_path, {"python3.12": pyenv("3.12") or PYTHON}, "ID=debian\nVERSION_ID=12\n")
    result = subprocess.run(
        ["/bin/sh", str(INSTALL_SH), "--artifact", str(zipapp), "--root", str(root), "--config", str(CONFIG),
         "--kubelet-version", "1.33"],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "flavour kubeadm" in result.stdout
    assert (
        root / "usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec/registry-credential-provider"
    ).exists()
    result = subprocess.run(
        ["/bin/sh", str(INSTALL_SH), "--uninstall", "--artifact", str(zipapp), "--root", str(root)],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "uninstalled" in result.stdout


def test_install_sh_needs_a_release_file_for_this_cpu(tmp_path: Path) -> None:
    copy = tmp_path / "release" / "install.sh"
    copy.parent.mkdir()
    shutil.copyfile(INSTALL_SH, copy)
    (copy.parent / "registry-credential-provider-0.1.0-linux-sparc").write_text("")
    env = shell_env(tmp_path, {"python3": PYTHON}, "ID=debian\nVERSION_ID=12\n")
    result = subprocess.run(["/bin/sh", str(copy)], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 4
    assert f"no release file for {artifacts.node_arch()}" in result.stderr


OS_RELEASES = {
    "al2023": 'NAME="Amazon Linux"\nID="amzn"\nVERSION_ID="2023"\n',
    "al2": 'NAME="Amazon Linux"\nID="amzn"\nVERSION_ID="2"\n',
    "rhel9": 'ID="rhel"\nVERSION_ID="9.4"\nID_LIKE="fedora"\n',
    "rocky8": 'ID="rocky"\nVERSION_ID="8.10"\nID_LIKE="rhel centos fedora"\n',
    "fedora": "ID=fedora\nVERSION_ID=41\n",
    "ubuntu2004": "ID=ubuntu\nVERSION_ID=20.04\nID_LIKE=debian\n",
    "ubuntu2404": "ID=ubuntu\nVERSION_ID=24.04\nID_LIKE=debian\n",
    "debian11": "ID=debian\nVERSION_ID=11\n",
    "debian12": "ID=debian\nVERSION_ID=12\n",
    "sles": 'ID="sles"\nVERSION_ID="15.6"\nID_LIKE="suse"\n',
    "azurelinux3": 'NAME="Microsoft Azure Linux"\nVERSION="3.0.20250402"\nID=azurelinux\nVERSION_ID="3.0"\n',
    "mariner2": 'NAME="Common Base Linux Mariner"\nVERSION="2.0.20250304"\nID=mariner\nVERSION_ID="2.0"\n',
    "flatcar": 'NAME="Flatcar Container Linux by Kinvolk"\nID=flatcar\nVERSION_ID=4081.2.0\n',
    "unknown": "ID=plan9\n",
}


@pytest.mark.parametrize("name", sorted(OS_RELEASES))
def test_install_sh_and_the_installer_give_the_same_advice(name: str, tmp_path: Path) -> None:
    env = shell_env(tmp_path, {}, OS_RELEASES[name])
    result = subprocess.run(
        ["/bin/sh", str(INSTALL_SH)], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 3
    said = result.stderr.split("install one: ", 1)[1].strip()
    release = {}
    for line in OS_RELEASES[name].splitlines():
        key, _, value = line.partition("=")
        release[key] = value.strip('"')
    assert said == advice(release)


def test_json_output_lists_every_change(tmp_path: Path, zipapp: Path) -> None:
    root = make_root(tmp_path, "rke2")
    code, out, err = install(root, zipapp, "--kubelet-version", "1.33", "--output", "json")
    assert code == 0, err
    document = json.loads(out)
    assert document["ok"] is True
    assert document["changed"] is True
    assert document["flavour"] == "rke2"
    assert {c["status"] for c in document["changes"]} == {"create"}
    assert document["validation"]["ok"] is True
    code, out, err = install(root, zipapp, "--kubelet-version", "1.33", "--output", "json")
    assert json.loads(out)["changed"] is False


def fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, restart_fails: bool = False) -> Path:
    """A ``systemctl`` on PATH that knows a loaded ``kubelet`` unit and logs every call."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    log = tmp_path / "systemctl.log"
    script = bindir / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        'case "$*" in\n'
        '  "show --property=LoadState --value kubelet") echo loaded ;;\n'
        '  "show "*) echo not-found ;;\n'
        f'  "restart "*) {"echo boom >&2; exit 1" if restart_fails else "exit 0"} ;;\n'
        "esac\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return log


def test_restart_kubelet_is_refused_under_another_root(
    tmp_path: Path, zipapp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = fake_systemctl(tmp_path, monkeypatch)
    root = make_root(tmp_path, "kubeadm")
    before = dump(root)
    code, _out, err = install(root, zipapp, "--kubelet-version", "1.33", "--restart-kubelet")
    assert code == 1
    assert "--restart-kubelet needs the node itself (--root /)" in err
    assert dump(root) == before
    assert not log.exists()


def test_restart_uses_the_flavours_loaded_unit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from provider.install.restart import restart_kubelet

    log = fake_systemctl(tmp_path, monkeypatch)
    said: list[str] = []
    restart_kubelet(FLAVOURS["kubeadm"], said.append)
    assert "restart kubelet" in log.read_text().splitlines()
    assert said == ["restarted kubelet"]


def test_a_failed_kubelet_restart_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from provider.install.options import InstallError
    from provider.install.restart import restart_kubelet

    fake_systemctl(tmp_path, monkeypatch, restart_fails=True)
    with pytest.raises(InstallError, match="systemctl restart kubelet failed: boom"):
        restart_kubelet(FLAVOURS["kubeadm"], lambda message: None)


# --- the goldens, read by the independent kubelet simulator -----------------------------------------

OWN_STATE = "/var/lib/registry-credential-provider/"  # the installer's record and backups


def tree_files(tree: str) -> dict[str, str]:
    """The files an ``after.tree`` golden shows with their content: path -> text."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in tree.splitlines():
        if line.startswith("  |"):
            assert current is not None, line
            current.append(line[4:])
        elif line.startswith("f "):
            current = found.setdefault(line.split(" ")[2], [])
        else:
            current = None
    return {path: "\n".join(lines) + "\n" for path, lines in found.items()}


@pytest.mark.parametrize("flavour", sorted(p.parent.name for p in DATA.glob("*/after.tree")))
def test_golden_kubelet_config_is_accepted_by_the_simulator(flavour: str, tmp_path: Path) -> None:
    """What the installer leaves for the kubelet, loaded and validated as the kubelet would (by
    tests/kubelet_sim.py, not by our own ``validate``), holds our provider entry."""
    files = tree_files((DATA / flavour / "after.tree").read_text())
    live = {
        path: text
        for path, text in files.items()
        if "CredentialProviderConfig" in text and not path.startswith(OWN_STATE)
    }
    assert live, f"{flavour}: no CredentialProviderConfig in the golden"
    for path, text in files.items():
        target = tmp_path / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    # A directory of several configs is what the kubelet is pointed at (it merges them).
    sources = {
        str(Path(path).parent) if sum(Path(p).parent == Path(path).parent for p in live) > 1 else path
        for path in live
    }
    for source in sorted(sources):
        config = sim.load_config(tmp_path / source.lstrip("/"))
        assert sim.validate_config(config) == [], f"{flavour}: the kubelet refuses {source}"
        ours = [p for p in config.providers if p.name == "registry-credential-provider"]
        assert len(ours) == 1, f"{flavour}: {source} has no registry-credential-provider entry"
        provider = ours[0]
        assert provider.api_version == "credentialprovider.kubelet.k8s.io/v1"
        assert provider.args[:2] == ("get-credentials", "--config")
        our_config = provider.args[2]
        assert our_config in files, f"{flavour}: {our_config} is not in the golden"
        assert '"kind": "ProviderConfig"' in files[our_config]


# --- AKS: token mode for ACR, on both node images ---------------------------------------------------

AKS_IMAGES = {
    # The two node images AKS offers, as their /etc/os-release says, and the CPython each packages.
    "ubuntu": ('NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nID_LIKE=debian\n', "python3.10"),
    "azurelinux": (OS_RELEASES["azurelinux3"], "python3.12"),
}
ACR_KEYS = [
    "kubernetes.azure.com/acr-client-id",
    "azure.workload.identity/client-id",
    "kubernetes.azure.com/acr-tenant-id",
    "azure.workload.identity/tenant-id",
]


def aks_root(tmp_path: Path, image: str, *, python: bool = True) -> Path:
    root = make_root(tmp_path, "aks", python=False)
    release, interpreter = AKS_IMAGES[image]
    (root / "etc/os-release").write_text(release)
    if python:
        (root / "usr/bin").mkdir(parents=True, exist_ok=True)
        (root / "usr/bin" / interpreter).symlink_to(PYTHON)
    return root


def acr_config(tmp_path: Path) -> Path:
    config = tmp_path / "acr.yaml"
    config.write_text(CONFIG.read_text() + '  - match: ["team.azurecr.io"]\n    backend: acr\n')
    return config


@pytest.mark.parametrize("image", sorted(AKS_IMAGES))
def test_aks_token_mode_writes_the_acr_token_attributes(image: str, tmp_path: Path, zipapp: Path) -> None:
    root = aks_root(tmp_path, image)
    before = dump(root)
    config = acr_config(tmp_path)
    code, out, err = install(root, zipapp, "--kubelet-version", "1.34", "--token-mode", config=config)
    assert code == 0, out + err
    assert "flavour aks" in out
    # AKS's own acr-credential-provider also matches the host: the operator is told.
    assert "acr-credential-provider also matches '*.azurecr.io' (ours: team.azurecr.io)" in out + err
    kubelet_config = root / "var/lib/kubelet/credential-provider-config.yaml"
    providers = {
        p.name: p
        for p in kubelet_config_providers(
            files.Root(str(root)), "/var/lib/kubelet/credential-provider-config.yaml"
        )
    }
    assert sorted(providers) == ["acr-credential-provider", "registry-credential-provider"]
    ours = providers["registry-credential-provider"]
    assert ours.token_attributes is not None
    assert ours.token_attributes.service_account_token_audience == "api://AzureADTokenExchange"
    assert ours.token_attributes.cache_type == "ServiceAccount"
    assert ours.token_attributes.optional_service_account_annotation_keys == ACR_KEYS
    assert ours.args == ["get-credentials", "--config", "/var/lib/kubelet/registry-credential-provider.json"]
    assert providers["acr-credential-provider"].token_attributes is None  # theirs is left as it was
    loaded = sim.load_config(kubelet_config)
    assert sim.validate_config(loaded) == []
    code, out, err = cli(
        "validate", "--kubelet-config", str(kubelet_config),
        "--bin-dir", str(root / "var/lib/kubelet/credential-provider"),
        "--config", str(root / "var/lib/kubelet/registry-credential-provider.json"),
        "--kubelet-version", "1.34",
    )  # fmt: skip
    assert code == 0, out + err
    assert "valid: 0 error(s)" in out
    assert cli("uninstall", "--root", str(root))[0] == 0
    assert dump(root) == before


@pytest.mark.parametrize("image", sorted(AKS_IMAGES))
def test_aks_without_a_python_names_the_node_images_package(image: str, tmp_path: Path, zipapp: Path) -> None:
    root = aks_root(tmp_path, image, python=False)
    err = refused(root, zipapp, "--kubelet-version", "1.34", "--token-mode", config=acr_config(tmp_path))
    assert "no CPython 3.9-3.13 on the kubelet's PATH" in err
    expected = {"ubuntu": "apt-get install -y python3", "azurelinux": "tdnf install -y python3"}[image]
    assert expected in err


def test_cbl_mariner_is_told_to_install_its_python3_which_is_3_9() -> None:
    said = advice({"ID": "mariner", "VERSION_ID": "2.0"})
    assert said == "tdnf install -y python3  (CBL-Mariner 2.0's python3 is 3.9)"


def test_aks_token_mode_with_a_vault_rule_needs_an_audience(tmp_path: Path, zipapp: Path) -> None:
    root = aks_root(tmp_path, "azurelinux")
    config = tmp_path / "vault.yaml"
    config.write_text(
        CONFIG.read_text() + '  - match: ["team.azurecr.io"]\n    backend: vault\n'
        "    address: https://vault.example.com:8200\n    role: puller\n"
    )
    err = refused(root, zipapp, "--kubelet-version", "1.34", "--token-mode", config=config)
    assert "--token-mode needs --audience: rules[2] (vault)" in err
    code, out, err = install(
        root,
        zipapp,
        "--kubelet-version",
        "1.34",
        "--token-mode",
        "--audience",
        "vault.example.com",
        config=config,
    )
    assert code == 0, out + err
    providers = kubelet_config_providers(
        files.Root(str(root)), "/var/lib/kubelet/credential-provider-config.yaml"
    )
    [ours] = [p for p in providers if p.name == "registry-credential-provider"]
    assert ours.token_attributes is not None
    assert ours.token_attributes.service_account_token_audience == "vault.example.com"
