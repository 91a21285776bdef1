"""The contract every backend keeps, as a test class each backend's tests subclass.

A subclass names the backend and builds lookups for it:

- ``answering_lookups``: lookups the backend answers (with a credential or none);
- ``hostile_lookups``: anything a kubelet, an operator or a broken node could hand it (odd
  hosts, garbage tokens and annotations, broken sources); it must answer or raise one of the
  project's own errors, nothing else;
- ``stuck_lookup(deadline)``: a lookup whose source never answers (a hung helper, a silent
  endpoint), or None when nothing the backend does can block;
- ``secrets``: every secret its sources hold; none may reach a repr, a str or an error.

The contract: the backend is in the table with a rule of its own name; ``cache_key`` opens no
connection, starts no process and imports no SDK (it may read a local file, and fail as
``get_credentials`` would on a broken one); only ``ProviderError`` subclasses escape
``get_credentials``; no secret in any repr, str or exception text; a backend handed 0.5 s
answers or fails inside its deadline; an answer's expiry, cache time and scope agree.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from typing import ClassVar

import pytest

from provider.backends import BACKENDS, BY_NAME, load_backend
from provider.backends.base import Answer, Backend, Lookup
from provider.errors import ProviderError

# Modules a cache_key must never load: the cloud SDKs and the HTTP stacks under them.
SDK_MODULES = ("botocore", "boto3", "google", "azure", "msal", "hvac", "requests", "urllib3")
# How long a stuck lookup may outlive its 0.5 s deadline before the test calls it hung: a
# watchdog far above any honest overrun, far below the stuck source's own end.
WATCHDOG_SECONDS = 10.0
STUCK_DEADLINE_SECONDS = 0.5


class _Forbidden(AssertionError):
    """Raised by the patched network and process calls inside ``cache_key``."""


class BackendContract:
    """Subclass as ``TestXContract`` and fill in the hooks below."""

    name: ClassVar[str]

    def answering_lookups(self) -> list[Lookup]:
        raise NotImplementedError

    def hostile_lookups(self) -> list[Lookup]:
        raise NotImplementedError

    def stuck_lookup(self, deadline_seconds: float) -> Lookup | None:
        raise NotImplementedError

    def secrets(self) -> list[str]:
        raise NotImplementedError

    def make_backend(self) -> Backend:
        return load_backend(self.name)

    # --- the contract ----------------------------------------------------------------------------

    def test_is_in_the_table_with_its_own_rule(self) -> None:
        spec = BY_NAME[self.name]
        assert spec in BACKENDS
        assert spec.rule.__struct_config__.tag == self.name
        assert spec.backend is not None, "a built backend names its class"
        assert isinstance(self.make_backend(), spec.backend)  # type: ignore[arg-type]
        module = sys.modules[spec.rule.__module__]
        assert module.SPEC is spec, "the backend's module exports its SPEC"

    def test_cache_key_opens_no_connection_starts_no_process_loads_no_sdk(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        lookups = self.answering_lookups() + self.hostile_lookups()

        def forbidden(*args: object, **kwargs: object) -> None:
            raise _Forbidden("cache_key tried network or process I/O")

        for name in [m for m in sys.modules if m.split(".")[0] in SDK_MODULES]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setattr(socket.socket, "connect", forbidden)
        monkeypatch.setattr(socket, "create_connection", forbidden)
        monkeypatch.setattr(subprocess.Popen, "__init__", forbidden)
        for lookup in lookups:
            try:
                key = self.make_backend().cache_key(lookup)
            except ProviderError:
                continue  # a broken source fails here as it would in get_credentials
            assert key is None or all(isinstance(part, str) for part in key)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in SDK_MODULES)
        assert loaded == [], f"cache_key imported {loaded}"

    def test_only_our_errors_escape(self) -> None:
        for lookup in self.answering_lookups() + self.hostile_lookups():
            try:
                answer = self.make_backend().get_credentials(lookup)
            except ProviderError:
                continue
            assert isinstance(answer, Answer)

    def test_no_secret_in_any_repr_str_or_error(self) -> None:
        secrets = [secret for secret in self.secrets() if secret]
        assert secrets, "the subclass names the secrets its sources hold"
        texts: list[str] = []
        for lookup in self.answering_lookups() + self.hostile_lookups():
            texts += [repr(lookup), str(lookup)]
            try:
                answer = self.make_backend().get_credentials(lookup)
            except ProviderError as exc:
                texts += [str(exc), repr(exc), *map(str, exc.args)]
                continue
            texts += [repr(answer), str(answer), repr(answer.credential), str(answer.credential)]
        leaked = [secret for secret in secrets if any(secret in text for text in texts)]
        assert not leaked, f"{len(leaked)} secret(s) reached a repr, a str or an error"

    def test_a_stuck_source_ends_within_the_deadline(self) -> None:
        lookup = self.stuck_lookup(STUCK_DEADLINE_SECONDS)
        if lookup is None:
            lookup = self.answering_lookups()[0]  # nothing can block: it simply answers in time
        outcome: list[BaseException | Answer] = []

        def call() -> None:
            try:
                outcome.append(self.make_backend().get_credentials(lookup))
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        thread.join(WATCHDOG_SECONDS)
        assert not thread.is_alive(), "the backend ran far past its 0.5 s deadline"
        [result] = outcome
        assert isinstance(result, (Answer, ProviderError)), repr(result)
        if self.stuck_lookup(STUCK_DEADLINE_SECONDS) is not None:
            assert isinstance(result, ProviderError), "a source that never answers cannot give an answer"

    def test_expiry_cache_time_and_scope_agree(self) -> None:
        answered = 0
        for lookup in self.answering_lookups():
            answer = self.make_backend().get_credentials(lookup)
            answered += 1
            now = lookup.now()
            credential = answer.credential
            assert answer.cache_seconds is None or answer.cache_seconds >= 0
            assert answer.keep_seconds is None or answer.keep_seconds > 0
            if credential is None:
                assert not answer.cacheable, "nothing to cache"
                continue
            if credential.expires_at is not None:
                assert credential.expires_at > now, "an answer is still valid when given"
                if answer.cache_seconds is not None:
                    assert answer.cache_seconds <= credential.expires_at - now
            if answer.cacheable:
                assert credential.expires_at is not None or answer.keep_seconds, "a cached answer ends"
            if credential.path_scope:
                scope = credential.path_scope.rstrip("/")
                assert lookup.path == scope or lookup.path.startswith(scope + "/"), "scope covers the image"
                assert answer.per_image, "a path-scoped answer is cached per image"
        assert answered, "the subclass gives at least one answering lookup"
