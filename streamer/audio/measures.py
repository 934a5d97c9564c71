"""Objective checks of stream audio: reconstruction error, clicks, onsets and loudness.

Shared by the tests and benchmarks so that both judge the audio by the same yardsticks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

from streamer.spectrogram import codec
from streamer.spectrogram.params import SpectrogramParams


def spectral_convergence(
    audio: np.ndarray,
    reference: np.ndarray,
    params: SpectrogramParams,
    *,
    circular: bool = True,
    edge_columns: int = 0,
) -> float:
    """``||S - S_ref|| / ||S_ref||`` of the STFT magnitudes (the image's STFT, bins up to its
    ``max_frequency``), both audios shaped (channels, samples) of equal length.

    ``circular`` treats both as loops; ``edge_columns`` leaves out that many columns at each end
    (to compare a circular with a non-circular reconstruction on equal terms).
    """
    if audio.shape != reference.shape:
        raise ValueError(f"shapes differ: {audio.shape} vs {reference.shape}")
    bins = int(params.max_frequency * params.n_fft / params.sample_rate) + 1
    columns = slice(edge_columns, -edge_columns if edge_columns else None)

    def magnitude(samples: np.ndarray) -> torch.Tensor:
        waveform = torch.as_tensor(np.ascontiguousarray(samples), dtype=torch.float32)
        return codec.linear_from_audio(waveform, params, circular=circular)[..., :bins, columns]

    target = magnitude(reference)
    error = torch.linalg.vector_norm(magnitude(audio) - target)
    return float(error / torch.linalg.vector_norm(target).clamp(min=1e-30))


def high_passed(samples: np.ndarray) -> np.ndarray:
    """Second difference, largest over channels, aligned so that index n describes the step
    from sample n - 1 to n: a jump in value or slope shows as a spike."""
    samples = np.atleast_2d(samples).astype(np.float64)
    second = np.zeros(samples.shape, dtype=np.float64)
    second[:, 1:-1] = samples[:, 2:] - 2.0 * samples[:, 1:-1] + samples[:, :-2]
    return np.abs(second).max(axis=0)


def click_ratio(
    stream: np.ndarray,
    seams: Iterable[int],
    sources: Sequence[np.ndarray],
    *,
    radius: int = 2,
    floor: float = 1e-4,
) -> float:
    """How much more the stream jumps at its seams than the music it was made of does there.

    ``sources`` are the signals the stream was joined from, laid out at the stream's positions
    (for loops: each frame tiled from the stream's loop origin), each shaped like ``stream``. At
    each seam the largest high-passed jump of the stream within ``radius`` samples is divided by
    the largest of the sources' at the same samples (at least ``floor``, -80 dB, so silence
    does not divide by zero); the worst seam's ratio is returned. A crossfade mixes jumps the
    sources already have, so it stays at or below 1; a hard cut between mismatched samples is a
    jump neither source has, a click, far above 1.
    """
    jumps = high_passed(stream)
    source_jumps = [high_passed(source) for source in sources]
    worst = 0.0
    for seam in seams:
        window = slice(max(1, seam - radius), seam + radius + 1)
        reference = max(float(source[window].max()) for source in source_jumps)
        worst = max(worst, float(jumps[window].max()) / max(reference, floor))
    return worst


def onset_positions(
    samples: np.ndarray,
    sample_rate: int,
    *,
    window_seconds: float = 0.002,
    rise_db: float = 10.0,
    floor_db: float = -30.0,
    refractory_seconds: float = 0.05,
) -> np.ndarray:
    """Sample positions of attacks: where the energy of the high-passed signal (drum hits,
    plucks; not the slow swell of a pad) in a ``window_seconds`` window rises by ``rise_db`` over
    the window before it. Quieter than ``floor_db`` below the loudest window, and any second
    attack within ``refractory_seconds``, is ignored. Accurate to about one window."""
    mono = np.atleast_2d(samples).astype(np.float64).mean(axis=0)
    high = np.diff(mono, n=2, prepend=mono[:1], append=mono[-1:])
    window = max(1, int(window_seconds * sample_rate))
    cumulative = np.concatenate([[0.0], np.cumsum(high * high)])
    energy = cumulative[window:] - cumulative[:-window]  # energy[n]: samples n .. n + window
    floor = energy.max() * 10.0 ** (floor_db / 10.0)
    before = np.concatenate([np.full(window, floor), energy[:-window]])
    rising = (energy > floor) & (energy > np.maximum(before, floor) * 10.0 ** (rise_db / 10.0))
    onsets, last = [], -np.inf
    refractory = refractory_seconds * sample_rate
    for position in np.flatnonzero(rising):
        if position - last >= refractory:
            onsets.append(position + window)
            last = position
    return np.asarray(onsets, dtype=np.int64)


def level_db(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (1.0)."""
    power = float(np.mean(np.square(samples, dtype=np.float64)))
    return 10.0 * np.log10(max(power, 1e-20))
