"""When a listener that cannot keep up is skipped forward, and when it is let go.

A listener's send queue is its connection's write buffer: what the server has written and the
kernel has not yet taken. Before each message the broadcaster asks ``ListenerPacing.decide``:

- queue within its limit: send;
- queue over the limit: skip this message and the following ones, until the queue has drained
  completely, then resume at the live edge (after resending the latest state), so the listener
  hears one clean jump instead of a trickle of holes;
- still not drained after ``drop_after_seconds``: drop the connection. (The library's keepalive
  ping cannot catch this case: its ping waits behind the very buffer that is stuck.)
"""

from __future__ import annotations

import enum


class Verdict(enum.Enum):
    SEND = "send"
    RESUME = "resume"  # send the latest now_playing / status / frame, then the message
    SKIP = "skip"
    DROP = "drop"


class ListenerPacing:
    def __init__(self, drop_after_seconds: float) -> None:
        self.drop_after_seconds = drop_after_seconds
        self.lagging_since: float | None = None
        self.skipped_messages = 0
        self.lag_episodes = 0

    @property
    def lagging(self) -> bool:
        return self.lagging_since is not None

    def decide(self, queued_bytes: int, limit_bytes: int, now: float) -> Verdict:
        if self.lagging_since is None:
            if queued_bytes <= limit_bytes:
                return Verdict.SEND
            self.lagging_since = now
            self.lag_episodes += 1
        elif queued_bytes == 0:
            self.lagging_since = None
            return Verdict.RESUME
        elif now - self.lagging_since >= self.drop_after_seconds:
            return Verdict.DROP
        self.skipped_messages += 1
        return Verdict.SKIP
