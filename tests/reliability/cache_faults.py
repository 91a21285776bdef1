"""Cache faults at the exec level: ECR (moto behind ``AwsFront``) through the zipapp with the
disk cache damaged, read-only, full, killed mid-write, or planted by someone else.

Each case is judged by: no crash (an answer, or one clean error line), the right credential
(never one past its expiry: time is moved past the ECR token's 12 hours with libfaketime), and
nothing secret readable by others (every file and directory under the cache directory that the
plugin made has no group or other bits)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.infra.moto import AwsFront, MotoServer, moto_password
from tests.infra.tmpfs import fill, mounted_tmpfs, remount_read_only
from tests.reliability.common import SENTINELS, V1, ZIPAPP, Exec, Tally, failure_problem, run_plugin
from tests.reliability.faults import ACCOUNT, IMAGE, ecr_config, ecr_env

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
REQUEST = json.dumps({"kind": "CredentialProviderRequest", "apiVersion": V1, "image": IMAGE}).encode()


class Case:
    """One case's world: a config, an environment whose cache directory is ``cache``, the
    front (which counts and can fail ECR's token calls) and the tally."""

    def __init__(
        self, tally: Tally, name: str, root: Path, front: AwsFront, cache: Path | None = None
    ) -> None:
        self.tally, self.name, self.front = tally, name, front
        root.mkdir(parents=True, exist_ok=True)
        self.config = ecr_config(root)
        self.env = ecr_env(root, front.url)
        self.cache = cache or root / "cache"
        self.env["REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR"] = str(self.cache)
        self.planted: set[Path] = set()

    def calls(self) -> int:
        return len(self.front.calls_of("GetAuthorizationToken"))

    def exec(self, *, later: bool = False, args: tuple[str, ...] = ()) -> Exec:
        """One exec; ``later``: 13 hours on, past the ECR token's expiry."""
        env = dict(self.env)
        if later:
            env.update({"LD_PRELOAD": LIBFAKETIME, "FAKETIME": "+13h"})
        command = list(args) or ["--config", str(self.config)]
        result = run_plugin(command, REQUEST if not args else b"", env)
        self.tally.case(self.name, result.seconds)
        self.tally.scan(self.name, result.stderr)
        if moto_password(ACCOUNT).encode() in result.stderr:
            self.tally.secrets_found += 1
            self.tally.fail("secret-leaked", f"{self.name}: the ECR token on stderr")
        return result

    def expect_answer(self, result: Exec, what: str) -> None:
        if result.code != 0:
            self.tally.fail("no-answer", f"{self.name} {what}: {result.stderr.decode(errors='replace')}")
            return
        auth = json.loads(result.stdout)["auth"]
        passwords = [entry["password"] for entry in auth.values()]
        if passwords != [moto_password(ACCOUNT)]:
            self.tally.fail("wrong-credential", f"{self.name} {what}")

    def expect_clean_error(self, result: Exec, what: str) -> None:
        """Upstream fails and the cached credential is expired: a clean error, never the credential."""
        if result.code == 0:
            self.tally.fail("expired-credential-served", f"{self.name} {what}")
            return
        # The cache's own warning may come first; the error is then one clean last line.
        lines = result.stderr.splitlines(keepends=True)
        errors = b"".join(
            line for line in lines if not line.startswith(b"registry-credential-provider: warning: ")
        )
        problem = failure_problem(Exec(result.code, result.stdout, errors, result.seconds))
        if problem:
            self.tally.fail(problem, f"{self.name} {what}: {result.stderr.decode(errors='replace')}")

    def expect_calls(self, expected: int, what: str) -> None:
        if self.calls() != expected:
            self.tally.fail(
                "upstream-calls", f"{self.name} {what}: {self.calls()} calls, {expected} expected"
            )

    def expired_and_failing(self) -> None:
        """13 hours on, the cached token expired and ECR refusing: an error, not the old token."""
        self.front.fail("GetAuthorizationToken", "ServiceUnavailableException", "down", status=503)
        try:
            self.expect_clean_error(self.exec(later=True), "expired, upstream down")
        finally:
            self.front.heal()

    def check_modes(self) -> None:
        """Nothing the plugin made under the cache directory is open to group or others."""
        if not self.cache.exists():
            return
        for directory, dirs, names in os.walk(self.cache):
            for name in [*dirs, *names]:
                path = Path(directory, name)
                if path in self.planted or path.name == "filler":
                    continue
                mode = path.lstat().st_mode
                if stat.S_IMODE(mode) & 0o077 and not stat.S_ISLNK(mode):
                    self.tally.fail("open-to-others", f"{self.name}: {path.name} {stat.filemode(mode)}")


def corrupt_database(case: Case) -> None:
    case.expect_answer(case.exec(), "prime")
    (case.cache / "cache.db").write_bytes(b"this is not an SQLite database" * 100)
    case.expect_answer(case.exec(), "corrupt")
    case.expect_answer(case.exec(), "healed")
    case.expect_calls(2, "after healing")
    case.expired_and_failing()


def wrong_schema(case: Case) -> None:
    from tests.test_untrusted_files import _wrong_schema

    case.cache.mkdir(mode=0o700)
    _wrong_schema(case.cache / "cache.db")
    case.expect_answer(case.exec(), "wrong schema")
    case.expect_answer(case.exec(), "rebuilt")
    case.expect_calls(1, "after rebuilding")


def read_only(case: Case) -> None:
    with mounted_tmpfs(case.cache.parent / "ro") as mountpoint:
        case.cache = mountpoint / "cache"
        case.env["REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR"] = str(case.cache)
        case.expect_answer(case.exec(), "prime")
        remount_read_only(mountpoint)
        case.expect_answer(case.exec(), "read-only")
        case.expect_answer(case.exec(later=True), "read-only, expired")
        case.expired_and_failing()
        case.check_modes()


def full_disk(case: Case) -> None:
    with mounted_tmpfs(case.cache.parent / "full", size="64k") as mountpoint:
        case.cache = mountpoint / "cache"
        case.env["REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR"] = str(case.cache)
        case.expect_answer(case.exec(), "prime")
        fill(mountpoint)
        case.expect_answer(case.exec(later=True), "full, expired")
        case.expired_and_failing()
        case.expect_answer(case.exec(), "full")
        case.check_modes()


def sigkill_mid_write(case: Case, kills: int = 8) -> None:
    rng = random.Random(14)
    for _ in range(kills):
        with subprocess.Popen(
            [str(ZIPAPP), "--config", str(case.config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=case.env,
        ) as process:
            assert process.stdin is not None
            process.stdin.write(REQUEST)
            process.stdin.close()
            time.sleep(rng.uniform(0.0, 0.8))  # when to kill, not an assertion
            process.send_signal(signal.SIGKILL)
            process.wait()
        case.tally.case(case.name, 0.0)
    case.expect_answer(case.exec(), "after kills")
    database = case.cache / "cache.db"
    if database.exists():
        with sqlite3.connect(database) as connection:
            if connection.execute("PRAGMA integrity_check").fetchone() != ("ok",):
                case.tally.fail("database-damaged", case.name)
    listed = case.exec(args=("cache", "list"))
    if listed.code != 0:
        case.tally.fail("cache-list-failed", f"{case.name}: {listed.stderr.decode(errors='replace')}")
    case.tally.scan(f"{case.name} cache list", listed.stdout)
    case.expired_and_failing()


def world_writable_directory(case: Case) -> None:
    case.expect_answer(case.exec(), "prime")
    case.cache.chmod(0o777)
    case.planted.add(case.cache)
    result = case.exec()
    case.expect_answer(result, "world-writable")
    if b"open to other users" not in result.stderr:
        case.tally.fail("unsafe-directory-not-warned", case.name)
    case.expect_calls(2, "the directory is not trusted")


def symlinked_directory(case: Case) -> None:
    real = case.cache.parent / "real-cache"
    case.cache = real
    case.env["REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR"] = str(real)
    case.expect_answer(case.exec(), "prime")
    link = real.parent / "link-cache"
    link.symlink_to(real)
    case.env["REGISTRY_CREDENTIAL_PROVIDER_CACHE_DIR"] = str(link)
    case.expect_answer(case.exec(), "symlinked")
    case.expect_calls(2, "the symlink is not followed")


def planted_database_symlink(case: Case) -> None:
    victim = case.cache.parent / "victim"
    victim.write_bytes(b"")
    victim.chmod(0o644)
    case.cache.mkdir(mode=0o700)
    (case.cache / "cache.db").symlink_to(victim)
    case.expect_answer(case.exec(), "planted link")
    case.expect_answer(case.exec(), "again")
    if victim.read_bytes():
        case.tally.fail("wrote-through-a-planted-link", case.name)
    case.expect_calls(1, "rebuilt beside the link")


def world_readable_database(case: Case) -> None:
    case.expect_answer(case.exec(), "prime")
    (case.cache / "cache.db").chmod(0o644)
    case.expect_answer(case.exec(), "world-readable")
    case.expired_and_failing()


CASES: dict[str, Callable[[Case], None]] = {
    "corrupt database": corrupt_database,
    "wrong schema": wrong_schema,
    "read-only": read_only,
    "full disk": full_disk,
    "sigkill mid-write": sigkill_mid_write,
    "world-writable dir": world_writable_directory,
    "symlinked dir": symlinked_directory,
    "planted db symlink": planted_database_symlink,
    "world-readable db": world_readable_database,
}


def run(root: Path, moto: MotoServer, cases: tuple[str, ...] = tuple(CASES)) -> Tally:
    """Each case with its own front and cache directory; file modes checked after each."""
    tally = Tally("cache faults")
    for name in cases:
        front = AwsFront(moto)
        try:
            case = Case(tally, name, root / name.replace(" ", "-"), front)
            try:
                CASES[name](case)
            except Exception as exc:
                tally.fail("case-crashed", f"{name}: {type(exc).__name__}: {exc}")
            case.check_modes()
            from tests.reliability.common import loose_secret_files

            for path in loose_secret_files(case.cache, [*SENTINELS, moto_password(ACCOUNT)]):
                tally.fail("secret-readable-by-others", f"{name}: {Path(path).name}")
        finally:
            front.stop()
    return tally
