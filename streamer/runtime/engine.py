"""The live engine: the threads around the pure core.

    producer thread:  planner -> frame maker (generate + vocode) -> stitcher's pending frames
    renderer thread:  stitcher -> sample ring, kept ``render_ahead_seconds`` ahead of the clock
    clock:            sample ring -> sinks, one block at a time, in real time

The clock is :class:`SoftwareClock` (a thread paced by the monotonic clock, for servers and
tests) or a sound device's callback (``streamer.sinks.device``); both only copy prepared samples.
Generation runs at most ``lookahead_frames`` ahead of playback. A control change discards the
frames that are waiting, re-plans from the last frame that will still be heard, and the first
frame of the new plan enters at the next switch point (the next beat) instead of waiting for the
current frame's loop to end: control latency is the generation time of one frame plus at most a
beat.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from streamer.audio.blocks import AudioBlock
from streamer.audio.stitcher import AudioFrame, Stitcher, SwitchEvent
from streamer.plan.planner import PlannedFrame, Planner
from streamer.plan.settings import StreamSettings
from streamer.runtime.frames import FrameMaker, MadeFrame
from streamer.runtime.ring import SampleRing
from streamer.sinks.stream_port import StreamSink

log = logging.getLogger(__name__)

#: Seconds between status events while nothing changes.
STATUS_INTERVAL_SECONDS = 1.0
#: Wait after a failed frame before trying again, doubled per failure up to the maximum.
RETRY_SECONDS, MAX_RETRY_SECONDS = 0.5, 30.0
#: Consecutive failed batches after which the status says ``error`` (one may be a fluke).
ERROR_AFTER_FAILURES = 2


@dataclasses.dataclass
class EngineMetrics:
    """Counters an operator reads; written by the engine's threads."""

    frames_made: int = 0
    frames_discarded: int = 0
    frames_failed: int = 0
    seconds_per_frame: float = 0.0  # moving average of the maker's time per frame
    underrun_samples: int = 0  # samples the clock found missing (heard as silence)
    behind_episodes: int = 0  # times a frame had to loop on because its successor was late
    batch_frames: int = 0  # frames per batch now: halved after the accelerator ran out of memory
    #: Control message -> first sample of its plan at the clock, for the latest 1000 changes.
    control_latencies_seconds: collections.deque[float] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=1000)
    )


