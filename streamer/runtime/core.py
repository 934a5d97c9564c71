"""The engine's decisions, without threads, clocks or I/O: events in, decisions out.

The threaded shell (``streamer.runtime.engine``) and the offline renderer tell the core what
happened, with the time it happened at, and do what it answers:

=====================================  =========================================================
event                                  decision
=====================================  =========================================================
``next_work(now)``                     ``MakeFrames`` (plan these, make them now) or ``Wait``
                                       (until a time: a retry; or until something changes)
``frames_generated(now)``              a staged maker's batch left the accelerator: it is being
                                       finished on the CPU, the next batch may start
``frames_made(made, now)``             frames queued for the stitcher; stale ones (of an older
                                       plan) discarded; an unplayable one dropped and re-planned
``frames_failed(planned, oom, now)``   ``Retry``: when to try again, whether the batch shrank
``change(settings, now)``              pending frames discarded, the plan rewound to the first
                                       unheard frame; the new plan's first frame interrupts;
                                       ``batch_is_stale``: the batch in flight should stop
``frames_cancelled(now)``              the stale batch stopped: nothing failed, no back-off
``set_paused(paused)``                 nothing new is made; the current frame loops
``render(n, now)``                     the next ``n`` samples and the switches they hold
``heard(switch, now)``                 ``NowPlaying`` and ``FramePicture`` to publish; the
                                       control latency, if the switch is a change's first frame
``status(now)``                        a ``Status`` to publish when the state changed or a
                                       while passed
``speed_warning(now)``                 a warning, once, when frames take longer to make than
                                       to play (again after they have caught up)
``follow(config)``, ``session(...)``   from now on play at a Link session's tempo and phase
                                       (``streamer.runtime.follow``); ``render`` then needs
                                       ``heard_at``, when the block's first sample is heard
=====================================  =========================================================

Rules:

- Generation runs at most ``lookahead_frames`` ahead of playback, ``batch_frames`` per batch;
  frames being finished (``frames_generated``, not yet ``frames_made``) count as ahead. One batch
  is generated at a time; ``frames_made`` is for the oldest batch being finished, or for the
  batch in flight when none is (a maker in one stage).
- A failed batch is retried after ``retry_seconds``, doubled per failure in a row up to
  ``max_retry_seconds`` (a broken GPU must not spin the CPU); after running out of accelerator
  memory the batch halves instead and is retried at once. After ``error_after_failures`` failed
  batches in a row the state is ``error`` (one may be a fluke). A failure re-plans the lost frames
  exactly as they were: the performer's transition and the endless drift's hold are untouched.
- A frame that cannot be played (not finite, wrong shape or type) counts as a failure and is
  re-planned, with the frames after it in its batch.
- The stream never stops: while nothing new is ready the current frame loops (``behind``).
- Until the first frame is rendered the state is ``starting``, and the status says for how long
  the first frame has been in the making. A machine that makes frames slower than they play (the
  average time per frame, or the first frame's time so far, over a frame's stream time) is told
  so with the fix, in the status's ``advice`` and once in the log.
- With a ``LoudnessConfig`` the mix goes through a look-ahead true-peak limiter as it is
  rendered (frames come already levelled: ``streamer.runtime.levelled``); rendered positions
  stay the stitcher's (the limiter's delay is filled from the first render's extra samples).

Not thread-safe: the shell calls it under one lock. ``now`` is any monotonic time in seconds.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Mapping, Sequence

import numpy as np

from streamer.audio.loudness import LoudnessConfig, mix_limiter
from streamer.audio.stitcher import AudioFrame, StitchedAudio, Stitcher, SwitchEvent
from streamer.audio.stretch import StreamStretcher
from streamer.backoff import Backoff
from streamer.plan.arranger import base_loop, loop_beats
from streamer.plan.planner import PlannedFrame, Planner
from streamer.plan.settings import StreamSettings
from streamer.runtime.follow import LinkConfig, SessionTimeline, TempoFollower
from streamer.runtime.frames import MadeFrame
from streamer.runtime.ports import FramePicture, NowPlaying, PromptWeight, Status, StreamState


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    """How far generation runs ahead of playback, how it is paced, and how it recovers."""

    #: Finished frames waiting to be heard, at most. More rides out hiccups of the generator;
    #: fewer makes control changes audible sooner (pending frames are re-planned on a change).
    lookahead_frames: int = 2
    #: Frames generated in one UNet batch.
    batch_frames: int = 1
    #: Size of the blocks the software clock plays and the sinks receive, in seconds.
    block_seconds: float = 0.02
    #: Audio rendered ahead of the clock, in seconds: the real-time path only copies from it.
    render_ahead_seconds: float = 0.25
    #: ...and while a change waits for its first frame: audio already rendered cannot take the
    #: change, so this much less of it makes the change heard sooner (benchmarks/latency.py).
    change_render_ahead_seconds: float = 0.1
    #: Wait after a failed batch before trying again, doubled per failure in a row...
    retry_seconds: float = 0.5
    #: ...up to this.
    max_retry_seconds: float = 30.0
    #: Failed batches in a row after which the status says ``error``.
    error_after_failures: int = 2
    #: Seconds between status events while nothing changes.
    status_interval_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.lookahead_frames <= 64:
            raise ValueError(f"lookahead_frames must be 1..64, got {self.lookahead_frames}")
        if not 1 <= self.batch_frames <= 16:
            raise ValueError(f"batch_frames must be 1..16, got {self.batch_frames}")
        if not 0.002 <= self.block_seconds <= 0.5:
            raise ValueError(f"block_seconds must be 0.002..0.5, got {self.block_seconds}")
        if not self.block_seconds <= self.render_ahead_seconds <= 5.0:
            raise ValueError("render_ahead_seconds must be at least block_seconds and at most 5")
        if not self.block_seconds <= self.change_render_ahead_seconds <= self.render_ahead_seconds:
            raise ValueError(
                "change_render_ahead_seconds must be at least block_seconds and at most "
                "render_ahead_seconds"
            )
        if not 0 <= self.retry_seconds <= self.max_retry_seconds:
            raise ValueError("retry_seconds must be >= 0 and at most max_retry_seconds")
        if self.error_after_failures < 1:
            raise ValueError(f"error_after_failures must be >= 1, got {self.error_after_failures}")
        if not self.status_interval_seconds > 0:
            raise ValueError("status_interval_seconds must be positive")


@dataclasses.dataclass
class EngineMetrics:
    """Counters an operator reads."""

    frames_made: int = 0
    frames_discarded: int = 0
    frames_failed: int = 0
    seconds_per_frame: float = 0.0  # moving average of the maker's time per frame
    underrun_samples: int = 0  # samples the clock found missing (heard as silence)
    behind_episodes: int = 0  # times a frame had to loop on because its successor was late
    batches_cancelled: int = 0  # batches stopped part-way because a change made them stale
    batch_frames: int = 0  # the core's frames per batch now (halved when memory ran out)
    #: Control change -> first sample of its plan heard, for the latest 1000 changes.
    control_latencies_seconds: collections.deque[float] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=1000)
    )

    def snapshot(self) -> EngineMetrics:
        """A copy that later counts leave alone, for a reader on another thread."""
        latencies = self.control_latencies_seconds
        return dataclasses.replace(
            self, control_latencies_seconds=collections.deque(latencies, maxlen=latencies.maxlen)
        )


@dataclasses.dataclass(frozen=True)
class LogLine:
    """Something the operator should read; the shell writes it to the log."""

    level: int
    message: str


@dataclasses.dataclass(frozen=True)
class MakeFrames:
    """Make these frames now, in one batch."""

    frames: tuple[PlannedFrame, ...]


@dataclasses.dataclass(frozen=True)
class Wait:
    """Nothing to make before ``until`` (None: until a frame starts playing, a change or a
    resume)."""

    until: float | None


@dataclasses.dataclass(frozen=True)
class Retry:
    """What follows a failed batch: try again at ``at``; ``release_memory`` after running out of
    accelerator memory (the batch was halved)."""

    at: float
    release_memory: bool
    log: LogLine


@dataclasses.dataclass(frozen=True)
class Rendered:
    audio: StitchedAudio
    log: tuple[LogLine, ...]


class EngineCore:
    """Planner, stitcher and the policy between them. See the module docstring for the rules."""

    def __init__(
        self,
        planner: Planner,
        stitcher: Stitcher,
        config: EngineConfig,
        seed_loop_beats: Mapping[str, int],
        loudness: LoudnessConfig | None = None,
    ) -> None:
        self.planner = planner
        self.stitcher = stitcher
        self.config = config
        self.limiter = (
            None
            if loudness is None
            else mix_limiter(loudness, stitcher.config.sample_rate, stitcher.config.channels)
        )
        self.seed_loop_beats = dict(seed_loop_beats)
        #: Frames per batch now: the configured number, halved each time memory ran out.
        self._batch_frames = config.batch_frames
        self.metrics = EngineMetrics(batch_frames=self._batch_frames)
        self.paused = False
        self._in_flight: tuple[PlannedFrame, ...] = ()
        #: Generated batches being finished (vocoded) on the CPU, oldest first.
        self._finishing: collections.deque[tuple[PlannedFrame, ...]] = collections.deque()
        self._making_since: float | None = None
        self._retry_at: float | None = None
        self._backoff = Backoff(config.retry_seconds, config.max_retry_seconds)
        self._interrupt_next = False
        self._started = False
        self._behind = False
        #: Frames pushed to the stitcher and not yet heard, by frame id.
        self._queued: dict[int, MadeFrame] = {}
        #: (plan version, time) of the latest change not yet heard; an earlier one overtaken
        #: before it was heard has no latency to report.
        self._change_asked: tuple[int, float] | None = None
        self._last_status: tuple[StreamState, float] | None = None
        self._warned_slow = False
        #: Following a Link session: the follower, the stretch between the stitcher and the
        #: output, and switches pulled from the stitcher but not yet reached by the output.
        self._follower: TempoFollower | None = None
        self._stretcher: StreamStretcher | None = None
        self._held: list[SwitchEvent] = []

    # -- what to make -----------------------------------------------------------------------------
    def next_work(self, now: float) -> MakeFrames | Wait:
        if self.paused:
            return Wait(None)
        if self._retry_at is not None and now < self._retry_at:
            return Wait(self._retry_at)
        finishing = sum(len(batch) for batch in self._finishing)
        room = self.config.lookahead_frames - self.stitcher.pending_count - finishing
        if room <= 0:
            return Wait(None)
        self._retry_at = None
        planned = self.planner.next_frames(min(room, self._batch_frames))
        self._in_flight, self._making_since = tuple(planned), now
        return MakeFrames(self._in_flight)

    def frames_generated(self, now: float) -> None:
        """The batch in flight left the accelerator; it is finished apart, and the next batch
        can be generated meanwhile."""
        self._finishing.append(self._in_flight)
        self._in_flight = ()

    def frames_made(self, made: Sequence[object], now: float) -> tuple[LogLine, ...]:
        """Queue a made batch. Frames of an older plan are discarded; the first unplayable frame
        is dropped and re-planned with the rest of its batch."""
        if self._finishing:
            batch = self._finishing.popleft()
        else:
            batch, self._in_flight = self._in_flight, ()
        if not self._in_flight:
            self._making_since = None
        if len(made) < len(batch):
            problem = f"the frame maker returned {len(made)} frames for {len(batch)}"
            return (self._rejected(batch[len(made)].index, problem, now),)
        for planned, frame in zip(batch, made):
            if planned.plan_version != self.planner.plan_version:
                self.metrics.frames_discarded += 1  # a change came while it was being made
                continue
            problem = unplayable(frame)
            if problem is None:
                assert isinstance(frame, MadeFrame)
                problem = self._queue(frame)
            if problem is not None:
                return (self._rejected(planned.index, problem, now),)
        self._backoff.succeeded()
        return ()

    def frames_failed(
        self, planned: Sequence[PlannedFrame], out_of_memory: bool, now: float
    ) -> Retry:
        """The maker raised: the frames are planned again, after a pause or in smaller batches.
        Re-planning starts a new plan version, so a batch generated meanwhile is stale."""
        if tuple(planned) in self._finishing:
            self._finishing.remove(tuple(planned))
        else:
            self._in_flight, self._making_since = (), None
        self.metrics.frames_failed += len(planned)
        if planned:
            self.planner.replan_from(planned[0].index)
        if out_of_memory and self._batch_frames > 1:
            self._batch_frames //= 2
            self.metrics.batch_frames = self._batch_frames
            self._retry_at = now
            message = (
                "the accelerator ran out of memory; retrying with batches of "
                f"{self._batch_frames} frames"
            )
            return Retry(now, True, LogLine(logging.WARNING, message))
        delay = self._back_off(now)
        message = (
            f"making frames failed ({self._backoff.failures} in a row); the current frame keeps "
            f"looping, retry in {delay:.1f} s"
        )
        return Retry(now + delay, False, LogLine(logging.ERROR, message))

    @property
    def batch_is_stale(self) -> bool:
        """The batch in flight was planned before the latest change: every frame of it would be
        discarded, so the maker should stop it now rather than finish it."""
        version = self.planner.plan_version
        return any(planned.plan_version != version for planned in self._in_flight)

    def frames_cancelled(self, now: float) -> None:
        """The maker stopped the stale batch. Its frames were already re-planned by the change;
        the next work can start at once."""
        self._in_flight, self._making_since = (), None
        self.metrics.batches_cancelled += 1

    def _queue(self, frame: MadeFrame) -> str | None:
        planned = frame.planned
        try:
            self.stitcher.push(
                AudioFrame(
                    planned.index,
                    frame.samples,
                    loop_beats(planned.seed_loop, self.seed_loop_beats),
                ),
                interrupt=self._interrupt_next,
            )
        except ValueError as error:
            return str(error)
        self._queued[planned.index] = frame
        self._interrupt_next = False
        self.metrics.frames_made += 1
        weight = 0.2 if self.metrics.seconds_per_frame else 1.0
        self.metrics.seconds_per_frame += weight * (
            frame.seconds_to_make - self.metrics.seconds_per_frame
        )
        return None

    def _rejected(self, index: int, problem: str, now: float) -> LogLine:
        self.metrics.frames_failed += 1
        self.planner.replan_from(index)
        delay = self._back_off(now)
        return LogLine(
            logging.ERROR,
            f"frame {index} is dropped: {problem}; planned again, retry in {delay:.1f} s",
        )

    def _back_off(self, now: float) -> float:
        delay = self._backoff.failed()
        self._retry_at = now + delay
        return delay

    # -- control --------------------------------------------------------------------------------
    @property
    def settings(self) -> StreamSettings:
        return self.planner.settings

    def change(self, settings: StreamSettings, now: float) -> int:
        """Head for new settings: waiting frames are discarded, the walk rewinds to the first
        frame not yet heard, and the new plan's first frame enters at the next switch point.
        Returns the new plan version."""
        discarded = self.stitcher.discard_pending()
        for frame in discarded:
            self._queued.pop(frame.frame_id, None)
        self.metrics.frames_discarded += len(discarded)
        making = [f.index for batch in (self._in_flight, *self._finishing) for f in batch]
        unheard = [f.frame_id for f in discarded] + making
        self.planner.change(settings, min(unheard) if unheard else None)
        self._change_asked = (self.planner.plan_version, now)
        self._interrupt_next = True
        return self.planner.plan_version

    @property
    def render_ahead_seconds(self) -> float:
        """How far ahead of the clock to render now: less while a change waits for its first
        frame, which then enters at the first beat after what is rendered."""
        if self._interrupt_next:
            return self.config.change_render_ahead_seconds
        return self.config.render_ahead_seconds

    def set_paused(self, paused: bool) -> None:
        """Paused, the stream loops the frame it plays (it never stops) and nothing new is
        made; resumed, the walk goes on from there."""
        self.paused = paused

    # -- following a Link session ---------------------------------------------------------------
    def follow(self, config: LinkConfig) -> None:
        """From now on play at the tempo and phase of the sessions ``session`` reports (at the
        seed loop's own until the first)."""
        stitcher = self.stitcher.config
        self._follower = TempoFollower(config)
        self._stretcher = StreamStretcher(stitcher.channels, stitcher.sample_rate)

    @property
    def following(self) -> bool:
        """Whether ``follow`` was called: ``render`` then wants ``heard_at``."""
        return self._follower is not None

    @property
    def followed_session(self) -> tuple[SessionTimeline, int] | None:
        """The Link session followed (its last good reading and its quantum), if any."""
        follower = self._follower
        if follower is None or follower.session is None:
            return None
        return follower.session, follower.config.quantum_beats

    def session(self, timeline: SessionTimeline, now: float) -> tuple[LogLine, ...]:
        """A new reading of the session's tempo and beat."""
        seed_bpm = self.seed_bpm()
        if self._follower is None or seed_bpm is None:
            return ()
        refused = self._follower.update(timeline, seed_bpm)
        return () if refused is None else (LogLine(*refused),)

    def add_seed_loop(self, name: str, beats: int) -> None:
        """A seed loop made while the stream plays (a capture of the live input): ``beats``
        beats fill its frame."""
        self.seed_loop_beats[name] = beats
        self.planner.add_seed_loop(name, beats * 60.0 / self.planner.config.frame_seconds)

    def seed_bpm(self) -> float | None:
        """The tempo frames are made at now: the seed loop's."""
        return self.loop_bpm(self.planner.settings.seed_loop)

    def loop_bpm(self, seed_loop: str) -> float | None:
        """The tempo of a seed loop's frames (None if the loop does not know its beats)."""
        beats = loop_beats(seed_loop, self.seed_loop_beats)
        return None if not beats else beats * 60.0 / self.planner.config.frame_seconds

    def _render_following(self, num_samples: int, heard_at: float) -> StitchedAudio:
        """The stitcher's stream read through the stretch, steered onto the session's beat."""
        stretcher, follower = self._stretcher, self._follower
        start = stretcher.taken
        seed_bpm = self.seed_bpm()
        beat = self.stitcher.beat_position(round(stretcher.source_position(start)))
        steer = (
            follower.steer(beat, heard_at, seed_bpm)
            if beat is not None and seed_bpm is not None
            else None
        )
        ratio = 1.0 if steer is None else steer.ratio
        if steer is not None and steer.jump_beats:
            stretcher.jump(steer.jump_beats * self.stitcher.config.sample_rate * 60.0 / seed_bpm)
        behind, repeats = False, 0
        while stretcher.ready < num_samples:
            need = stretcher.source_needed()
            if need:
                source = self.stitcher.render(need)
                for switch in source.events:  # its crossfade began: no longer re-planned
                    self.planner.forget_before(switch.frame_id)
                self._held.extend(source.events)
                behind |= source.behind
                repeats = source.repeats
                stretcher.feed(source.samples)
            stretcher.step(ratio)
        events, held = [], []
        for switch in self._held:
            # Mapped before the block is taken: the map puts nothing before the samples not yet
            # taken, so after ``take`` no switch could be heard in this block.
            begins = stretcher.output_position(switch.start_position)
            if begins < start + num_samples:
                length = round((switch.end_position - switch.start_position) / ratio)
                events.append(SwitchEvent(switch.frame_id, begins, begins + length))
            else:
                held.append(switch)
        self._held = held
        samples = stretcher.take(num_samples)
        return StitchedAudio(samples, start, tuple(events), behind, repeats)

    # -- playback -------------------------------------------------------------------------------
    def render(self, num_samples: int, now: float, heard_at: float | None = None) -> Rendered | None:
        """The next samples of the stream, or None before the first frame (no silence is
        rendered ahead of the music). Following a Link session, ``heard_at`` is when the first
        of them will be heard (monotonic seconds, as ``now``)."""
        if not self._started and not self.stitcher.pending_count:
            return None
        audio = self._mix(num_samples, heard_at)
        self._started = True
        for switch in audio.events:
            # A frame whose crossfade began can no longer be re-planned.
            self.planner.forget_before(switch.frame_id)
        log: tuple[LogLine, ...] = ()
        if audio.behind and not self._behind:
            self.metrics.behind_episodes += 1
            making = 0.0 if self._making_since is None else now - self._making_since
            log = (
                LogLine(
                    logging.WARNING,
                    "the next frame is late; the current frame loops until it is ready "
                    f"(the frame maker has been at it for {making:.1f} s)",
                ),
            )
        self._behind = audio.behind
        return Rendered(audio, log)

    def _source(self, num_samples: int, heard_at: float | None) -> StitchedAudio:
        """The stitcher's next samples, at the Link session's tempo when following one."""
        if self._follower is not None and heard_at is not None:
            return self._render_following(num_samples, heard_at)
        return self.stitcher.render(num_samples)

    def _mix(self, num_samples: int, heard_at: float | None) -> StitchedAudio:
        """The next samples of the mix, through the limiter when there is one."""
        if self.limiter is None:
            return self._source(num_samples, heard_at)
        # The limiter's output lags its input: the first render takes that much more, so that
        # output sample i is source sample i.
        extra = 0 if self._started else self.limiter.latency_samples
        # After the first render the source runs the limiter's delay ahead of the output: its
        # first sample is heard that much later.
        if heard_at is not None and self._started:
            heard_at += self.limiter.latency_samples / self.stitcher.config.sample_rate
        audio = self._source(num_samples + extra, heard_at)
        limited = self.limiter.process(audio.samples)[:, extra:]
        start = audio.start_position + audio.samples.shape[1] - self.limiter.latency_samples
        return dataclasses.replace(audio, samples=limited, start_position=start - num_samples)

    def heard(self, switch: SwitchEvent, now: float) -> tuple[NowPlaying, FramePicture] | None:
        """A frame's crossfade reached the clock: what to announce (None for a frame that is
        no longer known, which cannot happen unless a switch is reported twice)."""
        made = self._queued.pop(switch.frame_id, None)
        if made is None:
            return None
        planned = made.planned
        asked = self._change_asked
        if asked is not None and planned.plan_version >= asked[0]:
            self._change_asked = None
            self.metrics.control_latencies_seconds.append(now - asked[1])
        bpm = self.loop_bpm(planned.seed_loop)
        follower = self._follower
        if bpm is not None and follower is not None and follower.session is not None:
            bpm = follower.session.tempo_bpm  # what is heard: the stretch plays the session's
        playing = now_playing(planned, switch.start_position, self.paused, bpm)
        return playing, FramePicture(planned.index, switch.start_position, made.png)

    def underruns(self, missing_samples: int) -> None:
        """The clock has found ``missing_samples`` missing in all so far."""
        self.metrics.underrun_samples = missing_samples

    @property
    def state(self) -> StreamState:
        if self.paused:
            return "paused"
        if self._backoff.failures >= self.config.error_after_failures:
            return "error"
        if not self._started:
            return "starting"
        return "behind" if self._behind else "ok"

    def _making_seconds(self, now: float) -> float:
        return 0.0 if self._making_since is None else max(0.0, now - self._making_since)

    def _slow_advice(self, now: float) -> str | None:
        """What to do about frames that take longer to make than to play, or None."""
        frame_seconds = self.planner.config.frame_seconds
        if self.metrics.frames_made:
            per_frame, so_far = self.metrics.seconds_per_frame, ""
        else:  # the first batch: its time so far already tells
            per_frame = self._making_seconds(now) / max(1, len(self._in_flight))
            so_far = " (the first one, so far)"
        if per_frame <= frame_seconds:
            return None
        composing = self.planner.config.song_form and self.planner.config.loop_styles
        return (
            f"this machine takes {per_frame:.1f} s to make a frame{so_far}, longer than the "
            f"{frame_seconds:.2f} s it plays, so frames repeat while the next is made; to keep up: "
            + ("--form loop (the song form composes a seed loop per frame on the same cores), "
               if composing else "")
            + "a faster compute type (the start-up line 'computing in ...' says which runs and "
            "why; --dtype fp32 where bf16 is emulated), fewer steps (--steps), the built-in model "
            "(--model builtin) or a GPU"
        )

    def speed_warning(self, now: float) -> tuple[LogLine, ...]:
        """A warning the first time frames are found slower to make than to play, and again each
        time after they caught up."""
        advice = self._slow_advice(now)
        newly_slow = advice is not None and not self._warned_slow
        self._warned_slow = advice is not None
        return (LogLine(logging.WARNING, advice),) if newly_slow else ()

    def status(self, now: float, *, force: bool = False) -> Status | None:
        """A status event when the state changed, ``status_interval_seconds`` passed, or
        ``force``; else None."""
        state = self.state
        last = self._last_status
        if not (
            force
            or last is None
            or last[0] != state
            or now - last[1] >= self.config.status_interval_seconds
        ):
            return None
        self._last_status = (state, now)
        return Status(
            state=state,
            lookahead_seconds=round(
                self.stitcher.pending_count * self.planner.config.frame_seconds, 3
            ),
            seconds_per_frame=round(self.metrics.seconds_per_frame, 4),
            frames_made=self.metrics.frames_made,
            underrun_samples=self.metrics.underrun_samples,
            making_seconds=round(self._making_seconds(now), 1),
            advice=self._slow_advice(now),
        )


def unplayable(frame: object) -> str | None:
    """Why this cannot be played, or None."""
    if not isinstance(frame, MadeFrame):
        return f"the frame maker returned {type(frame).__name__}, not a MadeFrame"
    samples = frame.samples
    if not isinstance(samples, np.ndarray):
        return f"samples are {type(samples).__name__}, not an array"
    if samples.ndim != 2 or samples.shape[1] == 0:
        return f"samples are shaped {samples.shape}, not (channels, period)"
    if samples.dtype != np.float32:
        return f"samples are {samples.dtype}, not float32"
    if not np.all(np.isfinite(samples)):
        return "samples are not finite (NaN or infinity)"
    return None


def now_playing(
    planned: PlannedFrame, sample_position: int, paused: bool, bpm: float | None
) -> NowPlaying:
    return NowPlaying(
        frame_id=planned.index,
        sample_position=sample_position,
        prompts=tuple(PromptWeight(t, round(w, 4)) for t, w in planned.prompts.weighted),
        negative_prompt=planned.negative_prompt,
        alpha=round(planned.transition_alpha, 4),
        seed=planned.seed_a,
        next_seed=planned.seed_b,
        noise_alpha=round(planned.noise_alpha, 4),
        denoising=round(planned.denoising, 4),
        guidance=round(planned.guidance, 4),
        seed_loop=base_loop(planned.seed_loop),
        bpm=None if bpm is None else round(bpm, 4),
        paused=paused,
        section=planned.section,
        seed_variation=(
            None if planned.seed_loop == base_loop(planned.seed_loop) else planned.seed_loop
        ),
    )
