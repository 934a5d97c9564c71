"""Thinning fast streams of values: the latest value per target, at most once per interval.

Pure (times come in as arguments), so the rate limit is tested with fake time. A keyed item is a
value of a continuous target (a fader's prompt weight, denoising): the first one goes at once,
later ones within the interval wait and only the latest of them goes when the interval is over.
An unkeyed item (a scene, a pause) is never dropped and goes at once, after whatever is pending,
so the order a performer played in is the order the engine sees.
"""

from __future__ import annotations

from typing import Generic, TypeVar

Item = TypeVar("Item")


class Coalescer(Generic[Item]):
    def __init__(self, interval_seconds: float) -> None:
        self.interval_seconds = interval_seconds
        self._sent_at: dict[str, float] = {}
        self._pending: dict[str, Item] = {}

    def offer(self, key: str | None, item: Item, now: float) -> list[Item]:
        """Take ``item``; return what is to be applied now, in order."""
        if key is None:
            ready = list(self._pending.values())
            for pending_key in self._pending:
                self._sent_at[pending_key] = now
            self._pending.clear()
            return [*ready, item]
        if key not in self._pending and now >= self._sent_at.get(key, -float("inf")) + self.interval_seconds:
            self._sent_at[key] = now
            return [item]
        self._pending[key] = item  # replaces an older value, keeps its place in the order
        return []

    def due(self, now: float) -> list[Item]:
        """The pending items whose interval is over at ``now``."""
        ready = []
        for key in [k for k in self._pending if now >= self._sent_at[k] + self.interval_seconds]:
            ready.append(self._pending.pop(key))
            self._sent_at[key] = now
        return ready

    def next_due_at(self) -> float | None:
        """When ``due`` next returns something; None while nothing is pending."""
        if not self._pending:
            return None
        return min(self._sent_at[key] for key in self._pending) + self.interval_seconds
