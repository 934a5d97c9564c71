"""The whole interface between the audio engine and the stream server, in both directions.

Engine -> server (``StreamSink``, implemented by ``StreamServer``): called from the engine's
threads, never blocks, never waits for a listener:

- ``publish_audio(block)`` from the clock thread, once per ``AudioBlock``, in order. The server
  copies the samples at once, so the engine may reuse the block's array afterwards.
- ``publish_event(event)`` for ``now_playing`` and ``status`` dicts (fields in docs/PROTOCOL.md);
  the latest of each type is also what a joining listener receives first.
- ``publish_frame(frame_id, sample_position, png)`` for each new frame's spectrogram image.

Server -> engine (``StreamControl``, implemented by the engine): the server calls ``apply`` on its
event-loop thread with a command that is already validated (types, ranges, lengths). ``apply``
must be thread-safe and quick (it hands the command to the producer; it does not wait for a
frame); it returns JSON-able details for the ack, or raises ``ControlRejected`` for a command
that is well-formed but impossible now (an unknown seed loop, say).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from streamer.audio.blocks import AudioBlock
from streamer.sinks.control import Command


class ControlRejected(Exception):
    """The engine refuses a valid command; the client gets ``{"type": "error", "code": code}``.

    ``code`` is a short snake_case word a client can branch on (``unknown_seed_loop``,
    ``not_ready``); ``message`` says what was wrong and what to do next.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StreamControl(Protocol):
    def apply(self, command: Command) -> Mapping[str, Any]:
        """Apply or schedule ``command``; return details for the ack (may be empty)."""
        ...


class StreamSink(Protocol):
    def publish_audio(self, block: AudioBlock) -> None: ...

    def publish_event(self, event: Mapping[str, Any]) -> None: ...

    def publish_frame(self, frame_id: int, sample_position: int, png: bytes) -> None: ...
