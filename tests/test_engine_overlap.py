"""A staged frame maker's two stages overlap: the CPU finishes (vocodes) one batch while the
accelerator generates the next. The core's rules with made-up times, then the engine's threads
with a stand-in whose stages take a known time."""

from __future__ import annotations

import threading
import time

from test_engine_core import core, made
from test_engine import Recorder, settings

from streamer.runtime.assemble import build_engine
from streamer.runtime.clocks import SoftwareClock
from streamer.runtime.core import EngineConfig, MakeFrames, Wait
from streamer.runtime.standin import StandInFrameMaker
from streamer.runtime.stream_config import StreamConfig


def test_the_next_batch_starts_while_the_last_is_finished_within_the_lookahead():
    engine = core(lookahead_frames=2)
    first = engine.next_work(0.0)
    engine.frames_generated(0.1)
    second = engine.next_work(0.1)  # the first is being vocoded: the GPU goes on
    assert isinstance(second, MakeFrames) and second.frames[0].index == 1
    engine.frames_generated(0.2)
    assert engine.next_work(0.2) == Wait(None)  # two frames finishing fill the lookahead
    assert engine.frames_made([made(p) for p in first.frames], 0.3) == ()
    assert engine.frames_made([made(p) for p in second.frames], 0.4) == ()
    assert engine.stitcher.pending_count == 2


def test_a_change_while_a_batch_is_finished_replans_it_and_drops_it():
    engine = core(lookahead_frames=2)
    first = engine.next_work(0.0)
    engine.frames_generated(0.1)
    engine.change(settings("techno"), 0.2)
    assert engine.frames_made([made(p) for p in first.frames], 0.3) == ()
    assert engine.metrics.frames_discarded == 1 and engine.stitcher.pending_count == 0
    again = engine.next_work(0.4)
    assert again.frames[0].index == 0 and again.frames[0].prompts.weighted[0][0] == "techno"


def test_a_batch_that_fails_to_finish_is_replanned_and_the_one_in_flight_is_stale():
    engine = core(lookahead_frames=2)
    first = engine.next_work(0.0)
    engine.frames_generated(0.1)
    engine.next_work(0.1)
    engine.frames_failed(first.frames, False, 0.2)
    assert engine.batch_is_stale  # planned before the failure re-planned from frame 0
    engine.frames_cancelled(0.3)
    retry = engine.next_work(10.0)
    assert retry.frames[0].index == 0


class TimedStages(StandInFrameMaker):
    """The stand-in, noting when each stage ran."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.spans: dict[str, list[tuple[float, float]]] = {"generate": [], "finish": []}
        self.lock = threading.Lock()

    def generate(self, planned, is_stale):
        started = time.monotonic()
        try:
            return super().generate(planned, is_stale)
        finally:
            with self.lock:
                self.spans["generate"].append((started, time.monotonic()))

    def finish(self, generated):
        started = time.monotonic()
        frames = super().finish(generated)
        with self.lock:
            self.spans["finish"].append((started, time.monotonic()))
        return frames


def test_the_engine_finishes_one_batch_while_it_generates_the_next():
    maker = TimedStages(0.3, finish_seconds=0.3)
    config = StreamConfig(settings=settings(), engine=EngineConfig(lookahead_frames=3))
    engine = build_engine(config, maker)
    recorder = Recorder()
    engine.add_sink(recorder)
    engine.start()
    try:
        assert engine.wait_until_playing(30)
        clock = SoftwareClock(engine)
        clock.start()
        deadline = time.monotonic() + 30
        while engine.metrics.frames_made < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        clock.stop()
    finally:
        engine.stop()
    assert engine.metrics.frames_made >= 3 and engine.metrics.frames_failed == 0
    with maker.lock:
        finishing, generating = maker.spans["finish"], maker.spans["generate"]
    overlapping = [
        (f, g) for f in finishing for g in generating if f[0] < g[1] and g[0] < f[1]
    ]
    assert overlapping, "no batch was finished while another was generated"
    assert recorder.blocks  # and the stream played


def test_the_overlap_benchmark_runs(capsys, monkeypatch):
    import runpy
    import sys

    from test_gpu_check import REPO

    monkeypatch.setattr(sys, "argv", ["overlap.py", "--quick", "--generate", "0.05",
                                      "--finish", "0.05"])  # fmt: skip
    try:
        runpy.run_path(str(REPO / "benchmarks" / "overlap.py"), run_name="__main__")
    except SystemExit as exit:
        assert exit.code == 0
    result = capsys.readouterr().out.splitlines()[-1]
    assert result.startswith("RESULT in_a_row_s_per_frame=") and "speedup=" in result
