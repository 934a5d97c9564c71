"""Fan-out of the stream to every listener, on the server's event loop.

The engine's publisher thread (never the real-time clock) encodes each block once, turns events
into JSON and pictures into messages, hands them over with ``call_soon_threadsafe`` and returns
at once. On the loop, each message is encoded once, framed once as a WebSocket frame, and
the same bytes are written to every listener whose send queue (its connection's write buffer) is
within bounds, without awaiting anyone's drain: a slow listener costs a comparison, never a delay
for the others (``pacing`` decides its fate). A joining listener gets the latest events and the
last ``burst_seconds`` of audio in one go.

Writing the frame bytes to the transport is what ``websockets.broadcast`` does, minus serialising
the frame again for every connection, two copies of the payload per listener (about a fifth of
the server's CPU at 500 listeners, benchmarks/RESULTS.md). It is exact because the server never
fragments, negotiates no extension (compression is off) and server frames are unmasked.

A spectrogram image (~200 KB) is copied to a few dozen listeners per turn of the loop, so audio
messages pass in between: sent to 500 listeners at once it held the loop up to 0.3 s.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from streamer.audio.blocks import AudioBlock
from streamer.sinks.config import ServerConfig
from streamer.sinks.packer import AudioPacker, EncodedBlock
from streamer.sinks.pacing import ListenerPacing, Verdict
from streamer.runtime.ports import FramePicture, StreamEvent
from streamer.sinks.protocol import (
    EVENT_TYPES,
    FrameMessage,
    encode_samples,
    event_text,
    event_type,
)

logger = logging.getLogger(__name__)


def websocket_frame(data: bytes, *, text: bool) -> bytes:
    """One unmasked, unfragmented WebSocket frame carrying ``data``."""
    return Frame(Opcode.TEXT if text else Opcode.BINARY, data).serialize(mask=False)


def write_frame(connection: ServerConnection, frame: bytes) -> None:
    """Queue a serialised frame on an open connection without waiting for it to drain."""
    # A transport that has just failed stays "open" until its connection_lost callback runs.
    if connection.state is State.OPEN and not connection.transport.is_closing():
        connection.transport.write(frame)


def write_now(connection: ServerConnection, data: bytes, *, text: bool) -> None:
    write_frame(connection, websocket_frame(data, text=text))


_FRAME = "frame"
#: Order in which a joining or resuming listener gets the latest state.
_STATE_KINDS = (*EVENT_TYPES.values(), _FRAME)


@dataclasses.dataclass
class BroadcastStats:
    listeners: int = 0
    lagging_listeners: int = 0
    audio_messages: int = 0
    skipped_messages: int = 0
    dropped_listeners: int = 0


@dataclasses.dataclass(frozen=True)
class _BurstMessage:
    frame: bytes  # serialised WebSocket frame
    num_frames: int  # audio frames (samples per channel)


class Broadcaster:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._packer = AudioPacker(config.message_seconds, config.sample_format)
        self._listeners: dict[ServerConnection, ListenerPacing] = {}
        self._burst: collections.deque[_BurstMessage] = collections.deque()
        self._burst_frames = 0
        # Latest message of each state kind as a serialised WebSocket frame, sent to joining and
        # resuming listeners.
        self._latest: dict[str, bytes] = {}
        self._audio_bytes_per_second = 0.0
        self._stats = BroadcastStats()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start accepting publications; they run on ``loop`` from now on."""
        self._loop = loop

    def detach(self) -> None:
        """Ignore publications from now on (the server is stopping)."""
        self._loop = None

    # ---- engine side: the publisher thread, never blocks --------------------------------------

    def publish_audio(self, block: AudioBlock) -> None:
        encoded = EncodedBlock(
            sequence=block.sequence,
            sample_position=block.sample_position,
            sample_rate=block.sample_rate,
            channels=block.channels,
            num_frames=block.num_samples,
            payload=encode_samples(block.samples, self.config.sample_format),
        )
        self._call_soon(self._on_audio, encoded)

    def publish_event(self, event: StreamEvent) -> None:
        self._call_soon(self._on_state, event_type(event), event_text(event).encode("utf-8"), True)

    def publish_frame(self, picture: FramePicture) -> None:
        data = FrameMessage(picture.frame_id, picture.sample_position, picture.png).encode()
        self._call_soon(self._on_state, _FRAME, data, False)

    def _call_soon(self, callback: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed between the check and the call: server stopped
            pass

    # ---- event loop side --------------------------------------------------------------------

    def join(self, connection: ServerConnection) -> None:
        """Add a listener: latest state and the audio burst now, the live stream from here on."""
        self._send_state(connection)
        for message in self._burst:
            write_frame(connection, message.frame)
        self._listeners[connection] = ListenerPacing(self.config.drop_lagging_after_seconds)

    def leave(self, connection: ServerConnection) -> None:
        self._listeners.pop(connection, None)

    def stats(self) -> BroadcastStats:
        """Counters so far; from another thread than the loop's, a snapshot of a moment ago."""
        listeners = list(self._listeners.values())
        lagging = sum(1 for pacing in listeners if pacing.lagging)
        return dataclasses.replace(self._stats, listeners=len(listeners), lagging_listeners=lagging)

    def _send_state(self, connection: ServerConnection, *, except_kind: str | None = None) -> None:
        for kind in _STATE_KINDS:
            if kind in self._latest and kind != except_kind:
                write_frame(connection, self._latest[kind])

    def _on_audio(self, block: EncodedBlock) -> None:
        for message in self._packer.add(block):
            frame = websocket_frame(message.encode(), text=False)
            self._audio_bytes_per_second = len(frame) * message.sample_rate / message.num_frames
            self._remember_for_burst(_BurstMessage(frame, message.num_frames), message.sample_rate)
            self._stats.audio_messages += 1
            self._fan_out(frame)

    def _on_state(self, kind: str, data: bytes, text: bool) -> None:
        frame = websocket_frame(data, text=text)
        self._latest[kind] = frame
        if kind == _FRAME:
            self._fan_out_in_slices(frame, list(self._listeners))
        else:
            self._fan_out(frame, state_kind=kind)

    def _fan_out_in_slices(self, frame: bytes, listeners: list[ServerConnection]) -> None:
        """Copying a ~200 KB image to hundreds of listeners takes tens of milliseconds; a few
        listeners per turn of the loop let the audio messages pass in between."""
        per_turn = self.config.image_listeners_per_loop_turn
        self._fan_out(frame, state_kind=_FRAME, only=listeners[:per_turn])
        rest = listeners[per_turn:]
        if rest and self._loop is not None:
            self._loop.call_soon(self._fan_out_in_slices, frame, rest)

    def _remember_for_burst(self, message: _BurstMessage, sample_rate: int) -> None:
        self._burst.append(message)
        self._burst_frames += message.num_frames
        burst_frames = self.config.burst_seconds * sample_rate
        while self._burst and self._burst_frames - self._burst[0].num_frames >= burst_frames:
            self._burst_frames -= self._burst.popleft().num_frames

    def _queue_limit_bytes(self) -> int:
        """``send_queue_seconds`` of audio, plus room for one spectrogram image."""
        frame_bytes = len(self._latest.get(_FRAME, b""))
        return int(self.config.send_queue_seconds * self._audio_bytes_per_second) + frame_bytes

    def _fan_out(
        self,
        frame: bytes,
        *,
        state_kind: str | None = None,
        only: list[ServerConnection] | None = None,
    ) -> None:
        limit = self._queue_limit_bytes()
        now = time.monotonic()
        dropped = []
        if only is None:
            targets = self._listeners.items()
        else:  # some may have left since the list was made
            targets = [(c, self._listeners[c]) for c in only if c in self._listeners]
        for connection, pacing in targets:
            verdict = pacing.decide(connection.transport.get_write_buffer_size(), limit, now)
            if verdict is Verdict.SEND:
                write_frame(connection, frame)
            elif verdict is Verdict.RESUME:
                self._send_state(connection, except_kind=state_kind)
                write_frame(connection, frame)
            elif verdict is Verdict.SKIP:
                self._stats.skipped_messages += 1
            else:
                dropped.append(connection)
        for connection in dropped:
            self._drop(connection)

    def _drop(self, connection: ServerConnection) -> None:
        self._listeners.pop(connection, None)
        self._stats.dropped_listeners += 1
        logger.info(
            "dropped listener %s: its send queue did not drain for %g s",
            connection.remote_address,
            self.config.drop_lagging_after_seconds,
        )
        # A close handshake would wait behind the stuck queue; abort ends it now, and the
        # connection's handler sees it closed.
        connection.transport.abort()
