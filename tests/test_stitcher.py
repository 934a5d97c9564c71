"""The stitcher joins frames into one endless stream: beats never jump, seams never click, the
level holds through a crossfade, and a late generator means a repeating loop, not silence."""

from __future__ import annotations

import numpy as np
import pytest

from material import groove, song
from streamer.audio import crossfade
from streamer.audio.measures import click_ratio, high_passed, onset_positions
from streamer.audio.stitcher import AudioFrame, Stitcher, StitcherConfig

RATE = 44100
LOOP = 225792  # one frame, 5.12 s
BEATS = 10
BEAT = LOOP / BEATS  # 117.1875 BPM
CONFIG = StitcherConfig()
FADE = CONFIG.crossfade_samples


@pytest.fixture(scope="module")
def loops() -> list[np.ndarray]:
    """Variations of one groove: the same beat grid with different bass, chords, snare and hats,
    as img2img frames from one seed loop are."""
    return [groove(seed=seed).samples[None].copy() for seed in range(3)]


def frame(frame_id: int, samples: np.ndarray, beats: int | None = BEATS) -> AudioFrame:
    return AudioFrame(frame_id, samples, beats=beats)


def stitched(frames: list[AudioFrame], num_samples: int, config: StitcherConfig = CONFIG):
    stitcher = Stitcher(config)
    for item in frames:
        stitcher.push(item)
    return stitcher.render(num_samples)


def loop_slice(samples: np.ndarray, start: int, count: int) -> np.ndarray:
    return samples[:, np.arange(start, start + count) % samples.shape[1]]


def test_frames_play_in_order_each_entering_at_the_same_place_in_the_bar(loops):
    block = stitched([frame(i, s) for i, s in enumerate(loops)], 3 * LOOP)
    out, events = block.samples, block.events
    assert [event.frame_id for event in events] == [0, 1, 2]
    # the first frame fades in from its downbeat, then plays untouched
    assert np.array_equal(out[:, FADE:LOOP], loops[0][:, FADE:LOOP])
    for previous, event in zip(events, events[1:]):
        in_loop = event.end_position % LOOP
        # each crossfade ends on a beat, clear of the loop's wrap ...
        assert min(in_loop % BEAT, BEAT - in_loop % BEAT) <= 1
        assert in_loop - FADE >= CONFIG.wrap_guard_samples
        # ... after the previous frame has played one period (the first frame: to the next beat)
        assert 0 <= event.end_position - (previous.end_position + LOOP) < BEAT
        # ... and the stream goes on at the loop position the old frame had reached
        after = out[:, event.end_position : event.end_position + RATE]
        assert np.array_equal(after, loop_slice(loops[event.frame_id], in_loop, RATE))
        start_in_loop = event.start_position % LOOP
        before = out[:, event.start_position - RATE : event.start_position]
        played_before = loop_slice(loops[previous.frame_id], start_in_loop - RATE, RATE)
        assert np.array_equal(before, played_before)


@pytest.mark.parametrize("beats", [BEATS, None], ids=["on-beats", "at-eighths-of-loop"])
def test_onsets_stay_on_the_beat_grid_across_switches(loops, beats):
    """Every attack in 30 s of switching frames (on beats, or at eighths of the loop when the
    tempo is unknown) lies within 5 ms of the grooves' eighth-note grid."""
    stitcher = Stitcher()
    for index in range(6):
        stitcher.push(frame(index, loops[index % 3], beats), interrupt=index % 2 == 1)
    out = stitcher.render(30 * RATE).samples
    onsets = onset_positions(out, RATE)
    eighth = BEAT / 2
    error_ms = np.abs(onsets - np.round(onsets / eighth) * eighth) / RATE * 1000
    assert len(onsets) >= 0.95 * 30 * RATE / eighth  # the detector hears the hits
    assert error_ms.max() <= 5.0


