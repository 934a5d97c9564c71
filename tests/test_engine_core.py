"""The engine's pure core: every policy decision, driven synchronously with made-up times.

No threads, no clock, no sleeps: each test feeds events and checks the decisions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from streamer.audio.stitcher import StitcherConfig
from streamer.runtime.stream_config import StreamConfig
from streamer.runtime.core import EngineConfig
from streamer.plan.planner import PlannedFrame
from streamer.plan.settings import PromptBlend, StreamSettings, Transition
from streamer.runtime.assemble import build_core
from streamer.runtime.core import EngineCore, MakeFrames, Wait
from streamer.runtime.frames import MadeFrame

PERIOD = 225792  # one 5.12 s frame at 44.1 kHz
SECOND = 44100


def settings(prompt: str = "jazz", **changes) -> StreamSettings:
    base = StreamSettings(
        prompts=PromptBlend.single(prompt), seed_loop="house_117", transition=Transition(seconds=0)
    )
    return dataclasses.replace(base, **changes)


def core(*, endless: bool = False, quantize: str = "beat", **engine) -> EngineCore:
    config = StreamConfig(settings=settings(), engine=EngineConfig(**engine))
    config = dataclasses.replace(config, stitcher=StitcherConfig(quantize=quantize))
    planner = dataclasses.replace(config.planner, endless=endless)
    return build_core(dataclasses.replace(config, planner=planner))


def made(planned: PlannedFrame, samples: np.ndarray | None = None) -> MadeFrame:
    if samples is None:
        t = np.arange(PERIOD) / PERIOD
        samples = (0.1 * np.sin(2 * np.pi * (50 + planned.index) * t))[None].astype(np.float32)
    return MadeFrame(planned, samples, b"\x89PNG frame %d" % planned.index, seconds_to_make=0.5)


def make(engine: EngineCore, now: float = 0.0) -> tuple[PlannedFrame, ...]:
    """Ask for work, make it, hand it back; returns what was planned."""
    work = engine.next_work(now)
    assert isinstance(work, MakeFrames), work
    assert engine.frames_made([made(p) for p in work.frames], now) == ()
    return work.frames


def play(engine: EngineCore, seconds: float, now: float = 0.0):
    """Render and hear ``seconds`` of stream; returns the NowPlaying events."""
    rendered = engine.render(round(seconds * SECOND), now)
    assert rendered is not None
    heard = [engine.heard(switch, now) for switch in rendered.audio.events]
    return [h[0] for h in heard if h is not None]


def test_generation_runs_at_most_the_lookahead_ahead_in_batches():
    engine = core(lookahead_frames=3, batch_frames=2)
    assert [p.index for p in make(engine)] == [0, 1]
    assert [p.index for p in make(engine)] == [2]  # only one more fits
    assert engine.next_work(0.0) == Wait(None)
    assert engine.render(100, 0.0) is not None  # frame 0 starts: one place frees up
    assert [p.index for p in make(engine)] == [3]


def test_nothing_is_rendered_before_the_first_frame():
    engine = core()
    assert engine.render(SECOND, 0.0) is None
    make(engine)
    assert play(engine, 0.1)[0].frame_id == 0


def test_failures_back_off_doubling_report_error_and_recover():
    engine = core(retry_seconds=0.5, max_retry_seconds=1.5, error_after_failures=2)
    make(engine)
    play(engine, 0.1)
    work = engine.next_work(10.0)
    retry = engine.frames_failed(work.frames, out_of_memory=False, now=10.0)
    assert retry.at == 10.5 and not retry.release_memory
    assert "1 in a row" in retry.log.message
    assert engine.state == "ok"  # one failure may be a fluke
    assert engine.next_work(10.4) == Wait(10.5)
    work = engine.next_work(10.5)
    assert engine.frames_failed(work.frames, False, 10.5).at == 11.5
    assert engine.state == "error"
    work = engine.next_work(11.5)
    assert engine.frames_failed(work.frames, False, 11.5).at == 13.0  # capped at 1.5 s
    work = engine.next_work(13.0)
    assert engine.frames_made([made(p) for p in work.frames], 13.0) == ()
    assert engine.state == "ok"
    assert engine.metrics.frames_failed == 3


def test_a_failure_replans_the_same_frames_without_touching_the_transition_or_the_drift():
    def walk(fail: bool) -> list[PlannedFrame]:
        engine = core(endless=True)
        engine.change(settings("rock", transition=Transition(seconds=20.48)), now=0.0)
        frames = list(make(engine))
        work = engine.next_work(1.0)
        if fail:
            engine.frames_failed(work.frames, False, 1.0)
            work = engine.next_work(5.0)
        engine.frames_made([made(p) for p in work.frames], 5.0)
        frames += work.frames
        for _ in range(14):  # past the transition and the drift's interval
            play(engine, 5.12)
            frames += make(engine)
        return frames

    with_failure, without = walk(fail=True), walk(fail=False)
    strip = lambda frames: [dataclasses.replace(f, plan_version=0) for f in frames]  # noqa: E731
    assert strip(with_failure) == strip(without)
    assert [f.transition_alpha for f in without[:5]] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_running_out_of_memory_halves_the_batch_and_retries_at_once():
    engine = core(lookahead_frames=4, batch_frames=4)
    work = engine.next_work(0.0)
    retry = engine.frames_failed(work.frames, out_of_memory=True, now=0.0)
    assert retry.release_memory and retry.at == 0.0
    assert engine.metrics.batch_frames == 2
    assert [p.index for p in engine.next_work(0.0).frames] == [0, 1]
    assert engine.state == "starting"  # not "error": running out of memory is no failure


def test_metrics_read_by_another_thread_are_a_copy_later_counts_leave_alone():
    engine = core(lookahead_frames=4, batch_frames=4)
    before = engine.metrics.snapshot()
    work = engine.next_work(0.0)
    engine.frames_failed(work.frames, out_of_memory=True, now=0.0)
    make(engine)
    engine.metrics.control_latencies_seconds.append(1.0)
    assert (before.frames_failed, before.frames_made, before.batch_frames) == (0, 0, 4)
    assert not before.control_latencies_seconds
    assert before.control_latencies_seconds.maxlen == 1000


@pytest.mark.parametrize(
    "garbage",
    [
        np.full((1, PERIOD), np.nan, dtype=np.float32),
        np.zeros((2, PERIOD), dtype=np.float32),  # the stream is mono
        np.zeros((1, PERIOD), dtype=np.float64),
        np.zeros((1, PERIOD // 2), dtype=np.float32),  # not the stream's period
        np.zeros(PERIOD, dtype=np.float32),
        "not audio",
    ],
)
def test_an_unplayable_frame_is_dropped_and_planned_again(garbage):
    engine = core(lookahead_frames=3, batch_frames=2)
    make(engine, 0.0)  # frames 0 and 1; the first sets the stream's period
    play(engine, 0.1)
    work = engine.next_work(1.0)
    (line,) = engine.frames_made([made(work.frames[0], garbage), made(work.frames[1])], 1.0)
    assert f"frame {work.frames[0].index} is dropped" in line.message
    assert engine.metrics.frames_failed == 1 and engine.stitcher.pending_count == 1
    again = engine.next_work(1.0 + engine.config.retry_seconds)
    assert [p.index for p in again.frames] == [p.index for p in work.frames]


def test_a_change_discards_waiting_frames_and_its_first_frame_enters_at_the_next_beat():
    engine = core(lookahead_frames=2)
    make(engine)
    play(engine, 0.1)
    make(engine)
    make(engine)
    assert engine.stitcher.pending_count == 2
    version = engine.change(settings("rock"), now=2.0)
    assert engine.stitcher.pending_count == 0 and engine.metrics.frames_discarded == 2
    (first,) = make(engine, 2.5)
    assert first.index == 1 and first.plan_version == version  # frames 1 and 2 planned again
    assert first.prompts == PromptBlend.single("rock")
    ready_at = engine.stitcher.position
    playing = play(engine, 1.0, now=3.0)
    assert [p.frame_id for p in playing] == [1]  # long before frame 0's 5.12 s are over
    beat, crossfade = SECOND * 60 / 117.1875, engine.stitcher.config.crossfade_samples
    assert playing[0].sample_position + crossfade - ready_at <= beat  # at the next beat
    assert playing[0].prompts[0].text == "rock"
    assert list(engine.metrics.control_latencies_seconds) == [1.0]


def test_while_a_change_waits_for_its_first_frame_less_is_rendered_ahead():
    """Audio already rendered cannot take a change: the renderer keeps less of it while the
    change's first frame is being made, and the full margin again once it is queued."""
    engine = core(render_ahead_seconds=0.25, change_render_ahead_seconds=0.1)
    make(engine)
    assert engine.render_ahead_seconds == 0.25
    engine.change(settings("rock"), now=1.0)
    assert engine.render_ahead_seconds == 0.1
    assert isinstance(engine.next_work(1.0), MakeFrames)
    engine.frames_cancelled(1.1)  # a cancelled batch is no frame: still waiting
    assert engine.render_ahead_seconds == 0.1
    make(engine, 1.2)
    assert engine.render_ahead_seconds == 0.25


