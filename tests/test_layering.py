"""Which way imports run: a command never calls another command, and the installer and the
operator's library never reach for the commands (they call library functions that return
structured results, never a command's printed output)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PROVIDER = ROOT / "provider"
# Below the commands: they compute, the commands print.
LIBRARY_PACKAGES = ("provider.install", "provider.ops")
# What every command may share: the package (Streams, the table of commands) and common.
SHARED_BY_COMMANDS = {"provider.commands", "provider.commands.common"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (lazy and type-checking imports too);
    ``from package import name`` counts as ``package``, and as ``package.name`` when that is
    a module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if is_module(f"{base}.{alias.name}"))
    return found


def modules_under(*packages: str) -> list[Path]:
    return sorted(
        path
        for path in PROVIDER.rglob("*.py")
        if module_name(path).startswith(tuple(p + "." for p in packages)) or module_name(path) in packages
    )


def is_command(name: str) -> bool:
    return name == "provider.commands" or name.startswith("provider.commands.")


LIBRARY = modules_under(*LIBRARY_PACKAGES)
COMMANDS = [path for path in modules_under("provider.commands") if path.name != "__init__.py"]


def test_the_walk_sees_the_modules_it_judges() -> None:
    names = {module_name(path) for path in LIBRARY + COMMANDS}
    expected = {
        "provider.install.apply",
        "provider.install.plan",
        "provider.ops.validation",
        "provider.ops.rendering",
        "provider.commands.validate",
        "provider.commands.uninstall",
    }
    assert expected <= names
    assert "provider.commands.common" in imported(PROVIDER / "commands" / "validate.py")
    assert "provider.ops.rendering" in imported(PROVIDER / "install" / "plan.py")


@pytest.mark.parametrize("path", LIBRARY, ids=module_name)
def test_the_installer_and_the_library_never_import_a_command(path: Path) -> None:
    assert sorted(filter(is_command, imported(path))) == []


@pytest.mark.parametrize("path", COMMANDS, ids=module_name)
def test_a_command_never_imports_another_command(path: Path) -> None:
    own = module_name(path)
    others = {name for name in imported(path) if is_command(name)} - SHARED_BY_COMMANDS - {own}
    assert sorted(others) == []


def test_importing_the_installer_and_the_library_loads_no_command() -> None:
    """The same rule at run time, through every indirect import."""
    modules = [module_name(path) for path in LIBRARY]
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('provider.commands')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"


BACKENDS = modules_under("provider.backends")
# Above the backends: the config builds on their rule structs, the disk cache and the full
# path call them, the operator's side reports on them. None of it may be reached from below.
ABOVE_BACKENDS = (
    "provider.config",
    "provider.defaults",
    "provider.fullpath",
    "provider.core",
    "provider.cache",
    "provider.cachekeys",
    "provider.credcache",
    "provider.fastpath",
    "provider.commands",
    "provider.ops",
    "provider.install",
    "provider.__main__",
)


@pytest.mark.parametrize("path", BACKENDS, ids=module_name)
def test_a_backend_never_imports_the_config_the_cache_or_the_operator_side(path: Path) -> None:
    above = sorted(
        name
        for name in imported(path)
        if any(name == top or name.startswith(top + ".") for top in ABOVE_BACKENDS)
    )
    assert above == []
