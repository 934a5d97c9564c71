"""The live engine: threads, clock and control, with a stand-in generator of chosen speed."""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import soundfile

from engine_events import as_message
from streamer.runtime.stream_config import StreamConfig
from streamer.runtime.core import EngineConfig
from streamer.plan.settings import PromptBlend, StreamSettings, Transition
from streamer.runtime.assemble import build_core, build_engine
from streamer.runtime.clocks import SoftwareClock
from streamer.runtime.engine import STOP_SECONDS, Engine
from streamer.runtime.render import render_to_file
from streamer.generate.cancellation import check, never_stale
from streamer.runtime.standin import StandInFrameMaker, prompt_tone_hz

RATE = 44100
BLOCK = 882


class Recorder:
    """A sink that keeps everything the engine publishes (events as a client reads them)."""

    def __init__(self) -> None:
        self.blocks: list = []
        self.events: list[dict] = []
        self.frames: list[tuple[int, int]] = []
        self.lock = threading.Lock()

    def publish_audio(self, block) -> None:
        with self.lock:
            self.blocks.append(block)

    def publish_event(self, event) -> None:
        with self.lock:
            self.events.append(as_message(event))

    def publish_frame(self, picture) -> None:
        assert picture.png.startswith(b"\x89PNG")
        with self.lock:
            self.frames.append((picture.frame_id, picture.sample_position))

    def audio(self) -> np.ndarray:
        with self.lock:
            return np.concatenate([b.samples[0] for b in self.blocks])

    def of_type(self, kind: str) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e["type"] == kind]


def settings(prompt: str = "jazz", **changes) -> StreamSettings:
    base = StreamSettings(
        prompts=PromptBlend.single(prompt), seed_loop="house_117", transition=Transition(seconds=0)
    )
    return dataclasses.replace(base, **changes)


def run_engine(maker, seconds: float, speed: float, during=None, lookahead: int = 2):
    """Run an engine with ``maker`` for ``seconds`` of wall time; ``during(engine)`` runs once
    the stream plays."""
    engine_config = EngineConfig(lookahead_frames=lookahead, block_seconds=BLOCK / RATE)
    config = StreamConfig(settings=settings(), engine=engine_config)
    config = dataclasses.replace(config, planner=dataclasses.replace(config.planner, endless=False))
    engine = build_engine(config, maker)
    recorder = Recorder()
    engine.add_sink(recorder)
    engine.start()
    clock = SoftwareClock(engine, speed=speed)
    try:
        assert engine.wait_until_playing(60), "the first frame never came"
        clock.start()
        if during is not None:
            during(engine)
        time.sleep(seconds)
    finally:
        clock.stop()
        engine.stop()
    return engine, recorder


def assert_contiguous(recorder: Recorder) -> None:
    sequences = [b.sequence for b in recorder.blocks]
    positions = [b.sample_position for b in recorder.blocks]
    assert sequences == list(range(len(sequences)))
    assert positions == [i * BLOCK for i in range(len(positions))]


def test_the_stream_is_continuous_and_announces_each_frame_when_heard():
    engine, recorder = run_engine(StandInFrameMaker(0.2), seconds=5, speed=4)
    assert_contiguous(recorder)
    assert engine.metrics.underrun_samples == 0
    playing = recorder.of_type("now_playing")
    assert len(playing) >= 3
    assert [e["frame_id"] for e in playing] == list(range(len(playing)))
    assert [f for f, _ in recorder.frames] == [e["frame_id"] for e in playing]
    # A frame plays its whole 5.12 s loop before the next crossfades in, ending on a beat.
    starts = [e["sample_position"] for e in playing]
    beat, crossfade = RATE * 60 / 117.1875, int(0.1 * RATE)
    for earlier, later in zip(starts[1:], starts[2:]):
        assert later - earlier >= 5.12 * RATE - 1
        beats = (later + crossfade - starts[0]) / beat
        assert abs(beats - round(beats)) < 1e-3
    audio = recorder.audio()
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() <= 1.0
    assert recorder.of_type("status")[-1]["state"] == "ok"


def test_a_prompt_change_is_heard_in_the_live_stream():
    def change(engine: Engine) -> None:
        time.sleep(1.0)
        engine.change(settings("a completely different prompt"))

    engine, recorder = run_engine(StandInFrameMaker(0.3), seconds=4, speed=1, during=change)
    assert_contiguous(recorder)
    assert len(engine.metrics.control_latencies_seconds) == 1  # its timing: test_engine_core.py
    new_frames = [
        e for e in recorder.of_type("now_playing") if e["prompts"][0]["text"].startswith("a compl")
    ]
    assert new_frames, "the change never played"
    start = new_frames[0]["sample_position"] + int(0.1 * RATE)
    heard = recorder.audio()[start : start + RATE]
    spectrum = np.abs(np.fft.rfft(heard * np.hanning(heard.size)))
    tone = prompt_tone_hz(PromptBlend.single("a completely different prompt"))
    assert spectrum[int(round(tone))] > 5 * np.median(spectrum), "the new prompt's tone is not heard"


