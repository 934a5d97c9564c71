"""Fan-out of the stream to every listener, on the server's event loop.

The engine's publisher thread (never the real-time clock) encodes each block once (PCM, and
Opus for the listeners who chose it: the stream's one ``OpusEncoding``, which an Ogg Icecast
mount shares), turns events into JSON and pictures into messages, hands them over with
``call_soon_threadsafe`` and returns at once. Listeners are kept in one lane per codec; audio
goes to its lane, events to all, and images to all in the lane's form (a lighter one for Opus
listeners, ``images.py``). On the loop, each message is encoded once, framed once as a
WebSocket frame, and the same bytes are written to every listener whose send queue (its
connection's write buffer) is within bounds, without awaiting anyone's drain: a slow listener
costs a comparison, never a delay for the others (``pacing`` decides its fate). A joining
listener gets the latest events and the last ``burst_seconds`` of audio in one go.

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
from streamer.runtime.ports import FramePicture, StreamEvent
from streamer.sinks.images import waterfall_image
from streamer.sinks.opus import OPUS_RATE, OpusEncoding
from streamer.sinks.packer import AudioPacker, EncodedBlock, OpusPacker
from streamer.sinks.pacing import ListenerPacing, Verdict
from streamer.sinks.protocol import (
    CODECS,
    EVENT_TYPES,
    FrameMessage,
    encode_samples,
    event_text,
    event_type,
    opus_config_text,
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


@dataclasses.dataclass
class BroadcastStats:
    listeners: int = 0
    lagging_listeners: int = 0
    audio_messages: int = 0
    skipped_messages: int = 0
    dropped_listeners: int = 0
    opus_listeners: int = 0
    opus_messages: int = 0


@dataclasses.dataclass(frozen=True)
class _BurstMessage:
    frame: bytes  # serialised WebSocket frame
    num_frames: int  # audio frames (samples per channel)


@dataclasses.dataclass(frozen=True)
class _OpusDelivery:
    """What the publisher thread made of one block for Opus listeners: ready-made frames."""

    config_frame: bytes | None  # the ``audio_config`` of the first packets this lane gets
    messages: list[_BurstMessage]
    sample_rate: int


class _Lane:
    """The listeners of one codec and what a joining one of them gets: the latest spectrogram
    image in the lane's form (``images.py``), the codec's configuration (Opus) and the last
    ``burst_seconds`` of its messages."""

    def __init__(self) -> None:
        self.listeners: dict[ServerConnection, ListenerPacing] = {}
        self.latest_image: bytes | None = None
        self.burst: collections.deque[_BurstMessage] = collections.deque()
        self.burst_frames = 0
        self.bytes_per_second = 0.0
        self.config_frame: bytes | None = None

    def remember(self, message: _BurstMessage, sample_rate: int, burst_seconds: float) -> None:
        self.burst.append(message)
        self.burst_frames += message.num_frames
        self.bytes_per_second = len(message.frame) * sample_rate / message.num_frames
        burst_frames = burst_seconds * sample_rate
        while self.burst and self.burst_frames - self.burst[0].num_frames >= burst_frames:
            self.burst_frames -= self.burst.popleft().num_frames


class Broadcaster:
    def __init__(self, config: ServerConfig, opus: OpusEncoding) -> None:
        self.config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._packer = AudioPacker(config.message_seconds, config.sample_format)
        # Publisher thread only: the stream's Opus encoding, and the packer of its packets (made
        # with the first of them, when the encoding's format is known).
        self._opus = opus
        self._opus_packer: OpusPacker | None = None
        self._lanes = {codec: _Lane() for codec in CODECS}
        # Latest event of each type as a serialised WebSocket frame, sent to joining and
        # resuming listeners (in this order, then the lane's latest image).
        self._latest: dict[str, bytes] = {}
        self._stats = BroadcastStats()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start accepting publications; they run on ``loop`` from now on."""
        self._loop = loop

    def detach(self) -> None:
        """Ignore publications from now on (the server is stopping)."""
        self._loop = None

    # ---- engine side: the publisher thread, never blocks --------------------------------------

    def publish_audio(self, block: AudioBlock) -> None:
        if self._loop is None:
            return  # not serving: nobody to send to
        encoded = EncodedBlock(
            sequence=block.sequence,
            sample_position=block.sample_position,
            sample_rate=block.sample_rate,
            channels=block.channels,
            num_frames=block.num_samples,
            payload=encode_samples(block.samples, self.config.sample_format),
        )
        self._call_soon(self._on_audio, encoded, self._encode_opus(block))

    def _encode_opus(self, block: AudioBlock) -> _OpusDelivery:
        """Pack the stream's Opus packets of the block for every Opus listener, here rather than
        on the event loop, which has the fan-out to do (benchmarks/RESULTS.md: the encoder's CPU
        and latency)."""
        batch = self._opus.encode(block)
        packer, config_frame = self._opus_packer, None
        if packer is None:
            packer = OpusPacker(self.config.message_seconds, channels=batch.format.channels)
            self._opus_packer = packer
            text = opus_config_text(
                channels=batch.format.channels,
                stream_rate=batch.format.input_rate,
                kbit_per_second=batch.format.kbit_per_second,
                pre_skip=batch.format.pre_skip,
                opus_head=batch.format.opus_head,
            )
            config_frame = websocket_frame(text.encode("utf-8"), text=True)
        messages = [
            _BurstMessage(websocket_frame(message.encode(), text=False), message.num_frames)
            for message in packer.add(batch.packets, stream_rate=block.sample_rate)
        ]
        return _OpusDelivery(config_frame, messages, OPUS_RATE)

    def publish_event(self, event: StreamEvent) -> None:
        self._call_soon(self._on_state, event_type(event), event_text(event).encode("utf-8"), True)

    def publish_frame(self, picture: FramePicture) -> None:
        if self._loop is None:
            return  # spare the conversion: nobody would get it
        frames = {}
        for codec, image in (("pcm", picture.png), ("opus", self._lighter_image(picture.png))):
            data = FrameMessage(picture.frame_id, picture.sample_position, image).encode()
            frames[codec] = websocket_frame(data, text=False)
        self._call_soon(self._on_image, frames)

    @staticmethod
    def _lighter_image(png: bytes) -> bytes:
        try:
            return waterfall_image(png)
        except (OSError, ValueError):  # not an image Pillow reads: pass it on as it came
            logger.debug("a frame image could not be converted for Opus listeners", exc_info=True)
            return png

    def _call_soon(self, callback: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed between the check and the call: server stopped
            pass

    # ---- event loop side --------------------------------------------------------------------

    def join(self, connection: ServerConnection, codec: str = CODECS[0]) -> None:
        """Add a listener: latest state and the audio burst now, the live stream from here on."""
        lane = self._lanes[codec]
        self._send_state(connection, lane)
        if lane.config_frame is not None:
            write_frame(connection, lane.config_frame)
        for message in lane.burst:
            write_frame(connection, message.frame)
        lane.listeners[connection] = ListenerPacing(self.config.drop_lagging_after_seconds)

    def leave(self, connection: ServerConnection) -> None:
        for lane in self._lanes.values():
            lane.listeners.pop(connection, None)

    def stats(self) -> BroadcastStats:
        """Counters so far; from another thread than the loop's, a snapshot of a moment ago."""
        pacings = [list(lane.listeners.values()) for lane in self._lanes.values()]
        listeners = [pacing for lane in pacings for pacing in lane]
        lagging = sum(1 for pacing in listeners if pacing.lagging)
        return dataclasses.replace(
            self._stats,
            listeners=len(listeners),
            lagging_listeners=lagging,
            opus_listeners=len(self._lanes["opus"].listeners),
        )

    def _send_state(
        self, connection: ServerConnection, lane: _Lane, *, except_kind: str | None = None
    ) -> None:
        for kind in EVENT_TYPES.values():
            if kind in self._latest and kind != except_kind:
                write_frame(connection, self._latest[kind])
        if lane.latest_image is not None and except_kind != _FRAME:
            write_frame(connection, lane.latest_image)

    def _on_audio(self, block: EncodedBlock, opus: _OpusDelivery) -> None:
        lane = self._lanes["pcm"]
        for message in self._packer.add(block):
            frame = websocket_frame(message.encode(), text=False)
            lane.remember(
                _BurstMessage(frame, message.num_frames),
                message.sample_rate,
                self.config.burst_seconds,
            )
            self._stats.audio_messages += 1
            self._fan_out(frame, lane)
        lane = self._lanes["opus"]
        if opus.config_frame is not None:
            lane.config_frame = opus.config_frame
            self._fan_out(opus.config_frame, lane)
        for message in opus.messages:
            lane.remember(message, opus.sample_rate, self.config.burst_seconds)
            self._stats.opus_messages += 1
            self._fan_out(message.frame, lane)

    def _on_state(self, kind: str, data: bytes, text: bool) -> None:
        frame = websocket_frame(data, text=text)
        self._latest[kind] = frame
        for lane in self._lanes.values():
            self._fan_out(frame, lane, state_kind=kind)

    def _on_image(self, frames: dict[str, bytes]) -> None:
        for codec, frame in frames.items():
            lane = self._lanes[codec]
            lane.latest_image = frame
            self._fan_out_in_slices(frame, lane, list(lane.listeners))

    def _fan_out_in_slices(self, frame: bytes, lane: _Lane, listeners: list[ServerConnection]) -> None:
        """Copying a ~200 KB image to hundreds of listeners takes tens of milliseconds; a few
        listeners per turn of the loop let the audio messages pass in between."""
        per_turn = self.config.image_listeners_per_loop_turn
        self._fan_out(frame, lane, state_kind=_FRAME, only=listeners[:per_turn])
        rest = listeners[per_turn:]
        if rest and self._loop is not None:
            self._loop.call_soon(self._fan_out_in_slices, frame, lane, rest)

    def _queue_limit_bytes(self, lane: _Lane) -> int:
        """``send_queue_seconds`` of the lane's audio, plus room for one spectrogram image."""
        image_bytes = len(lane.latest_image or b"")
        return int(self.config.send_queue_seconds * lane.bytes_per_second) + image_bytes

    def _fan_out(
        self,
        frame: bytes,
        lane: _Lane,
        *,
        state_kind: str | None = None,
        only: list[ServerConnection] | None = None,
    ) -> None:
        limit = self._queue_limit_bytes(lane)
        now = time.monotonic()
        dropped = []
        if only is None:
            targets = lane.listeners.items()
        else:  # some may have left since the list was made
            targets = [(c, lane.listeners[c]) for c in only if c in lane.listeners]
        for connection, pacing in targets:
            verdict = pacing.decide(connection.transport.get_write_buffer_size(), limit, now)
            if verdict is Verdict.SEND:
                write_frame(connection, frame)
            elif verdict is Verdict.RESUME:
                self._send_state(connection, lane, except_kind=state_kind)
                write_frame(connection, frame)
            elif verdict is Verdict.SKIP:
                self._stats.skipped_messages += 1
            else:
                dropped.append(connection)
        for connection in dropped:
            self._drop(connection)

    def _drop(self, connection: ServerConnection) -> None:
        self.leave(connection)
        self._stats.dropped_listeners += 1
        logger.info(
            "dropped listener %s: its send queue did not drain for %g s",
            connection.remote_address,
            self.config.drop_lagging_after_seconds,
        )
        # A close handshake would wait behind the stuck queue; abort ends it now, and the
        # connection's handler sees it closed.
        connection.transport.abort()
