"""Capturing the live input on the bar: the pure window and guards with fake clocks, the seed a
capture makes, and the controls that ask for one. The real sound-server path is
tests/test_capture_jack.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio

from material import groove
from streamer.audio.capture import (
    CAPTURE_PEAK,
    BeatClock,
    CaptureRefused,
    CaptureWindow,
    InputTimeline,
    capture_window,
    check_audible,
    levelled,
    measure_levels,
    next_auto_capture,
)
from streamer.inputs.desk import PromptDesk
from streamer.inputs.midi_map import DEFAULT_CAPTURE_NOTE, default_midi_map, midi_map_from_toml, midi_command
from streamer.inputs.osc_map import osc_command
from streamer.plan.commands import Capture
from streamer.plan.controls import ControlError
from streamer.runtime.captured_seeds import CapturedSeed, CapturedSeeds
from streamer.runtime.ring import InputRing
from streamer.seeds.capture import captured_seed
from streamer.sinks.config import ServerConfig
from streamer.sinks.control import parse_client_message
from streamer.errors import UserError
from streamer.spectrogram import SpectrogramParams, mel_from_image

RATE = 48000
#: 120 BPM, beat 0 (bar one) heard at t = 100 s.
GRID = BeatClock(tempo_bpm=120.0, beat=0.0, at=100.0)


def timeline(newest_sound: float, latency: float = 0.0, written: int = 2_000_000, held: int = 1_000_000) -> InputTimeline:
    return InputTimeline(RATE, written, newest_sound + latency, latency, held)


# ---- the window --------------------------------------------------------------------------------


def test_the_window_is_the_last_whole_bars_whose_sound_has_arrived():
    # The newest sound is at beat 18.6 (109.3 s): the last whole bar ends on beat 16 (108 s).
    line = timeline(109.3)
    window = capture_window(GRID, line, 2)
    assert window.start_beat == 8.0 and window.bars == 2
    assert window.first == line.written - round(5.3 * RATE)  # beat 8 is at 104 s
    assert window.last == line.written - round(1.3 * RATE)  # beat 16 is at 108 s
    assert window.last - window.first == 4 * RATE  # two bars of 2 s
    assert abs(window.offset_seconds) <= 0.5 / RATE  # on the grid to half a sample


def test_the_input_latency_moves_the_window_onto_what_was_played_with_the_beat():
    # The same sounds, arriving 37.5 ms later: the window holds the same sounds, so it ends the
    # same number of samples before the newest one.
    on_time = capture_window(GRID, timeline(109.3), 1)
    late = capture_window(GRID, timeline(109.3, latency=0.0375), 1)
    assert (late.first, late.last) == (on_time.first, on_time.last)
    # Not accounted for, the window would start that much before the downbeat played.
    unaccounted = InputTimeline(RATE, 2_000_000, 109.3 + 0.0375, 0.0, 1_000_000)
    assert on_time.first - capture_window(GRID, unaccounted, 1).first == round(0.0375 * RATE)


def test_a_bar_line_exactly_at_the_newest_sound_counts_and_a_fraction_before_it_does_not():
    assert capture_window(GRID, timeline(108.0), 1).start_beat == 12.0
    assert capture_window(GRID, timeline(108.0 - 1e-4), 1).start_beat == 8.0


def test_the_grid_of_a_link_session_or_a_three_beat_bar_is_followed():
    waltz = BeatClock(tempo_bpm=90.0, beat=5.0, at=50.0, beats_per_bar=3)
    window = capture_window(waltz, timeline(60.0), 2)  # beat 20 at 60 s: bars end on beat 18
    assert window.start_beat == 12.0
    assert window.last - window.first == round(6 * 60 / 90 * RATE)


def test_bars_the_ring_no_longer_holds_are_refused_with_how_much_it_holds():
    with pytest.raises(CaptureRefused) as refused:
        capture_window(GRID, timeline(109.3, held=3 * RATE), 2)
    assert refused.value.code == "not_enough_input"
    assert "began 5.3 s ago" in refused.value.message and "holds 3.0 s" in refused.value.message
    with pytest.raises(CaptureRefused, match="1 to 8 bars"):
        capture_window(GRID, timeline(109.3), 9)


def test_the_window_read_from_the_ring_is_the_played_loop_bit_for_bit():
    """A fake device writes blocks with their arrival times: a loop that started on a bar line
    comes back exactly, from a bar line."""
    loop = groove(bpm=120.0, beats=8, rate=RATE).samples  # two bars, 192000 samples
    ring = InputRing(10 * RATE)
    latency, block = 0.005, 256
    # The device starts 0.3 s before the bar line of beat 0 (at t = 100 s) and the drummer starts
    # the loop on it: input sample i sounded at 99.7 + i / RATE.
    lead = round(0.3 * RATE)
    played = np.concatenate([np.zeros(lead, np.float32), np.tile(loop, 3)])
    for start in range(0, played.size - block + 1, block):
        arrived = 99.7 + (start + block) / RATE + latency
        ring.write(played[None, start : start + block], arrived)
    written, at, held = ring.position()
    window = capture_window(GRID, InputTimeline(RATE, written, at, latency, held), 2)
    samples = ring.read(window.first, window.last)
    into_loop = int(window.start_beat % 8) * RATE // 2  # a two-bar loop: bar 1 or bar 2 first
    assert window.first == lead + window.start_beat * RATE // 2
    assert np.array_equal(samples, np.roll(loop, -into_loop))


def test_captures_every_n_bars_fall_just_after_each_nth_bar_line_has_arrived():
    # 120 BPM: a bar is 2 s from t = 100 s. Every 2 bars: bar lines at 104, 108, ... s.
    assert next_auto_capture(GRID, 101.0, 2, 0.01) == pytest.approx(104.06)
    assert next_auto_capture(GRID, 104.0, 2, 0.01) == pytest.approx(108.06)  # on the line: the next
    assert next_auto_capture(GRID, 107.9, 1, 0.0) == pytest.approx(108.05)
    # The capture then taken holds the N bars that just ended.
    due = next_auto_capture(GRID, 101.0, 2, 0.01)
    window = capture_window(GRID, InputTimeline(RATE, 2_000_000, due, 0.01, 1_000_000), 2)
    assert window.start_beat == 0.0


def test_reading_what_the_ring_has_overwritten_or_not_yet_received_gives_nothing():
    ring = InputRing(1000)
    ring.write(np.arange(1500, dtype=np.float32)[None, :1000], 1.0)
    ring.write(np.arange(1000, 1500, dtype=np.float32)[None], 2.0)
    assert ring.position() == (1500, 2.0, 1000)
    assert np.array_equal(ring.read(500, 1500), np.arange(500, 1500))
    assert ring.read(499, 600) is None and ring.read(1400, 1501) is None


# ---- guards --------------------------------------------------------------------------------------


def test_silence_and_near_silence_are_refused_and_a_quiet_take_is_not():
    rng = np.random.default_rng(0)
    for quiet in (np.zeros(RATE, np.float32), (10 ** (-60 / 20) * rng.standard_normal(RATE)).astype(np.float32)):
        with pytest.raises(CaptureRefused) as refused:
            check_audible(measure_levels(quiet))
        assert refused.value.code == "silence" and "the seed loop stays" in refused.value.message
    check_audible(measure_levels((10 ** (-40 / 20) * rng.standard_normal(RATE)).astype(np.float32)))


def test_a_clipped_take_is_counted_and_levelled_like_any_other():
    loop = groove(beats=4, rate=RATE).samples.astype(np.float64)
    clipped = np.clip(loop * 4.0, -1.0, 1.0)
    levels = measure_levels(clipped)
    assert levels.peak == 1.0 and levels.clipped_samples > 100 and levels.peak_dbfs == 0.0
    assert measure_levels(loop).clipped_samples == 0
    for take in (clipped, 0.01 * loop):
        assert np.max(np.abs(levelled(take))) == pytest.approx(CAPTURE_PEAK)
    assert not np.any(levelled(np.zeros(10)))


# ---- the seed ---------------------------------------------------------------------------------------


def _envelope(samples: np.ndarray, hop: int) -> np.ndarray:
    frames = samples[: samples.size // hop * hop].reshape(-1, hop)
    return np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))


def test_a_capture_at_the_device_rate_makes_the_loop_as_a_seed_of_whole_beats():
    """Two bars at 48 kHz, captured on the grid at a whole-beat tempo: the seed's frame holds the
    10 beats of 5.12 s, starts within 10 ms of the downbeat, and is the loop to within what
    resampling changes (every 5.8 ms slice's level as the loop's, and the image as make-seed's)."""
    params = SpectrogramParams()
    loop = groove(beats=8, rate=RATE)  # 117.1875 BPM: 10 beats fill a frame
    window = CaptureWindow(0, loop.samples.size, 2, 0.0, loop.bpm, 0.0)
    seed = captured_seed(loop.samples, RATE, window, params)
    assert (seed.loop.bpm, seed.loop.beats) == (117.1875, 10)
    assert seed.loop.samples.size == 225792
    # The loop at 44.1 kHz, as the frame would hold it from its downbeat: 10 beats of the 8-beat
    # loop repeated, levelled.
    periodic = np.tile(loop.samples, 3)
    reference = torchaudio.functional.resample(torch.from_numpy(periodic), RATE, params.sample_rate).numpy()
    one_loop = round(loop.samples.size * params.sample_rate / RATE)
    reference = reference[one_loop : one_loop + 225792] * (CAPTURE_PEAK / np.abs(reference).max())
    hop, inner = 256, slice(4, -12)  # leave out the wrap's 30 ms crossfade and the ends
    theirs = _envelope(reference, hop)

    def match(lag: int) -> float:
        return np.corrcoef(_envelope(np.roll(seed.loop.samples, lag), hop)[inner], theirs[inner])[0, 1]

    best = max(range(-441, 442, 3), key=match)  # 10 ms either way
    assert abs(best) < 441 and match(best) > 0.99
    # The image is the make-seed image of that loop: a mel picture of the same level.
    mel, image_params = mel_from_image(seed.image)
    assert image_params.sample_rate == params.sample_rate and mel.shape == (1, 512, 512)


def test_a_capture_at_another_tempo_is_stretched_to_the_nearest_whole_beat_tempo():
    params = SpectrogramParams()
    loop = groove(bpm=124.0, beats=4, rate=44100)
    window = CaptureWindow(0, loop.samples.size, 1, 0.0, 124.0, 0.0)
    seed = captured_seed(loop.samples, 44100, window, params)
    assert seed.loop.beats == 11 and seed.loop.bpm == pytest.approx(128.90625)


def test_a_tempo_no_seed_can_have_is_refused():
    window = CaptureWindow(0, 44100, 1, 0.0, 20.0, 0.0)
    with pytest.raises(CaptureRefused) as refused:
        captured_seed(np.ones(44100, np.float32), 44100, window, SpectrogramParams())
    assert refused.value.code == "unsupported_tempo"


# ---- captures kept --------------------------------------------------------------------------------


def test_captures_are_named_in_order_kept_within_a_bound_and_saved_as_make_seed_pngs(tmp_path):
    seeds = CapturedSeeds(max_kept=2, save_dir=tmp_path)
    image = captured_seed(
        groove(beats=8).samples, 44100, CaptureWindow(0, 180634, 2, 0.0, 117.1875, 0.0), SpectrogramParams()
    ).image
    names = [seeds.next_name() for _ in range(3)]
    assert names == ["captured-1", "captured-2", "captured-3"]
    for name in names:
        assert seeds.add(CapturedSeed(name, image, 117.1875, 10)) == tmp_path / f"{name}.png"
    assert seeds.names() == ("captured-2", "captured-3")
    assert np.array_equal(np.asarray(seeds.image("captured-3")), np.asarray(image))
    saved, _ = mel_from_image(__import__("PIL.Image", fromlist=["Image"]).open(tmp_path / "captured-1.png"))
    assert np.allclose(saved, mel_from_image(image)[0])
    with pytest.raises(UserError, match="no seed loop called 'captured-1'"):
        seeds.image("captured-1")  # forgotten: the oldest went first
    assert seeds.image("house_117").size == (512, 512)  # the library as before


# ---- the control, from every input -------------------------------------------------------------


def test_capture_is_one_control_for_the_websocket_osc_and_a_midi_pad():
    config = ServerConfig()
    assert parse_client_message('{"type": "capture"}', config).body == Capture(2)
    assert parse_client_message('{"type": "capture", "bars": 4}', config).body == Capture(4)
    for bad in ('{"type": "capture", "bars": 0}', '{"type": "capture", "bars": 2.5}'):
        with pytest.raises(ControlError, match=r"bars must be an integer in \[1, 8\]"):
            parse_client_message(bad, config)
    desk = PromptDesk([("jazz", 1.0)], {})
    assert osc_command("/streamer/capture", [], desk).command == Capture(2)
    assert osc_command("/streamer/capture", [1], desk).command == Capture(1)
    with pytest.raises(ControlError):
        osc_command("/streamer/capture", [12], desk)
    mido = pytest.importorskip("mido")
    pad = mido.Message("note_on", note=DEFAULT_CAPTURE_NOTE, velocity=100)
    assert midi_command(pad, default_midi_map([]), desk).command == Capture(2)
    mapping = midi_map_from_toml({"notes": {"40": {"target": "capture", "value": 4}}}, [], "map.toml")
    assert midi_command(pad.copy(note=40), mapping, desk).command == Capture(4)
    with pytest.raises(UserError, match=r"notes.40: value must be an integer in \[1, 8\]"):
        midi_map_from_toml({"notes": {"40": {"target": "capture", "value": 9}}}, [], "map.toml")
