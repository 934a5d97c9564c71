"""The wire format of ``/ws``, as plain functions on bytes and strings (docs/PROTOCOL.md).

Binary messages carry audio and spectrogram images; both start with the same four bytes
(version, kind, header length), so a client can dispatch on the kind and skip a header grown by a
later minor revision. Integers are little-endian, as on every machine a browser runs on, so
``DataView`` reads them with ``littleEndian = true``. Text messages are JSON objects with a
``"type"``.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from streamer.runtime.ports import NowPlaying, Status, StreamEvent

#: Bumped on any change a version-1 client would misread.
PROTOCOL_VERSION = 1


class MessageKind(enum.IntEnum):
    """Second byte of every binary message."""

    AUDIO = 1
    FRAME = 2
    OPUS = 3


#: Sample format names (config, hello event) and their code in the audio header.
SAMPLE_FORMAT_CODES = {"s16": 1, "f32": 2}
_SAMPLE_FORMAT_NAMES = {code: name for name, code in SAMPLE_FORMAT_CODES.items()}
_SAMPLE_DTYPES = {"s16": np.dtype("<i2"), "f32": np.dtype("<f4")}

# version u8, kind u8, header_bytes u16, sequence u32, sample_position u64, sample_rate u32,
# channels u16, sample_format u16
_AUDIO_HEADER = struct.Struct("<BBHIQIHH")
# version u8, kind u8, header_bytes u16, frame_id u32, sample_position u64
_FRAME_HEADER = struct.Struct("<BBHIQ")
# version u8, kind u8, header_bytes u16, sequence u32, sample_position i64, codec_position i64,
# codec_rate u32, channels u16, packet_count u16; then packet_count u16 lengths, then the packets
_OPUS_HEADER = struct.Struct("<BBHIqqIHH")
_PACKET_LENGTH = struct.Struct("<H")
_PREAMBLE = struct.Struct("<BBH")
#: The codecs a listener may ask for (``/ws?codec=...``); the first is the default.
CODECS = ("pcm", "opus")


class MessageFormatError(ValueError):
    """A binary message that does not follow this protocol version."""


@dataclasses.dataclass(frozen=True)
class AudioMessage:
    """Consecutive samples of the stream, interleaved.

    ``sequence`` counts audio messages without gaps, so a listener that sees a jump knows it was
    skipped forward; ``sample_position`` is the stream position of the first sample, so a jump
    with contiguous sequence numbers is a discontinuity of the stream itself.
    """

    sequence: int
    sample_position: int
    sample_rate: int
    channels: int
    sample_format: str
    payload: bytes

    @property
    def num_frames(self) -> int:
        """Samples per channel."""
        return len(self.payload) // (self.channels * _SAMPLE_DTYPES[self.sample_format].itemsize)

    def encode(self) -> bytes:
        header = _AUDIO_HEADER.pack(
            PROTOCOL_VERSION,
            MessageKind.AUDIO,
            _AUDIO_HEADER.size,
            self.sequence & 0xFFFFFFFF,
            self.sample_position,
            self.sample_rate,
            self.channels,
            SAMPLE_FORMAT_CODES[self.sample_format],
        )
        return header + self.payload

    def samples(self) -> np.ndarray:
        """The payload as float32 of shape (channels, num_frames) in [-1, 1]."""
        interleaved = np.frombuffer(self.payload, dtype=_SAMPLE_DTYPES[self.sample_format])
        frames = interleaved.reshape(-1, self.channels).T.astype(np.float32)
        if self.sample_format == "s16":
            frames /= 32767.0
        return frames


@dataclasses.dataclass(frozen=True)
class FrameMessage:
    """One spectrogram image for the visualiser, sent as binary to spare base64's third."""

    frame_id: int
    #: Stream position at which this frame starts to play, to line the image up with the sound.
    sample_position: int
    png: bytes

    def encode(self) -> bytes:
        header = _FRAME_HEADER.pack(
            PROTOCOL_VERSION,
            MessageKind.FRAME,
            _FRAME_HEADER.size,
            self.frame_id & 0xFFFFFFFF,
            self.sample_position,
        )
        return header + self.png


