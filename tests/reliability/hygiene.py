"""Secret hygiene of the operator commands: ``test``, ``verify``, ``doctor``, ``cache list`` and
``validate`` through the zipapp, with the sentinel secrets planted (a docker config password,
AWS keys in the environment, a service account token file), each as text and JSON, with and
without ``REGISTRY_CREDENTIAL_PROVIDER_DEBUG=1`` (whose tracebacks must name no secret either).
Every cloud endpoint and the registry ``verify`` asks are the counting trap. Judged by: no
sentinel in stdout or stderr, no traceback without DEBUG, no hang, and nothing under the cache
directory that others may read holds a sentinel."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.reliability.common import (
    DOCKER_PASSWORD,
    SA_TOKEN,
    V1,
    Tally,
    Trap,
    base_env,
    cloud_env,
    loose_secret_files,
    run_plugin,
)

ECR_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/app"


def _setup(root: Path, trap: Trap) -> tuple[Path, str, Path]:
    """Our config (the sentinel password for the trap's host, ECR, anonymous), the trap's image,
    and a file holding the sentinel service account token."""
    host = f"127.0.0.1:{trap.port}"
    auth = root / "auth.json"
    token = base64.b64encode(f"hygiene-user:{DOCKER_PASSWORD}".encode()).decode()
    auth.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    auth.chmod(0o600)
    config = root / "provider.json"
    rules = [
        {"match": [host], "backend": "dockerconfig", "files": [str(auth)]},
        {"match": ["*.dkr.ecr.*.amazonaws.com"], "backend": "ecr"},
        {"backend": "anonymous"},
    ]
    config.write_text(
        json.dumps(
            {"apiVersion": "registry-credential-provider/v1alpha1", "kind": "ProviderConfig", "rules": rules}
        )
    )
    config.chmod(0o600)
    token_file = root / "sa-token"
    token_file.write_text(SA_TOKEN)
    token_file.chmod(0o600)
    return config, f"{host}/team/app:v1", token_file


def commands(config: Path, image: str, token_file: Path) -> list[list[str]]:
    """Every operator command worth scanning, each as text and JSON."""
    c = ["--config", str(config)]
    words = [
        ["test", *c, image],
        ["test", *c, "--service-account", "team-a/puller", "--token-file", str(token_file), image],
        ["test", *c, ECR_IMAGE],
        ["verify", *c, "--plain-http", image],
        ["verify", *c, "--plain-http", ECR_IMAGE],
        ["doctor", *c],
        ["doctor", *c, "--registry", image.split("/", maxsplit=1)[0], "--plain-http"],
        ["cache", *c, "list"],
        ["validate", *c],
    ]
    return [[*w, "-o", output] for w in words for output in ("text", "json")]


def run(root: Path) -> Tally:
    tally = Tally("operator secrets")
    root.mkdir(parents=True, exist_ok=True)
    with Trap() as trap:
        config, image, token_file = _setup(root, trap)
        env = base_env(cloud_env(trap, root))
        env.pop("HTTP_PROXY")  # verify and doctor ask the trap as the registry, not as a proxy
        env.pop("HTTPS_PROXY")
        request = json.dumps({"kind": "CredentialProviderRequest", "apiVersion": V1, "image": image}).encode()
        primed = run_plugin(["--config", str(config)], request, env)  # something for cache list
        if primed.code != 0:
            tally.fail("priming-failed", primed.stderr.decode(errors="replace"))
        for debug in (False, True):
            run_env = {**env, "REGISTRY_CREDENTIAL_PROVIDER_DEBUG": "1"} if debug else env
            for words in commands(config, image, token_file):
                label = f"{words[0]}{' debug' if debug else ''}"
                result = run_plugin(words, b"", run_env, timeout=60)
                tally.case(label, result.seconds)
                tally.scan(" ".join(words[:1] + words[3:]), result.stdout, result.stderr)
                if result.code == -9:
                    tally.fail("hang", " ".join(words))
                if not debug and b"Traceback" in result.stderr:
                    tally.fail("traceback", " ".join(words))
                if (
                    words[:2] == ["test", "--config"]
                    and words[3] == image
                    and b"hygiene-user" not in result.stdout
                ):
                    tally.fail("test-did-not-answer", result.stderr.decode(errors="replace"))
        for path in loose_secret_files(root / "cache"):
            tally.fail("secret-readable-by-others", Path(path).name)
        tally.notes["operator_commands"] = len(commands(config, image, token_file)) * 2
    return tally
