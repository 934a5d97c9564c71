"""A capture of the live input made into a seed loop, the ``make-seed`` way.

The window's bars (``streamer.audio.capture``) are resampled from the device rate to the
spectrogram's, cut to exactly their length at the grid's tempo, levelled, and repeated around the
loop so that the window's downbeat has music before it; then ``fit_to_frame`` at the grid's tempo
(``streamer.seeds.from_audio``: stretched to the nearest tempo at which whole beats fill the
frame, started on the strongest onset within half a beat of the downbeat, its wrap crossfaded
into what preceded it: the end of the last bar, as when the loop repeats). A frame holds as many
beats as fit in 5.12 s, so a seed of bars longer than that holds their first frame's worth.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchaudio

from streamer.audio.capture import CaptureRefused, CaptureWindow, bar_samples, levelled
from streamer.seeds.from_audio import (
    MAX_BPM,
    MIN_BPM,
    AudioSeed,
    fit_to_frame,
    lead_in_samples,
    loop_image,
    source_samples_needed,
    whole_beat_tempo,
)
from streamer.spectrogram import SpectrogramParams


def captured_seed(
    samples: np.ndarray,
    sample_rate: int,
    window: CaptureWindow,
    params: SpectrogramParams,
    beats_per_bar: int = 4,
) -> AudioSeed:
    """The seed of a window's mono ``samples`` recorded at ``sample_rate``: exactly the window's
    bars at the spectrogram's rate, levelled, looped and fitted to one frame (module docstring);
    ``CaptureRefused`` for a tempo no seed can have."""
    if not MIN_BPM <= window.tempo_bpm <= MAX_BPM:
        raise CaptureRefused(
            "unsupported_tempo",
            f"the stream plays at {window.tempo_bpm:.2f} BPM; a seed needs {MIN_BPM:g} to {MAX_BPM:g}",
        )
    mono = torch.from_numpy(np.asarray(samples, dtype=np.float32))
    if sample_rate != params.sample_rate:
        mono = torchaudio.functional.resample(mono, sample_rate, params.sample_rate)
    length = bar_samples(window.bars, beats_per_bar, window.tempo_bpm, params.sample_rate)
    bars = np.resize(mono.numpy().astype(np.float64), length) if mono.numel() else np.zeros(length)
    bars[mono.numel() :] = 0.0  # np.resize repeats: a window one sample short ends in silence
    bars = levelled(bars)
    # The stream's own grid is a whole-beat tempo already: no stretch (a rounding error in the
    # tempo would otherwise run WSOLA at a speed of 0.9999999).
    whole, _ = whole_beat_tempo(window.tempo_bpm, params)
    bpm = whole if math.isclose(whole, window.tempo_bpm, rel_tol=1e-6) else window.tempo_bpm
    lead = lead_in_samples(params, bpm)
    needed = source_samples_needed(params, bpm)
    start = math.ceil(lead / length) * length  # a downbeat with at least the lead-in before it
    looped = np.resize(bars, start + needed + lead)
    loop = fit_to_frame(looped, params, bpm, start=start)
    return AudioSeed(image=loop_image(loop, params), loop=loop)
