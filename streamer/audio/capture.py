"""Live input on the bar: which input samples are the last N whole bars, and the guards a
capture passes before it becomes a seed.

Pure: clocks and samples in, a window of sample indices or a refusal out; the input device, the
ring it writes and the engine are the shell's (``streamer.runtime.capture``), the seed it makes
``streamer.seeds.capture``'s.

Two timelines meet here, both on the monotonic clock:

- the **grid** (``BeatClock``): the stream's beat as heard, counted from its bar one (or a Link
  session's beat when the stream follows one), and its tempo;
- the **input** (``InputTimeline``): by time ``at`` the ring held ``written`` samples; each
  arrived ``latency_seconds`` after it sounded (what the device reports, or ``--input-latency``).

A player plays along to what they hear, so the sound at time T belongs to the grid's beat at T.
The window ends on the last bar line whose sound has fully arrived and starts ``bars`` bars
before it; each end is the input sample nearest the bar line's time, so it is within half a
sample (0.01 ms at 48 kHz) of the grid, far inside the 10 ms a listener hears as "on the beat".

Guards: a window the ring no longer (or does not yet) holds is refused; so is silence or
near-silence (RMS under ``SILENCE_RMS_DBFS``), and the current seed stays. A capture is levelled
to ``CAPTURE_PEAK`` (a quiet take and a clipped one make seeds of the same level; a clipped one is
reported as such, since its flattened tops cannot be undone).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from streamer.plan.controls import MAX_CAPTURE_BARS, MIN_CAPTURE_BARS

#: A capture quieter than this (RMS, dB below full scale) is refused as silence.
SILENCE_RMS_DBFS = -50.0
#: A sample at or above this magnitude counts as clipped.
CLIP_LEVEL = 0.999
#: The peak every capture is levelled to (-6 dBFS).
CAPTURE_PEAK = 0.5


#: Every ``code`` a capture may be refused with (docs/PROTOCOL.md lists them for clients).
REFUSAL_CODES = (
    "no_input", "not_playing", "not_enough_input", "silence", "busy", "unsupported_tempo",
    "invalid_value",
)  # fmt: skip


class CaptureRefused(Exception):
    """Why no seed was made; ``code`` is a snake_case word a client can branch on, ``message``
    says what to do. The current seed loop stays."""

    def __init__(self, code: str, message: str) -> None:
        assert code in REFUSAL_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass(frozen=True)
class BeatClock:
    """The beat grid as heard: beat ``beat`` (counted from bar one) sounds at monotonic time
    ``at``; ``tempo_bpm`` beats a minute, ``beats_per_bar`` to the bar."""

    tempo_bpm: float
    beat: float
    at: float
    beats_per_bar: int = 4

    def beat_at(self, time: float) -> float:
        return self.beat + (time - self.at) * self.tempo_bpm / 60.0

    def time_at(self, beat: float) -> float:
        return self.at + (beat - self.beat) * 60.0 / self.tempo_bpm


@dataclasses.dataclass(frozen=True)
class InputTimeline:
    """Where the input ring stood: ``written`` samples in all had arrived by monotonic time
    ``at``, each ``latency_seconds`` after it sounded; the ring still holds the last ``held``."""

    sample_rate: int
    written: int
    at: float
    latency_seconds: float
    held: int

    def index_at(self, time: float) -> float:
        """The input sample (fractional) that holds the sound of monotonic time ``time``."""
        return self.written + (time + self.latency_seconds - self.at) * self.sample_rate

    @property
    def newest_sound(self) -> float:
        """When the newest sample in the ring sounded."""
        return self.at - self.latency_seconds


@dataclasses.dataclass(frozen=True)
class CaptureWindow:
    """Input samples ``[first, last)`` hold ``bars`` bars from grid beat ``start_beat``;
    ``offset_seconds``: how far the first sample lies from the bar line's exact time."""

    first: int
    last: int
    bars: int
    start_beat: float
    tempo_bpm: float
    offset_seconds: float


