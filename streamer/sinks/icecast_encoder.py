"""The stream as bytes an Icecast server and its listeners' players understand: Ogg Opus or MP3.

Ogg Opus carries the stream's one Opus encoding (``streamer.sinks.opus.OpusEncoding``, which the
WebSocket listeners get too): ``OggOpusMuxer`` puts its packets into Ogg pages with FFmpeg's Ogg
muxer through PyAV and encodes nothing. MP3 has its own encoder, ``Mp3Encoder`` (LAME through
PyAV, at the stream's rate). No I/O here: packets or blocks in, bytes out.

One muxer or encoder is one Icecast source connection: a reconnection starts a new one, so the
new connection begins with the stream headers a listener's player needs (Ogg's OpusHead and
OpusTags, which carry the title at that moment).
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from streamer.audio.blocks import AudioBlock
from streamer.sinks.opus import FRAME_SAMPLES, OPUS_RATE, OpusBatch

#: Stream time per Ogg page: how long encoded audio may wait in the muxer before it is sent.
OGG_PAGE_MICROSECONDS = 100_000
#: MP3's default bitrate per channel, in kbit/s (internet-radio quality).
MP3_KBPS_PER_CHANNEL = 128


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


class OggOpusMuxer:
    """The stream's Opus packets in, an Ogg Opus stream's bytes out.

    The Ogg stream begins at the first packet it is given: its granule positions count 48 kHz
    samples from there, the encoding's pre-skip included (the OpusHead is the encoding's own),
    so a player decodes the packets exactly as a WebSocket listener who joined at that packet.
    """

    def __init__(self, title: str) -> None:
        """``title``: what the stream's header (OpusTags) names it."""
        self._file = _Collected()
        self._title = title
        self._container: av.container.OutputContainer | None = None
        self._stream: av.audio.stream.AudioStream | None = None
        self._origin = 0  # codec position of the first packet
        self._pre_skip = 0

    def write(self, batch: OpusBatch) -> bytes:
        """The bytes the muxer has ready after these packets (may be none: pages fill first)."""
        for packet in batch.packets:
            if self._stream is None:
                self._start(batch, packet.codec_position)
            assert self._container is not None and self._stream is not None
            muxed = av.Packet(packet.data)
            muxed.pts = muxed.dts = packet.codec_position - self._origin - self._pre_skip
            muxed.duration = FRAME_SAMPLES
            muxed.time_base = Fraction(1, OPUS_RATE)
            muxed.stream = self._stream
            self._container.mux(muxed)
        return self._file.take()

    def close(self) -> bytes:
        """End the stream (Ogg's end-of-stream page) at the last packet so far: the last bytes.
        The encoding goes on for the other outputs, and holds the last few milliseconds of
        audio in its resampler and look-ahead."""
        if self._container is not None:
            self._container.close()
        return self._file.take()

    def _start(self, batch: OpusBatch, origin: int) -> None:
        options = {"page_duration": str(OGG_PAGE_MICROSECONDS)}
        container = av.open(self._file, "w", format="ogg", options=options)
        layout = "mono" if batch.format.channels == 1 else "stereo"
        stream = container.add_stream("libopus", rate=OPUS_RATE, layout=layout)
        # FFmpeg takes an output stream's parameters from an open codec context; this one never
        # encodes. Opened with the same library as the encoding, its initial padding (which the
        # muxer adds to granule positions) is the encoding's pre-skip; the header is the
        # encoding's OpusHead.
        stream.codec_context.open()
        stream.codec_context.extradata = batch.format.opus_head
        stream.metadata["title"] = self._title
        self._container, self._stream = container, stream
        self._origin, self._pre_skip = origin, batch.format.pre_skip


class Mp3Encoder:
    """Encodes the stream's blocks (at ``sample_rate``) into MP3 bytes."""

    def __init__(self, sample_rate: int, channels: int, bitrate_kbps: int) -> None:
        if channels not in (1, 2):
            raise ValueError(f"Icecast streams are mono or stereo, got {channels} channels")
        self._layout = "mono" if channels == 1 else "stereo"
        self._sample_rate = sample_rate
        self._file = _Collected()
        # No ID3 tag or Xing header: a live stream has neither a start nor an end to seek.
        options = {"id3v2_version": "0", "write_xing": "0"}
        self._container = av.open(self._file, "w", format="mp3", options=options)
        self._stream = self._container.add_stream(
            "libmp3lame", rate=sample_rate, layout=self._layout
        )
        self._stream.bit_rate = bitrate_kbps * 1000

    def write(self, block: AudioBlock) -> bytes:
        """The bytes the muxer has ready after this block (may be none: frames fill first)."""
        samples = np.ascontiguousarray(block.samples, dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=self._layout)
        frame.sample_rate = self._sample_rate
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._file.take()

    def close(self) -> bytes:
        """Flush the encoder and end the stream: the last bytes."""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._file.take()
