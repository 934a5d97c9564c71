"""How audio becomes a spectrogram image: the one set of numbers both directions agree on.

The defaults and the EXIF tag numbers are Riffusion's, so that an image made by Riffusion decodes
here and ours decodes there. The model was trained on images made with exactly these defaults; a
checkpoint only understands images in its training format.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from enum import IntEnum
from typing import Any


class ExifTag(IntEnum):
    """EXIF tag numbers Riffusion uses to store the parameters inside the PNG."""

    SAMPLE_RATE = 11000
    STEREO = 11005
    STEP_SIZE_MS = 11010
    WINDOW_DURATION_MS = 11020
    PADDED_DURATION_MS = 11030
    NUM_FREQUENCIES = 11040
    MIN_FREQUENCY = 11050
    MAX_FREQUENCY = 11060
    POWER_FOR_IMAGE = 11070
    MAX_VALUE = 11080


#: Amplitude used to decode an image that carries no max value (Riffusion's own default).
DEFAULT_MAX_VALUE = 30e6


@dataclasses.dataclass(frozen=True)
class SpectrogramParams:
    """Parameters of the mel spectrogram and of its image.

    Times are in milliseconds and frequencies in hertz, as in Riffusion's EXIF tags, so that a
    round trip through an image is exact. The STFT is a centred, reflect-padded, Hann-windowed
    magnitude STFT; the mel scale is HTK with no filterbank normalisation.
    """

    sample_rate: int = 44100
    stereo: bool = False
    step_size_ms: int = 10
    window_duration_ms: int = 100
    padded_duration_ms: int = 400
    num_frequencies: int = 512
    min_frequency: int = 0
    max_frequency: int = 10000
    power_for_image: float = 0.25

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate <= 0:
            problems.append(f"sample_rate must be positive, got {self.sample_rate}")
        if self.hop_length < 1:
            problems.append(f"step_size_ms={self.step_size_ms} gives a hop of less than one sample")
        if self.win_length > self.n_fft:
            problems.append(
                f"window_duration_ms={self.window_duration_ms} is longer than "
                f"padded_duration_ms={self.padded_duration_ms}"
            )
        if not 0 <= self.min_frequency < self.max_frequency <= self.sample_rate / 2:
            problems.append(
                f"need 0 <= min_frequency < max_frequency <= sample_rate / 2, got "
                f"{self.min_frequency}..{self.max_frequency} Hz at {self.sample_rate} Hz"
            )
        if self.num_frequencies < 1:
            problems.append(f"num_frequencies must be at least 1, got {self.num_frequencies}")
        if not self.power_for_image > 0:
            problems.append(f"power_for_image must be positive, got {self.power_for_image}")
        if problems:
            raise ValueError("invalid spectrogram parameters: " + "; ".join(problems))

    @property
    def n_fft(self) -> int:
        """FFT size in samples: the window zero-padded to ``padded_duration_ms``."""
        return int(self.padded_duration_ms / 1000.0 * self.sample_rate)

    @property
    def win_length(self) -> int:
        """Window length in samples."""
        return int(self.window_duration_ms / 1000.0 * self.sample_rate)

    @property
    def hop_length(self) -> int:
        """Hop between STFT columns in samples; one image column per hop."""
        return int(self.step_size_ms / 1000.0 * self.sample_rate)

    @property
    def channels(self) -> int:
        return 2 if self.stereo else 1

    def num_samples(self, num_columns: int) -> int:
        """Length in samples of the audio that one image of ``num_columns`` columns stands for."""
        return num_columns * self.hop_length

    def num_columns(self, num_samples: int) -> int:
        """Image width for audio of ``num_samples`` samples (a centred STFT adds one column)."""
        return num_samples // self.hop_length + 1

    def to_exif(self) -> dict[int, Any]:
        """The EXIF tags Riffusion writes, without the max value (that belongs to one image)."""
        return {
            ExifTag.SAMPLE_RATE: self.sample_rate,
            ExifTag.STEREO: self.stereo,
            ExifTag.STEP_SIZE_MS: self.step_size_ms,
            ExifTag.WINDOW_DURATION_MS: self.window_duration_ms,
            ExifTag.PADDED_DURATION_MS: self.padded_duration_ms,
            ExifTag.NUM_FREQUENCIES: self.num_frequencies,
            ExifTag.MIN_FREQUENCY: self.min_frequency,
            ExifTag.MAX_FREQUENCY: self.max_frequency,
            ExifTag.POWER_FOR_IMAGE: float(self.power_for_image),
        }

    @classmethod
    def from_exif(cls, exif: Mapping[int, Any]) -> SpectrogramParams:
        """Parameters from an image's EXIF; tags that are missing keep their defaults.

        Riffusion's seed images (``og_beat.png``) carry no EXIF at all and mean the defaults.
        """
        fields = {
            "sample_rate": (ExifTag.SAMPLE_RATE, int),
            "stereo": (ExifTag.STEREO, bool),
            "step_size_ms": (ExifTag.STEP_SIZE_MS, int),
            "window_duration_ms": (ExifTag.WINDOW_DURATION_MS, int),
            "padded_duration_ms": (ExifTag.PADDED_DURATION_MS, int),
            "num_frequencies": (ExifTag.NUM_FREQUENCIES, int),
            "min_frequency": (ExifTag.MIN_FREQUENCY, int),
            "max_frequency": (ExifTag.MAX_FREQUENCY, int),
            "power_for_image": (ExifTag.POWER_FOR_IMAGE, float),
        }
        values = {}
        for name, (tag, kind) in fields.items():
            if tag in exif:
                try:
                    values[name] = kind(exif[tag])
                except (TypeError, ValueError) as error:
                    raise ValueError(f"EXIF tag {int(tag)} ({name}) holds {exif[tag]!r}: {error}")
        return cls(**values)
