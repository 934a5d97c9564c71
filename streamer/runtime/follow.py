"""Following another player's tempo and bar (an Ableton Link session): the pure decisions.

The stream is made at its seed loop's tempo and played at the session's through a time-stretch
(``streamer.audio.stretch``), read ``ratio`` source samples per output sample. Before each block
the core compares where the session's beat will be when the block is heard with the stream's
own beat there (counted from its bar one), modulo the session's quantum (a bar of 4 beats):

- a phase error under ``jump_beats`` is closed smoothly: the ratio is nudged by at most
  ``max_correction`` so that the error would be gone in ``correction_seconds``;
- a stream ahead of the session by up to ``hold_beats`` (a late estimate of when a block is
  heard, a clock that ran fast) slows down by ``hold_slowdown`` until the session has caught
  up: the read position only moves forward, and a jump would skip most of a bar;
- any other error (the first block, a session joined mid-stream, a peer that moved its bar)
  moves the read position forward to the session's phase at once (the stretch's overlap-add
  is the crossfade).

A tempo change in the session just changes the ratio from the next block (a 62 ms block, well
within a bar); Link keeps its beat continuous across it, so no jump follows.
"""

from __future__ import annotations

import dataclasses
import logging


@dataclasses.dataclass(frozen=True)
class LinkConfig:
    """How the stream follows a Link session."""

    #: Beats of the session's bar: the stream's bar one lands on the session's beat 0 modulo it.
    quantum_beats: int = 4
    #: Session tempo over the seed loop's that the stretch will play; outside, the stream keeps
    #: its last tempo and says why (WSOLA sounds its best near 1).
    min_ratio: float = 0.5
    max_ratio: float = 2.0
    #: Phase errors above this (in beats) are closed by a jump, smaller ones by a nudge.
    jump_beats: float = 0.1
    #: A nudge closes the phase error over this much time...
    correction_seconds: float = 1.0
    #: ...changing the tempo by at most this fraction.
    max_correction: float = 0.02
    #: A stream ahead by up to this many beats waits for the session by playing slower...
    hold_beats: float = 0.5
    #: ...by this fraction of the session's tempo (0.25: 0.5 beats are caught up in 2 beats).
    hold_slowdown: float = 0.25
    #: Seconds between readings of the session.
    poll_seconds: float = 0.02

    def __post_init__(self) -> None:
        if not 1 <= self.quantum_beats <= 16:
            raise ValueError(f"quantum_beats must be 1..16, got {self.quantum_beats}")
        if not 0 < self.min_ratio < 1 < self.max_ratio:
            raise ValueError("min_ratio must be in (0, 1) and max_ratio above 1")
        if not 0 < self.jump_beats < self.quantum_beats / 2:
            raise ValueError("jump_beats must be above 0 and under half the quantum")
        if self.correction_seconds <= 0 or not 0 < self.max_correction < 0.5:
            raise ValueError(
                "correction_seconds must be > 0 and max_correction in (0, 0.5)"
            )
        if not self.jump_beats <= self.hold_beats < self.quantum_beats / 2:
            raise ValueError("hold_beats must be at least jump_beats and under half the quantum")
        if not 0 < self.hold_slowdown < 1:
            raise ValueError(f"hold_slowdown must be in (0, 1), got {self.hold_slowdown}")
        if self.poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be positive, got {self.poll_seconds}")


@dataclasses.dataclass(frozen=True)
class SessionTimeline:
    """A Link session read at one moment: its tempo, and its beat at monotonic time ``at``."""

    tempo_bpm: float
    beat: float
    at: float

    def beat_at(self, time: float) -> float:
        return self.beat + (time - self.at) * self.tempo_bpm / 60.0


@dataclasses.dataclass(frozen=True)
class Steer:
    """How to read the source for the next block: ``jump_beats`` forward first (0: none), then
    ``ratio`` source samples per output sample."""

    ratio: float
    jump_beats: float


class TempoFollower:
    """Keeps the stream's beat on the session's: see the module docstring."""

    def __init__(self, config: LinkConfig) -> None:
        self.config = config
        self.session: SessionTimeline | None = None
        self._refused: float | None = None  # the last out-of-range tempo reported

    def update(
        self, session: SessionTimeline, seed_bpm: float
    ) -> tuple[int, str] | None:
        """A new reading of the session. A tempo the stretch cannot play is refused with a log
        line (once per tempo), and the stream keeps following the last good one."""
        ratio = session.tempo_bpm / seed_bpm
        config = self.config
        if config.min_ratio <= ratio <= config.max_ratio:
            self.session, self._refused = session, None
            return None
        if self._refused == session.tempo_bpm:
            return None
        self._refused = session.tempo_bpm
        keeps = (
            "its own tempo"
            if self.session is None
            else f"{self.session.tempo_bpm:.2f} BPM"
        )
        message = (
            f"the Link session's tempo {session.tempo_bpm:.2f} BPM is outside what this seed "
            f"loop ({seed_bpm:.2f} BPM) can follow ({seed_bpm * config.min_ratio:.2f}-"
            f"{seed_bpm * config.max_ratio:.2f} BPM); the stream keeps {keeps}"
        )
        return logging.WARNING, message

    def steer(self, stream_beat: float, heard_at: float, seed_bpm: float) -> Steer:
        """How to read on so that the stream's beat ``stream_beat`` (at the next block's first
        sample, heard at ``heard_at``) meets the session's."""
        session = self.session
        if session is None:
            return Steer(1.0, 0.0)
        quantum = self.config.quantum_beats
        ahead = (
            session.beat_at(heard_at) - stream_beat
        ) % quantum  # session ahead, in beats
        error = ahead if ahead < quantum / 2 else ahead - quantum
        base = session.tempo_bpm / seed_bpm
        if -self.config.hold_beats <= error < -self.config.jump_beats:
            return Steer(base * (1.0 - self.config.hold_slowdown), 0.0)
        if abs(error) > self.config.jump_beats:
            return Steer(base, ahead)
        seconds = error * 60.0 / session.tempo_bpm
        correction = seconds / self.config.correction_seconds
        limit = self.config.max_correction
        return Steer(base * (1.0 + max(-limit, min(limit, correction))), 0.0)
