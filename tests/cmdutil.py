"""Running the operator commands in-process, the way ``provider.__main__.main`` is called."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provider.__main__ import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "data" / "cmd"
V1 = "credentialprovider.kubelet.k8s.io/v1"
SECRET = "s3cr3t-Pa55word-that-must-never-leak"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def run(args: list[str], stdin: bytes = b"") -> Result:
    stdout = io.BytesIO()
    stderr = io.StringIO()
    code = main(args, stdin=io.BytesIO(stdin), stdout=stdout, stderr=stderr)
    return Result(code, stdout.getvalue().decode(), stderr.getvalue())


def provider_config(tmp_path: Path, rules: str, name: str = "provider.yaml", extra: str = "") -> Path:
    """Our config file with ``rules`` (YAML lines, already indented by two spaces)."""
    path = tmp_path / name
    path.write_text(
        "apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\n"
        + extra
        + "rules:\n"
        + rules
    )
    return path


def auth_file(tmp_path: Path, entries: dict[str, tuple[str, str]], name: str = "auth.json") -> Path:
    import base64

    path = tmp_path / name
    auths = {key: {"auth": base64.b64encode(f"{u}:{p}".encode()).decode()} for key, (u, p) in entries.items()}
    path.write_text(json.dumps({"auths": auths}))
    return path


def normalize(text: str, tmp_path: Path | None = None) -> str:
    """Output with run-specific parts replaced: temp paths, timings, ports."""
    if tmp_path is not None:
        text = text.replace(str(tmp_path), "<tmp>")
    text = re.sub(r"\b\d+(\.\d+)? ms\b", "<n> ms", text)
    text = re.sub(r'"elapsedMs": [0-9.]+', '"elapsedMs": <n>', text)
    return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", text)


def check_golden(name: str, text: str) -> None:
    """Compare with ``tests/data/cmd/<name>``; set UPDATE_GOLDEN=1 to rewrite the file."""
    import os

    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 once and review it"
    assert text == path.read_text(), f"output differs from {path} (UPDATE_GOLDEN=1 rewrites it)"
