"""Broadcast loudness: frames at one loudness, a mix that never passes -1 dBTP, no clipping."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.signal

from streamer.audio.loudness import (
    LoudnessConfig,
    frame_gain_db,
    integrated_lufs,
    mix_limiter,
    normalised_frame,
)
from streamer.plan.settings import PromptBlend, StreamSettings, Transition
from streamer.runtime.assemble import build_core
from streamer.runtime.stream_config import StreamConfig
from streamer.runtime.core import MakeFrames
from streamer.runtime.frames import MadeFrame

RATE = 44100
PERIOD = 225792  # one 5.12 s frame


def true_peak_db(samples: np.ndarray) -> float:
    """4x oversampled peak (the edges left out: a cut-off signal rings there)."""
    upsampled = scipy.signal.resample_poly(samples, 4, 1, axis=-1)[..., 4000:-4000]
    return float(20 * np.log10(np.abs(upsampled).max()))


def music_like(seconds: float, level: float, seed: int = 0) -> np.ndarray:
    """Noise in the stream's band (the mel scale stops at 10 kHz) with a thumping envelope."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    noise = scipy.signal.lfilter(*scipy.signal.butter(8, 10000 / (RATE / 2)), rng.standard_normal(n))
    beat = 0.3 + np.exp(-((np.arange(n) % (RATE // 2)) / (0.05 * RATE)))
    return (level * noise * beat)[None].astype(np.float32)


@pytest.mark.parametrize("level", [0.05, 0.2, 0.8])
def test_a_frame_is_levelled_to_the_target_as_heard_after_the_limiter(level):
    config = LoudnessConfig(target_lufs=-14.0)
    frame = normalised_frame(music_like(5.12, level), RATE, config)
    limiter = mix_limiter(config, RATE, 1)
    heard = limiter.process(np.concatenate([frame, frame], axis=1))[:, PERIOD:]
    assert integrated_lufs(heard, RATE) == pytest.approx(-14.0, abs=0.3)
    assert integrated_lufs(frame, RATE) > -14.0  # louder before: the limiter takes some off


def test_silence_keeps_its_level_and_a_faint_frame_is_raised_at_most_max_gain():
    config = LoudnessConfig(max_gain_db=12.0)
    assert frame_gain_db(np.zeros((1, PERIOD), np.float32), RATE, config) == 0.0
    assert frame_gain_db(music_like(5.12, 1e-3), RATE, config) == 12.0


def test_the_limiter_holds_the_true_peak_under_the_ceiling_without_clipping():
    loud = music_like(6.0, 1.5)  # peaks far over full scale
    limiter = mix_limiter(LoudnessConfig(true_peak_dbtp=-1.0), RATE, 1)
    out = limiter.process(loud)
    assert true_peak_db(loud) > 6.0
    assert true_peak_db(out) <= -1.0
    assert limiter.max_reduction_db > 6.0
    # Not clipped: the output is the input times a smooth gain, never flattened at a ceiling.
    delay = limiter.latency_samples
    source = loud[0, :-delay]
    gain = out[0, delay:] / np.where(source == 0, 1, source)
    audible = (np.abs(source[1:]) > 0.05) & (np.abs(source[:-1]) > 0.05)
    assert np.abs(np.diff(gain))[audible].max() < 0.01


def test_audio_under_the_ceiling_passes_unchanged_only_delayed():
    quiet = music_like(2.0, 0.05)
    limiter = mix_limiter(LoudnessConfig(), RATE, 1)
    out = limiter.process(quiet)
    delay = limiter.latency_samples
    assert np.array_equal(out[:, :delay], np.zeros((1, delay), np.float32))
    assert np.array_equal(out[:, delay:], quiet[:, :-delay])


def test_the_limiter_output_does_not_depend_on_how_the_input_is_cut():
    audio = np.concatenate([music_like(2.0, 1.2, seed=1), music_like(2.0, 1.2, seed=2)])
    whole = mix_limiter(LoudnessConfig(), RATE, 2).process(audio)
    limiter = mix_limiter(LoudnessConfig(), RATE, 2)
    cuts = np.cumsum(np.random.default_rng(3).integers(0, 3000, 60))
    pieces = [limiter.process(part) for part in np.split(audio, cuts[cuts < audio.shape[1]], axis=1)]
    assert np.array_equal(np.concatenate(pieces, axis=1), whole)


def test_the_stream_holds_the_target_across_frames_of_different_levels():
    """Frames made 30 dB apart come out of the core at -14 LUFS, under -1 dBTP, at the
    positions the stitcher gives them (the limiter's delay does not shift the stream)."""
    settings = StreamSettings(
        prompts=PromptBlend.single("a"), seed_loop="house_117", transition=Transition(seconds=0)
    )
    config = StreamConfig(settings=settings)
    core = build_core(dataclasses.replace(config, planner=dataclasses.replace(config.planner, endless=False)))
    plain = build_core(dataclasses.replace(config, loudness=None))
    levels = iter([0.02, 0.6, 0.05, 1.5])
    rendered, positions = [], []
    for step in range(4):
        for engine, keep in ((core, True), (plain, False)):
            work = engine.next_work(0.0)
            if isinstance(work, MakeFrames):
                level = next(levels) if keep else 0.1
                frames = [MadeFrame(p, music_like(PERIOD / RATE, level, p.index)[:, :PERIOD], b"", 0.1) for p in work.frames]
                if keep:
                    frames = [dataclasses.replace(f, samples=normalised_frame(f.samples, RATE, config.loudness)) for f in frames]
                engine.frames_made(frames, 0.0)
        out = core.render(PERIOD, 0.0)
        assert out.audio.start_position == step * PERIOD
        positions.append([e.start_position for e in out.audio.events])
        rendered.append(out.audio.samples)
        assert [e.start_position for e in plain.render(PERIOD, 0.0).audio.events] == positions[-1]
    stream = np.concatenate(rendered, axis=1)
    assert integrated_lufs(stream, RATE) == pytest.approx(-14.0, abs=1.0)
    assert true_peak_db(stream) <= -1.0
