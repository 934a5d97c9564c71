"""The live engine: threads that move data between the pure core and the world.

    producer thread:   core.next_work -> frame maker (generate + vocode) -> core.frames_made
    finisher thread:   (a staged maker that overlaps: the producer generates, then hands the
                       batch over with core.frames_generated) vocode -> core.frames_made
    renderer thread:   core.render -> sample ring, ``core.render_ahead_seconds`` ahead of the clock
    clock:             sample ring -> the sound device or the software clock's tick -> played tap
    publisher thread:  played tap -> core.heard / core.status -> sinks (audio, events, pictures)

Every decision (what to make, retries, discards, cancelling a stale batch, status, latency) is
the core's (``streamer.runtime.core``); the threads only wait, call it under one lock, and carry
its answers out. A change that makes the batch in flight stale sets an event the maker polls
between UNet steps (``streamer.generate.cancellation``). The clock (``streamer.runtime.clocks``) copies twice per block and signals, nothing
else: encoding, events and listeners are the publisher's, on its own thread.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

from streamer.audio.blocks import AudioBlock
from streamer.audio.capture import BeatClock
from streamer.audio.stitcher import SwitchEvent
from streamer.generate.cancellation import FrameCancelled
from streamer.plan.settings import StreamSettings
from streamer.runtime.core import EngineConfig, EngineCore, EngineMetrics, LogLine, Wait
from streamer.runtime.follow import LinkConfig, SessionTimeline
from streamer.runtime.frames import FrameMaker, stages_overlap
from streamer.runtime.ports import InputLevel, StreamSink
from streamer.runtime.ring import PlayedTap, SampleRing

log = logging.getLogger(__name__)

#: Longest a waiting thread sleeps before it looks at the stop flag again.
POLL_SECONDS = 0.1
#: Longest ``stop`` waits for the engine's threads, in seconds.
STOP_SECONDS = 2.0
#: Stream time the played tap holds for a publisher that is held up, in seconds (1.7 MB of mono;
#: a quarter of a second of wall time even in a soak test at 40x real time).
TAP_SECONDS = 10.0


class Engine:
    """Owns the core, the rings and the engine's threads; clocks and sinks plug into it."""

    def __init__(
        self,
        core: EngineCore,
        maker: FrameMaker,
        *,
        sample_rate: int,
        channels: int,
        config: EngineConfig,
    ) -> None:
        self.core = core
        self.maker = maker
        self.sample_rate = sample_rate
        self.channels = channels
        self.config = config
        self.block_samples = max(1, round(config.block_seconds * sample_rate))
        self.ring = SampleRing(channels, max(2, round(config.render_ahead_seconds * sample_rate)))
        self.tap = PlayedTap(channels, max(2 * self.block_samples, round(TAP_SECONDS * sample_rate)))
        self._lock = threading.Condition()
        #: Switches rendered into the ring and not yet played, oldest first.
        self._switches: collections.deque[SwitchEvent] = collections.deque()
        self._sinks: list[StreamSink] = []
        #: From a sample leaving the ring to it being heard: a sound device's output latency
        #: (set by ``DeviceClock``), 0 for the software clock.
        self.output_latency_seconds = 0.0
        #: The clock's last block: its first sample's stream position and when it was handed
        #: over (monotonic): where the beat grid is heard, for captures of the live input.
        self._clock_position = 0
        self._clock_mark: tuple[int, float] | None = None  # swapped whole: no lock on the clock
        #: The live input's meter (``streamer.runtime.capture``), read into each status.
        self.input_level: Callable[[], InputLevel | None] | None = None
        #: Set when the core finds the batch in flight stale; cleared when a batch starts.
        self._stale = threading.Event()
        self._playing = threading.Event()
        self._stop = threading.Event()
        #: Generated batches for the finisher thread (with a staged maker that overlaps): one
        #: waits while one is finished; the core's lookahead bounds them anyway.
        self._generated: queue.Queue = queue.Queue(maxsize=1)
        self._threads: list[threading.Thread] = []

    # -- wiring ---------------------------------------------------------------------------------
    def add_sink(self, sink: StreamSink) -> None:
        self._sinks.append(sink)

    def start(self) -> None:
        threads = [(self._produce, "producer"), (self._render, "renderer")]
        threads.append((self._publish, "publisher"))
        if stages_overlap(self.maker):
            threads.append((self._finish, "finisher"))
        for target, name in threads:
            thread = threading.Thread(target=target, name=f"streamer-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop the threads: within ``STOP_SECONDS`` whatever the machine's speed. A frame in
        progress ends at its next UNet step; one step that takes longer (a type this CPU
        emulates) is left to its daemon thread, which ends with the process."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        deadline = time.monotonic() + STOP_SECONDS
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            log.warning("stopped without waiting for the frame in progress to reach its next step")

    def wait_until_playing(self, timeout: float) -> bool:
        """Wait until the first frame is rendered (there is something to hear)."""
        return self._playing.wait(timeout)

    # -- control (any thread) -------------------------------------------------------------------
    @property
    def metrics(self) -> EngineMetrics:
        """A copy of the core's counters, with the clock's underruns up to now."""
        with self._lock:
            self.core.underruns(self.tap.missing_samples)
            return self.core.metrics.snapshot()

    @property
    def settings(self) -> StreamSettings:
        with self._lock:
            return self.core.settings

    @property
    def paused(self) -> bool:
        with self._lock:
            return self.core.paused

    def change(self, settings: StreamSettings) -> int:
        """Head for new settings (see ``EngineCore.change``); returns the new plan version."""
        with self._lock:
            version = self.core.change(settings, time.monotonic())
            if self.core.batch_is_stale:
                self._stale.set()
            self._lock.notify_all()
        return version

    def follow(self, config: LinkConfig) -> None:
        """Play at the tempo and phase of the sessions ``session`` reports from now on."""
        with self._lock:
            self.core.follow(config)

    def session(self, timeline: SessionTimeline) -> None:
        """A new reading of a Link session (from ``streamer.runtime.link``, never the clock)."""
        with self._lock:
            lines = self.core.session(timeline, time.monotonic())
        _write(lines)

    def add_seed_loop(self, name: str, beats: int) -> None:
        """A seed loop made while the stream plays; its image is the frame maker's to find."""
        with self._lock:
            self.core.add_seed_loop(name, beats)

    def heard_grid(self, beats_per_bar: int = 4) -> BeatClock | None:
        """The beat grid as heard now: the Link session's when following one, else the stream's
        own (bar one at the first beat); None before the clock has played or when the seed loop
        does not know its beats."""
        with self._lock:
            followed = self.core.followed_session
            if followed is not None:
                session, quantum = followed
                return BeatClock(session.tempo_bpm, session.beat, session.at, quantum)
            mark = self._clock_mark
            if mark is None:
                return None
            position, handed_at = mark
            beat, tempo = self.core.stitcher.beat_position(position), self.core.seed_bpm()
        if beat is None or tempo is None:
            return None
        return BeatClock(tempo, beat, handed_at + self.output_latency_seconds, beats_per_bar)

    def set_paused(self, paused: bool) -> None:
        with self._lock:
            self.core.set_paused(paused)
            self._lock.notify_all()

    # -- clock side: the only call a clock makes ---------------------------------------------------
    def play_into(self, out: np.ndarray) -> None:
        """Fill ``out`` (channels, n; a transposed device buffer will do) with the next samples
        and leave a copy for the publisher. Real-time safe: two copies, no allocation."""
        position = self._clock_position
        self._clock_mark = (position, time.monotonic())
        missing = self.ring.read_into(out)
        self.tap.write(out, missing)
        self._clock_position = position + out.shape[1]

    # -- producer -------------------------------------------------------------------------------
    def _produce(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                work = self.core.next_work(time.monotonic())
                if isinstance(work, Wait):
                    timeout = POLL_SECONDS if work.until is None else work.until - time.monotonic()
                    self._lock.wait(timeout=min(POLL_SECONDS, max(0.0, timeout)))
                    continue
                self._stale.clear()
            overlap = stages_overlap(self.maker)
            try:
                if overlap:
                    generated = self.maker.generate(list(work.frames), self._batch_is_unwanted)
                else:
                    made = list(self.maker.make(list(work.frames), self._batch_is_unwanted))
            except FrameCancelled:
                with self._lock:
                    self.core.frames_cancelled(time.monotonic())
                continue
            except Exception as error:
                self._failed(work.frames, error)
                continue
            if overlap:
                with self._lock:
                    self.core.frames_generated(time.monotonic())
                self._hand_over((work.frames, generated))
                continue
            self._made(made)

    def _hand_over(self, batch: tuple) -> None:
        """Give a generated batch to the finisher, waiting while it holds one already."""
        while not self._stop.is_set():
            try:
                self._generated.put(batch, timeout=POLL_SECONDS)
                return
            except queue.Full:
                continue

    def _finish(self) -> None:
        """The finisher thread: the CPU's stage of each generated batch, in order."""
        while not self._stop.is_set():
            try:
                planned, generated = self._generated.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            try:
                made = list(self.maker.finish(generated))
            except Exception as error:
                self._failed(planned, error)
                continue
            self._made(made)

    def _made(self, made: list) -> None:
        with self._lock:
            lines = self.core.frames_made(made, time.monotonic())
            self._lock.notify_all()  # room for the producer, if it waits
        _write(lines)

    def _failed(self, planned, error: Exception) -> None:
        with self._lock:
            retry = self.core.frames_failed(planned, _is_out_of_memory(error), time.monotonic())
            if self.core.batch_is_stale:  # re-planned: a batch generated meanwhile is unwanted
                self._stale.set()
            self._lock.notify_all()
        log.log(retry.log.level, retry.log.message, exc_info=error)
        if retry.release_memory:
            _release_cached_memory()

    def _batch_is_unwanted(self) -> bool:
        """Polled by the maker between UNet steps: the batch is stale, or the engine stops (a
        slow batch then ends within a step instead of holding ``stop`` for its whole length)."""
        return self._stale.is_set() or self._stop.is_set()

    # -- renderer -------------------------------------------------------------------------------
    def _render(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                ahead = round(self.core.render_ahead_seconds * self.sample_rate)
            # A quarter of what is kept ahead: fine enough that less is kept while a change
            # waits, coarse enough that rendering far ahead (a fast clock) costs few wake-ups.
            chunk = max(1, ahead // 4)
            room = self.ring.capacity - ahead + chunk  # fill up to `ahead` at most
            if not self.ring.wait_for_room(room, timeout=POLL_SECONDS):
                continue
            with self._lock:
                now = time.monotonic()
                heard_at = None
                if self.core.following:
                    # Its first sample is heard once the clock has played what the ring holds,
                    # and the sound device has played what it holds.
                    delay = self.ring.buffered / self.sample_rate + self.output_latency_seconds
                    heard_at = now + delay
                rendered = self.core.render(chunk, now, heard_at)
                if rendered is None:  # nothing to play yet: render no silence
                    self._lock.wait(timeout=POLL_SECONDS)
                    continue
                self._switches.extend(rendered.audio.events)
                self._lock.notify_all()  # a pending frame may have started: room to produce
            self._playing.set()
            _write(rendered.log)
            self.ring.write(rendered.audio.samples)

    # -- publisher ------------------------------------------------------------------------------
    def _publish(self) -> None:
        while not self._stop.is_set():
            played = self.tap.read(self.block_samples, timeout=POLL_SECONDS)
            now = time.monotonic()
            events, pictures = [], []
            with self._lock:
                self.core.underruns(self.tap.missing_samples)
                if played is not None:
                    end = played.sample_position + played.samples.shape[1]
                    while self._switches and self._switches[0].start_position < end:
                        heard = self.core.heard(self._switches.popleft(), now)
                        if heard is not None:
                            events.append(heard[0])
                            pictures.append(heard[1])
                status = self.core.status(now)
                warnings = self.core.speed_warning(now)
            _write(warnings)
            if status is not None:
                if self.input_level is not None:
                    status = dataclasses.replace(status, input=self.input_level())
                events.append(status)
            if played is not None:
                # Blocks are read whole from position 0, so a skip shows in both numbers.
                sequence = played.sample_position // self.block_samples
                block = AudioBlock(
                    sequence, played.sample_position, played.samples, self.sample_rate
                )
                for sink in self._sinks:
                    sink.publish_audio(block)
            for sink in self._sinks:
                for event in events:
                    sink.publish_event(event)
                for picture in pictures:
                    sink.publish_frame(picture)


def _write(lines: tuple[LogLine, ...]) -> None:
    for line in lines:
        log.log(line.level, line.message)


def _is_out_of_memory(error: Exception) -> bool:
    """A CUDA out-of-memory error (only a loaded torch can raise one)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(error, torch.cuda.OutOfMemoryError)


def _release_cached_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
