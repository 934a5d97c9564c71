"""Crossfade gains that keep the loudness steady whatever the two signals have in common.

An equal-power fade (cos/sin) keeps the level of two *uncorrelated* signals but raises two
identical ones by 3 dB in the middle; an equal-gain (linear) fade keeps identical signals but
drops uncorrelated ones by 3 dB. Frames of one stream sit in between: made from the same seed
loop and warm-started from each other's phase, consecutive frames correlate 0.9 or more where
their content agrees, and less where the music changed. So the fade is shaped like equal power
and normalised by the measured correlation ``rho`` of the two signals over the fade:
``a**2 + b**2 + 2 * rho * a * b == 1`` at every sample, which is exactly equal power at
``rho = 0`` and exactly equal gain at ``rho = 1``.
"""

from __future__ import annotations

import numpy as np


def correlation(first: np.ndarray, second: np.ndarray) -> float:
    """Normalised correlation at lag 0 of two equally shaped signals, clamped to [0, 1].

    Negative correlation is treated as none: boosting the sum of two signals that cancel would
    turn a dip into a swell of whatever does not cancel.
    """
    first_energy = float(np.sum(first * first, dtype=np.float64))
    energy = first_energy * float(np.sum(second * second, dtype=np.float64))
    if energy <= 0.0:
        return 0.0
    value = float(np.sum(first * second, dtype=np.float64)) / np.sqrt(energy)
    return min(max(value, 0.0), 1.0)


def crossfade_gains(length: int, rho: float) -> tuple[np.ndarray, np.ndarray]:
    """Fade-out and fade-in gains (float32, ``length`` samples each) for signals of correlation
    ``rho``; the fade-out starts just below 1 and the fade-in ends just below 1, so joining a
    signal before and after is continuous."""
    if length < 1:
        raise ValueError(f"a crossfade needs at least one sample, got {length}")
    angle = (np.arange(length, dtype=np.float64) + 0.5) * (0.5 * np.pi / length)
    fade_out, fade_in = np.cos(angle), np.sin(angle)
    rho = min(max(rho, 0.0), 1.0)
    norm = 1.0 / np.sqrt(1.0 + 2.0 * rho * fade_out * fade_in)
    return (fade_out * norm).astype(np.float32), (fade_in * norm).astype(np.float32)
