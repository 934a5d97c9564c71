"""Following a Link session, in the pure core with made-up times: the stream's beats land on the
session's, its bar one on the session's bar, tempo changes are followed, bad tempos refused;
and the stretch that plays a loop at another tempo keeps it whole."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
from material import groove

from streamer.audio.measures import high_passed, onset_positions
from streamer.audio.stitcher import Quantize, StitcherConfig, SwitchEvent
from streamer.audio.stretch import StreamStretcher
from streamer.plan.settings import PromptBlend, StreamSettings, Transition
from streamer.runtime.assemble import build_core
from streamer.runtime.core import EngineCore, MakeFrames
from streamer.runtime.follow import LinkConfig, SessionTimeline
from streamer.runtime.frames import MadeFrame
from streamer.runtime.stream_config import StreamConfig

RATE = 44100
PERIOD = 225792  # one 5.12 s frame
BLOCK = 2756  # the engine's render chunk: a quarter of 0.25 s
START = 100.0  # monotonic time the first sample is heard


def clicks(beats: int) -> np.ndarray:
    """A loop with a click on every beat, the one on loop position 0 (bar one) twice as loud."""
    samples = np.zeros(PERIOD, dtype=np.float32)
    burst = (
        np.random.default_rng(0).standard_normal(80) * np.exp(-np.arange(80) / 15)
    ).astype(np.float32)
    for beat in range(beats):
        at = round(beat * PERIOD / beats)
        samples[at : at + 80] += (0.8 if beat == 0 else 0.4) * burst
    return samples[None]


def following_core(seed_loop: str, beats: int, quantize: Quantize = "beat") -> EngineCore:
    settings = StreamSettings(
        prompts=PromptBlend.single("jazz"),
        seed_loop=seed_loop,
        transition=Transition(seconds=0),
    )
    config = StreamConfig(settings=settings, stitcher=StitcherConfig(quantize=quantize))
    core = build_core(
        dataclasses.replace(
            config, planner=dataclasses.replace(config.planner, endless=False)
        )
    )
    core.follow(LinkConfig())
    loop = clicks(beats)
    work = core.next_work(0.0)
    assert isinstance(work, MakeFrames)
    core.frames_made([MadeFrame(p, loop, b"", 0.1) for p in work.frames], 0.0)
    return core


def play(
    core: EngineCore,
    seconds: float,
    session: SessionTimeline,
    start: float = 0.0,
    switches: list[SwitchEvent] | None = None,
):
    """Render ``seconds`` heard from ``START + start`` as a clock would play them, refilling the
    lookahead with the same loop; the session is read before every block. The switches heard
    (in output samples from ``START``) are added to ``switches``."""
    out, position = [], round(start * RATE)
    while position < round((start + seconds) * RATE):
        heard_at = START + position / RATE
        core.session(session, heard_at)
        work = core.next_work(heard_at)
        if isinstance(work, MakeFrames):
            loop = clicks(core.seed_loop_beats[core.settings.seed_loop])
            core.frames_made(
                [MadeFrame(p, loop, b"", 0.1) for p in work.frames], heard_at
            )
        rendered = core.render(BLOCK, heard_at, heard_at=heard_at)
        out.append(rendered.audio.samples)
        if switches is not None:
            switches.extend(rendered.audio.events)
        position += BLOCK
    return np.concatenate(out, axis=1)


def session_beats(
    samples: np.ndarray, session: SessionTimeline, start: float = 0.0
) -> np.ndarray:
    onsets = onset_positions(samples, RATE, refractory_seconds=0.2)
    return np.array([session.beat_at(START + start + q / RATE) for q in onsets])


def loudness_at(samples: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Energy around each onset (the stretch may spread a click over a few ms)."""
    return np.array([np.sum(samples[0, p - 400 : p + 400] ** 2) for p in positions])


