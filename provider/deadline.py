"""One deadline for the whole call, shared by everything that may block.

The kubelet kills a plugin after a hard 60 s and then pulls without its credentials; we give
up earlier (30 s by default) with an error the operator can read in the kubelet log.
"""

from __future__ import annotations

import time

from provider.errors import DeadlineExceededError


class Deadline:
    """A point in monotonic time after which the call is abandoned."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._expires = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._expires - time.monotonic())

    def bound(self, seconds: float) -> float:
        """``seconds`` cut down to what is left of the deadline; raises when nothing is left."""
        left = self.remaining()
        if left <= 0:
            self.expired()
        return min(seconds, left)

    def expired(self) -> None:
        """Raise the error that says the deadline passed."""
        raise DeadlineExceededError(
            f"gave up after the call's {self.seconds:g}s deadline (set 'timeout' in the config to change it)"
        )
