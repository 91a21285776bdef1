"""Unit tests for ``provider.credhelper``: running fake ``docker-credential-<name>`` programs."""

from __future__ import annotations

import json
import os
import shlex
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from provider.credhelper import MAX_OUTPUT_BYTES, HelperCredential, run_helper
from provider.errors import CredentialHelperError

T = TypeVar("T")

SECRET = "helper-s3cret-do-not-leak"
SERVER = "reg.example.com"
HUB = "https://index.docker.io/v1/"


def reply(username: str = "helper-user", secret: str = SECRET, server: str = SERVER) -> str:
    return json.dumps({"ServerURL": server, "Username": username, "Secret": secret})


class Helpers:
    """A bin directory of fake helpers plus the environment that puts it on PATH."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir()
        self.log = root / "log"
        self.log.mkdir()
        self.environ = {"PATH": f"{self.bin}:/usr/bin:/bin", "HELPER_LOG": str(self.log)}

    def write(self, name: str, body: str, *, mode: int = 0o755) -> Path:
        path = self.bin / f"docker-credential-{name}"
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(mode)
        return path

    def answering(self, name: str, output: str, *, exit_code: int = 0, stderr: str = "") -> Path:
        """Records argv and stdin, prints ``output`` (and ``stderr``), exits ``exit_code``."""
        return self.write(
            name,
            f'printf "%s\\n" "$*" > "$HELPER_LOG/argv"\n'
            f'cat > "$HELPER_LOG/stdin"\n'
            f"printf '%s' {shlex.quote(output)}\n"
            f"printf '%s' {shlex.quote(stderr)} >&2\n"
            f"exit {exit_code}\n",
        )

    def run(self, name: str, server: str = SERVER, timeout: float = 5.0) -> HelperCredential | None:
        return run_helper(name, server, timeout=timeout, environ=self.environ)


@pytest.fixture
def helpers(tmp_path: Path) -> Helpers:
    return Helpers(tmp_path)


def assert_safe(error: CredentialHelperError) -> str:
    text = str(error)
    assert SECRET not in text
    assert "\n" not in text
    return text


def is_running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (an orphan may stay a zombie: PID 1 may not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def wait_gone(pid: int, within: float = 2.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not is_running(pid):
            return True
        time.sleep(0.01)
    return not is_running(pid)


def finishes(call: Callable[[], T], *, within: float) -> T:
    """``call()``'s result, from a thread given ``within`` seconds: a watchdog far below the
    helper timeout the call was given, so a call that waits for that timeout fails here."""
    outcome: list[T | BaseException] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the test's thread below
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within)
    assert not thread.is_alive(), "the call waited for its helper timeout"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def read_pid(path: Path, within: float = 2.0) -> int:
    end = time.monotonic() + within
    while time.monotonic() < end:
        text = path.read_text().strip() if path.exists() else ""
        if text:
            return int(text)
        time.sleep(0.01)
    raise AssertionError(f"{path} was never written")


# --- answers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("server", [SERVER, HUB, "reg.example.com:5000"], ids=["host", "hub", "port"])
def test_found(helpers: Helpers, server: str) -> None:
    helpers.answering("fake", reply(server=server))
    found = helpers.run("fake", server)
    assert found == HelperCredential(username="helper-user", secret=SECRET)
    assert (helpers.log / "argv").read_text() == "get\n"
    assert (helpers.log / "stdin").read_text() == server + "\n"


def test_repr_hides_secret(helpers: Helpers) -> None:
    helpers.answering("fake", reply())
    found = helpers.run("fake")
    assert found is not None
    assert SECRET not in repr(found)
    assert "helper-user" in repr(found)


def test_reply_extra_fields_and_any_server_url_are_accepted(helpers: Helpers) -> None:
    helpers.answering("fake", json.dumps({"ServerURL": "elsewhere", "Username": "u", "Secret": "s", "X": 1}))
    assert helpers.run("fake") == HelperCredential(username="u", secret="s")


def test_token_username_is_passed_through(helpers: Helpers) -> None:
    # the backend decides what to do with an identity token; the runner reports it faithfully
    helpers.answering("fake", reply(username="<token>"))
    assert helpers.run("fake") == HelperCredential(username="<token>", secret=SECRET)


@pytest.mark.parametrize(
    "output",
    [json.dumps({"ServerURL": SERVER, "Username": "u", "Secret": ""}), json.dumps({"Username": "u"}), "{}"],
    ids=["empty-secret", "no-secret", "empty-object"],
)
def test_reply_without_secret_is_none(helpers: Helpers, output: str) -> None:
    helpers.answering("fake", output)
    assert helpers.run("fake") is None


def test_helper_gets_exactly_the_given_environment(helpers: Helpers) -> None:
    helpers.write(
        "fake", 'cat >/dev/null\nenv > "$HELPER_LOG/env"\nprintf "%s" \'{"Username":"u","Secret":"s"}\'\n'
    )
    os.environ["CREDHELPER_TEST_LEAK"] = "1"
    try:
        helpers.environ["ONLY_IN_ENVIRON"] = "yes"
        assert helpers.run("fake") is not None
    finally:
        del os.environ["CREDHELPER_TEST_LEAK"]
    env = (helpers.log / "env").read_text().splitlines()
    assert "ONLY_IN_ENVIRON=yes" in env
    assert not any(line.startswith("CREDHELPER_TEST_LEAK=") for line in env)


def test_helper_that_ignores_stdin(helpers: Helpers) -> None:
    helpers.write("fake", f"printf '%s' {shlex.quote(reply())}\n")
    assert helpers.run("fake", "x" * 200_000) == HelperCredential(username="helper-user", secret=SECRET)


# --- "credentials not found" -------------------------------------------------------------------------

NOT_FOUND_CASES = [
    ("stdout-native-keychain", "credentials not found in native keychain\n", "", 1),
    ("stderr", "", "credentials not found in native keychain\n", 1),
    ("upper-case", "Credentials Not Found\n", "", 1),
    ("other-exit-code", "error: credentials not found for reg.example.com\n", "", 3),
]


@pytest.mark.parametrize(
    ("stdout", "stderr", "code"), [c[1:] for c in NOT_FOUND_CASES], ids=[c[0] for c in NOT_FOUND_CASES]
)
def test_not_found_is_none(helpers: Helpers, stdout: str, stderr: str, code: int) -> None:
    helpers.answering("fake", stdout, stderr=stderr, exit_code=code)
    assert helpers.run("fake") is None


# --- failures ------------------------------------------------------------------------------------------


def test_missing_helper(helpers: Helpers) -> None:
    with pytest.raises(CredentialHelperError) as caught:
        helpers.run("nope")
    text = assert_safe(caught.value)
    assert "docker-credential-nope" in text
    assert "not on PATH" in text
    assert helpers.environ["PATH"] in text


def test_missing_helper_without_path_uses_default_path(tmp_path: Path) -> None:
    with pytest.raises(CredentialHelperError) as caught:
        run_helper("surely-not-installed-xyz", SERVER, timeout=1, environ={})
    assert "docker-credential-surely-not-installed-xyz" in str(caught.value)
    assert os.defpath in str(caught.value)


def test_not_executable_is_missing(helpers: Helpers) -> None:
    helpers.answering("fake", reply()).chmod(0o644)
    with pytest.raises(CredentialHelperError, match="docker-credential-fake is not on PATH"):
        helpers.run("fake")


def test_found_on_later_path_entry(helpers: Helpers, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    helpers.environ["PATH"] = f"{empty}:{helpers.environ['PATH']}"
    helpers.answering("fake", reply())
    assert helpers.run("fake") is not None


def test_unrunnable_helper(helpers: Helpers) -> None:
    path = helpers.bin / "docker-credential-broken"
    path.write_text("#!/nonexistent/interpreter\n")
    path.chmod(0o755)
    with pytest.raises(CredentialHelperError) as caught:
        helpers.run("broken")
    text = assert_safe(caught.value)
    assert f"cannot run {path}" in text


def test_failure_reports_exit_code_and_stderr_not_stdout(helpers: Helpers) -> None:
    # stdout may hold a half-written reply with the secret: it must never reach the error
    helpers.answering("fake", reply(), stderr="keychain locked\nsecond line\n", exit_code=3)
    with pytest.raises(CredentialHelperError) as caught:
        helpers.run("fake")
    text = assert_safe(caught.value)
    assert text == f"docker-credential-fake failed for {SERVER} (exit 3): keychain locked"


def test_failure_without_message(helpers: Helpers) -> None:
    helpers.answering("fake", "", exit_code=1)
    with pytest.raises(CredentialHelperError) as caught:
        helpers.run("fake")
    assert str(caught.value) == f"docker-credential-fake failed for {SERVER} (exit 1): no message"


def test_failure_message_is_cut_short(helpers: Helpers) -> None:
    helpers.answering("fake", "", stderr="x" * 5000, exit_code=2)
    with pytest.raises(CredentialHelperError) as caught:
        helpers.run("fake")
    assert len(str(caught.value)) < 400


def test_killed_by_signal(helpers: Helpers) -> None:
    helpers.write("fake", "cat >/dev/null\nkill -9 $$\n")
    with pytest.raises(CredentialHelperError, match=r"\(exit -9\)"):
        helpers.run("fake")


GARBAGE_CASES = [
    ("not-json", f"Username: u\nSecret: {SECRET}\n"),
    ("truncated-json", reply()[:-5]),
    ("json-list", json.dumps([SECRET])),
    ("secret-not-string", json.dumps({"Username": SECRET, "Secret": 1})),
    ("empty", ""),
    ("two-documents", reply() + reply()),
]


@pytest.mark.parametrize("output", [c[1] for c in GARBAGE_CASES], ids=[c[0] for c in GARBAGE_CASES])
def test_garbage_output(helpers: Helpers, output: str) -> None:
    helpers.answering("fake", output)
    with pytest.raises(CredentialHelperError) as caught:
        helpers.run("fake")
    text = assert_safe(caught.value)
    assert text == f"docker-credential-fake answered for {SERVER} with something other than its JSON reply"


def test_oversized_output(helpers: Helpers) -> None:
    helpers.write("fake", f"cat >/dev/null\nhead -c {MAX_OUTPUT_BYTES + 1} /dev/zero | tr '\\0' x\n")
    with pytest.raises(CredentialHelperError, match=f"more than {MAX_OUTPUT_BYTES} bytes"):
        helpers.run("fake")


# --- timeouts and process cleanup -------------------------------------------------------------------------


def test_slow_helper_is_killed(helpers: Helpers) -> None:
    helpers.write("slow", 'echo $$ > "$HELPER_LOG/pid"\nexec sleep 5\n')
    with pytest.raises(CredentialHelperError) as caught:
        helpers.run("slow", timeout=0.3)
    assert str(caught.value) == f"docker-credential-slow did not answer for {SERVER} within 0.3s"
    assert wait_gone(read_pid(helpers.log / "pid"))


def test_an_answer_counts_while_a_grandchild_still_holds_stdout(helpers: Helpers) -> None:
    # the helper answers and exits, but leaves a background child with our stdout pipe open
    helpers.write(
        "forking",
        'cat >/dev/null\nsleep 30 &\necho $! > "$HELPER_LOG/grandchild"\n'
        f"printf '%s' {shlex.quote(reply())}\nexit 0\n",
    )
    assert helpers.run("forking", timeout=20) == HelperCredential(username="helper-user", secret=SECRET)
    grandchild = read_pid(helpers.log / "grandchild")
    assert wait_gone(grandchild), f"grandchild {grandchild} outlived the call"


@pytest.mark.parametrize("answers", [True, False], ids=["answered", "silent"])
def test_a_descendant_in_its_own_session_is_ended(helpers: Helpers, answers: bool) -> None:
    """``setsid`` takes a child out of the helper's process group: killing the group misses it."""
    answer = f"printf '%s' {shlex.quote(reply())}\nexit 0\n" if answers else "exec sleep 30\n"
    helpers.write(
        "daemon",
        "cat >/dev/null\nsetsid sh -c 'echo $$ > \"$HELPER_LOG/session\"; exec sleep 30' &\n"
        'while [ ! -s "$HELPER_LOG/session" ]; do sleep 0.01; done\n' + answer,
    )
    if answers:
        assert helpers.run("daemon", timeout=20) == HelperCredential(username="helper-user", secret=SECRET)
    else:
        with pytest.raises(CredentialHelperError, match="did not answer"):
            helpers.run("daemon", timeout=0.5)
    leader = read_pid(helpers.log / "session")
    assert wait_gone(leader), f"session leader {leader} outlived the call"


def test_background_child_is_killed_after_a_normal_answer(helpers: Helpers) -> None:
    helpers.write(
        "daemonizing",
        'cat >/dev/null\nsleep 5 </dev/null >/dev/null 2>&1 &\necho $! > "$HELPER_LOG/grandchild"\n'
        f"printf '%s' {shlex.quote(reply())}\n",
    )
    answer = finishes(lambda: helpers.run("daemonizing", timeout=600), within=60)
    assert answer == HelperCredential(username="helper-user", secret=SECRET)
    grandchild = read_pid(helpers.log / "grandchild")
    assert wait_gone(grandchild), f"background child {grandchild} outlived the call"


def test_fast_helper_does_not_wait_for_the_timeout(helpers: Helpers) -> None:
    helpers.answering("fake", reply())
    assert finishes(lambda: helpers.run("fake", timeout=600), within=60) is not None
