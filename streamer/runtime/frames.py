"""What the producer hands to the stitcher: a planned frame made audible."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from streamer.generate.cancellation import IsStale, never_stale
from streamer.plan.planner import PlannedFrame


@dataclasses.dataclass(frozen=True)
class MadeFrame:
    """A generated, vocoded frame: one period of a loop and its spectrogram picture."""

    planned: PlannedFrame
    samples: np.ndarray  # float32 (channels, period), periodic: sample -1 flows into sample 0
    png: bytes  # the spectrogram image, for the visualiser
    seconds_to_make: float  # generation + vocoding time of this frame's share of its batch


class FrameMaker(Protocol):
    """Turns planned frames into audio: the diffusion model and vocoder, or a stand-in."""

    def make(
        self, planned: Sequence[PlannedFrame], is_stale: IsStale = never_stale
    ) -> list[MadeFrame]:
        """Make a batch of frames, in order. May take long; runs on the producer thread.
        Raises ``FrameCancelled`` soon after ``is_stale()`` turns true (a control change made
        the batch useless): between UNet steps, not after the batch."""
        ...
