"""The fleet image: what a node pulls per architecture (the compressed layer, config and
manifest), against the release files it carries (the zipapp and the self-contained archive) plus
3 MB for busybox and the entry point. The release is built here, from this tree (the self-contained
archives from build_standalone's cache)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.common import ROOT, Measurement, measurement

sys.path.insert(0, str(ROOT / "packaging"))
import build_image
import build_release
import build_standalone

MB = 1000 * 1000
OVERHEAD_GOAL = 3 * MB


def pulled_bytes(layout: Path, manifest_digest: str) -> int:
    """The bytes a node downloads for one architecture's image."""
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / manifest_digest[7:]).read_bytes())
    parts = [manifest["config"], *manifest["layers"]]
    return (blobs / manifest_digest[7:]).stat().st_size + sum(int(p["size"]) for p in parts)


def measure() -> list[Measurement]:
    rows: list[Measurement] = []
    with tempfile.TemporaryDirectory() as scratch:
        standalone = Path(scratch) / "standalone"
        for arch in build_release.ARCHES:
            build_standalone.build(arch, standalone)
        release = Path(scratch) / "release"
        build_release.build_release(release, log=False, standalone_dir=standalone)
        started = time.monotonic()
        built = build_image.build_image(release, Path(scratch) / "image")
        rows.append(
            measurement("make image (both architectures, busybox cached)", time.monotonic() - started, "s")
        )
        version = built.version
        for arch, digest in built.manifests.items():
            size = pulled_bytes(built.layout, digest)
            carried = sum(
                (release / name).stat().st_size
                for name in (
                    build_release.artifact_name(version, arch),
                    build_release.standalone_artifact_name(version, arch),
                )
            )
            rows.append(
                measurement(
                    f"image pulled by a node ({arch})",
                    size / MB,
                    "MB",
                    f"<= release files + {OVERHEAD_GOAL / MB:g}",
                    size <= carried + OVERHEAD_GOAL,
                )
            )
        rows.append(
            measurement(
                "image archive, every architecture", built.archives["index"].stat().st_size / MB, "MB"
            )
        )
    return rows
