"""Documentation a user finds: generated from the code, so it cannot drift."""

from __future__ import annotations

import json
import re
from pathlib import Path

from provider.ops.configdoc import reference
from tests.cmdutil import run

ROOT = Path(__file__).resolve().parent.parent


def test_the_config_reference_is_current() -> None:
    current = (ROOT / "docs" / "CONFIG.md").read_text()
    assert current == reference(), (
        "docs/CONFIG.md is stale: python -m provider.ops.configdoc > docs/CONFIG.md"
    )


def test_the_config_reference_names_every_field() -> None:
    import msgspec.inspect as mi

    from provider.backends import BACKENDS
    from provider.config import CacheConfig, MetricsConfig, ProviderConfig

    text = reference()
    for struct in (ProviderConfig, CacheConfig, MetricsConfig, *(spec.rule for spec in BACKENDS)):
        info = mi.type_info(struct)
        assert isinstance(info, mi.StructType)
        for field in info.fields:
            assert re.search(rf"^\| `{field.encode_name}` \|.*\| [^|]+ \|$", text, re.M), field.encode_name


def test_the_embedded_default_is_printed_and_validates(tmp_path: Path) -> None:
    result = run(["render", "--default-config"])
    assert result.code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["kind"] == "ProviderConfig"
    path = tmp_path / "default.json"
    path.write_text(result.stdout)
    checked = run(["validate", "--config", str(path), "-o", "json"])
    assert checked.code == 0, checked.stdout
    assert checked.json()["config"] == str(path)


def test_requirements_dev_names_files_that_exist() -> None:
    text = (ROOT / "requirements-dev.txt").read_text()
    for name in re.findall(r"packaging/[\w./-]+\w", text):
        assert (ROOT / name).exists(), name


def test_the_readme_lists_only_platforms_the_installer_supports() -> None:
    from provider.install.pythons import advice

    readme = " ".join((ROOT / "README.md").read_text().split())
    for claim in ("Amazon Linux 2 and", "Ubuntu 20.04+", "Debian 10+"):
        assert claim not in readme, claim
    refused = {
        "Amazon Linux 2": {"ID": "amzn", "VERSION_ID": "2"},
        "Ubuntu 20.04": {"ID": "ubuntu", "VERSION_ID": "20.04"},
        "Debian 10": {"ID": "debian", "VERSION_ID": "10"},
    }
    for name, release in refused.items():
        assert "packages no CPython 3.9+" in advice(release), name  # what the installer says
    assert "Amazon Linux 2, Ubuntu 20.04 and Debian 10 package no CPython 3.9+" in readme


def test_the_readme_shows_where_each_platform_keeps_the_files() -> None:
    from provider.platforms import paths_table

    readme = (ROOT / "README.md").read_text()
    begin = "<!-- platform-paths: generated from provider/platforms.py -->\n"
    shown = readme.split(begin, 1)[1].split("<!-- /platform-paths -->", 1)[0]
    assert shown == paths_table(), "README's platform table is stale: paste provider.platforms.paths_table()"
