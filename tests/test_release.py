"""``make dist``: one zipapp and one self-contained archive per CPU, each zipapp with only its own wheels, botocore trimmed, byte
reproducible, checksummed, its packages listed; the x86_64 file answering on every CPython
3.9-3.13 this machine has. The release is built once per session into a temporary directory
(and a second time for the reproducibility check), never taken from ``dist/``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from provider import __version__
from tests.conftest import ROOT, kubelet_environ

sys.path.insert(0, str(ROOT / "packaging"))
import build_release
import build_standalone

REQUEST = b'{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"quay.io/team/app"}'
ANONYMOUS = '{"apiVersion":"registry-credential-provider/v1alpha1","kind":"ProviderConfig","rules":[{"backend":"anonymous"}]}'
PYENV = Path("/root/.pyenv/versions")


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``make dist``'s release: both zipapps, and both self-contained archives (built once, then
    cached by input hash)."""
    standalone = tmp_path_factory.mktemp("standalone")
    for arch in build_release.ARCHES:
        build_standalone.build(arch, standalone)
    out = tmp_path_factory.mktemp("release") / "dist"
    build_release.build_release(out, log=False, standalone_dir=standalone)
    return out


def artifact(release: Path, arch: str) -> Path:
    return release / build_release.artifact_name(__version__, arch)


