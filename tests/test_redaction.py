"""Secrets never printed: sentinel secrets planted where the plugin reads them, then every
line it prints (kubelet mode through the zipapp, ``test``, errors relayed from a helper or
from AWS, ``verify``'s excerpts of registry answers) checked for them."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path

import pytest

from provider import redact
from provider.__main__ import main
from provider.aws import sdk
from provider.backends.ecr import EcrBackend
from provider.commands.verify import _excerpt
from provider.errors import CloudCredentialError
from provider.registryclient import Response
from tests.conftest import run_zipapp
from tests.infra.moto import AwsFront
from tests.test_ecr_aws import aws_env  # noqa: F401 - a fixture
from tests.test_ecr_backend import make_lookup

FILE_PASSWORD = "file-password-SENTINEL-1"
ENV_SECRET_KEY = "env-secret-key-SENTINEL-2"
ENV_SESSION_TOKEN = "env-session-token-SENTINEL-3"
WEB_IDENTITY_TOKEN = "web-identity-token-SENTINEL-4"
SA_TOKEN = "service-account-token-SENTINEL-5"
SENTINELS = (FILE_PASSWORD, ENV_SECRET_KEY, ENV_SESSION_TOKEN, WEB_IDENTITY_TOKEN, SA_TOKEN)


def leaked(text: str) -> list[str]:
    """Every sentinel that appears in ``text``, whole or its first 8 characters."""
    return [s for s in SENTINELS if s in text or s[:8] in text]


# --- the registry and redact() ---------------------------------------------------------------------


def test_longest_secret_first_and_short_strings_never_registered() -> None:
    redact.register("abcd", "abcdefgh", "abc", "", None)
    assert redact.redact("x abcdefgh y abcd z abc") == "x <redacted> y <redacted> z abc"


def test_json_escaped_and_whitespace_collapsed_forms_are_redacted() -> None:
    secret = 'pa"ss\twörd\\1'
    redact.register(secret)
    assert redact.redact(json.dumps({"p": secret})) == '{"p": "<redacted>"}'
    assert redact.redact(json.dumps({"p": secret}, ensure_ascii=False)) == '{"p": "<redacted>"}'
    assert redact.redact(" ".join(f"said {secret}".split())) == "said <redacted>"


def test_environment_credentials_and_token_files_need_no_registration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(WEB_IDENTITY_TOKEN + "\n")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET_KEY)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("HTTPS_PROXY", "http://user:proxy%2Fpassword@127.0.0.1:3128")
    text = redact.redact(f"{ENV_SECRET_KEY} {WEB_IDENTITY_TOKEN} proxy/password proxy%2Fpassword")
    assert text == "<redacted> <redacted> <redacted> <redacted>"


def test_an_excerpt_never_ends_on_the_start_of_a_secret() -> None:
    redact.register(FILE_PASSWORD)
    cut_by_reader = "denied " + FILE_PASSWORD[:6]  # the reader stopped inside the secret
    assert redact.excerpt(cut_by_reader, cut=True) == "denied..."
    assert redact.excerpt("line one\n\tline two " + FILE_PASSWORD) == "line one line two <redacted>"


# --- verify: redact, then collapse whitespace, then cut --------------------------------------------


def _response(body: bytes) -> Response:
    return Response(url="https://r.example/v2/", status=403, headers=[], body=body)


def test_verify_excerpt_after_190_bytes_never_shows_the_passwords_first_bytes() -> None:
    body = b"x" * 190 + FILE_PASSWORD.encode()
    assert FILE_PASSWORD[:4] not in _excerpt(_response(body), [FILE_PASSWORD])


def test_verify_excerpt_redacts_a_password_with_a_tab() -> None:
    password = "tab\tpassword-SENTINEL"
    detail = _excerpt(_response(b"denied for " + password.encode()), [password])
    assert detail == "denied for <redacted>"


# --- a credential helper's stderr ---------------------------------------------------------------------


def _leaky_helper_setup(tmp_path: Path) -> tuple[Path, dict[str, str], bytes]:
    """A config whose rule's auth file names a helper for reg.example that prints secrets this
    process knows on stderr and exits 1; the environment and request carry the others."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    token_file = tmp_path / "web-identity-token"
    token_file.write_text(WEB_IDENTITY_TOKEN)
    helper = bin_dir / "docker-credential-leaky"
    helper.write_text(
        "#!/bin/sh\ncat >/dev/null\n"
        f'echo "denied: {FILE_PASSWORD} $AWS_SECRET_ACCESS_KEY\\t$AWS_SESSION_TOKEN" >&2\n'
        f'echo "{WEB_IDENTITY_TOKEN} {SA_TOKEN}" >&2\n'
        "exit 1\n"
    )
    helper.chmod(0o755)
    auth = base64.b64encode(f"other:{FILE_PASSWORD}".encode()).decode()
    auth_file = tmp_path / "auth.json"
    auth_file.write_text(
        json.dumps({"auths": {"other.example": {"auth": auth}}, "credHelpers": {"reg.example": "leaky"}})
    )
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "registry-credential-provider/v1alpha1",
                "kind": "ProviderConfig",
                "cache": {"enabled": False},
                "rules": [
                    {"backend": "dockerconfig", "files": [str(auth_file)], "helperCacheDuration": "0s"}
                ],
            }
        )
    )
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "AWS_SECRET_ACCESS_KEY": ENV_SECRET_KEY,
        "AWS_SESSION_TOKEN": ENV_SESSION_TOKEN,
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
    }
    request = json.dumps(
        {
            "kind": "CredentialProviderRequest",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "image": "reg.example/app",
            "serviceAccountToken": SA_TOKEN,
            "serviceAccountAnnotations": {},
        }
    ).encode()
    return config, env, request


