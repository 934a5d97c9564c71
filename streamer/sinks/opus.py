"""One Opus encoding of the stream, shared by every listener that wants it.

The stream runs at 44.1 kHz; Opus only at 48 kHz (and divisors). Each block is resampled once
with soxr's streaming resampler (time-aligned: its delay is taken out, so output sample ``k`` is
input time ``k / 48000``), cut into 20 ms frames and encoded by libopus through PyAV. Nothing here
touches a socket or a clock: the WebSocket fan-out (``broadcast.py``) and any other output (an
Ogg/Icecast source) feed blocks in and take packets out.

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