def test_release_has_one_file_per_cpu_install_sh_packages_and_sums(release: Path) -> None:
    names = sorted(p.name for p in release.iterdir())
    assert names == sorted(
        [
            f"registry-credential-provider-{__version__}-linux-x86_64",
            f"registry-credential-provider-{__version__}-linux-aarch64",
            f"registry-credential-provider-{__version__}-linux-x86_64-standalone.tar.gz",
            f"registry-credential-provider-{__version__}-linux-aarch64-standalone.tar.gz",
            "install.sh",
            "PACKAGES.txt",
            "SHA256SUMS",
        ]
    )
    result = subprocess.run(
        ["sha256sum", "-c", "SHA256SUMS"], cwd=release, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK") == 6
    assert (release / "install.sh").read_bytes() == (ROOT / "node-config" / "install.sh").read_bytes()


def test_rebuild_is_byte_identical(release: Path, tmp_path: Path) -> None:
    standalone = tmp_path / "standalone"
    for arch in build_release.ARCHES:
        build_standalone.build(arch, standalone)  # the cached archives: the zipapps are rebuilt
    again = tmp_path / "again"
    build_release.build_release(again, log=False, standalone_dir=standalone)
    assert (again / "SHA256SUMS").read_text() == (release / "SHA256SUMS").read_text()
    assert (again / "PACKAGES.txt").read_bytes() == (release / "PACKAGES.txt").read_bytes()


@pytest.mark.parametrize("arch", build_release.ARCHES)
def test_each_file_carries_only_its_own_wheels_and_meets_the_size_goal(release: Path, arch: str) -> None:
    path = artifact(release, arch)
    assert path.stat().st_size <= build_release.SIZE_GOAL_BYTES
    with zipfile.ZipFile(path) as pex:
        info = json.loads(pex.read("PEX-INFO"))
        names = pex.namelist()
    wheels = sorted(info["distributions"])
    native = [w for w in wheels if build_release.wheel_arches(w)]
    assert native, "no native wheels: msgspec and PyYAML have C extensions"
    assert all(build_release.wheel_arches(w) == {arch} for w in native)
    other = "aarch64" if arch == "x86_64" else "x86_64"
    assert not [n for n in names if n.startswith(".deps/") and other in n]
    for python in ("cp39", "cp310", "cp311", "cp312", "cp313"):
        assert any("msgspec-" in w and f"-{python}-" in w for w in wheels), python
    # The glibc floor: nothing newer than manylinux2014 (2.17) may be needed.
    for wheel in native:
        floors = [build_release.manylinux_glibc(f"x-y-{p}") for p in wheel[:-4].split("-")[-1].split(".")]
        assert min(f for f in floors if f is not None) <= build_release.MANYLINUX_FLOOR
    assert info["interpreter_constraints"] == ["CPython<3.14,>=3.9.2"]


@pytest.mark.parametrize("arch", build_release.ARCHES)
def test_botocore_keeps_only_the_services_we_call(release: Path, arch: str) -> None:
    with zipfile.ZipFile(artifact(release, arch)) as pex:
        names = pex.namelist()
    assert any("/botocore/" in n for n in names), "botocore is missing from the release file"
    services = {
        n.split("/botocore/data/")[1].split("/")[0]
        for n in names
        if "/botocore/data/" in n and n.count("/") > 5
    }
    assert services == set(build_release.BOTOCORE_SERVICES)


def test_packages_list_names_every_bundled_distribution_with_version_and_license(release: Path) -> None:
    text = (release / "PACKAGES.txt").read_text()
    for arch in build_release.ARCHES:
        path = artifact(release, arch)
        assert path.name in text
        for dist in build_release.bundled_distributions(path):
            # One line per bundled version (the lock forks: CPython 3.9 may bundle another version).
            lines = [line for line in text.splitlines() if line.strip().startswith(dist.name + " ")]
            assert [line for line in lines if f" {dist.version} " in line and dist.license in line], dist
            assert dist.license != "UNKNOWN"
    assert "glibc >= 2.17" in text


def interpreters() -> Iterator[tuple[str, str]]:
    for minor in (9, 10, 11, 12, 13):
        found = sorted(PYENV.glob(f"3.{minor}.*/bin/python3.{minor}"))
        yield f"3.{minor}", str(found[-1]) if found else ""


@pytest.mark.parametrize(("version", "python"), list(interpreters()))
def test_x86_64_file_answers_on_every_cpython(
    release: Path, tmp_path: Path, version: str, python: str
) -> None:
    """First exec unpacks into an absolute runtime root (no HOME), with PYTHONDONTWRITEBYTECODE=1;
    the second takes the boot script's fast path into the unpacked venv."""
    if not python:
        pytest.fail(
            f"no CPython {version} under {PYENV}: install it with `pyenv install {version}`", pytrace=False
        )
    path = artifact(release, "x86_64")
    config = tmp_path / "config.json"
    config.write_text(ANONYMOUS)
    env = kubelet_environ({"PATH": f"{Path(python).parent}:/usr/bin:/bin", "PEX_ROOT": str(tmp_path / "pex")})
    env = {k: v for k, v in env.items() if k != "PATH"} | {"PATH": f"{Path(python).parent}"}
    unpacked = []
    for extra in ({"PYTHONDONTWRITEBYTECODE": "1"}, {}):
        result = subprocess.run(
            [str(path), "get-credentials", "--config", str(config)],
            input=REQUEST,
            capture_output=True,
            env=env | extra,
            cwd="/",
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr.decode()
        response = json.loads(result.stdout)
        assert response["kind"] == "CredentialProviderResponse"
        assert response["auth"] == {}
        unpacked.append(files_and_mtimes(tmp_path / "pex"))
    venv_python = next((tmp_path / "pex" / "venvs").rglob("bin/python"))
    assert os.path.basename(os.path.realpath(venv_python)) == f"python{version}"
    # The second exec went straight to the venv: nothing unpacked, written or rewritten
    # (bytecode aside, which the second run was allowed to write).
    assert unpacked[0]
    assert unpacked[1] == unpacked[0]
    # Every native dependency loads on this CPython, cryptography from the one abi3 wheel kept.
    loaded = subprocess.run(
        [
            str(venv_python),
            "-c",
            "import cryptography.hazmat.bindings._rust, msgspec, yaml._yaml, cffi; print('ok')",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert loaded.stdout.strip() == "ok", loaded.stderr


def test_one_abi3_wheel_serves_every_cpython() -> None:
    wheels = [
        "cryptography-50.0.2-cp39-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "cryptography-50.0.2-cp311-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "cryptography-50.0.2-cp311-abi3-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
        "msgspec-0.22.0-cp311-cp311-manylinux2014_x86_64.whl",
        "msgspec-0.22.0-cp312-cp312-manylinux2014_x86_64.whl",
    ]
    assert build_release.redundant_abi3(wheels) == [wheels[1]]


@pytest.mark.parametrize("arch", build_release.ARCHES)
def test_no_project_is_carried_twice_for_the_stable_abi(release: Path, arch: str) -> None:
    with zipfile.ZipFile(artifact(release, arch)) as pex:
        wheels = json.loads(pex.read("PEX-INFO"))["distributions"]
    assert [w for w in wheels if w.startswith("cryptography-")] == [
        w for w in wheels if w.startswith("cryptography-") and "-cp39-abi3-" in w
    ]
    assert len([w for w in wheels if w.startswith("cryptography-")]) == 1


def files_and_mtimes(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its mtime in ns, but bytecode caches and the venv's
    ``.last-access`` stamp (pex touches it on every run, fast path included)."""
    return {
        str(path.relative_to(root)): path.lstat().st_mtime_ns
        for path in root.rglob("*")
        if "__pycache__" not in path.parts and path.name != ".last-access" and not path.is_dir()
    }


def test_x86_64_file_creates_the_trimmed_botocore_clients(release: Path, tmp_path: Path) -> None:
    code = (
        "import botocore.session\n"
        "s = botocore.session.get_session()\n"
        "for name in ('ecr', 'ecr-public', 'sts'):\n"
        "    s.create_client(name, region_name='us-east-1', aws_access_key_id='a', aws_secret_access_key='b')\n"
        "print(sorted(s.get_available_services()))\n"
    )
    result = subprocess.run(
        [str(artifact(release, "x86_64")), "-c", code],
        capture_output=True,
        text=True,
        env=kubelet_environ({"PEX_INTERPRETER": "1", "PEX_ROOT": str(tmp_path / "pex")}),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['ecr', 'ecr-public', 'sts']"


def test_aarch64_file_is_refused_by_the_installer_here(release: Path, tmp_path: Path) -> None:
    from provider.install.artifact import node_arch

    if node_arch() == "aarch64":
        pytest.skip("this machine is aarch64")
    from tests.test_install import CONFIG, cli, make_root

    root = make_root(tmp_path, "kubeadm")
    code, _out, err = cli(
        "install",
        "--root",
        str(root),
        "--artifact",
        str(artifact(release, "aarch64")),
        "--config",
        str(CONFIG),
    )
    assert code == 1
    assert "is built for aarch64" in err
    assert "SHA256SUMS" not in err  # the sums beside it matched


# --- the build's pieces, on fakes ----------------------------------------------------------------


def fake_botocore(path: Path, services: list[str]) -> Path:
    """A wheel shaped like botocore's: shared data files, per-service directories, a RECORD."""
    members: dict[str, bytes] = {
        "botocore/__init__.py": b"__version__ = '0'\n",
        "botocore/data/endpoints.json": b"{}",
        "botocore/data/_retry.json": b"{}",
    }
    for service in services:
        members[f"botocore/data/{service}/2015-01-01/service-2.json.gz"] = service.encode() * 50
        members[f"botocore/data/{service}/2015-01-01/paginators-1.json"] = b"{}"
    record = "".join(f"{name},sha256=x,{len(data)}\n" for name, data in members.items())
    members["botocore-0.dist-info/RECORD"] = (record + "botocore-0.dist-info/RECORD,,\n").encode()
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 2, 3, 4, 6))
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)
    return path


def test_trim_keeps_shared_data_and_the_services_asked_for(tmp_path: Path) -> None:
    source = fake_botocore(
        tmp_path / "botocore-0-py3-none-any.whl", ["ecr", "ecr-public", "sts", "s3", "ec2"]
    )
    first = build_release.trim_botocore_wheel(source, tmp_path / "a.whl", ["ecr", "ecr-public", "sts"])
    build_release.trim_botocore_wheel(source, tmp_path / "b.whl", ["ecr", "ecr-public", "sts"])
    assert (tmp_path / "a.whl").read_bytes() == (tmp_path / "b.whl").read_bytes()
    assert first.services_dropped == 2
    with zipfile.ZipFile(tmp_path / "a.whl") as wheel:
        names = wheel.namelist()
        record = wheel.read("botocore-0.dist-info/RECORD").decode()
        assert all(i.date_time == (2020, 1, 2, 3, 4, 6) for i in wheel.infolist())
    assert "botocore/data/endpoints.json" in names
    assert "botocore/data/_retry.json" in names
    assert not [n for n in names if "/s3/" in n or "/ec2/" in n]
    assert "ecr-public/2015-01-01/service-2.json.gz" in record
    assert "/s3/" not in record
    assert "/ec2/" not in record


def test_trim_refuses_a_service_botocore_does_not_have(tmp_path: Path) -> None:
    source = fake_botocore(tmp_path / "botocore-0-py3-none-any.whl", ["ecr", "sts"])
    with pytest.raises(SystemExit, match="no data for ecr-public"):
        build_release.trim_botocore_wheel(source, tmp_path / "out.whl", ["ecr", "ecr-public", "sts"])


def test_trim_is_a_no_op_without_botocore(tmp_path: Path) -> None:
    (tmp_path / "msgspec-0-py3-none-any.whl").write_bytes(b"")
    result = build_release.trim_wheelhouse(tmp_path, ["ecr"])
    assert result.trimmed is False
    assert "botocore is not in packaging/pex.lock yet" in result.message


def test_committed_aarch64_platforms_are_derived_from_the_x86_64_ones() -> None:
    for source in build_release.platform_files("x86_64"):
        derived = build_release.derive_platform(json.loads(source.read_text()), "aarch64")
        committed = build_release.PLATFORMS_DIR / "aarch64" / source.name.replace("x86_64", "aarch64")
        assert json.loads(committed.read_text()) == derived, (
            "run packaging/build_release.py --derive-platforms"
        )
        tags = derived["compatible_tags"]
        assert isinstance(tags, list)
        assert not [t for t in tags if "x86_64" in t or "manylinux1_" in t or "manylinux2010_" in t]
        assert not [t for t in tags if (build_release.manylinux_glibc(t) or (2, 17)) < (2, 17)]
    assert len(build_release.platform_files("aarch64")) == 5  # CPython 3.9-3.13


def test_cap_manylinux_drops_tags_needing_a_newer_glibc() -> None:
    platform: dict[str, object] = {"compatible_tags": ["cp311-cp311-manylinux_2_28_x86_64", "cp311-cp311-manylinux2014_x86_64",
                                    "cp311-cp311-manylinux_2_17_x86_64", "cp311-cp311-linux_x86_64", "py3-none-any"],
                "marker_environment": {}}  # fmt: skip
    capped = build_release.cap_manylinux(platform, (2, 17))
    tags = platform["compatible_tags"]
    assert isinstance(tags, list)
    assert capped["compatible_tags"] == tags[1:]


def test_strip_distributions_keeps_the_boot_script_and_the_allowed_wheels(tmp_path: Path) -> None:
    pex = tmp_path / "fake.pex"
    buffer = io.BytesIO()
    info = {"distributions": {"a-1-cp311-cp311-manylinux2014_x86_64.whl": "1", "b-1-py3-none-any.whl": "2"}}
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(zipfile.ZipInfo("PEX-INFO", date_time=(1980, 1, 1, 0, 0, 0)), json.dumps(info))
        for wheel in info["distributions"]:
            archive.writestr(zipfile.ZipInfo(f".deps/{wheel}/x.py", date_time=(1980, 1, 1, 0, 0, 0)), "x")
    pex.write_bytes(b"#!/bin/sh\necho boot\n" + buffer.getvalue())
    removed = build_release.strip_distributions(pex, {"py3-none-any"})
    assert removed == ["a-1-cp311-cp311-manylinux2014_x86_64.whl"]
    data = pex.read_bytes()
    assert data.startswith(b"#!/bin/sh\necho boot\n")
    with zipfile.ZipFile(pex) as archive:
        assert archive.namelist() == ["PEX-INFO", ".deps/b-1-py3-none-any.whl/x.py"]
        assert list(json.loads(archive.read("PEX-INFO"))["distributions"]) == ["b-1-py3-none-any.whl"]
    assert hashlib.sha256(data).hexdigest()  # stays a readable zip after the boot script


@pytest.mark.parametrize("arch", build_release.ARCHES)
def test_packages_list_the_self_contained_forms_cpython_libraries_and_locked_packages(
    release: Path, arch: str
) -> None:
    text = (release / "PACKAGES.txt").read_text()
    name = build_release.standalone_artifact_name(__version__, arch)
    section = text[text.index(f"{name}:") :]
    assert "libpython3.9.so.1.0" in section
    assert "libssl.so.1.1" in section
    locked = dict(build_release.cp39_resolve())
    assert f"    cryptography {locked['cryptography']}\n" in section
    assert f"    msgspec {locked['msgspec']}\n" in section


def test_a_release_asked_for_missing_self_contained_archives_names_them(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as refused:
        build_release.build_release(tmp_path / "out", arches=["x86_64"], log=False, standalone_dir=tmp_path)
    assert str(refused.value) == (
        f"{tmp_path} has no registry-credential-provider-{__version__}-linux-x86_64-standalone.tar.gz: "
        "run 'make standalone' first"
    )
    assert not (tmp_path / "out").exists()