@dataclasses.dataclass(frozen=True)
class OpusMessage:
    """Consecutive 20 ms Opus packets of the stream (``streamer.sinks.opus``).

    ``sequence`` counts this codec's messages like ``AudioMessage.sequence``; ``codec_position``
    is the 48 kHz position of the first packet's first decoded sample and grows by exactly the
    packets' length from message to message; ``sample_position`` is the same instant on the
    stream's clock (44.1 kHz samples, as ``now_playing`` counts), to line up what is heard with
    the events. A message never spans a jump of the stream's positions.
    """

    sequence: int
    sample_position: int
    codec_position: int
    codec_rate: int
    channels: int
    packets: tuple[bytes, ...]
    frame_samples: int = 960

    @property
    def num_frames(self) -> int:
        """Decoded samples per channel, at ``codec_rate``."""
        return len(self.packets) * self.frame_samples

    def encode(self) -> bytes:
        lengths = b"".join(_PACKET_LENGTH.pack(len(packet)) for packet in self.packets)
        header = _OPUS_HEADER.pack(
            PROTOCOL_VERSION,
            MessageKind.OPUS,
            _OPUS_HEADER.size,
            self.sequence & 0xFFFFFFFF,
            self.sample_position,
            self.codec_position,
            self.codec_rate,
            self.channels,
            len(self.packets),
        )
        return header + lengths + b"".join(self.packets)


def encode_samples(samples: np.ndarray, sample_format: str) -> bytes:
    """Interleave float samples of shape (channels, n) into the payload of an audio message.

    int16 is scaled by 32767 and rounded, so full scale stays symmetric and never wraps.
    """
    interleaved = np.asarray(samples, dtype=np.float32).T
    if sample_format == "s16":
        scaled = np.rint(np.clip(interleaved, -1.0, 1.0) * 32767.0)
        return scaled.astype("<i2").tobytes()
    if sample_format == "f32":
        return np.ascontiguousarray(interleaved, dtype="<f4").tobytes()
    raise ValueError(f"unknown sample format {sample_format!r}; use 's16' or 'f32'")


def decode_binary(
    data: bytes | bytearray | memoryview,
) -> AudioMessage | FrameMessage | OpusMessage:
    """Parse a binary server message, as a client does; raises ``MessageFormatError``."""
    data = bytes(data)
    if len(data) < _PREAMBLE.size:
        raise MessageFormatError(f"binary message of {len(data)} bytes is shorter than a header")
    version, kind, header_bytes = _PREAMBLE.unpack_from(data)
    if version != PROTOCOL_VERSION:
        raise MessageFormatError(f"protocol version {version}; this client reads version 1")
    if kind == MessageKind.AUDIO:
        return _decode_audio(data, header_bytes)
    if kind == MessageKind.OPUS:
        return _decode_opus(data, header_bytes)
    if kind == MessageKind.FRAME:
        if header_bytes < _FRAME_HEADER.size or len(data) < header_bytes:
            raise MessageFormatError(f"frame header of {header_bytes} bytes is truncated")
        _, _, _, frame_id, sample_position = _FRAME_HEADER.unpack_from(data)
        return FrameMessage(frame_id, sample_position, data[header_bytes:])
    raise MessageFormatError(f"unknown binary message kind {kind}")


def _decode_audio(data: bytes, header_bytes: int) -> AudioMessage:
    if header_bytes < _AUDIO_HEADER.size or len(data) < header_bytes:
        raise MessageFormatError(f"audio header of {header_bytes} bytes is truncated")
    _, _, _, sequence, position, rate, channels, format_code = _AUDIO_HEADER.unpack_from(data)
    sample_format = _SAMPLE_FORMAT_NAMES.get(format_code)
    if sample_format is None:
        raise MessageFormatError(f"unknown sample format code {format_code}")
    if channels < 1 or rate < 1:
        raise MessageFormatError(f"audio with {channels} channels at {rate} Hz")
    payload = data[header_bytes:]
    if len(payload) % (channels * _SAMPLE_DTYPES[sample_format].itemsize):
        raise MessageFormatError(f"{len(payload)} payload bytes are not whole sample frames")
    return AudioMessage(sequence, position, rate, channels, sample_format, payload)


