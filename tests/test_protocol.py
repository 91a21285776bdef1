"""The kubelet protocol, byte for byte: golden requests and responses per API version.

Each directory under ``tests/data/golden`` holds a ``request.json``, our
``provider-config.{yaml,json}`` (``{dir}`` stands for the directory's copy) with any files it
names, and the exact ``response.json`` we must print. Each case runs in-process through
``main()`` and through the built zipapp exec'd as the kubelet does.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from provider.__main__ import main
from provider.kubelet import API_VERSIONS
from tests.conftest import run_zipapp

GOLDEN = Path(__file__).parent / "data" / "golden"
CASES = sorted(path.name for path in GOLDEN.iterdir() if path.is_dir())


def _prepare(case: str, tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """Copy a case to ``tmp_path``, fill in ``{dir}``; return (config, request, expected response)."""
    workdir = tmp_path / case
    shutil.copytree(GOLDEN / case, workdir)
    (config,) = [p for p in workdir.iterdir() if p.stem == "provider-config"]
    config.write_text(config.read_text().replace("{dir}", str(workdir)))
    return config, (workdir / "request.json").read_bytes(), (workdir / "response.json").read_bytes()


def test_every_api_version_has_a_golden_case() -> None:
    versions = {
        (GOLDEN / case / "request.json").read_text().split('"apiVersion":"')[1].split('"')[0]
        for case in CASES
    }
    assert versions == set(API_VERSIONS)


@pytest.mark.parametrize("case", CASES)
def test_golden_in_process(case: str, tmp_path: Path) -> None:
    config, request, expected = _prepare(case, tmp_path)
    stdout, stderr = io.BytesIO(), io.StringIO()
    code = main(
        ["get-credentials", "--config", str(config)], stdin=io.BytesIO(request), stdout=stdout, stderr=stderr
    )
    assert (code, stderr.getvalue()) == (0, "")
    assert stdout.getvalue() == expected


@pytest.mark.parametrize("case", CASES)
def test_golden_through_zipapp(case: str, tmp_path: Path, zipapp: Path) -> None:
    config, request, expected = _prepare(case, tmp_path)
    result = run_zipapp(zipapp, ["get-credentials", "--config", str(config)], request)
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == expected


@pytest.mark.parametrize("case", CASES)
def test_golden_with_config_from_environment(case: str, tmp_path: Path, zipapp: Path) -> None:
    config, request, expected = _prepare(case, tmp_path)
    result = run_zipapp(zipapp, [], request, env={"REGISTRY_CREDENTIAL_PROVIDER_CONFIG": str(config)})
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout == expected
