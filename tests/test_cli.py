"""The executable as the kubelet and operators meet it: exit codes, stderr, stdout.

Bad input gets one line on stderr, exit 1 and nothing on stdout; secrets never appear on
stderr. These run the built zipapp, exec'd with a kubelet-like environment.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import kubelet_environ, run_zipapp

V1 = "credentialprovider.kubelet.k8s.io/v1"
SECRET = "s3cr3t-Pa55word-that-must-never-leak"


def process_alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a killed zombie that nobody reaped yet does not count)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def request(image: str = "registry.example.com/app", api_version: str = V1, **extra: object) -> bytes:
    return json.dumps(
        {"kind": "CredentialProviderRequest", "apiVersion": api_version, "image": image, **extra}
    ).encode()


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "provider.yaml"
    path.write_text("apiVersion: registry-credential-provider/v1alpha1\nkind: ProviderConfig\n" + body)
    return path


def assert_failed_cleanly(result: subprocess.CompletedProcess[bytes], message: str) -> str:
    """Exit 1, nothing on stdout, exactly one line on stderr containing ``message``, no secret."""
    stderr = result.stderr.decode()
    leaked = SECRET in stderr  # checked first, so no failure message below can print it
    assert not leaked, "a secret reached stderr"
    assert result.returncode == 1, stderr
    assert result.stdout == b""
    assert stderr.count("\n") == 1, stderr
    assert stderr.endswith("\n"), stderr
    assert stderr.startswith("registry-credential-provider: error: "), stderr
    assert message in stderr, stderr
    return stderr


BAD_REQUESTS = [
    (b"not json", "stdin is not a JSON CredentialProviderRequest"),
    (b"", "no CredentialProviderRequest on stdin"),
    (b"\n  \n", "no CredentialProviderRequest on stdin"),
    (b'{"kind":"CredentialProviderRequest","apiVersion":"' + V1.encode() + b'"}', "the request has no image"),
    (request(api_version="credentialprovider.kubelet.k8s.io/v2"), "unsupported apiVersion"),
    (json.dumps({"kind": "Other", "apiVersion": V1, "image": "r.io/x"}).encode(), "unexpected kind 'Other'"),
    (json.dumps({"apiVersion": V1, "image": "r.io/x"}).encode(), "unexpected kind ''"),
    (
        json.dumps({"kind": "CredentialProviderRequest", "apiVersion": V1, "image": 5}).encode(),
        "Expected `str`, got `int`",
    ),
    (request(image="r.io/a b"), "contains whitespace"),
    (request(image="r.io:port/x"), "is not a repository the kubelet could send"),
    (b"[1,2]", "invalid CredentialProviderRequest"),
    (request() + request(), "stdin is not a JSON CredentialProviderRequest"),
    (b"\xef\xbb\xbf" + request(), "stdin is not a JSON CredentialProviderRequest"),
    (request(image="r.io/\udcff").replace(b"\\udcff", b"\xff"), "a string is not UTF-8"),
    (request(serviceAccountToken=SECRET, serviceAccountAnnotations={"a": 1}), "Expected `str`, got `int`"),
]


@pytest.mark.parametrize(("stdin", "message"), BAD_REQUESTS, ids=[m for _, m in BAD_REQUESTS])
def test_bad_requests_fail_with_one_line(zipapp: Path, stdin: bytes, message: str) -> None:
    assert_failed_cleanly(run_zipapp(zipapp, [], stdin), message)


def test_oversized_request_is_refused(zipapp: Path) -> None:
    huge = request(padding="x" * (2 * 1024 * 1024))
    assert_failed_cleanly(run_zipapp(zipapp, [], huge), "larger than 1048576 bytes")


def test_broken_config_names_file_and_field(zipapp: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, "rules:\n  - backend: dockerconfig\n    helperTimeout: soon\n")
    stderr = assert_failed_cleanly(run_zipapp(zipapp, ["--config", str(config)], request()), "helperTimeout")
    assert str(config) in stderr


def test_missing_config_from_environment(zipapp: Path, tmp_path: Path) -> None:
    env = {"REGISTRY_CREDENTIAL_PROVIDER_CONFIG": str(tmp_path / "nope.yaml")}
    assert_failed_cleanly(run_zipapp(zipapp, [], request(), env=env), "does not exist")


def test_cli_config_wins_over_environment(zipapp: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, "rules:\n  - backend: anonymous\n    cacheDuration: 7m\n")
    env = {"REGISTRY_CREDENTIAL_PROVIDER_CONFIG": str(tmp_path / "nope.yaml")}
    result = run_zipapp(zipapp, ["get-credentials", "--config", str(config)], request(), env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cacheDuration"] == "7m0s"


def test_unreadable_docker_config_fails_without_leaking(zipapp: Path, tmp_path: Path) -> None:
    broken = tmp_path / "config.json"
    broken.write_text(f'{{"auths": {{"registry.example.com": {{"auth": "{SECRET}!!"}}}}}}')
    config = write_config(tmp_path, f"rules:\n  - backend: dockerconfig\n    files: [{broken}]\n")
    assert_failed_cleanly(run_zipapp(zipapp, ["--config", str(config)], request()), "is not base64")
    broken.write_text(f'{{"auths": {{"registry.example.com": {{"password": "{SECRET}"')
    assert_failed_cleanly(run_zipapp(zipapp, ["--config", str(config)], request()), "not valid JSON")


def _helper(tmp_path: Path, name: str, body: str) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    helper = bindir / f"docker-credential-{name}"
    helper.write_text("#!/bin/sh\n" + body)
    helper.chmod(0o755)
    return bindir


def test_failing_helper_is_reported_without_its_output(zipapp: Path, tmp_path: Path) -> None:
    bindir = _helper(tmp_path, "broken", f"echo '{SECRET}'\necho 'backend unreachable' >&2\nexit 3\n")
    files = tmp_path / "config.json"
    files.write_text('{"credHelpers": {"registry.example.com": "broken"}}')
    config = write_config(tmp_path, f"rules:\n  - backend: dockerconfig\n    files: [{files}]\n")
    env = {"PATH": f"{bindir}:/usr/bin:/bin"}
    stderr = assert_failed_cleanly(
        run_zipapp(zipapp, ["--config", str(config)], request(), env=env), "docker-credential-broken failed"
    )
    assert "exit 3" in stderr
    assert "backend unreachable" in stderr


def test_deadline_kills_a_hanging_helper_and_its_children(zipapp: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    bindir = _helper(tmp_path, "hang", f"sleep 300 &\necho $! > {pidfile}\nsleep 300\n")
    files = tmp_path / "config.json"
    files.write_text('{"credsStore": "hang"}')
    config = write_config(tmp_path, f"timeout: 2s\nrules:\n  - backend: dockerconfig\n    files: [{files}]\n")
    started = time.monotonic()
    result = run_zipapp(zipapp, ["--config", str(config)], request(), env={"PATH": f"{bindir}:/usr/bin:/bin"})
    elapsed = time.monotonic() - started
    assert_failed_cleanly(result, "did not answer for registry.example.com within")
    assert elapsed < 30  # far from the helper's 300 s; not a speed assertion
    assert not process_alive(int(pidfile.read_text()))


def test_deadline_covers_a_kubelet_that_never_closes_stdin(zipapp: Path) -> None:
    process = subprocess.Popen(
        [str(zipapp), "--timeout", "1s"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=kubelet_environ(),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    assert process.stdin is not None
    try:
        # stdin stays open: the plugin must give up on its own.
        stdout = process.stdout.read()
        stderr = process.stderr.read()
        process.wait(timeout=60)
    finally:
        process.kill()
        process.stdin.close()
    assert process.returncode == 1
    assert stdout == b""
    assert b"ran past its deadline" in stderr


def test_debug_environment_adds_a_traceback(zipapp: Path) -> None:
    result = run_zipapp(zipapp, [], b"not json", env={"REGISTRY_CREDENTIAL_PROVIDER_DEBUG": "1"})
    assert result.returncode == 1
    assert result.stdout == b""
    assert b"Traceback (most recent call last)" in result.stderr
    last_line = result.stderr.splitlines()[-1]
    assert last_line.startswith(
        b"registry-credential-provider: error: stdin is not a JSON CredentialProviderRequest"
    )


def test_service_account_token_never_reaches_stderr(zipapp: Path, tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        "rules:\n  - match: [other.io]\n    backend: ecr\n  - match: [registry.example.com]\n    backend: gar\n",
    )
    # Opted in to Workload Identity with no pool in the rule: gar fails with the token in hand.
    annotations = {"k": SECRET, "iam.gke.io/enable-wi-image-pull": "true"}
    stdin = request(serviceAccountToken=SECRET, serviceAccountAnnotations=annotations)
    for env in ({}, {"REGISTRY_CREDENTIAL_PROVIDER_DEBUG": "1"}):
        result = run_zipapp(zipapp, ["--config", str(config)], stdin, env=env)
        assert result.returncode == 1
        assert b"names no pool" in result.stderr
        leaked = SECRET.encode() in result.stderr
        assert not leaked, "the service account token reached stderr"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["get-credentials"],
        ["get-credentials", "-v", "3"],
        ["--v=2", "get-credentials"],
        ["get-credentials", "--timeout=20s"],
    ],
    ids=str,
)
def test_kubelet_style_arguments_are_accepted(zipapp: Path, tmp_path: Path, args: list[str]) -> None:
    config = write_config(tmp_path, "rules:\n  - backend: anonymous\n")
    result = run_zipapp(zipapp, [*args, "--config", str(config)], request())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["kind"] == "CredentialProviderResponse"


@pytest.mark.parametrize(
    "args", [["bogus"], ["--config"], ["--frobnicate"], ["get-credentials", "extra"], ["--timeout", "soon"]]
)
def test_usage_errors_exit_2_or_1(zipapp: Path, args: list[str]) -> None:
    result = run_zipapp(zipapp, args, request())
    assert result.stdout == b""
    assert result.returncode == (1 if args[0] == "--timeout" else 2), result.stderr
    assert result.stderr.count(b"\n") == 1


def test_help_lists_exit_codes_and_version_is_printed(zipapp: Path) -> None:
    result = run_zipapp(zipapp, ["--help"], b"")
    assert result.returncode == 0
    for line in (
        b"exit codes:",
        b"0  a response was printed",
        b"1  the call failed",
        b"2  the command line is wrong",
    ):
        assert line in result.stdout
    version = run_zipapp(zipapp, ["--version"], b"")
    assert version.returncode == 0
    assert version.stdout.startswith(b"registry-credential-provider 0.1.0 (Python 3.")


def test_runs_without_home_and_with_sigpipe_default(zipapp: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, "rules:\n  - backend: anonymous\n")
    env = kubelet_environ()
    assert "HOME" not in env
    result = subprocess.run(
        [str(zipapp), "--config", str(config)],
        input=request(),
        capture_output=True,
        env=env,
        cwd=tmp_path,
        check=False,
        preexec_fn=lambda: signal.signal(signal.SIGPIPE, signal.SIG_DFL),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(b"}\n")
    assert result.stdout.count(b"\n") == 1
