"""Audio frames -> one endless stream: loop-aligned crossfades, seamless repeats when behind.

Every frame is one period of a seamless loop, and all frames of a stream share that period and,
coming from one seed loop, its beat grid. So the stream has one loop position (counted from where
the first frame started) and every frame is read at it: switching frames never moves the beat,
a late frame simply keeps looping (seamlessly, because it is periodic), and a new frame enters at
the same place in the bar that the old one leaves.

When a frame is switched in:

* It plays one full period from where it became fully audible; its successor then crossfades in
  at the same loop position, the frame's *due* point. If the successor is not there yet, the
  frame keeps looping and the stitcher reports ``behind`` (never silence), and the successor
  enters at the next switch point after it arrives.
* A frame pushed with ``interrupt=True`` does not wait for the current frame's period: it enters
  on the ``quantize`` grid (the engine uses this after a control change, together with
  :meth:`Stitcher.discard_pending`, so that frames of the old plan never play).
* The ``quantize`` grid of an interrupting frame: ``beat``, the next beat; ``bar``, the next bar
  line, bars of ``beats_per_bar`` beats counted from where the first frame started (bar one), so
  with a 10-beat loop a bar line falls on a different loop position each loop; ``off``, as soon
  as the crossfade can run. A frame without beats knows no bars: ``bar`` and ``beat`` then use
  its evenly spaced switch points. The wrap guard below does not apply to it: a control change
  is a deliberate cut heard once, and skipping the downbeat at the wrap made a change ready in
  the beat before it wait 1.5 beats on average (the 20x benchmark's p90 1.23 s, 0.56 s without
  the grid; ``benchmarks/latency.py``), a whole bar with ``bar``.
* Switch points are beats when the frame says how many beats its loop holds (every
  ``switch_every_beats`` beats), otherwise ``switch_points_without_beats`` evenly spaced points,
  minus those whose crossfade would come within ``wrap_guard_seconds`` of the loop's wrap: a
  generated image's left and right edges are its least consistent columns, so a crossfade
  there would blend two doubtful passages. Frames of one plan join there every period, so
  this is the rule for them. The control latency the grid adds is at most the crossfade plus
  one grid spacing: with a beat of 0.51 s at 117 BPM and the default 0.1 s crossfade, 0.61 s.
* The crossfade *ends* at the switch point, so the new frame owns the beat's attack whole and the
  fade runs through the quiet tail of the beat before it; its gains keep the power constant for
  the two frames' measured correlation (see :mod:`streamer.audio.crossfade`).

The stitcher is pure: no threads and no clock. Its output depends only on what was pushed and
when (between which renders), never on how the stream is cut into blocks.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable
from typing import Literal, get_args

import numpy as np

from streamer.audio.crossfade import correlation, crossfade_gains


@dataclasses.dataclass(frozen=True)
class AudioFrame:
    """One period of a seamless loop, float32 (channels, period) in [-1, 1].

    ``beats`` is the number of beats in the period when known (seed loops know theirs). The
    switch event names the frame by ``frame_id``; whoever pushed it keeps what else it knows.
    """

    frame_id: int
    samples: np.ndarray
    beats: int | None = None

    @property
    def period(self) -> int:
        return int(self.samples.shape[1])


#: Where a control change's first frame enters: the next bar line, beat, or crossfade-safe point.
Quantize = Literal["bar", "beat", "off"]
QUANTIZE_CHOICES: tuple[str, ...] = get_args(Quantize)


@dataclasses.dataclass(frozen=True)
class StitcherConfig:
    """Where and how frames are joined. Times in seconds at ``sample_rate``.

    ``crossfade_seconds`` 0.1: measured on groove variations (raw, and vocoded warm and cold),
    every length from 10 ms to 0.4 s joins without a click and the correlation-normalised fade
    holds the level over the fade within 0.4 dB; in 50 ms windows inside the fade, though, the
    level wanders up to 1.5-2.4 dB at 0.4 s (the correlation changes within a long fade) and at
    most 0.7 dB at 0.1-0.2 s. 0.1 s fits in the quiet tail before a beat (a 16th note at 140
    BPM is 0.107 s) and adds little to the control latency. Not auditioned: this machine has no
    sound output.
    """

    sample_rate: int = 44100
    channels: int = 1
    crossfade_seconds: float = 0.1
    switch_every_beats: int = 1
    switch_points_without_beats: int = 8
    #: Where an interrupting frame (a control change's first) enters; see the module docstring.
    quantize: Quantize = "beat"
    #: Beats of the seed loop in one bar, for ``quantize="bar"``.
    beats_per_bar: int = 4
    wrap_guard_seconds: float = 0.25
    max_pending_frames: int = 16

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate <= 0:
            problems.append(f"sample_rate must be positive, got {self.sample_rate}")
        if self.channels < 1:
            problems.append(f"channels must be at least 1, got {self.channels}")
        if not self.crossfade_seconds * self.sample_rate >= 1:
            problems.append(
                f"crossfade_seconds must be at least one sample, got {self.crossfade_seconds}"
            )
        if self.switch_every_beats < 1 or self.switch_points_without_beats < 1:
            problems.append(
                "switch_every_beats and switch_points_without_beats must be at least 1"
            )
        if self.quantize not in QUANTIZE_CHOICES:
            problems.append(
                f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, got {self.quantize!r}"
            )
        if not 1 <= self.beats_per_bar <= 64:
            problems.append(f"beats_per_bar must be 1..64, got {self.beats_per_bar}")
        if self.wrap_guard_seconds < 0:
            problems.append(f"wrap_guard_seconds must be >= 0, got {self.wrap_guard_seconds}")
        if self.max_pending_frames < 1:
            problems.append(
                f"max_pending_frames must be at least 1, got {self.max_pending_frames}"
            )
        if problems:
            raise ValueError("invalid stitcher settings: " + "; ".join(problems))

    @property
    def crossfade_samples(self) -> int:
        return int(round(self.crossfade_seconds * self.sample_rate))

    @property
    def wrap_guard_samples(self) -> int:
        return int(round(self.wrap_guard_seconds * self.sample_rate))


@dataclasses.dataclass(frozen=True)
class SwitchEvent:
    """A frame entering the stream: its crossfade spans stream samples [start, end)."""

    frame_id: int
    start_position: int
    end_position: int


@dataclasses.dataclass(frozen=True)
class StitchedAudio:
    """``samples`` (float32, (channels, n)) of the stream from ``start_position``.

    ``events`` are the switches whose crossfade began in this block. ``behind`` says the current
    frame played past its period in this block because no successor was ready; ``repeats`` counts
    the periods it has started beyond its own (0 when on time).
    """

    samples: np.ndarray
    start_position: int
    events: tuple[SwitchEvent, ...]
    behind: bool
    repeats: int


@dataclasses.dataclass(frozen=True)
class GridPoints:
    """Switch points: offsets (sorted) within a cycle of ``cycle`` samples from bar one."""

    points: np.ndarray
    cycle: int


@dataclasses.dataclass
class _Pending:
    frame: AudioFrame
    interrupt: bool


@dataclasses.dataclass(frozen=True)
class _Crossfade:
    incoming: AudioFrame
    start: int
    end: int
    fade_out: np.ndarray
    fade_in: np.ndarray


class Stitcher:
    """Joins pushed frames into a continuous stream; see the module docstring for the rules."""

    def __init__(self, config: StitcherConfig | None = None) -> None:
        self.config = config or StitcherConfig()
        self._pending: collections.deque[_Pending] = collections.deque()
        self._current: AudioFrame | None = None
        self._due = 0  # stream position where the current frame's period is over
        self._crossfade: _Crossfade | None = None
        self._position = 0
        self._period: int | None = None  # samples per loop, set by the first frame
        self._origin = 0  # stream position of loop position 0: where the first frame started

    @property
    def position(self) -> int:
        """Stream samples rendered so far; the next render starts here."""
        return self._position

    @property
    def pending_count(self) -> int:
        """Frames pushed and not yet started (a frame whose crossfade began is not pending)."""
        return len(self._pending)

    @property
    def current_frame_id(self) -> int | None:
        """The frame playing now (the incoming one once its crossfade is over)."""
        return None if self._current is None else self._current.frame_id

    def beat_position(self, position: int) -> float | None:
        """Beats from bar one at a stream position, by the beat grid of the frame playing (or,
        before the first, of the first pushed); None when that frame does not know its beats."""
        frame = self._current or (self._pending[0].frame if self._pending else None)
        if frame is None or not frame.beats:
            return None
        return (position - self._origin) * frame.beats / frame.period

    def push(self, frame: AudioFrame, *, interrupt: bool = False) -> None:
        """Queue a frame behind those pending (FIFO). With ``interrupt`` it enters at the first
        switch point after it reaches the head of the queue, instead of after the current frame's
        period."""
        samples = frame.samples
        if samples.ndim != 2 or samples.dtype != np.float32:
            raise ValueError(
                f"frame {frame.frame_id}: samples must be float32 shaped (channels, period), "
                f"got {samples.dtype} {samples.shape}"
            )
        if samples.shape[0] != self.config.channels:
            raise ValueError(
                f"frame {frame.frame_id} has {samples.shape[0]} channels but the stream has "
                f"{self.config.channels}"
            )
        if self._period is not None and frame.period != self._period:
            raise ValueError(
                f"frame {frame.frame_id} is a loop of {frame.period} samples but the stream's "
                f"loops are {self._period}: all frames of a stream must have the same length"
            )
        if len(self._pending) >= self.config.max_pending_frames:
            raise ValueError(
                f"{len(self._pending)} frames are already pending (max_pending_frames); "
                "push fewer frames ahead or raise the limit"
            )
        self._switch_points(frame)  # fail early on a loop too short for the crossfade
        if self._period is None:
            self._period = frame.period
        self._pending.append(_Pending(frame, interrupt))

    def discard_pending(
        self, predicate: Callable[[AudioFrame], bool] | None = None
    ) -> list[AudioFrame]:
        """Drop pending frames (all, or those ``predicate`` accepts) and return them, oldest
        first. A frame whose crossfade has begun is no longer pending and keeps playing."""
        kept: collections.deque[_Pending] = collections.deque()
        dropped = []
        for entry in self._pending:
            if predicate is None or predicate(entry.frame):
                dropped.append(entry.frame)
            else:
                kept.append(entry)
        self._pending = kept
        return dropped

    def render(self, num_samples: int) -> StitchedAudio:
        """The next ``num_samples`` of the stream. Silence until the first frame is pushed;
        after that never silence."""
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        start = self._position
        out = np.zeros((self.config.channels, num_samples), dtype=np.float32)
        events: list[SwitchEvent] = []
        behind = False
        done = 0
        while done < num_samples:
            count = num_samples - done
            here = self._position
            if self._current is None and self._crossfade is None:
                if not self._pending:
                    break  # nothing pushed yet: silence
                self._origin = here
                self._begin_crossfade(self._pending.popleft().frame, here, events)
            if self._crossfade is not None:
                count = min(count, self._crossfade.end - here)
                self._render_crossfade(out[:, done : done + count], here)
            else:
                switch = self._next_switch()
                if switch is not None and switch[0] == here:
                    self._begin_crossfade(self._pending.popleft().frame, here, events)
                    continue
                if switch is not None:
                    count = min(count, switch[0] - here)
                self._copy_loop(self._current, out[:, done : done + count], here)
                behind |= here + count > self._due
            done += count
            self._position += count
            if self._crossfade is not None and self._position == self._crossfade.end:
                self._finish_crossfade()
        self._position = start + num_samples
        overdue = self._position - self._due
        repeats = 0 if self._current is None or overdue <= 0 else (overdue - 1) // self._period + 1
        return StitchedAudio(out, start, tuple(events), behind, repeats)

    # -- scheduling --------------------------------------------------------------------------

    def _switch_points(
        self, frame: AudioFrame, every_beats: int | None = None, *, guarded: bool = True
    ) -> GridPoints:
        """Where a crossfade into ``frame`` may end: every ``every_beats`` beats (default
        ``switch_every_beats``) counted from bar one, or the frame's evenly spaced points when it
        has no beats; unless ``guarded`` is False, those too near the loop's wrap left out."""
        cfg, period = self.config, frame.period
        every = every_beats or cfg.switch_every_beats
        if frame.beats:
            # The grid repeats after the fewest whole loops that hold whole grid steps.
            loops = every // math.gcd(every, frame.beats)
            spacing = period * every / frame.beats
            count = max(1, loops * frame.beats // every)
        else:
            loops, spacing = 1, period / cfg.switch_points_without_beats
            count = cfg.switch_points_without_beats
        points = np.round(np.arange(count) * spacing).astype(np.int64)
        if not guarded:
            return GridPoints(points, loops * period)
        allowed = points[self._safe(points % period, period)]
        if allowed.size == 0:
            raise ValueError(
                f"no switch point of a {period}-sample loop leaves room for a "
                f"{cfg.crossfade_seconds} s crossfade {cfg.wrap_guard_seconds} s away from the "
                "wrap; shorten crossfade_seconds or wrap_guard_seconds"
            )
        return GridPoints(allowed, loops * period)

    def _safe(self, offsets: np.ndarray, period: int) -> np.ndarray:
        """Which loop positions a crossfade may end at: the whole fade at least
        ``wrap_guard_seconds`` after the wrap, the end at least that long before it."""
        guard, fade = self.config.wrap_guard_samples, self.config.crossfade_samples
        return (offsets - fade >= guard) & (offsets <= period - guard)

    def _first_point_at_or_after(self, grid: GridPoints, position: int) -> int:
        """Stream position of the first point of ``grid`` at or after ``position``."""
        cycles, offset = divmod(position - self._origin, grid.cycle)
        later = grid.points[grid.points >= offset]
        if later.size:
            return self._origin + cycles * grid.cycle + int(later[0])
        return self._origin + (cycles + 1) * grid.cycle + int(grid.points[0])

    def _interrupt_point(self, frame: AudioFrame, earliest: int) -> int:
        """Where an interrupting frame's crossfade ends: on the ``quantize`` grid, wrap or not."""
        cfg = self.config
        if cfg.quantize == "off":
            return earliest
        every = cfg.beats_per_bar if cfg.quantize == "bar" else 1
        grid = self._switch_points(frame, every, guarded=False)
        return self._first_point_at_or_after(grid, earliest)

    def _next_switch(self) -> tuple[int, int] | None:
        """(crossfade start, end) into the head of the queue, or None when nothing is pending."""
        if not self._pending:
            return None
        head = self._pending[0]
        earliest = self._position + self.config.crossfade_samples
        if head.interrupt:
            end = self._interrupt_point(head.frame, earliest)
        else:
            end = self._first_point_at_or_after(
                self._switch_points(head.frame), max(earliest, self._due)
            )
        return end - self.config.crossfade_samples, end

    # -- rendering ---------------------------------------------------------------------------

    def _begin_crossfade(self, incoming: AudioFrame, here: int, events: list[SwitchEvent]) -> None:
        fade = self.config.crossfade_samples
        end = here + fade
        if self._current is None:  # the stream starts: fade in from silence
            fade_out = np.zeros(fade, dtype=np.float32)
            fade_in = crossfade_gains(fade, 0.0)[1]
        else:
            old = np.empty((self.config.channels, fade), dtype=np.float32)
            new = np.empty_like(old)
            self._copy_loop(self._current, old, here)
            self._copy_loop(incoming, new, here)
            fade_out, fade_in = crossfade_gains(fade, correlation(old, new))
        self._crossfade = _Crossfade(incoming, here, end, fade_out, fade_in)
        events.append(SwitchEvent(incoming.frame_id, here, end))

    def _render_crossfade(self, out: np.ndarray, here: int) -> None:
        fade = self._crossfade
        offset = here - fade.start
        gains = slice(offset, offset + out.shape[1])
        incoming = np.empty_like(out)
        self._copy_loop(fade.incoming, incoming, here)
        if self._current is None:
            out[:] = 0.0
        else:
            self._copy_loop(self._current, out, here)
            out *= fade.fade_out[gains]
        out += incoming * fade.fade_in[gains]

    def _finish_crossfade(self) -> None:
        incoming = self._crossfade.incoming
        self._current = incoming
        # Its period is over where it became fully audible plus one period, at a switch point.
        self._due = self._first_point_at_or_after(
            self._switch_points(incoming), self._crossfade.end + self._period
        )
        self._crossfade = None

    def _copy_loop(self, frame: AudioFrame, out: np.ndarray, here: int) -> None:
        """Copy the frame's loop into ``out`` from the loop position of stream sample ``here``."""
        period, samples = self._period, frame.samples
        offset, done, total = (here - self._origin) % period, 0, out.shape[1]
        while done < total:
            count = min(total - done, period - offset)
            out[:, done : done + count] = samples[:, offset : offset + count]
            done += count
            offset = 0