def capture_window(grid: BeatClock, timeline: InputTimeline, bars: int) -> CaptureWindow:
    """The last ``bars`` whole bars whose sound the ring holds (see the module docstring);
    ``CaptureRefused`` when the ring does not hold them all."""
    if not MIN_CAPTURE_BARS <= bars <= MAX_CAPTURE_BARS:
        raise CaptureRefused(
            "invalid_value", f"a capture takes {MIN_CAPTURE_BARS} to {MAX_CAPTURE_BARS} bars, not {bars}"
        )
    per_bar = grid.beats_per_bar
    newest_beat = grid.beat_at(timeline.newest_sound)
    # A bar line a hair after the newest sound (rounding) has not arrived yet.
    end_beat = math.floor(newest_beat / per_bar + 1e-9) * per_bar
    start_beat = end_beat - bars * per_bar
    exact_first = timeline.index_at(grid.time_at(start_beat))
    first = round(exact_first)
    last = round(timeline.index_at(grid.time_at(end_beat)))
    oldest = timeline.written - timeline.held
    if first < oldest:
        reach = timeline.newest_sound - grid.time_at(start_beat)
        heard = (timeline.written - max(0, oldest)) / timeline.sample_rate
        raise CaptureRefused(
            "not_enough_input",
            f"the last {bars} whole bars began {reach:.1f} s ago; the input holds {heard:.1f} s "
            "so far: play on and capture again",
        )
    return CaptureWindow(
        first=first,
        last=last,
        bars=bars,
        start_beat=start_beat,
        tempo_bpm=grid.tempo_bpm,
        offset_seconds=(first - exact_first) / timeline.sample_rate,
    )


@dataclasses.dataclass(frozen=True)
class Levels:
    """Input levels: peak and RMS as linear amplitudes (full scale 1), samples clipped."""

    peak: float
    rms: float
    clipped_samples: int

    @property
    def peak_dbfs(self) -> float:
        return _dbfs(self.peak)

    @property
    def rms_dbfs(self) -> float:
        return _dbfs(self.rms)


def _dbfs(amplitude: float) -> float:
    return 20.0 * math.log10(amplitude) if amplitude > 0.0 else -math.inf


def measure_levels(samples: np.ndarray) -> Levels:
    """Peak, RMS and clipped samples of mono ``samples`` (float, full scale 1)."""
    if samples.size == 0:
        return Levels(0.0, 0.0, 0)
    magnitude = np.abs(samples)
    return Levels(
        peak=float(magnitude.max()),
        rms=float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))),
        clipped_samples=int(np.count_nonzero(magnitude >= CLIP_LEVEL)),
    )


def check_audible(levels: Levels) -> None:
    """``CaptureRefused`` for silence or near-silence."""
    if levels.rms_dbfs < SILENCE_RMS_DBFS:
        shown = "no signal at all" if levels.rms == 0.0 else f"{levels.rms_dbfs:.0f} dBFS RMS"
        raise CaptureRefused(
            "silence",
            f"the input was silent over those bars ({shown}; a capture needs at least "
            f"{SILENCE_RMS_DBFS:g} dBFS): check the input and its level; the seed loop stays",
        )


def levelled(samples: np.ndarray) -> np.ndarray:
    """``samples`` (float64) brought to ``CAPTURE_PEAK``; silence stays silence."""
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    return samples * (CAPTURE_PEAK / peak) if peak > 0.0 else samples


def bar_samples(bars: int, beats_per_bar: int, tempo_bpm: float, sample_rate: int) -> int:
    """Samples ``bars`` bars take at ``tempo_bpm``, at ``sample_rate``."""
    return round(bars * beats_per_bar * 60.0 / tempo_bpm * sample_rate)


#: An automatic capture waits this long after its bar line's sound is due in the ring.
AUTO_CAPTURE_MARGIN_SECONDS = 0.05


def next_auto_capture(grid: BeatClock, now: float, every_bars: int, latency_seconds: float) -> float:
    """When ``--capture-every`` takes its next capture: just after the sound of the next bar line
    that is a multiple of ``every_bars`` bars (counted from bar one) has reached the ring."""
    span = every_bars * grid.beats_per_bar
    line = (math.floor(grid.beat_at(now) / span + 1e-9) + 1) * span
    return grid.time_at(line) + latency_seconds + AUTO_CAPTURE_MARGIN_SECONDS