def test_seams_click_no_more_than_the_music_itself(loops):
    """At every crossfade edge and loop wrap the stream jumps no more than the frames themselves
    do at that place (click ratio measured here: 1.00, a crossfade only mixes their own jumps).
    A hard cut between the same frames at the wrong loop position is flagged (ratio 349)."""
    length = 4 * LOOP
    block = stitched([frame(i, s) for i, s in enumerate(loops)], length)
    sources = [np.tile(s, 4) for s in loops]
    seams = [edge for e in block.events[1:] for edge in (e.start_position, e.end_position)]
    seams += [LOOP, 2 * LOOP, 3 * LOOP]
    assert click_ratio(block.samples, seams, sources) <= 1.0

    cut, entry = LOOP + 137733, 5000  # frame 1 entering at the wrong loop position
    naive = np.concatenate([sources[0][:, :cut], loop_slice(loops[1], entry, length - cut)], axis=1)
    aligned = [sources[0], loop_slice(loops[1], entry - cut, length)]
    assert click_ratio(naive, [cut], aligned) > 100.0


def crossfade_level_error_db(out: np.ndarray, event, old: np.ndarray, new: np.ndarray) -> float:
    """Level of the crossfade over the level the two frames have there, each weighted by its
    share of the fade (0 dB: the fade neither dips nor swells)."""
    start, length = event.start_position, event.end_position - event.start_position
    progress = np.sin(0.5 * np.pi * (np.arange(length) + 0.5) / length) ** 2
    expected = (1 - progress) * loop_slice(old, start, length) ** 2
    expected += progress * loop_slice(new, start, length) ** 2
    produced = out[:, start : start + length].astype(np.float64) ** 2
    return 10 * np.log10(produced.sum() / expected.sum())


def test_the_level_holds_through_a_crossfade_whatever_the_frames_share(loops, monkeypatch):
    """Identical, partly correlated (variations of one groove) and unrelated frames all cross
    within 1 dB; a plain equal-power fade swells identical ones (by 1.5 dB over the fade, 3 dB
    at its middle)."""
    unrelated = song(5.12, seed=11)[None].astype(np.float32)
    pairs = [(loops[0], loops[0]), (loops[0], loops[1]), (loops[1], loops[2])]
    pairs.append((loops[2], unrelated))
    for old, new in pairs:
        block = stitched([frame(0, old), frame(1, new)], 2 * LOOP)
        assert abs(crossfade_level_error_db(block.samples, block.events[1], old, new)) <= 1.0

    monkeypatch.setattr("streamer.audio.stitcher.correlation", lambda a, b: 0.0)
    block = stitched([frame(0, loops[0]), frame(1, loops[0])], 2 * LOOP)
    assert crossfade_level_error_db(block.samples, block.events[1], loops[0], loops[0]) > 1.0


def test_identical_frames_join_into_exactly_the_same_loop(loops):
    block = stitched([frame(0, loops[0]), frame(1, loops[0])], 3 * LOOP)
    expected = loop_slice(loops[0], FADE, 3 * LOOP - FADE)
    assert np.allclose(block.samples[:, FADE:], expected, atol=1e-6)


def test_crossfade_gains_keep_power_for_any_correlation():
    for rho in (0.0, 0.3, 0.75, 1.0):
        fade_out, fade_in = crossfade.crossfade_gains(441, rho)
        power = fade_out.astype(np.float64) ** 2 + fade_in**2 + 2 * rho * fade_out * fade_in
        assert np.allclose(power, 1.0, atol=1e-5)
        assert fade_out[0] > 0.99 and fade_in[-1] > 0.99
        assert fade_in[0] < 0.01 and fade_out[-1] < 0.01