@pytest.mark.parametrize("seconds", [0.01, 0.3])
def test_the_change_render_ahead_lies_between_a_block_and_the_render_ahead(seconds):
    with pytest.raises(ValueError, match="change_render_ahead_seconds"):
        EngineConfig(render_ahead_seconds=0.25, change_render_ahead_seconds=seconds)


def test_quantized_to_the_bar_a_change_is_heard_at_the_next_bar_line_after_it_is_ready():
    engine = core(quantize="bar")
    make(engine)
    play(engine, 1.0)
    engine.change(settings("rock"), now=1.0)
    make(engine, 1.5)  # ready 1.0 s into the stream: bar two (4 beats, 2.05 s) is next
    (playing,) = play(engine, 3.0, now=1.5)
    bar = 4 * SECOND * 60 / 117.1875
    end = playing.sample_position + engine.stitcher.config.crossfade_samples
    assert end == round(bar)


def test_a_batch_made_for_an_older_plan_is_discarded():
    engine = core()
    make(engine)
    play(engine, 0.1)
    work = engine.next_work(0.0)
    engine.change(settings("rock"), now=0.5)
    assert engine.frames_made([made(p) for p in work.frames], 1.0) == ()
    assert engine.metrics.frames_discarded == 1 and engine.stitcher.pending_count == 0
    assert engine.next_work(1.0).frames[0].prompts == PromptBlend.single("rock")