def test_a_generator_slower_than_real_time_never_silences_the_stream():
    engine, recorder = run_engine(StandInFrameMaker(4.0), seconds=6, speed=2.5, lookahead=1)
    assert_contiguous(recorder)
    assert engine.metrics.underrun_samples == 0
    states = [e["state"] for e in recorder.of_type("status")]
    assert "behind" in states
    assert engine.metrics.behind_episodes >= 1
    audio = recorder.audio()
    blocks = audio[: audio.size // BLOCK * BLOCK].reshape(-1, BLOCK)
    rms = np.sqrt(np.mean(blocks[5:] ** 2, axis=1))  # after the first frame's fade-in
    assert rms.min() > 1e-3, "a block went silent"


class FlakyMaker:
    """Fails its first ``failures`` batches, then returns NaN frames once, then works."""

    def __init__(self, failures: int) -> None:
        self.inner = StandInFrameMaker(0.05)
        self.failures = failures
        self.calls = 0

    def make(self, planned, is_stale=never_stale):
        self.calls += 1
        if 1 < self.calls <= 1 + self.failures:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        made = self.inner.make(planned, is_stale)
        if self.calls == 2 + self.failures:
            bad = made[0]
            made[0] = dataclasses.replace(bad, samples=np.full_like(bad.samples, np.nan))
        return made


def test_a_failing_generator_is_retried_and_bad_frames_never_play(caplog):
    maker = FlakyMaker(failures=2)
    engine, recorder = run_engine(maker, seconds=6, speed=4)
    assert_contiguous(recorder)
    assert engine.metrics.underrun_samples == 0
    assert engine.metrics.frames_failed == 3  # two raised, one NaN
    assert engine.metrics.frames_made >= 3, "the producer did not recover"
    assert np.all(np.isfinite(recorder.audio()))
    assert "making frames failed" in caplog.text


class BlockedSink(Recorder):
    """A sink stuck in its first ``publish_audio`` until released (a wedged server)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def publish_audio(self, block) -> None:
        super().publish_audio(block)
        self.release.wait(30)


def test_the_clock_only_copies_so_a_stuck_sink_never_holds_it_up():
    config = StreamConfig(settings=settings(), engine=EngineConfig(block_seconds=BLOCK / RATE))
    engine = build_engine(config, StandInFrameMaker(0.0))
    sink = BlockedSink()
    engine.add_sink(sink)
    engine.start()
    out = np.zeros((1, BLOCK), dtype=np.float32)
    try:
        assert engine.wait_until_playing(60)
        for _ in range(500):  # 10 s of stream, played as fast as this thread can copy
            engine.ring.wait_for_samples(BLOCK, 5.0)
            engine.play_into(out)
        assert len(sink.blocks) == 1, "the publisher, not the clock, waits for sinks"
        sink.release.set()
    finally:
        engine.stop()
    assert engine.metrics.underrun_samples == 0


class StaleAwareMaker:
    """Makes the first batch at once; holds the second until the engine says it is stale (as a
    long UNet run would), then stops it the way the generator does; records the third."""

    def __init__(self) -> None:
        self.inner = StandInFrameMaker(0.0)
        self.calls = 0
        self.second_started = threading.Event()
        self.third: list = []
        self.third_made = threading.Event()

    def make(self, planned, is_stale=never_stale):
        self.calls += 1
        if self.calls == 2:
            self.second_started.set()
            deadline = time.monotonic() + 30
            while not is_stale() and time.monotonic() < deadline:
                time.sleep(0.005)
            check(is_stale)
            raise AssertionError("the batch was never found stale")
        made = self.inner.make(planned, is_stale)
        if self.calls == 3:
            self.third = list(planned)
            self.third_made.set()
        return made


def test_a_change_stops_the_stale_batch_in_flight_and_the_next_work_follows_at_once():
    maker = StaleAwareMaker()
    config = StreamConfig(settings=settings(), engine=EngineConfig(lookahead_frames=2))
    engine = build_engine(config, maker)
    engine.start()
    try:
        assert maker.second_started.wait(60)
        engine.change(settings("rock"))
        assert maker.third_made.wait(60)
    finally:
        engine.stop()
    assert maker.third[0].prompts == PromptBlend.single("rock")
    assert engine.metrics.batches_cancelled == 1
    assert engine.metrics.frames_failed == 0, "a cancelled batch is no failure"
    assert engine.core.state != "error"


class OneEndlessStep:
    """A frame maker stuck in one step far longer than a stop may wait (a type the CPU emulates:
    one UNet call took minutes on an AVX2 machine), until ``release`` is set."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()

    def make(self, planned, is_stale=never_stale):
        self.started.set()
        self.release.wait(60)
        check(is_stale)
        raise AssertionError("stopped only by the test")


def test_stop_returns_promptly_while_a_frame_is_in_one_long_step():
    maker = OneEndlessStep()
    engine = build_engine(StreamConfig(settings=settings()), maker)
    recorder = Recorder()
    engine.add_sink(recorder)
    engine.start()
    try:
        assert maker.started.wait(30)
        time.sleep(0.3)  # a status or two while the first frame is made
        started = time.monotonic()
        engine.stop()
        assert time.monotonic() - started < STOP_SECONDS + 1.0
    finally:
        maker.release.set()
    statuses = recorder.of_type("status")
    assert statuses and statuses[-1]["state"] == "starting"


def test_a_stop_ends_an_offline_render_within_the_frame_being_made(tmp_path):
    class ManySlowSteps:
        """A frame of many steps, asking ``is_stale`` between them as the generator does."""

        def make(self, planned, is_stale=never_stale):
            for _ in range(3000):
                check(is_stale)
                time.sleep(0.01)
            raise AssertionError("the stop was not seen between steps")

    config = StreamConfig(settings=settings())
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    written = render_to_file(build_core(config), ManySlowSteps(), tmp_path / "out.wav", 60, stop)
    assert time.monotonic() - started < 5 and written == 0
    assert soundfile.info(tmp_path / "out.wav").frames == 0  # a valid, empty file