@pytest.mark.parametrize(
    ("seed_loop", "beats", "tempo"),
    [("house_117", 10, 120.0), ("boom_bap_94", 8, 120.0)],
)
def test_the_streams_beats_and_bar_one_land_on_the_sessions(seed_loop, beats, tempo):
    session = SessionTimeline(
        tempo_bpm=tempo, beat=1.37, at=START
    )  # mid-bar: phase must move
    core = following_core(seed_loop, beats)
    samples = play(core, 12.0, session)
    settled = 1.0  # the first block jumps to the session's phase; look after a second
    onsets = onset_positions(samples, RATE, refractory_seconds=0.2)
    onsets = onsets[onsets > settled * RATE]
    at = np.array([session.beat_at(START + q / RATE) for q in onsets])
    error_ms = (at - np.round(at)) * 60_000 / tempo
    assert np.abs(error_ms).max() <= 10.0, error_ms  # every beat within 10 ms of Link's
    assert np.allclose(
        np.diff(np.round(at)), 1
    )  # one onset per session beat: its tempo
    if beats == 8:  # bar one (the loud click) on the session's bar
        energy = loudness_at(samples, onsets)
        loud = energy > 0.5 * energy.max()
        assert np.all(np.round(at[loud]) % 4 == 0), (at[loud], energy)
        assert loud.sum() >= 2
    assert core.metrics.frames_made >= 1