def test_a_change_makes_the_batch_in_flight_stale_and_its_cancel_costs_no_back_off():
    engine = core()
    make(engine)
    play(engine, 0.1)
    work = engine.next_work(0.0)
    assert not engine.batch_is_stale
    engine.change(settings("rock"), now=0.5)
    assert engine.batch_is_stale  # the shell tells the maker to stop
    engine.frames_cancelled(0.6)
    assert not engine.batch_is_stale
    again = engine.next_work(0.6)  # at once: no failure, no back-off
    assert isinstance(again, MakeFrames)
    assert again.frames[0].index == work.frames[0].index
    assert again.frames[0].prompts == PromptBlend.single("rock")
    assert engine.metrics.batches_cancelled == 1 and engine.metrics.frames_failed == 0
    assert engine.state == "ok"


def test_a_change_with_nothing_in_flight_cancels_nothing():
    engine = core()
    make(engine)
    engine.change(settings("rock"), now=0.5)
    assert not engine.batch_is_stale


def test_an_overtaken_change_reports_only_the_latest_latency():
    engine = core()
    make(engine)
    play(engine, 0.1)
    engine.change(settings("rock"), now=1.0)
    engine.change(settings("funk"), now=2.0)
    make(engine, 2.0)
    play(engine, 1.0, now=2.5)
    assert list(engine.metrics.control_latencies_seconds) == [0.5]


def test_paused_the_current_frame_loops_and_nothing_new_is_made():
    engine = core()
    make(engine)
    play(engine, 1.0)
    engine.set_paused(True)
    assert engine.next_work(5.0) == Wait(None)
    rendered = engine.render(3 * PERIOD, 5.0)
    assert rendered.audio.events == () and rendered.audio.behind  # frame 0 loops on
    assert np.sqrt(np.mean(rendered.audio.samples[:, -SECOND:] ** 2)) > 1e-3
    assert engine.status(5.0).state == "paused"
    engine.set_paused(False)
    assert isinstance(engine.next_work(6.0), MakeFrames)


