"""One Opus encoding of the stream, shared by every output that sends Opus.

The stream runs at 44.1 kHz; Opus only at 48 kHz (and divisors). Each block is resampled once
with soxr's streaming resampler (time-aligned: its delay is taken out, so output sample ``k`` is
input time ``k / 48000``), cut into 20 ms frames and encoded by libopus through PyAV, in
constrained VBR at the asked bitrate. Nothing here touches a socket or a clock.

``OpusEncoding`` is that encoding for a whole stream: the WebSocket fan-out (``broadcast.py``)
packs its packets into messages, and an Ogg Icecast mount (``icecast_encoder.OggOpusMuxer``) muxes
the very same packets into Ogg pages; neither encodes again.

Positions. libopus delays its output by ``pre_skip`` samples (the OpusHead field, 312 at 48 kHz):
PyAV stamps the first packet ``pts = -pre_skip``, and a decoder that honours pre-skip outputs
sample ``k`` of the input at decoded position ``k``. A packet's ``codec_position`` is the 48 kHz
position of its first decoded sample: the stream position of the encoder's first block converted
to 48 kHz, plus the packet's ``pts``; it grows by exactly ``FRAME_SAMPLES`` per packet, so a
player can queue decoded audio on it without rounding. ``sample_position`` is the same instant on
the stream's own clock (44.1 kHz samples, as in ``now_playing`` and the spectrogram images),
following any jump in the stream's positions; the first packet's may lie before the stream began
(its first ``pre_skip`` samples are the encoder's look-ahead, which a decoder drops).
"""

from __future__ import annotations

import collections
import dataclasses

import av
import numpy as np
import soxr

from streamer.audio.blocks import AudioBlock
from streamer.errors import UserError

#: Opus's own rate; the stream is resampled to it once.
OPUS_RATE = 48000
#: 20 ms packets: Opus's default, the frame size at which it is most efficient for music.
FRAME_SAMPLES = 960
#: ``--opus-bitrate`` defaults: transparent-ish music at internet-radio rates.
DEFAULT_KBIT_PER_SECOND = {1: 64.0, 2: 96.0}
#: What libopus accepts (per stream, any channel count up to two).
MIN_KBIT_PER_SECOND = 6.0
MAX_KBIT_PER_SECOND = 510.0


def opus_kbit_per_second(channels: int, configured: float | None) -> float:
    """The bitrate to encode ``channels`` channels at: the configured one, else the default."""
    if configured is not None:
        return configured
    return DEFAULT_KBIT_PER_SECOND.get(channels, 96.0)


@dataclasses.dataclass(frozen=True)
class OpusFormat:
    """What a decoder needs to know of an encoding (the WebSocket ``audio_config``, the Ogg
    stream's header)."""

    channels: int
    input_rate: int  # the stream's rate, resampled to OPUS_RATE
    kbit_per_second: float
    pre_skip: int
    opus_head: bytes


@dataclasses.dataclass(frozen=True)
class OpusPacket:
    """One 20 ms Opus packet and where its decoded audio belongs."""

    codec_position: int  # 48 kHz position of the first decoded sample
    sample_position: int  # the same instant on the stream's clock (may be < 0 for the first one)
    data: bytes


@dataclasses.dataclass(frozen=True)
class _Anchor:
    input_time: int  # samples at the input rate fed to the encoder before this block
    sample_position: int  # the block's stream position