def test_kubelet_mode_relays_a_helpers_stderr_without_secrets(zipapp: Path, tmp_path: Path) -> None:
    config, env, request = _leaky_helper_setup(tmp_path)
    result = run_zipapp(zipapp, ["--config", str(config)], request, env=env)
    stderr = result.stderr.decode()
    assert result.returncode == 1
    assert result.stdout == b""
    assert "docker-credential-leaky failed for reg.example (exit 1): denied: <redacted>" in stderr
    assert len(stderr.splitlines()) == 1
    assert leaked(stderr) == []


@pytest.mark.parametrize("output", ["text", "json"])
def test_test_command_shows_a_helpers_failure_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    config, env, request = _leaky_helper_setup(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stdout, stderr = io.BytesIO(), io.StringIO()
    code = main(
        ["test", "-", "--config", str(config), "--output", output, "--show-secrets"],
        stdin=io.BytesIO(request),
        stdout=stdout,
        stderr=stderr,
    )
    printed = stdout.getvalue().decode() + stderr.getvalue()
    assert code == 1
    assert "docker-credential-leaky failed" in printed
    assert leaked(printed) == []


# --- AWS error bodies -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("aws_env")
def test_an_aws_error_echoing_the_session_and_web_identity_tokens_is_redacted(
    aws_front: AwsFront, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(WEB_IDENTITY_TOKEN)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLESENTINEL")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", ENV_SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", ENV_SESSION_TOKEN)
    monkeypatch.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    sdk.reset_session()
    aws_front.fail(
        "GetAuthorizationToken",
        "UnrecognizedClientException",
        f"The security token {ENV_SESSION_TOKEN} is invalid (web identity {WEB_IDENTITY_TOKEN})",
        status=400,
    )
    with pytest.raises(CloudCredentialError) as failed:
        EcrBackend().get_credentials(make_lookup(environ=dict(os.environ)))
    message = str(failed.value)
    assert "UnrecognizedClientException: The security token <redacted> is invalid" in message
    assert leaked(message) == []


def test_a_debug_traceback_names_no_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With REGISTRY_CREDENTIAL_PROVIDER_DEBUG=1 an internal error prints its traceback, whose
    exception text may quote what a library was given: it is redacted like every other line."""
    from provider import core
    from provider.errors import ProviderError

    config, env, request = _leaky_helper_setup(tmp_path)
    real_answer = core.answer

    def quoting_answer(*args: object, **kwargs: object) -> object:
        try:
            return real_answer(*args, **kwargs)  # type: ignore[arg-type]
        except ProviderError as exc:  # a library quoting the secret it was handed
            raise RuntimeError(f"could not use {FILE_PASSWORD} or {SA_TOKEN}") from exc

    monkeypatch.setattr(core, "answer", quoting_answer)
    for name, value in {**env, "REGISTRY_CREDENTIAL_PROVIDER_DEBUG": "1"}.items():
        monkeypatch.setenv(name, value)
    stdout, stderr = io.BytesIO(), io.StringIO()
    code = main(["--config", str(config)], stdin=io.BytesIO(request), stdout=stdout, stderr=stderr)
    assert code == 1
    assert stdout.getvalue() == b""
    assert "Traceback" in stderr.getvalue()
    assert "RuntimeError" in stderr.getvalue()
    assert leaked(stderr.getvalue()) == []
