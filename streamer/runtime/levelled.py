"""Frames levelled to the stream's loudness as they are made, on the producer thread.

A frame is a loop, so its loudness is known before it plays: the gain is set here, once per
frame, outside the engine's lock and far from the clock (85 ms of CPU per 5.12 s frame: four
BS.1770 measurements and three trial passes of the limiter; see
``streamer.audio.loudness.normalised_frame``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from streamer.audio.loudness import LoudnessConfig, normalised_frame
from streamer.generate.cancellation import IsStale, never_stale
from streamer.plan.planner import PlannedFrame
from streamer.runtime.core import unplayable
from streamer.runtime.frames import FrameMaker, MadeFrame, stages_overlap


class LevelledFrameMaker:
    """Wraps a frame maker; its frames come out at ``config.target_lufs`` after the limiter.
    A frame the core will refuse (``unplayable``) passes untouched, for the core to judge.
    Levelling is CPU work: with a ``StagedFrameMaker`` it is part of ``finish``."""

    def __init__(self, maker: FrameMaker, config: LoudnessConfig, sample_rate: int) -> None:
        self.maker = maker
        self.config = config
        self.sample_rate = sample_rate
        self.overlaps = stages_overlap(maker)

    def make(
        self, planned: Sequence[PlannedFrame], is_stale: IsStale = never_stale
    ) -> list[MadeFrame]:
        return self._levelled(self.maker.make(planned, is_stale))

    def generate(self, planned: Sequence[PlannedFrame], is_stale: IsStale = never_stale) -> Any:
        """The wrapped staged maker's ``generate`` (only when ``overlaps``)."""
        return self.maker.generate(planned, is_stale)

    def finish(self, generated: Any) -> list[MadeFrame]:
        return self._levelled(self.maker.finish(generated))

    def _levelled(self, frames: list[MadeFrame]) -> list[MadeFrame]:
        return [
            frame
            if unplayable(frame) is not None
            else dataclasses.replace(
                frame, samples=normalised_frame(frame.samples, self.sample_rate, self.config)
            )
            for frame in frames
        ]
