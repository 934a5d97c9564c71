"""Waiting between tries of something that keeps failing: the one rule of the engine's retries
and the Icecast source's reconnections.

Pure (it only counts; the caller owns the clock), so the rule is tested without waiting.
"""

from __future__ import annotations


class Backoff:
    """Waits between tries: ``first`` doubled per failure in a row, up to ``longest``; back to
    ``first`` after a try that worked."""

    def __init__(self, first: float, longest: float) -> None:
        self.first = first
        self.longest = longest
        #: Failures in a row (the engine reports "error" past a few).
        self.failures = 0

    def failed(self) -> float:
        """The wait before the next try."""
        self.failures += 1
        return min(self.longest, self.first * 2 ** (self.failures - 1))

    def succeeded(self) -> None:
        self.failures = 0
