"""The stream as bytes an Icecast server and its listeners' players understand: Ogg Opus or MP3.

PyAV (FFmpeg's libopus and libmp3lame, FFmpeg's Ogg and MP3 muxers) does the encoding and the
framing; Opus runs at 48 kHz only, so the stream is resampled once on the way in with soxr's
streaming resampler (stateful: no seam between blocks). No I/O here: blocks in, bytes out.

One encoder is one Icecast source connection: a reconnection starts a new one, so the new
connection begins with the stream headers a listener's player needs (Ogg's OpusHead and
OpusTags, which carry the title at that moment).
"""

from __future__ import annotations

import av
import numpy as np
import soxr

from streamer.sinks.icecast_protocol import IcecastFormat
from streamer.sinks.opus import opus_kbit_per_second

#: Opus encodes at 48 kHz only.
OPUS_SAMPLE_RATE = 48000
#: Stream time per Ogg page: how long encoded audio may wait in the muxer before it is sent.
OGG_PAGE_MICROSECONDS = 100_000


def default_bitrate_kbps(format: IcecastFormat, channels: int) -> int:
    """Internet-radio rates: Opus as the browsers get it (``streamer.sinks.opus``), MP3 at 128
    kbit/s per channel."""
    if format == "ogg":
        return round(opus_kbit_per_second(channels, None))
    return 128 * min(channels, 2)


class _Collected:
    """A write-only file the muxer writes into; ``take`` empties it."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


class StreamEncoder:
    """Encodes float32 (channels, n) blocks at ``sample_rate`` into Ogg Opus or MP3 bytes."""

    def __init__(
        self,
        format: IcecastFormat,
        sample_rate: int,
        channels: int,
        bitrate_kbps: int,
    ) -> None:
        if channels not in (1, 2):
            raise ValueError(f"Icecast streams are mono or stereo, got {channels} channels")
        self.format = format
        self.channels = channels
        self.bitrate_kbps = bitrate_kbps
        self.encoded_rate = OPUS_SAMPLE_RATE if format == "ogg" else sample_rate
        self._layout = "mono" if channels == 1 else "stereo"
        self._resampler = (
            soxr.ResampleStream(sample_rate, OPUS_SAMPLE_RATE, channels, dtype="float32")
            if self.encoded_rate != sample_rate
            else None
        )
        self._file = _Collected()
        if format == "ogg":
            options = {"page_duration": str(OGG_PAGE_MICROSECONDS)}
            codec = "libopus"
        else:  # no ID3 tag or Xing header: a live stream has neither a start nor an end to seek
            options = {"id3v2_version": "0", "write_xing": "0"}
            codec = "libmp3lame"
        self._container = av.open(self._file, "w", format=format, options=options)
        self._stream = self._container.add_stream(codec, rate=self.encoded_rate, layout=self._layout)
        self._stream.bit_rate = bitrate_kbps * 1000
        self.samples_in = 0

    @property
    def started(self) -> bool:
        """Whether audio (and with it the stream header) has gone in."""
        return self.samples_in > 0

    def set_title(self, title: str) -> None:
        """The title in the stream's header (Ogg's OpusTags); only before it has ``started``."""
        if self.started:
            raise RuntimeError("the stream header is written: its title can no longer change")
        self._stream.metadata["title"] = title

    @property
    def audio_info(self) -> str:
        """The ``ice-audio-info`` header's value."""
        return f"channels={self.channels};samplerate={self.encoded_rate};bitrate={self.bitrate_kbps}"

    def encode(self, samples: np.ndarray) -> bytes:
        """The bytes the muxer has ready after this block (may be none: pages fill first)."""
        self.samples_in += samples.shape[1]
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(np.ascontiguousarray(samples.T)).T
        if samples.shape[1]:
            self._mux(samples)
        return self._file.take()

    def close(self) -> bytes:
        """Flush the encoder and end the stream (Ogg's end-of-stream page): the last bytes."""
        if self._resampler is not None:
            rest = self._resampler.resample_chunk(
                np.zeros((0, self.channels), np.float32), last=True
            ).T
            if rest.shape[1]:
                self._mux(rest)
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._file.take()

    def _mux(self, samples: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32), format="fltp", layout=self._layout
        )
        frame.sample_rate = self.encoded_rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