class Engine:
    """Owns the planner, the stitcher, the producer and renderer threads, and the sinks.

    Sinks (``StreamSink``: ``publish_audio``, ``publish_event``, ``publish_frame``) are called on
    the clock's thread and must only hand over, never block.
    """

    def __init__(
        self,
        planner: Planner,
        maker: FrameMaker,
        stitcher: Stitcher,
        *,
        sample_rate: int,
        lookahead_frames: int,
        batch_frames: int,
        render_ahead_seconds: float,
        seed_loop_beats: Mapping[str, int],
    ) -> None:
        self.planner = planner
        self.maker = maker
        self.stitcher = stitcher
        self.sample_rate = sample_rate
        self.channels = stitcher.config.channels
        self.lookahead_frames = lookahead_frames
        self.batch_frames = batch_frames
        self.seed_loop_beats = seed_loop_beats
        self.metrics = EngineMetrics(batch_frames=batch_frames)
        self.ring = SampleRing(self.channels, max(2, int(render_ahead_seconds * sample_rate)))
        self._lock = threading.Condition()
        self._in_flight: list[PlannedFrame] = []
        self._interrupt_next = False
        self._paused = False
        # (plan version, monotonic time) of the latest control change not yet heard; an earlier
        # one that was overtaken before it was heard has no latency to report.
        self._control_asked: tuple[int, float] | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sinks: list[StreamSink] = []
        self._behind = False
        self._failures = 0  # consecutive failed batches
        self._making_since: float | None = None  # monotonic start of the batch being made
        self._playing = False
        self._last_status = 0.0
        self._last_status_state: str | None = None

    # -- wiring ---------------------------------------------------------------------------------
    def add_sink(self, sink: StreamSink) -> None:
        self._sinks.append(sink)

    def start(self) -> None:
        for target, name in ((self._produce, "producer"), (self._render, "renderer")):
            thread = threading.Thread(target=target, name=f"streamer-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)

    def wait_until_playing(self, timeout: float) -> bool:
        """Wait until the first frame is rendered (there is something to hear)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            if self._playing:
                return True
            time.sleep(0.01)
        return False

    # -- control (any thread) -------------------------------------------------------------------
    @property
    def settings(self) -> StreamSettings:
        with self._lock:
            return self.planner.settings

    @property
    def paused(self) -> bool:
        return self._paused

    def change(self, settings: StreamSettings) -> None:
        """Head for new settings: waiting frames are discarded, and the first frame of the new
        plan enters at the next switch point."""
        with self._lock:
            discarded = self.stitcher.discard_pending()
            self.metrics.frames_discarded += len(discarded)
            unheard = [f.frame_id for f in discarded] + [f.index for f in self._in_flight]
            self.planner.change(settings, min(unheard) if unheard else None)
            self._control_asked = (self.planner.plan_version, time.monotonic())
            self._interrupt_next = True
            self._lock.notify_all()

    def set_paused(self, paused: bool) -> None:
        """Paused, the stream keeps looping the frame it plays (it never stops) and no new
        frames are made; resumed, the walk goes on from there."""
        with self._lock:
            self._paused = paused
            self._lock.notify_all()

    # -- producer -------------------------------------------------------------------------------
    def _produce(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                room = self.lookahead_frames - self.stitcher.pending_count
                if room <= 0 or self._paused:
                    self._lock.wait(timeout=0.1)
                    continue
                planned = self.planner.next_frames(min(room, self.metrics.batch_frames))
                self._in_flight = planned
                self._making_since = time.monotonic()
            try:
                made = list(self.maker.make(planned))
                if not all(isinstance(frame, MadeFrame) for frame in made):
                    raise TypeError("the frame maker returned something else than MadeFrame")
                with self._lock:
                    self._in_flight, self._making_since = [], None
                    # Frames after an unplayable one are dropped with it and planned again.
                    rejected = next((frame for frame in made if not self._accept(frame)), None)
            except Exception as error:
                self._failed(planned, error)
                continue
            if rejected is not None:
                self._failed([rejected.planned], None)
            else:
                self._failures = 0

    def _failed(self, planned: list[PlannedFrame], error: Exception | None) -> None:
        """The current frame keeps looping; the failed frames are planned again after a pause
        that doubles with each failure in a row (a broken GPU must not spin the CPU), and after
        running out of accelerator memory, in smaller batches."""
        if error is not None:
            self.metrics.frames_failed += len(planned)
        if error is not None and _is_out_of_memory(error) and self.metrics.batch_frames > 1:
            self.metrics.batch_frames //= 2
            _release_cached_memory()
            delay = 0.0
            log.warning(
                "the accelerator ran out of memory; retrying with batches of %d frames",
                self.metrics.batch_frames,
            )
        else:
            self._failures += 1
            delay = min(MAX_RETRY_SECONDS, RETRY_SECONDS * 2 ** (self._failures - 1))
            if error is not None:
                log.error(
                    "making frames failed (%d in a row); the current frame keeps looping, "
                    "retry in %.1f s",
                    self._failures,
                    delay,
                    exc_info=error,
                )
            else:
                log.error("the frame maker returned unusable frames; retry in %.1f s", delay)
        with self._lock:
            self._in_flight, self._making_since = [], None
            self.planner.change(self.planner.settings, planned[0].index)
        self._stop.wait(delay)

    def fill_lookahead(self) -> None:
        """Make frames on the calling thread until the lookahead is full (offline rendering,
        where no producer thread runs)."""
        with self._lock:
            for _ in range(3 * self.lookahead_frames):
                room = self.lookahead_frames - self.stitcher.pending_count
                if room <= 0:
                    return
                planned = self.planner.next_frames(min(room, self.batch_frames))
                for frame in self.maker.make(planned):
                    self._accept(frame)
        raise RuntimeError("the frame maker keeps returning unusable frames; see the log")

    def _accept(self, frame: MadeFrame) -> bool:
        """Queue a made frame for the stitcher, unless a control change made it stale; returns
        False for a frame that cannot be played (not finite, wrong shape): it is dropped."""
        planned = frame.planned
        if planned.plan_version != self.planner.plan_version:
            self.metrics.frames_discarded += 1
            return True
        problem = _unplayable(frame.samples)
        if problem is None:
            try:
                self.stitcher.push(
                    AudioFrame(
                        frame_id=planned.index,
                        samples=frame.samples,
                        beats=self.seed_loop_beats.get(planned.seed_loop),
                        metadata={"made": frame},
                    ),
                    interrupt=self._interrupt_next,
                )
            except ValueError as error:
                problem = str(error)
        if problem is not None:
            self.metrics.frames_failed += 1
            log.error("frame %d is dropped: %s", planned.index, problem)
            self.planner.change(self.planner.settings, planned.index)
            return False
        self._interrupt_next = False
        self.metrics.frames_made += 1
        weight = 0.2 if self.metrics.seconds_per_frame else 1.0
        self.metrics.seconds_per_frame += weight * (
            frame.seconds_to_make - self.metrics.seconds_per_frame
        )
        return True

    # -- renderer -------------------------------------------------------------------------------
    def _render(self) -> None:
        chunk = max(1, self.ring.capacity // 4)
        while not self._stop.is_set():
            if not self.ring.wait_for_room(chunk, timeout=0.1):
                continue
            with self._lock:
                if not self._playing and not self.stitcher.pending_count:
                    self._lock.wait(timeout=0.05)  # nothing to play yet: render no silence
                    continue
                self._playing = True
                pending_before = self.stitcher.pending_count
                rendered = self.stitcher.render(chunk)
                for switch in rendered.events:
                    # A frame whose crossfade began can no longer be re-planned: drop its history
                    # here rather than on the clock, which must not wait for this lock.
                    self.planner.forget_before(switch.frame_id)
                if self.stitcher.pending_count < pending_before:
                    self._lock.notify_all()  # a pending frame started: room to produce
            if rendered.behind and not self._behind:
                self.metrics.behind_episodes += 1
                making_since = self._making_since
                log.warning(
                    "the next frame is late; the current frame loops until it is ready "
                    "(the frame maker has been at it for %.1f s)",
                    0.0 if making_since is None else time.monotonic() - making_since,
                )
            self._behind = rendered.behind
            self.ring.write(
                rendered.samples, [(switch.start_position, switch) for switch in rendered.events]
            )

    # -- clock side -----------------------------------------------------------------------------
    def pull_block(self, out: np.ndarray, sequence: int, sample_position: int) -> AudioBlock:
        """Fill ``out`` (channels, n) with the next samples and hand them to the sinks.

        Runs on the clock: copies from the ring, nothing else heavy.
        """
        missing, due = self.ring.read_into(out)
        if missing:
            self.metrics.underrun_samples += missing
        block = AudioBlock(sequence, sample_position, out, self.sample_rate)
        for sink in self._sinks:
            sink.publish_audio(block)
        for switch in due:
            self._announce_switch(switch)
        now = time.monotonic()
        state = self.state
        if state != self._last_status_state or now - self._last_status >= STATUS_INTERVAL_SECONDS:
            self._last_status, self._last_status_state = now, state
            self._publish_event(self.status_event())
        return block

    @property
    def state(self) -> str:
        """``ok``, ``behind`` (the frame loops because its successor is late), ``error`` (the
        frame maker failed several times in a row; the frame loops while it is retried) or
        ``paused``."""
        if self._paused:
            return "paused"
        if self._failures >= ERROR_AFTER_FAILURES:
            return "error"
        return "behind" if self._behind else "ok"

    def _announce_switch(self, switch: SwitchEvent) -> None:
        made: MadeFrame = switch.metadata["made"]
        planned = made.planned
        asked = self._control_asked
        if asked is not None and planned.plan_version >= asked[0]:
            self._control_asked = None
            self.metrics.control_latencies_seconds.append(time.monotonic() - asked[1])
        beats = self.seed_loop_beats.get(planned.seed_loop)
        bpm = beats * 60.0 / self.planner.config.frame_seconds if beats else None
        self._publish_event(now_playing_event(planned, switch.start_position, self._paused, bpm))
        for sink in self._sinks:
            sink.publish_frame(planned.index, switch.start_position, made.png)

    def status_event(self) -> dict[str, Any]:
        pending = self.stitcher.pending_count
        period = self.planner.config.frame_seconds
        return {
            "type": "status",
            "state": self.state,
            "lookahead_seconds": round(pending * period, 3),
            "seconds_per_frame": round(self.metrics.seconds_per_frame, 4),
            "frames_made": self.metrics.frames_made,
            "underrun_samples": self.metrics.underrun_samples,
        }

    def _publish_event(self, event: Mapping[str, Any]) -> None:
        for sink in self._sinks:
            sink.publish_event(event)


def _unplayable(samples: object) -> str | None:
    """Why these samples cannot be played, or None."""
    if not isinstance(samples, np.ndarray):
        return f"samples are {type(samples).__name__}, not an array"
    if samples.ndim != 2 or samples.shape[1] == 0:
        return f"samples are shaped {samples.shape}, not (channels, period)"
    if not np.all(np.isfinite(samples)):
        return "samples are not finite (NaN or infinity)"
    return None


def _is_out_of_memory(error: Exception) -> bool:
    """A CUDA out-of-memory error (only a loaded torch can raise one)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(error, torch.cuda.OutOfMemoryError)


def _release_cached_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def now_playing_event(
    planned: PlannedFrame, sample_position: int, paused: bool, bpm: float | None
) -> dict[str, Any]:
    return {
        "type": "now_playing",
        "frame_id": planned.index,
        "sample_position": sample_position,
        "prompts": [{"text": t, "weight": round(w, 4)} for t, w in planned.prompts.weighted],
        "negative_prompt": planned.negative_prompt,
        "alpha": round(planned.transition_alpha, 4),
        "seed": planned.seed_a,
        "next_seed": planned.seed_b,
        "noise_alpha": round(planned.noise_alpha, 4),
        "denoising": round(planned.denoising, 4),
        "guidance": round(planned.guidance, 4),
        "seed_loop": planned.seed_loop,
        "bpm": None if bpm is None else round(bpm, 4),
        "paused": paused,
    }


class SoftwareClock:
    """Pulls one block every ``block_seconds`` of wall time, on its own thread.

    Sleeps to absolute deadlines so the rate never drifts; if the thread was held up it catches
    up (several blocks at once) rather than slowing the stream down. Unlike a sound device it
    can wait a little for the renderer when the machine is busy (listeners' jitter buffers absorb
    it) instead of sending silence. ``speed`` above 1 runs the stream faster than real time, for
    soak tests.
    """

    #: Longest wait for the renderer before a block goes out incomplete (an underrun).
    MAX_WAIT_SECONDS = 0.5

    def __init__(self, engine: Engine, block_seconds: float, speed: float = 1.0) -> None:
        self.engine = engine
        self.speed = speed
        self.block_samples = max(1, round(block_seconds * engine.sample_rate))
        self.sequence = 0
        self.sample_position = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamer-clock", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            stream_seconds = (self.sample_position + self.block_samples) / self.engine.sample_rate
            due = start + stream_seconds / self.speed
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
                continue
            # A fresh array per block: sinks may hold on to it on other threads.
            out = np.empty((self.engine.channels, self.block_samples), dtype=np.float32)
            self.engine.ring.wait_for_samples(self.block_samples, self.MAX_WAIT_SECONDS)
            self.engine.pull_block(out, self.sequence, self.sample_position)
            self.sequence += 1
            self.sample_position += self.block_samples
