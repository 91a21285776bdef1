"""A call bounded by wall-clock time, for clients whose timeouts are per read.

``http.client``, urllib3 and requests give up when no byte arrives for their timeout, but an
answer that trickles in a byte at a time never trips that: ``within`` bounds the whole call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["GRACE_SECONDS", "within"]

T = TypeVar("T")

# Past the bound, a moment for the client's own timeout to speak first (its error is sharper).
GRACE_SECONDS = 0.5


def within(seconds: float, call: Callable[[], T], timed_out: Callable[[], BaseException]) -> T:
    """``call()``'s result or exception; ``timed_out()`` is raised when it has not returned after
    ``seconds`` (and the grace). The call runs in a daemon thread, left behind on a timeout (its
    blocking read ends with its socket or the process, which exits soon after)."""
    import threading

    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:  # handed to the caller's thread as it is
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="within", daemon=True)
    thread.start()
    thread.join(seconds + GRACE_SECONDS)
    if not outcome:
        raise timed_out()
    done, value = outcome[0]
    if not done:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]
