"""The time all calls of one lookup to one cloud may take together, on the monotonic clock.

A cloud backend's own bound, inside the call's deadline: a broken credential chain or a slow
token API must fail well inside the kubelet's 60 s, and leave it time to read why. Each cloud's
module names its calls and their usual causes (``provider.aws.api.Budget``,
``provider.google.api.Budget``).
"""

from __future__ import annotations

import time
from typing import ClassVar

from provider.errors import CloudCredentialError

__all__ = ["CallBudget"]


class CallBudget:
    """``seconds`` from now for a lookup's calls; ``CALLS`` and ``CAUSES`` word the error."""

    CALLS: ClassVar[str] = "calls"
    CAUSES: ClassVar[str] = "a slow or unreachable endpoint or proxy"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._ends = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self._ends - time.monotonic())

    def check(self, what: str) -> None:
        """Raise ``CloudCredentialError`` when nothing is left before ``what``."""
        if self.remaining() <= 0:
            raise CloudCredentialError(
                f"gave up before {what}: the {self.CALLS} of this lookup took more than {self.seconds:.0f}s "
                f"({self.CAUSES}; the kubelet retries on the next pull)"
            )
