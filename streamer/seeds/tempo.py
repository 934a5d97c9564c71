"""The tempo of a piece of music, from the periodicity of its onsets.

Music cut into whole-beat loops needs its tempo, and a folder of a user's songs comes without
one. The onset strength (the positive change of log-compressed spectral magnitudes, summed over
frequency) pulses at the beat; its autocorrelation peaks at the beat period and its multiples.
The beat is the strongest peak between 60 and 200 BPM after weighting by a prior centred on 120
BPM (one octave wide), which settles the usual ambiguity between a tempo and its half or double
(either still makes whole-beat loops). The period is then refined on the peak at several beats,
where one step of the onset signal is a small fraction of a beat: an error of 1 % would shift the
last beat of a 10-beat loop by a tenth of a beat.

Music without a steady pulse (a drone, rubato piano) still gets the tempo of its strongest
periodicity: stretched to the nearest whole-beat tempo it changes speed by at most 5 % and keeps
its pitch, which does such music no harm. A tempo off by a factor of 3/2 (dotted rhythms whose
off-beats line up with the beat) is possible; ``--bpm`` overrides the estimate.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

#: Onset strength resolution: 1024-sample windows every 256 samples (5.8 ms at 44.1 kHz).
TEMPO_N_FFT, TEMPO_HOP = 1024, 256
#: Tempi the beat is looked for in, in beats per minute, and the prior's centre.
MIN_TEMPO_BPM, MAX_TEMPO_BPM, PRIOR_TEMPO_BPM = 60.0, 200.0, 120.0
#: The period is refined on the peak at this many beats (or fewer, if the music is short).
REFINE_BEATS = 8
#: Samples per STFT chunk: bounds memory on long files (about 10 MB of spectrum per chunk).
_CHUNK_SAMPLES = TEMPO_HOP * 4096


@dataclasses.dataclass(frozen=True)
class Tempo:
    bpm: float
    clarity: float  # autocorrelation of the onset strength at the beat, relative to lag 0: 0..1


def estimate_tempo(mono: np.ndarray, sample_rate: int) -> Tempo | None:
    """The tempo of mono audio (see the module docstring); None when it is too short (under two
    beats at 60 BPM) or has no onsets at all."""
    onsets = onset_strength(mono)
    rate = sample_rate / TEMPO_HOP  # onset strength values per second
    shortest = math.floor(60.0 * rate / MAX_TEMPO_BPM)
    longest = math.ceil(60.0 * rate / MIN_TEMPO_BPM)
    if onsets.size < 2 * longest:
        return None
    onsets = onsets - onsets.mean()
    spectrum = np.fft.rfft(onsets, 2 * onsets.size)
    correlation = np.fft.irfft(np.abs(spectrum) ** 2)[: onsets.size]
    if correlation[0] <= 0.0:
        return None
    correlation /= correlation[0]
    lags = np.arange(shortest, longest + 1)
    prior = np.exp(-0.5 * np.log2(60.0 * rate / lags / PRIOR_TEMPO_BPM) ** 2)
    beat = int(lags[np.argmax(correlation[lags] * prior)])
    beats = max(1, min(REFINE_BEATS, (onsets.size // 2) // beat))
    period = _peak_near(correlation, beats * beat, radius=beats) / beats
    return Tempo(bpm=60.0 * rate / period, clarity=float(correlation[beat]))


def onset_strength(mono: np.ndarray) -> np.ndarray:
    """Positive change of log-compressed magnitudes per STFT hop, summed over frequency."""
    signal = torch.from_numpy(np.asarray(mono, dtype=np.float32))
    window = torch.hann_window(TEMPO_N_FFT)
    pieces, previous = [], None
    for first in range(0, max(1, signal.numel() - TEMPO_N_FFT + 1), _CHUNK_SAMPLES):
        chunk = signal[first : first + _CHUNK_SAMPLES + TEMPO_N_FFT - TEMPO_HOP]
        if chunk.numel() < TEMPO_N_FFT:
            break
        magnitude = torch.stft(
            chunk, TEMPO_N_FFT, TEMPO_HOP, window=window, center=False, return_complex=True
        ).abs()
        compressed = torch.log1p(100.0 * magnitude)
        if previous is not None:
            compressed = torch.cat([previous, compressed], dim=1)
        pieces.append(compressed.diff(dim=1).clamp(min=0.0).sum(dim=0))
        previous = compressed[:, -1:]
    return torch.cat(pieces).numpy().astype(np.float64) if pieces else np.zeros(0)


def _peak_near(values: np.ndarray, centre: int, radius: int) -> float:
    """Position of the largest value within ``radius`` of ``centre``, refined to a fraction of
    a step by a parabola through it and its neighbours."""
    first = max(1, centre - radius)
    last = min(values.size - 2, centre + radius)
    peak = first + int(np.argmax(values[first : last + 1]))
    left, middle, right = values[peak - 1 : peak + 2]
    curvature = left - 2.0 * middle + right
    offset = 0.5 * (left - right) / curvature if curvature < 0.0 else 0.0
    return peak + float(np.clip(offset, -0.5, 0.5))