def test_a_late_frame_is_one_behind_episode_with_one_warning():
    engine = core()
    make(engine)
    lines = [engine.render(PERIOD // 2, float(t)).log for t in range(6)]
    assert [len(line) for line in lines] == [0, 0, 1, 0, 0, 0]
    assert "the next frame is late" in lines[2][0].message
    assert engine.metrics.behind_episodes == 1 and engine.state == "behind"


def test_status_goes_out_on_a_change_of_state_and_once_per_interval():
    engine = core(status_interval_seconds=1.0)
    make(engine)
    play(engine, 0.1)
    assert engine.status(0.0).state == "ok"
    assert engine.status(0.5) is None
    engine.set_paused(True)
    assert engine.status(0.6).state == "paused"
    assert engine.status(1.0) is None
    assert engine.status(1.6).state == "paused"
    assert engine.status(1.7, force=True) is not None


def test_a_heard_frame_announces_its_settings_and_its_picture():
    engine = core()
    make(engine)
    rendered = engine.render(SECOND, 0.0)
    (switch,) = rendered.audio.events
    playing, picture = engine.heard(switch, 0.0)
    assert playing.frame_id == 0 and playing.sample_position == switch.start_position
    assert playing.bpm == pytest.approx(117.1875) and playing.seed_loop == "house_117"
    assert picture.png == b"\x89PNG frame 0"
    assert engine.heard(switch, 0.0) is None  # announced once


def test_until_the_first_frame_plays_the_status_says_it_is_being_made_and_for_how_long():
    engine = core()
    assert engine.status(0.0).state == "starting"
    work = engine.next_work(10.0)
    status = engine.status(13.0, force=True)
    assert (status.state, status.making_seconds, status.advice) == ("starting", 3.0, None)
    engine.frames_made([made(p) for p in work.frames], 13.5)
    assert engine.status(13.5, force=True).state == "starting"  # made, not yet heard
    play(engine, 0.1, now=13.6)
    status = engine.status(13.6, force=True)
    assert (status.state, status.making_seconds) == ("ok", 0.0)


def test_a_machine_slower_than_real_time_is_told_so_with_the_fix_once():
    engine = core()
    engine.next_work(0.0)
    assert engine.speed_warning(5.0) == ()  # 5 s for a 5.12 s frame: keeps up
    (line,) = engine.speed_warning(6.0)
    assert "6.0 s to make a frame (the first one, so far), longer than the 5.12 s" in line.message
    assert "--dtype fp32" in line.message and "--model builtin" in line.message
    assert "--form loop" not in line.message  # nothing composed here
    assert engine.speed_warning(9.0) == ()  # said once
    assert engine.status(9.0).advice.startswith("this machine takes 9.0 s")


def test_the_slow_warning_follows_the_measured_time_per_frame():
    engine = core(lookahead_frames=3)
    work = engine.next_work(0.0)
    slow = dataclasses.replace(made(work.frames[0]), seconds_to_make=7.0)
    engine.frames_made([slow], 7.0)
    (line,) = engine.speed_warning(7.0)
    assert "takes 7.0 s to make a frame, longer" in line.message
    work = engine.next_work(7.0)  # the next frames come fast: the average falls back
    for _ in range(8):
        work = engine.next_work(7.0)
        if isinstance(work, MakeFrames):
            engine.frames_made([made(p) for p in work.frames], 7.5)
        engine.render(PERIOD, 7.5)
    assert engine.metrics.seconds_per_frame < 5.12
    assert engine.speed_warning(8.0) == () and engine.status(8.0, force=True).advice is None


def test_a_song_form_that_composes_its_loops_names_the_lighter_form_when_too_slow():
    config = StreamConfig(settings=settings())
    planner = dataclasses.replace(
        config.planner, endless=True, form="song", loop_styles=(("house track", "house"),)
    )
    engine = build_core(dataclasses.replace(config, planner=planner))
    engine.next_work(0.0)
    (line,) = engine.speed_warning(6.0)
    assert "--form loop (the song form composes a seed loop per frame" in line.message


def test_the_next_song_at_its_own_tempo_enters_on_its_own_beat_and_says_so():
    """A song change that changes the tempo (a lo-fi song at 7 beats a frame, then a house song
    at 10) crosses the stitcher as a performer's change of seed loop does: the new song's first
    frame enters at the seam, on a beat of its own grid, and is announced at its own tempo."""
    config = StreamConfig(settings=settings("lo-fi", seed_loop="boom_bap_94"), loudness=None)
    planner = dataclasses.replace(
        config.planner, endless=True, form="song", playlist=("house track",),
        loop_styles=(("lo-fi", "lofi"), ("house track", "house")),
        style_beats=(("lofi", (6, 7)), ("house", (10, 11))),
    )
    engine = build_core(dataclasses.replace(config, planner=planner))
    loop = (0.1 * np.sin(2 * np.pi * 50 * np.arange(PERIOD) / PERIOD))[None].astype(np.float32)
    heard, events = [], []
    for second in range(0, 250, 5):
        while isinstance(work := engine.next_work(second), MakeFrames):
            engine.frames_made([made(p, loop) for p in work.frames], second)
        rendered = engine.render(5 * SECOND, second)
        events += rendered.audio.events
        heard += [engine.heard(switch, second) for switch in rendered.audio.events]
    playing = [pair[0] for pair in heard if pair is not None]
    tempi = [p.bpm for p in playing]
    change = tempi.index(117.1875)
    assert set(tempi[:change]) == {82.0312} and set(tempi[change:]) == {117.1875}
    assert playing[change].section == "intro" and playing[change - 1].section == "outro"
    beat = PERIOD / 10
    entered = events[change].end_position - events[0].start_position
    assert abs(entered / beat - round(entered / beat)) * beat < 1, "on a beat of the new grid"