class OpusStreamEncoder:
    """Blocks of the stream in (float32, shape (channels, n)), Opus packets out.

    ``opus_head`` (the 19-byte OpusHead an Ogg stream or a WebCodecs ``description`` carries) and
    ``pre_skip`` describe the encoding for decoders.
    """

    def __init__(
        self, *, channels: int, input_rate: int, kbit_per_second: float, first_position: int
    ) -> None:
        if channels not in (1, 2):
            raise ValueError(f"Opus encodes one or two channels here, not {channels}")
        self.channels = channels
        self.input_rate = input_rate
        self.kbit_per_second = kbit_per_second
        self._codec = av.CodecContext.create("libopus", "w")
        self._codec.sample_rate = OPUS_RATE
        self._codec.layout = "mono" if channels == 1 else "stereo"
        self._codec.format = "flt"
        self._codec.bit_rate = round(kbit_per_second * 1000)
        # Constrained VBR: libopus's default (unconstrained) VBR ran 40 % over the asked bitrate
        # on the test music (137 kbit/s for 96); constrained keeps the average at it (96.6) and
        # still spends bits where the music needs them, as CBR would not.
        self._codec.options = {"vbr": "constrained"}
        self._codec.open()
        self.opus_head = bytes(self._codec.extradata)
        self.pre_skip = int.from_bytes(self.opus_head[10:12], "little")
        self.format = OpusFormat(
            channels, input_rate, kbit_per_second, self.pre_skip, self.opus_head
        )
        self._resampler = (
            None
            if input_rate == OPUS_RATE
            else soxr.ResampleStream(input_rate, OPUS_RATE, channels, dtype="float32", quality="HQ")
        )
        self._origin = round(first_position * OPUS_RATE / input_rate)
        self._pending = np.zeros((0, channels), dtype=np.float32)
        self._next_pts = 0
        self._input_time = 0
        self._anchors: collections.deque[_Anchor] = collections.deque()

    def encode(self, samples: np.ndarray, sample_position: int) -> list[OpusPacket]:
        """Take the next block (the one that plays after the previous); return the packets now
        complete (one per 20 ms of input, give or take the resampler's and encoder's delay)."""
        if samples.shape[0] != self.channels:
            raise ValueError(f"block of {samples.shape[0]} channels for a {self.channels}-channel encoder")
        interleaved = np.ascontiguousarray(samples.T, dtype=np.float32)
        self._note_position(sample_position)
        self._input_time += interleaved.shape[0]
        if self._resampler is not None:
            interleaved = self._resampler.resample_chunk(interleaved)
        pending = np.concatenate([self._pending, interleaved]) if len(self._pending) else interleaved
        packets = []
        whole = len(pending) - len(pending) % FRAME_SAMPLES
        for start in range(0, whole, FRAME_SAMPLES):
            packets.extend(self._encode_frame(pending[start : start + FRAME_SAMPLES]))
        self._pending = pending[whole:].copy()
        return packets

    def _encode_frame(self, frame_samples: np.ndarray) -> list[OpusPacket]:
        frame = av.AudioFrame.from_ndarray(
            frame_samples.reshape(1, -1), format="flt", layout=self._codec.layout.name
        )
        frame.sample_rate = OPUS_RATE
        frame.pts = self._next_pts
        self._next_pts += FRAME_SAMPLES
        return [
            OpusPacket(self._origin + packet.pts, self._stream_position(packet.pts), bytes(packet))
            for packet in self._codec.encode(frame)
        ]

    def _note_position(self, sample_position: int) -> None:
        if self._anchors:
            last = self._anchors[-1]
            if sample_position == last.sample_position + self._input_time - last.input_time:
                return  # continues the stream: the last anchor extrapolates to it
        self._anchors.append(_Anchor(self._input_time, sample_position))

    def _stream_position(self, pts: int) -> int:
        """Stream position of 48 kHz input time ``pts`` (packets come out in order, so anchors
        before the one in force are no longer needed)."""
        input_time = pts * self.input_rate / OPUS_RATE
        while len(self._anchors) > 1 and self._anchors[1].input_time <= input_time:
            self._anchors.popleft()
        anchor = self._anchors[0]
        return anchor.sample_position + round(input_time - anchor.input_time)


@dataclasses.dataclass(frozen=True)
class OpusBatch:
    """The packets one block of the stream completed, and the encoding they belong to."""

    format: OpusFormat
    packets: tuple[OpusPacket, ...]


class OpusEncoding:
    """The stream's one Opus encoding, for every output that sends Opus.

    Each output calls ``encode`` with the blocks the engine publishes to it, on the engine's
    publisher thread. The engine hands every sink the same ``AudioBlock`` in turn, so the first
    output to ask for a block encodes it and the others get the same packets: the stream is
    resampled and encoded once, however many outputs there are, and whichever of them runs.
    The encoder is made for the first block's channel count and rate, which a stream keeps.
    """

    def __init__(self, kbit_per_second: float | None = None) -> None:
        """``kbit_per_second``: None is 64 kbit/s for a mono stream, 96 for stereo."""
        if kbit_per_second is not None and not (
            MIN_KBIT_PER_SECOND <= kbit_per_second <= MAX_KBIT_PER_SECOND
        ):
            raise UserError(
                f"--opus-bitrate must be in {MIN_KBIT_PER_SECOND:g}..{MAX_KBIT_PER_SECOND:g} "
                f"kbit/s (what libopus accepts), got {kbit_per_second:g}"
            )
        self._configured_kbit_per_second = kbit_per_second
        self._encoder: OpusStreamEncoder | None = None
        self._last_block: AudioBlock | None = None
        self._last_batch: OpusBatch | None = None

    def kbit_per_second(self, channels: int) -> float:
        """The bitrate a stream of ``channels`` channels is encoded at."""
        return opus_kbit_per_second(channels, self._configured_kbit_per_second)

    def encode(self, block: AudioBlock) -> OpusBatch:
        """The packets ``block`` completes (the next block of the stream, or the one asked for
        last, whose packets come again)."""
        if block is self._last_block and self._last_batch is not None:
            return self._last_batch
        encoder = self._encoder
        if encoder is None:
            encoder = self._encoder = OpusStreamEncoder(
                channels=block.channels,
                input_rate=block.sample_rate,
                kbit_per_second=self.kbit_per_second(block.channels),
                first_position=block.sample_position,
            )
        elif block.sample_rate != encoder.input_rate:
            raise ValueError(
                f"a block at {block.sample_rate} Hz for the encoding of a "
                f"{encoder.input_rate} Hz stream"
            )
        packets = encoder.encode(block.samples, block.sample_position)
        self._last_block, self._last_batch = block, OpusBatch(encoder.format, tuple(packets))
        return self._last_batch
