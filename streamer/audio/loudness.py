"""Broadcast loudness: every frame is brought to one integrated loudness before it is queued.

A frame is one period of a loop, so its loudness is known before a sample of it plays: the gain
is measured once per frame (ITU-R BS.1770 with ``pyloudnorm``, gated, over the whole period),
off the real-time path, and the stream then holds the target across frames and prompts without
a level-riding compressor. Peaks the gain pushes over the ceiling are the limiter's
(:mod:`streamer.audio.limiter`), on the mix.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pyloudnorm

from streamer.audio.limiter import LookAheadLimiter

#: Below this a frame counts as silence and keeps its level (BS.1770's absolute gate).
SILENCE_LUFS = -70.0
#: Passes through a trial limiter to correct a frame's gain for what limiting takes off.
LIMITER_CORRECTIONS = 3


@dataclasses.dataclass(frozen=True)
class LoudnessConfig:
    """The stream's loudness and peak ceiling.

    ``target_lufs`` -14: what the large streaming services normalise music to. ``true_peak_dbtp``
    -1: EBU R 128 / AES streaming guidance, headroom for lossy encoders (MP3, Opus) whose
    decoded peaks overshoot the source's. ``max_gain_db`` keeps a nearly silent frame (a break,
    a fade) from being pulled up to full loudness as noise.
    """

    target_lufs: float = -14.0
    true_peak_dbtp: float = -1.0
    max_gain_db: float = 24.0
    #: How far the limiter looks ahead: its gain reaches a peak's reduction before the peak.
    lookahead_seconds: float = 0.005
    #: Time constant of the limiter's recovery after a peak (exponential).
    release_seconds: float = 0.15

    def __post_init__(self) -> None:
        if not -40.0 <= self.target_lufs <= -5.0:
            raise ValueError(f"target_lufs must be -40..-5 LUFS, got {self.target_lufs}")
        if not -12.0 <= self.true_peak_dbtp <= 0.0:
            raise ValueError(f"true_peak_dbtp must be -12..0 dBTP, got {self.true_peak_dbtp}")
        if not 0.0 <= self.max_gain_db <= 60.0:
            raise ValueError(f"max_gain_db must be 0..60 dB, got {self.max_gain_db}")
        if not 0.001 <= self.lookahead_seconds <= 0.05:
            raise ValueError(f"lookahead_seconds must be 0.001..0.05, got {self.lookahead_seconds}")
        if not 0.01 <= self.release_seconds <= 2.0:
            raise ValueError(f"release_seconds must be 0.01..2, got {self.release_seconds}")


def mix_limiter(config: LoudnessConfig, sample_rate: int, channels: int) -> LookAheadLimiter:
    """The stream's limiter for ``config``."""
    return LookAheadLimiter(
        sample_rate,
        channels,
        true_peak_dbtp=config.true_peak_dbtp,
        lookahead_seconds=config.lookahead_seconds,
        release_seconds=config.release_seconds,
    )


@functools.lru_cache(maxsize=4)
def _meter(sample_rate: int) -> pyloudnorm.Meter:
    return pyloudnorm.Meter(sample_rate)  # K-weighting filters, built once per rate


def integrated_lufs(samples: np.ndarray, sample_rate: int) -> float:
    """BS.1770 integrated loudness of (channels, n) audio; -inf for silence. Audio shorter
    than the meter's 0.4 s block is measured as a loop (repeated), which frames are."""
    block = math.ceil(_meter(sample_rate).block_size * sample_rate) + 1
    if samples.shape[1] < block:
        samples = np.tile(samples, (1, -(-block // max(1, samples.shape[1]))))
    return float(_meter(sample_rate).integrated_loudness(np.asarray(samples, np.float64).T))


def frame_gain_db(samples: np.ndarray, sample_rate: int, config: LoudnessConfig) -> float:
    """The gain that brings a frame to ``config.target_lufs``: 0 for silence, at most
    ``max_gain_db`` up (there is no limit down)."""
    loudness = integrated_lufs(samples, sample_rate)
    if not math.isfinite(loudness) or loudness < SILENCE_LUFS:
        return 0.0
    return min(config.max_gain_db, config.target_lufs - loudness)


def normalised_frame(samples: np.ndarray, sample_rate: int, config: LoudnessConfig) -> np.ndarray:
    """The frame at a gain that makes it ``config.target_lufs`` loud *after* the mix's limiter
    (float32, a new array; its peaks may exceed full scale until the limiter takes them).

    The limiter takes loudness off a frame with strong peaks (2 LU on a thumping noise frame at
    -14 LUFS), so the gain is corrected three times by what the limiter leaves of the frame, played
    as the loop it is.
    """
    gain_db = frame_gain_db(samples, sample_rate, config)
    for _ in range(LIMITER_CORRECTIONS):
        if gain_db >= config.max_gain_db:
            break
        scaled = samples * np.float32(10.0 ** (gain_db / 20.0))
        limiter = mix_limiter(config, sample_rate, samples.shape[0])
        period, delay = samples.shape[1], limiter.latency_samples
        looped = limiter.process(np.concatenate([scaled, scaled, scaled[:, :delay]], axis=1))
        heard = integrated_lufs(looped[:, period + delay :], sample_rate)
        if not math.isfinite(heard):
            break
        gain_db = min(config.max_gain_db, gain_db + config.target_lufs - heard)
    return (samples * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32)
