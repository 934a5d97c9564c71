"""One thread between the local inputs and the engine: commands in, thinned, applied in order.

MIDI callbacks arrive on rtmidi's thread and OSC packets on the OSC server's; neither should wait
on the engine, and a fader's hundred messages a second should reach it as twenty. Sources
``submit`` and return at once; the pump applies through ``StreamControl`` (thread-safe) and tells
the source how it went, so OSC can answer the sender. A refused or failing command is logged and
the stream plays on.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from streamer.inputs.coalesce import Coalescer
from streamer.plan.commands import Command
from streamer.plan.controls import ErrorCode
from streamer.runtime.ports import ControlRejected, StreamControl

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Routed:
    """A command and the target it sets: commands with the same ``key`` replace one another
    while they wait (``None``: never replaced, e.g. a scene or a pause)."""

    key: str | None
    command: Command


@dataclasses.dataclass(frozen=True)
class Applied:
    command: Command
    details: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Refused:
    command: Command
    code: str
    message: str


Outcome = Applied | Refused
Reply = Callable[[Outcome], None]


class CommandPump:
    def __init__(
        self,
        control: StreamControl,
        coalesce_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.control = control
        self._clock = clock
        self._coalescer: Coalescer[tuple[Routed, Reply | None]] = Coalescer(coalesce_seconds)
        self._ready: list[tuple[Routed, Reply | None]] = []
        self._changed = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="streamer-inputs", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify()
        self._thread.join()

    def submit(self, routed: Routed, reply: Reply | None = None) -> None:
        """Queue ``routed``; returns at once. ``reply`` is called on the pump's thread once the
        command is applied or refused (never for a value that a later one replaced)."""
        with self._changed:
            self._ready += self._coalescer.offer(routed.key, (routed, reply), self._clock())
            self._changed.notify()

    def _run(self) -> None:
        while True:
            with self._changed:
                while True:
                    self._ready += self._coalescer.due(self._clock())
                    if self._ready or self._stopping:
                        break
                    due_at = self._coalescer.next_due_at()
                    self._changed.wait(None if due_at is None else max(0.0, due_at - self._clock()))
                if self._stopping:
                    return
                batch, self._ready = self._ready, []
            for routed, reply in batch:
                outcome = self._apply(routed.command)
                if reply is not None:
                    try:
                        reply(outcome)
                    except Exception:
                        logger.exception("could not answer %r", routed.command)

    def _apply(self, command: Command) -> Outcome:
        try:
            return Applied(command, self.control.apply(command) or {})
        except ControlRejected as rejection:
            logger.warning("refused %r: %s", command, rejection.message)
            return Refused(command, rejection.code, rejection.message)
        except Exception:
            logger.exception("the engine failed to apply %r", command)
            return Refused(
                command,
                ErrorCode.INTERNAL_ERROR,
                "the stream could not apply this; it plays on (details in the log)",
            )
