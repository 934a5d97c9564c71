"""Stopping a batch that is no longer wanted: a control change makes the batch in the UNet stale.

The engine's core decides that the batch in flight is stale; its shell hands the frame maker an
``IsStale`` callable, which the generator asks between UNet steps (and the maker between frames).
A maker that finds it true raises ``FrameCancelled``: neither a failure nor a reason to back off,
the producer just asks for the next work. Polling a callable, rather than interrupting a thread,
leaves the model in a known state: a step is never cut in half.
"""

from __future__ import annotations

from collections.abc import Callable

#: True once the batch being made is no longer wanted. Called often: must be cheap.
IsStale = Callable[[], bool]


def never_stale() -> bool:
    """For makers run without a shell that cancels (offline render, tools)."""
    return False


class FrameCancelled(Exception):
    """The batch was stopped because it became stale; nothing failed."""


def check(is_stale: IsStale) -> None:
    """Raise ``FrameCancelled`` if the batch became stale."""
    if is_stale():
        raise FrameCancelled(
            "the batch became stale (a control change) and was stopped"
        )
