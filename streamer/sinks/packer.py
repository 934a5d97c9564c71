"""Clock blocks (or Opus packets) -> network messages: a few per message, never split.

The clock ticks every ~20 ms; one WebSocket message per tick and listener would cost five times
the per-message work of 100 ms messages (benchmarks/fanout.py). A message is flushed early when
the stream jumps (a gap in block sequence or sample position, a new rate or channel count), so
one message never spans a discontinuity.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from streamer.sinks.opus import FRAME_SAMPLES, OPUS_RATE, OpusPacket
from streamer.sinks.protocol import AudioMessage, OpusMessage


@dataclasses.dataclass(frozen=True)
class EncodedBlock:
    """An ``AudioBlock`` whose samples are already interleaved into payload bytes."""

    sequence: int
    sample_position: int
    sample_rate: int
    channels: int
    num_frames: int
    payload: bytes


class AudioPacker:
    def __init__(self, message_seconds: float, sample_format: str) -> None:
        self.message_seconds = message_seconds
        self.sample_format = sample_format
        self._pending: list[EncodedBlock] = []
        self._pending_frames = 0
        self._next_sequence = 0

    def add(self, block: EncodedBlock) -> list[AudioMessage]:
        """Take the next block; return the messages now complete (zero, one or two)."""
        messages = []
        if self._pending and not self._continues(block):
            messages.append(self._flush())
        self._pending.append(block)
        self._pending_frames += block.num_frames
        if self._pending_frames >= round(self.message_seconds * block.sample_rate):
            messages.append(self._flush())
        return messages

    def _continues(self, block: EncodedBlock) -> bool:
        last = self._pending[-1]
        return (
            block.sequence == last.sequence + 1
            and block.sample_position == last.sample_position + last.num_frames
            and block.sample_rate == last.sample_rate
            and block.channels == last.channels
        )

    def _flush(self) -> AudioMessage:
        first = self._pending[0]
        message = AudioMessage(
            sequence=self._next_sequence,
            sample_position=first.sample_position,
            sample_rate=first.sample_rate,
            channels=first.channels,
            sample_format=self.sample_format,
            payload=b"".join(block.payload for block in self._pending),
        )
        self._next_sequence = (self._next_sequence + 1) & 0xFFFFFFFF
        self._pending = []
        self._pending_frames = 0
        return message


class OpusPacker:
    """Opus packets -> messages of ``message_seconds`` (5 packets at 0.1 s), as ``AudioPacker``
    does for PCM: one WebSocket message per 20 ms packet would cost five times the per-listener
    work. A message is flushed early where the packets' stream positions jump or the codec
    position does not continue (a new encoder), so one message never spans a discontinuity."""

    def __init__(self, message_seconds: float, *, channels: int, frame_samples: int = FRAME_SAMPLES) -> None:
        self.channels = channels
        self.frame_samples = frame_samples
        self.packets_per_message = max(1, round(message_seconds * OPUS_RATE / frame_samples))
        self._pending: list[OpusPacket] = []
        self._next_sequence = 0

    def add(self, packets: Iterable[OpusPacket], *, stream_rate: int) -> list[OpusMessage]:
        """Take the next packets; return the messages now complete."""
        messages = []
        for packet in packets:
            if self._pending and not self._continues(packet, stream_rate):
                messages.append(self._flush())
            self._pending.append(packet)
            if len(self._pending) >= self.packets_per_message:
                messages.append(self._flush())
        return messages

    def _continues(self, packet: OpusPacket, stream_rate: int) -> bool:
        last = self._pending[-1]
        stream_step = self.frame_samples * stream_rate / OPUS_RATE
        return (
            packet.codec_position == last.codec_position + self.frame_samples
            and abs(packet.sample_position - last.sample_position - stream_step) <= 1
        )

    def _flush(self) -> OpusMessage:
        first = self._pending[0]
        message = OpusMessage(
            sequence=self._next_sequence,
            sample_position=first.sample_position,
            codec_position=first.codec_position,
            codec_rate=OPUS_RATE,
            channels=self.channels,
            packets=tuple(packet.data for packet in self._pending),
            frame_samples=self.frame_samples,
        )
        self._next_sequence = (self._next_sequence + 1) & 0xFFFFFFFF
        self._pending = []
        return message