def _decode_opus(data: bytes, header_bytes: int) -> OpusMessage:
    if header_bytes < _OPUS_HEADER.size or len(data) < header_bytes:
        raise MessageFormatError(f"opus header of {header_bytes} bytes is truncated")
    _, _, _, sequence, position, codec_position, rate, channels, count = _OPUS_HEADER.unpack_from(
        data
    )
    if channels < 1 or rate < 1:
        raise MessageFormatError(f"opus with {channels} channels at {rate} Hz")
    at = header_bytes + count * _PACKET_LENGTH.size
    if len(data) < at:
        raise MessageFormatError(f"opus message too short for its {count} packet lengths")
    lengths = [_PACKET_LENGTH.unpack_from(data, header_bytes + 2 * i)[0] for i in range(count)]
    if at + sum(lengths) != len(data):
        raise MessageFormatError(
            f"opus packets of {sum(lengths)} bytes in a payload of {len(data) - at} bytes"
        )
    packets = []
    for length in lengths:
        packets.append(data[at : at + length])
        at += length
    return OpusMessage(sequence, position, codec_position, rate, channels, tuple(packets))


# ---- text messages ---------------------------------------------------------------------------

#: Events the engine publishes, by their type on the wire; the server keeps the latest of each
#: type for joining listeners.
EVENT_TYPES: dict[type, str] = {NowPlaying: "now_playing", Status: "status"}


def to_json(message: Mapping[str, Any]) -> str:
    """Compact JSON; NaN and infinity are refused because browsers' JSON.parse rejects them."""
    return json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def event_type(event: StreamEvent) -> str:
    """The wire type of an engine event; ``ValueError`` for anything else."""
    try:
        return EVENT_TYPES[type(event)]
    except KeyError:
        raise ValueError(f"not an engine event: {type(event).__name__}") from None


def event_text(event: StreamEvent) -> str:
    """An engine event as a client reads it (fields in docs/PROTOCOL.md)."""
    return to_json({"type": event_type(event), **dataclasses.asdict(event)})


def hello_text(
    *,
    role: str,
    listening_open: bool,
    message_seconds: float,
    burst_seconds: float,
    limits: Mapping[str, int | float],
    codec: str = CODECS[0],
) -> str:
    """First message on every connection: what the server speaks and what it will accept, and
    the codec this connection's audio comes in."""
    return to_json(
        {
            "type": "hello",
            "protocol": PROTOCOL_VERSION,
            "role": role,
            "listening": "open" if listening_open else "token",
            "message_seconds": message_seconds,
            "burst_seconds": burst_seconds,
            "limits": dict(limits),
            "codec": codec,
            "codecs": list(CODECS),
        }
    )


def opus_config_text(
    *, channels: int, stream_rate: int, kbit_per_second: float, pre_skip: int, opus_head: bytes
) -> str:
    """What an Opus listener's decoder needs, sent before its first Opus message and whenever
    the encoding changes (docs/PROTOCOL.md, ``audio_config``)."""
    return to_json(
        {
            "type": "audio_config",
            "codec": "opus",
            "sample_rate": 48000,
            "channels": channels,
            "stream_rate": stream_rate,
            "frame_samples": 960,
            "kbit_per_second": kbit_per_second,
            "pre_skip": pre_skip,
            "opus_head": base64.b64encode(opus_head).decode("ascii"),
        }
    )


def ack_text(of: str, request_id: str | int | None, details: Mapping[str, Any]) -> str:
    message: dict[str, Any] = {"type": "ack", "of": of}
    if request_id is not None:
        message["id"] = request_id
    message["details"] = dict(details)
    return to_json(message)


def error_text(
    code: str, message: str, *, of: str | None = None, request_id: str | int | None = None
) -> str:
    reply: dict[str, Any] = {"type": "error", "code": str(code), "message": message}
    if of is not None:
        reply["of"] = of
    if request_id is not None:
        reply["id"] = request_id
    return to_json(reply)


def audio_messages_contiguous(messages: Sequence[AudioMessage] | Sequence[OpusMessage]) -> bool:
    """True when each message follows the previous one in sequence and in position (for Opus,
    the 48 kHz codec position)."""

    def position(message: AudioMessage | OpusMessage) -> int:
        if isinstance(message, OpusMessage):
            return message.codec_position
        return message.sample_position

    return all(
        b.sequence == (a.sequence + 1) & 0xFFFFFFFF and position(b) == position(a) + a.num_frames
        for a, b in zip(messages, messages[1:])
    )