def test_when_the_generator_is_behind_the_frame_keeps_looping_and_says_so(loops):
    stitcher = Stitcher()
    stitcher.push(frame(0, loops[0]))
    first = stitcher.render(LOOP)
    assert not first.behind and first.repeats == 0
    late = stitcher.render(2 * LOOP)
    assert late.behind and late.repeats == 2
    # still the same seamless loop, never silence
    assert np.array_equal(late.samples, loop_slice(loops[0], LOOP, 2 * LOOP))
    windows = late.samples[0, : 2 * LOOP // 4410 * 4410].reshape(-1, 4410)
    assert np.sqrt((windows**2).mean(axis=1)).min() > 1e-3
    # the late frame enters at the next beat, and the stream is on time again
    stitcher.push(frame(1, loops[1]))
    caught_up = stitcher.render(LOOP)
    (event,) = caught_up.events
    assert event.start_position - 3 * LOOP < BEAT
    on_time = stitcher.render(int(BEAT // 2))  # the new frame has most of its period ahead
    assert not on_time.behind and on_time.repeats == 0


def test_an_interrupting_frame_enters_at_the_next_switch_point(loops):
    """After a control change the lead drops the old plan's frames and pushes the new one with
    interrupt=True: it is fully audible within one beat plus the crossfade, not a whole loop."""
    stitcher = Stitcher()
    stitcher.push(frame(0, loops[0]))
    stitcher.render(LOOP // 3)
    stitcher.push(frame(1, loops[1]))
    stitcher.push(frame(2, loops[2]))
    assert stitcher.pending_count == 2
    stitcher.render(RATE // 10)
    dropped = stitcher.discard_pending(lambda item: item.frame_id == 1)
    assert [item.frame_id for item in dropped] == [1] and stitcher.pending_count == 1
    assert [item.frame_id for item in stitcher.discard_pending()] == [2]

    pushed_at = stitcher.position
    stitcher.push(frame(3, loops[1]), interrupt=True)
    block = stitcher.render(LOOP)
    (event,) = block.events
    assert event.frame_id == 3
    assert event.end_position - pushed_at <= BEAT + FADE
    assert stitcher.current_frame_id == 3


def interrupted_at(loops, config: StitcherConfig, pushed_at: int) -> int:
    """Where the crossfade of a frame pushed with interrupt at ``pushed_at`` ends."""
    stitcher = Stitcher(config)
    stitcher.push(frame(0, loops[0]))
    stitcher.render(pushed_at)
    stitcher.push(frame(1, loops[1]), interrupt=True)
    (event,) = stitcher.render(2 * LOOP).events
    return event.end_position


@pytest.mark.parametrize(
    "pushed_at", [LOOP // 3, LOOP + LOOP // 5, 2 * LOOP - LOOP // 10, 2 * LOOP - LOOP // 20]
)
def test_quantized_to_the_bar_a_change_lands_on_the_next_bar_line(loops, pushed_at):
    """Bars of 4 beats from bar one: with a 10-beat loop a bar line moves through the loop; the
    last case's bar line is the loop's wrap (bar 6 starts at beat 20), where frames of one plan
    never switch but a control change does."""
    end = interrupted_at(loops, StitcherConfig(quantize="bar"), pushed_at)
    bar = 4 * BEAT
    first_bar = np.ceil((pushed_at + FADE) / bar) * bar
    assert abs(end - first_bar) <= 1


@pytest.mark.parametrize("pushed_at", [LOOP - int(BEAT) * 2 // 3, 2 * LOOP - int(BEAT) // 3])
def test_on_the_beat_a_change_enters_at_the_wrap_beat_too(loops, pushed_at):
    end = interrupted_at(loops, StitcherConfig(quantize="beat"), pushed_at)
    assert abs(end - np.ceil((pushed_at + FADE) / BEAT) * BEAT) <= 1


@pytest.mark.parametrize("pushed_at", [LOOP // 3, LOOP - CONFIG.wrap_guard_samples // 2])
def test_unquantized_a_change_enters_as_soon_as_the_crossfade_can_run(loops, pushed_at):
    assert interrupted_at(loops, StitcherConfig(quantize="off"), pushed_at) == pushed_at + FADE


def test_without_beats_switch_points_are_evenly_spaced_fractions_of_the_loop(loops):
    config = StitcherConfig(switch_points_without_beats=4)
    block = stitched([frame(0, loops[0], None), frame(1, loops[1], None)], 2 * LOOP, config)
    assert block.events[1].end_position % LOOP in {LOOP // 4, LOOP // 2, 3 * LOOP // 4}


def test_rendering_in_any_block_sizes_gives_the_same_stream(loops):
    def run(sizes):
        stitcher = Stitcher()
        for index in range(4):
            stitcher.push(frame(index, loops[index % 3]), interrupt=index == 2)
        blocks = [stitcher.render(size) for size in sizes]
        samples = np.concatenate([b.samples for b in blocks], axis=1)
        return samples, [e for b in blocks for e in b.events]

    total = 5 * LOOP + 12345  # includes switches, an interrupt and a behind stretch
    whole, whole_events = run([total])
    sizes = np.random.default_rng(1).integers(1, 30000, size=200)
    sizes = list(sizes[np.cumsum(sizes) < total])
    sizes.append(total - int(sum(sizes)))
    pieces, piece_events = run(sizes)
    assert np.array_equal(whole, pieces)
    assert whole_events == piece_events


def test_hours_of_stream_stay_sample_continuous(loops):
    """Two hours, simulated: a producer that is sometimes late, sometimes re-plans (drop and
    interrupt), blocks of changing size. Positions never skip, nothing is silent or broken, and
    no block boundary or crossfade jumps more than the music inside the frames."""
    rng = np.random.default_rng(7)
    inside = max(float(high_passed(np.concatenate([s, s[:, :2]], axis=1)).max()) for s in loops)
    stitcher = Stitcher()
    position, frame_id, previous_tail, worst_jump = 0, 0, None, 0.0
    switches = behind_blocks = 0
    while position < 2 * 3600 * RATE:
        if stitcher.pending_count < 2 and rng.random() < 0.25:  # the producer keeps ~2 ahead
            if rng.random() < 0.02:
                stitcher.discard_pending()
            stitcher.push(frame(frame_id, loops[frame_id % 3]), interrupt=rng.random() < 0.02)
            frame_id += 1
        block = stitcher.render(int(rng.integers(256, 3 * RATE)))
        samples = block.samples
        assert block.start_position == position
        assert np.isfinite(samples).all() and np.abs(samples).max() <= 1.0
        if previous_tail is not None:
            joined = high_passed(np.concatenate([previous_tail, samples[:, :2]], axis=1))
            worst_jump = max(worst_jump, float(joined[2]))
        for event in block.events:
            for edge in (event.start_position, event.end_position):
                local = edge - position
                if 2 <= local < samples.shape[1] - 2:
                    jump = float(high_passed(samples[:, local - 2 : local + 3])[2])
                    worst_jump = max(worst_jump, jump)
        switches += len(block.events)
        behind_blocks += block.behind
        previous_tail = samples[:, -2:]
        position += samples.shape[1]
    assert stitcher.position == position
    assert worst_jump <= inside
    assert switches > 1000 and behind_blocks > 0


def test_frames_that_do_not_fit_the_stream_are_refused(loops):
    stitcher = Stitcher(StitcherConfig(max_pending_frames=2))
    stitcher.push(frame(0, loops[0]))
    with pytest.raises(ValueError, match="same length"):
        stitcher.push(frame(1, loops[0][:, :-441]))
    with pytest.raises(ValueError, match="channels"):
        stitcher.push(frame(1, np.concatenate([loops[0], loops[0]])))
    with pytest.raises(ValueError, match="float32"):
        stitcher.push(frame(1, loops[0].astype(np.float64)))
    stitcher.push(frame(1, loops[1]))
    with pytest.raises(ValueError, match="max_pending_frames"):
        stitcher.push(frame(2, loops[2]))
    with pytest.raises(ValueError, match="crossfade"):
        Stitcher(StitcherConfig(crossfade_seconds=5.0)).push(frame(0, loops[0]))
    with pytest.raises(ValueError, match="crossfade_seconds"):
        StitcherConfig(crossfade_seconds=0.0)


def test_silence_until_the_first_frame_then_a_fade_in(loops):
    stitcher = Stitcher()
    silent = stitcher.render(1000)
    assert not silent.samples.any() and silent.events == ()
    stitcher.push(frame(0, loops[0]))
    block = stitcher.render(LOOP)
    assert block.events[0].start_position == 1000
    # the loop starts from its downbeat where the first frame starts
    assert np.array_equal(block.samples[:, FADE:], loops[0][:, FADE:])