def test_a_change_quantized_to_the_bar_is_heard_from_the_sessions_next_bar_line():
    """Following a session at 120 BPM (a 93.75 BPM boom-bap loop played 1.28 times as fast),
    ``--quantize bar`` means the session's bar: the stream counts its bars from its bar one,
    which the follower keeps on the session's, so a change enters on the session's next bar
    line after its frame is ready, is announced there, and is not heard before its crossfade."""
    session = SessionTimeline(tempo_bpm=120.0, beat=1.37, at=START)  # bar lines at 1.315 s + 2k
    core = following_core("boom_bap_94", 8, quantize="bar")
    switches: list[SwitchEvent] = []
    played = play(core, 0.5, session, switches=switches).shape[1]
    now = START + played / RATE
    core.change(dataclasses.replace(core.settings, prompts=PromptBlend.single("rock")), now)
    work = core.next_work(now)
    assert isinstance(work, MakeFrames)
    tone = 0.3 * np.sin(2 * np.pi * 2048 * np.arange(PERIOD) / PERIOD)  # 400 Hz, whole cycles
    made = [MadeFrame(p, tone[None].astype(np.float32), b"", 0.1) for p in work.frames]
    core.frames_made(made, now)
    after = play(core, 2.0, session, start=played / RATE, switches=switches)[0]

    change = work.frames[0]
    assert [s.frame_id for s in switches] == [0, change.index]  # each switch announced once
    switch = switches[-1]
    # The first bar line after 0.5 s is the session's beat 4, at 1.315 s; within 10 ms of it:
    assert session.beat_at(START + switch.end_position / RATE) == pytest.approx(4.0, abs=0.02)
    start, end = switch.start_position - played, switch.end_position - played
    n = np.arange(RATE // 10)  # 0.1 s: 40 cycles of 400 Hz

    def amplitude_400_hz(samples: np.ndarray) -> float:
        return float(2 / n.size * abs(np.sum(samples * np.exp(-2j * np.pi * 400 * n / RATE))))

    assert amplitude_400_hz(after[start - n.size : start]) < 1e-3  # the clicks, no tone yet
    assert amplitude_400_hz(after[end : end + n.size]) > 0.25  # the change's frame


def test_a_tempo_change_in_the_session_is_followed_within_a_bar_without_a_click():
    first = SessionTimeline(tempo_bpm=120.0, beat=0.0, at=START)
    core = following_core("house_117", 10)
    before = play(core, 6.0, first)
    # Heard time runs on from where the first play ended (whole blocks: 6.06 s); there the
    # session moves to 126 BPM, and Link keeps its beat continuous.
    change_at = before.shape[1] / RATE
    second = SessionTimeline(
        tempo_bpm=126.0, beat=first.beat_at(START + change_at), at=START + change_at
    )
    after = play(core, 6.0, second, start=change_at)
    onsets = onset_positions(after, RATE, refractory_seconds=0.2)
    bar = 4 * 60 / 126.0
    onsets = onsets[onsets > bar * RATE]  # after one bar the stream is on the new tempo
    at = np.array([second.beat_at(START + change_at + q / RATE) for q in onsets])
    assert np.abs(at - np.round(at)).max() * 60_000 / 126.0 <= 10.0
    joined = np.concatenate([before, after], axis=1)
    seam = joined[:, round(5.5 * RATE) : round(6.5 * RATE)]
    assert (
        high_passed(seam).max() <= 1.2 * high_passed(before).max()
    )  # no click at the change
    # Nothing of the loop is skipped at the change: its bar one (the loud click) comes every
    # 10 of its beats, so every 10 of the session's.
    onsets = onset_positions(joined, RATE, refractory_seconds=0.2)
    energy = loudness_at(joined, onsets)
    loud = onsets[energy > 0.5 * energy.max()]
    session = [first if q < before.shape[1] else second for q in loud]
    beats = np.array([s.beat_at(START + q / RATE) for s, q in zip(session, loud)])
    assert loud.size >= 2 and np.allclose(np.diff(np.round(beats)), 10), beats


@pytest.mark.parametrize("ahead_beats", [0.15, 0.3, 0.45])
def test_a_stream_slightly_ahead_of_the_session_waits_for_it_instead_of_skipping_a_bar(
    ahead_beats,
):
    """The session's beat moves back under the stream (as when the time a block is heard was
    underestimated): the stream plays slower until it is within ``jump_beats`` (2 beats per half
    beat), the nudge closes the rest, and every beat of its loop plays on the way (a jump would
    skip most of a bar)."""
    first = SessionTimeline(tempo_bpm=120.0, beat=0.0, at=START)
    core = following_core("house_117", 10)
    before = play(core, 6.0, first)
    moved_at = before.shape[1] / RATE
    second = SessionTimeline(
        tempo_bpm=120.0, beat=first.beat_at(START + moved_at) - ahead_beats, at=START + moved_at
    )
    after = play(core, 6.0, second, start=moved_at)
    onsets = onset_positions(after, RATE, refractory_seconds=0.2)
    at = np.array([second.beat_at(START + moved_at + q / RATE) for q in onsets])
    error_ms = (at - np.round(at)) * 500  # 500 ms per beat
    caught_up = at > at[0] + 4 * ahead_beats + 1  # the slowdown is over (2 beats per half beat)
    assert np.abs(error_ms[caught_up]).max() <= LinkConfig().jump_beats * 500, error_ms
    assert np.abs(error_ms[-3:]).max() <= 10.0, error_ms  # and then on the beat
    joined = np.concatenate([before, after], axis=1)
    onsets = onset_positions(joined, RATE, refractory_seconds=0.2)
    energy = loudness_at(joined, onsets)
    loud = onsets[energy > 0.5 * energy.max()]
    heard_beats = np.searchsorted(onsets, loud)  # onsets heard before each bar one
    assert loud.size >= 2 and np.all(np.diff(heard_beats) == 10), heard_beats


def test_a_tempo_the_stretch_cannot_play_is_refused_with_one_log_line_and_the_stream_goes_on():
    good = SessionTimeline(tempo_bpm=120.0, beat=0.0, at=START)
    core = following_core("house_117", 10)
    assert core.session(good, START) == ()
    bad = SessionTimeline(tempo_bpm=999.0, beat=0.0, at=START + 1)
    (line,) = core.session(bad, START + 1)
    assert line.level == logging.WARNING
    assert (
        "999.00 BPM is outside what this seed loop (117.19 BPM) can follow"
        in line.message
    )
    assert "keeps 120.00 BPM" in line.message
    assert core.session(bad, START + 1.1) == ()  # once per tempo, not 50 times a second
    samples = play(core, 4.0, bad)
    at = session_beats(samples, good)
    assert (
        np.abs(at[2:] - np.round(at[2:])).max() * 500 <= 10.0
    )  # still on the good session


def test_the_stretch_at_ratio_one_is_the_source_and_near_one_keeps_onsets_and_no_clicks():
    source = np.tile(groove(seed=0).samples[None].astype(np.float32), 2)
    for ratio in (1.0, 120 / 117.1875):
        stretcher, fed, count = (
            StreamStretcher(1, RATE),
            0,
            round(source.shape[1] / ratio) - 4096,
        )
        while stretcher.ready < count:
            need = stretcher.source_needed()
            stretcher.feed(source[:, fed : fed + need])
            fed += need
            stretcher.step(ratio)
        out = stretcher.take(count)
        if ratio == 1.0:
            assert (
                np.abs(out[:, stretcher.hop :] - source[:, stretcher.hop : count]).max()
                < 1e-6
            )
            continue
        expected = onset_positions(source, RATE) / ratio
        found = onset_positions(out, RATE)
        nearest = np.array(
            [np.abs(found - e).min() for e in expected if e < count - RATE]
        )
        # WSOLA moves a segment by up to its 6 ms tolerance to continue the one before.
        assert (
            np.median(nearest) / RATE <= 0.006
            and np.percentile(nearest, 90) / RATE <= 0.010
        )
        assert (
            high_passed(out).max() <= 1.2 * high_passed(source).max()
        )  # no seam clicks
