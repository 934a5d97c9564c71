"""What the producer hands to the stitcher: a planned frame made audible."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol, TypeGuard

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


class StagedFrameMaker(FrameMaker, Protocol):
    """A frame maker whose work has two stages on different hardware: ``generate`` on the
    accelerator (the model) and ``finish`` on the CPU (vocoder, picture, levelling); ``make`` is
    the two in a row. With ``overlaps`` true the engine runs them on two threads, so the CPU
    finishes one batch while the accelerator generates the next, instead of idling."""

    #: Whether the stages use different hardware, so that running them at once gains time.
    overlaps: bool

    def generate(self, planned: Sequence[PlannedFrame], is_stale: IsStale = never_stale) -> Any:
        """The accelerator's part of ``make``: raises ``FrameCancelled`` as ``make`` does."""
        ...

    def finish(self, generated: Any) -> list[MadeFrame]:
        """The CPU's part of ``make``, from what ``generate`` returned."""
        ...


def stages_overlap(maker: FrameMaker) -> TypeGuard[StagedFrameMaker]:
    """Whether the engine should run ``maker``'s stages on two threads."""
    return bool(getattr(maker, "overlaps", False))
