"""Playing a stream faster or slower without changing its pitch: a streaming WSOLA time-stretch.

The stream is made at its seed loop's tempo; to follow another tempo (an Ableton Link session)
its samples are read ``ratio`` times as fast (source samples per output sample) by waveform
similarity overlap-add (WSOLA): every ``hop`` output samples a Hann-windowed segment of
``window`` source samples is added in, taken near the ideal read position where it best
continues the segment before it (within ``tolerance``). Hann windows at half overlap sum to one,
so at ratio 1 the output is the input exactly; near 1 (a drummer's 120 BPM against a 117 BPM
loop is 1.024) only the segments' seams differ. The ratio may change at any hop, which is how
a tempo change is followed without a click; ``jump`` moves the read position forward (the seam
is the same overlap-add, a 23 ms crossfade).

Chosen over resampling the spectrogram before the vocoder because frames made ahead at one
tempo can then play at any later tempo (no re-vocoding when the session's tempo moves), and
over ``pedalboard.time_stretch`` because that works on whole buffers, not on an endless stream.
Quality figures: ``benchmarks/stretch.py`` (onset timing and spectral difference).

Pure: samples in, samples out, no clock.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class StretchConfig:
    """WSOLA's segment length and search range, in seconds."""

    #: Segment length: longer than a bass period (40 Hz = 25 ms), short enough that a drum hit
    #: is not heard twice.
    window_seconds: float = 0.046
    #: How far a segment may move from the ideal read position to continue its predecessor.
    tolerance_seconds: float = 0.006

    def __post_init__(self) -> None:
        if not 0.005 <= self.window_seconds <= 0.2:
            raise ValueError(
                f"window_seconds must be 0.005..0.2, got {self.window_seconds}"
            )
        if not 0 <= self.tolerance_seconds <= self.window_seconds / 2:
            raise ValueError("tolerance_seconds must be 0..window_seconds / 2")


class StreamStretcher:
    """Feed source samples, take stretched ones; see the module docstring."""

    def __init__(
        self, channels: int, sample_rate: int, config: StretchConfig | None = None
    ):
        config = config or StretchConfig()
        self.channels = channels
        self.hop = max(1, round(config.window_seconds * sample_rate / 2))
        self.window = 2 * self.hop
        self.tolerance = round(config.tolerance_seconds * sample_rate)
        # Periodic Hann: copies spaced by ``hop`` sum to exactly one.
        self._hann = (
            0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.window) / self.window)
        ).astype(np.float32)
        self._source = np.zeros((channels, 0), dtype=np.float32)
        self._source_start = 0  # absolute source position of self._source[:, 0]
        self._fed = 0  # source samples fed so far
        self._read = 0.0  # ideal source position of the next segment
        self._last: int | None = None  # source position of the last segment used
        self._carry = np.zeros(
            (channels, self.hop), dtype=np.float32
        )  # its second half
        self._ready = np.zeros(
            (channels, 0), dtype=np.float32
        )  # finished, not yet taken
        self._emitted = 0  # output samples finished (taken or ready)
        #: (output position, source position, ratio) of the last segment: the map between them.
        self._anchor: tuple[int, float, float] = (0, 0.0, 1.0)

    @property
    def ready(self) -> int:
        """Finished output samples not yet taken."""
        return self._ready.shape[1]

    @property
    def taken(self) -> int:
        """Output samples taken so far: the output position of the next one."""
        return self._emitted - self.ready

    def source_needed(self) -> int:
        """Source samples still to feed before the next ``step``."""
        end = int(np.floor(self._read)) + self.tolerance + self.window
        if self._last is not None:
            end = max(end, self._last + self.hop + self.window)
        return max(0, end - self._fed)

    def feed(self, samples: np.ndarray) -> None:
        self._source = np.concatenate([self._source, samples], axis=1)
        self._fed += samples.shape[1]

    def jump(self, source_samples: float) -> None:
        """Read on from ``source_samples`` further ahead (> 0) from the next segment."""
        self._read += source_samples

    def step(self, ratio: float) -> None:
        """Add one segment, finishing ``hop`` output samples; then read ``ratio`` x ``hop``
        source samples further."""
        if self.source_needed():
            raise ValueError("feed the source samples source_needed() asks for first")
        ideal = int(np.floor(self._read))
        start = ideal
        if self._last is not None and self.tolerance:
            start = self._best_continuation(ideal)
        segment = self._slice(start, self.window) * self._hann
        finished = self._carry + segment[:, : self.hop]
        self._carry = segment[:, self.hop :].copy()
        self._anchor = (self._emitted, float(start), ratio)
        self._ready = np.concatenate([self._ready, finished], axis=1)
        self._emitted += self.hop
        self._last = start
        self._read += ratio * self.hop
        self._trim()

    def take(self, count: int) -> np.ndarray:
        if count > self.ready:
            raise ValueError(f"only {self.ready} samples are ready, {count} asked for")
        out, self._ready = self._ready[:, :count], self._ready[:, count:]
        return out

    def output_position(self, source_position: float) -> int:
        """Where a source position is heard in the output (by the last segment's map), never
        before the samples not yet taken."""
        output, source, ratio = self._anchor
        return max(self.taken, output + round((source_position - source) / ratio))

    def source_position(self, output_position: int) -> float:
        """The source position heard at an output position (by the last segment's map)."""
        output, source, ratio = self._anchor
        return source + (output_position - output) * ratio

    # -- internals ------------------------------------------------------------------------------
    def _best_continuation(self, ideal: int) -> int:
        """The start within ``tolerance`` of ``ideal`` whose first half best matches what would
        naturally follow the last segment (normalised cross-correlation, channels summed). Near
        ties go to the start nearest ``ideal``, and silence follows ``ideal``: the read position
        strays from where the tempo puts it only where that buys a smoother seam."""
        natural = self._slice(self._last + self.hop, self.hop).sum(axis=0)
        if float(np.dot(natural, natural)) < 1e-10:
            return ideal
        low = ideal - self.tolerance
        region = self._slice(low, 2 * self.tolerance + self.hop).sum(axis=0)
        scores = np.correlate(region, natural, mode="valid")
        energy = np.convolve(
            region * region, np.ones(self.hop, dtype=np.float32), mode="valid"
        )
        scores = scores / np.sqrt(np.maximum(energy, 1e-12))
        distance = np.abs(np.arange(scores.size) - self.tolerance) / self.tolerance
        scores = scores - 1e-3 * float(np.abs(scores).max()) * distance
        return low + int(np.argmax(scores))

    def _slice(self, start: int, count: int) -> np.ndarray:
        offset = start - self._source_start
        return self._source[:, offset : offset + count]

    def _trim(self) -> None:
        keep = min(int(np.floor(self._read)) - self.tolerance, self._last + self.hop)
        drop = keep - self._source_start
        if drop > 0:
            self._source = self._source[:, drop:]
            self._source_start = keep
