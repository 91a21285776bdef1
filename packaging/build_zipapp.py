"""Build the ``registry-credential-provider`` zipapp with pex.

The result is one executable file: a ``/bin/sh`` boot script that finds a CPython 3.9-3.13,
unpacks the package and its pinned dependencies (``packaging/pex.lock``) once into a venv
under an absolute runtime root, and afterwards execs that venv directly (~60 ms instead of
pex's ~600 ms default start-up). Wheels are chosen for the complete platforms in
``packaging/platforms/`` rather than for whatever interpreters the build machine has, and pex
stamps fixed timestamps, so the same sources and lock give the same bytes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "packaging" / "pex.lock"
INTERPRETER_CONSTRAINT = "CPython>=3.9.2,<3.14"
ENTRY_POINT = "provider.__main__:entry_point"


def pex_command(
    output: Path, runtime_pex_root: str, *, lock: Path = LOCK, platforms: Sequence[Path] | None = None
) -> list[str]:
    """The pex invocation that builds ``output`` (the release build passes its own lock and
    platforms; by default, this machine's architecture's platforms in packaging/platforms/)."""
    if platforms is None:
        platforms = sorted((ROOT / "packaging" / "platforms").glob("*.json"))
    if not platforms:
        raise SystemExit("no complete platforms in packaging/platforms/")
    command = [
        str(Path(sys.executable).parent / "pex"),
        "--lock",
        str(lock),
        "--package",
        "provider",
        "--entry-point",
        ENTRY_POINT,
        "--venv",
        "--sh-boot",
        "--runtime-pex-root",
        runtime_pex_root,
        "--interpreter-constraint",
        INTERPRETER_CONSTRAINT,
        "--no-emit-warnings",
        "--no-compile",
        "--output-file",
        str(output),
    ]
    for platform in platforms:
        command += ["--complete-platform", str(platform)]
    return command


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--runtime-pex-root", required=True)
    args = parser.parse_args()
    if not args.runtime_pex_root.startswith("/"):
        parser.error("--runtime-pex-root must be absolute: the kubelet runs plugins without HOME")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    output = args.output.resolve()
    # The release build's glibc floor here too: with a platform's own tags pex would pick the
    # newest manylinux wheel (cryptography's needs glibc 2.34), which Debian 11 and RHEL 8 lack.
    from build_release import MANYLINUX_FLOOR, cap_manylinux

    with tempfile.TemporaryDirectory() as work:
        platforms = []
        for source in sorted((ROOT / "packaging" / "platforms").glob("*.json")):
            capped = Path(work) / source.name
            capped.write_text(json.dumps(cap_manylinux(json.loads(source.read_text()), MANYLINUX_FLOOR)))
            platforms.append(capped)
        subprocess.run(pex_command(output, args.runtime_pex_root, platforms=platforms), check=True, cwd=ROOT)
    print(f"built {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
