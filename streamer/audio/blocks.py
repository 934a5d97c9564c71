"""The unit the real-time clock hands to every sink."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class AudioBlock:
    """A fixed-size block of the stream, ready to copy out.

    ``sequence`` counts blocks from 0 without gaps and ``sample_position`` is the stream position
    of the first sample, so a listener can tell a gap from a late block.
    """

    sequence: int
    sample_position: int
    samples: np.ndarray  # float32, shape (channels, num_samples), in [-1, 1]
    sample_rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[1])
