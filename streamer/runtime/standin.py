"""A frame maker without a model, of a chosen speed: for latency and soak benchmarks, engine
tests and smoke runs.

Each frame is the seed loop's own audio (its spectrogram vocoded once and cached) with a tone
mixed in whose pitch follows the frame's prompt blend, so a prompt change is audible and can be
found in the output; it then waits until ``seconds_per_frame`` have passed, standing in for a
generator of that speed, in ``STEPS`` slices like a UNet's steps, between which a stale batch
is cancelled. With ``finish_seconds`` it is a ``StagedFrameMaker`` whose ``finish`` waits that
long per frame, standing in for the CPU's vocoding of a GPU's frames.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from streamer.audio.vocoder import Vocoder
from streamer.generate.cancellation import IsStale, check, never_stale
from streamer.plan.planner import PlannedFrame
from streamer.plan.settings import PromptBlend
from streamer.runtime.diffusion_maker import seed_loop_image
from streamer.runtime.frames import MadeFrame
from streamer.spectrogram.image import mel_from_image, png_bytes
from streamer.spectrogram.params import SpectrogramParams


def prompt_tone_hz(blend: PromptBlend) -> float:
    """The stand-in's tone for a blend: each prompt has a pitch from its text (200-1000 Hz); a
    blend's pitch is the weighted mean, so a transition glides."""
    def pitch(text: str) -> float:
        digest = hashlib.sha256(text.encode("utf-8")).digest()
        return 200.0 + 800.0 * int.from_bytes(digest[:4], "little") / 2**32

    return sum(weight * pitch(text) for text, weight in blend.weighted)


#: Simulated UNet steps per frame: a stale batch stops between them.
STEPS = 10


class StandInFrameMaker:
    def __init__(
        self,
        seconds_per_frame: float,
        params: SpectrogramParams | None = None,
        finish_seconds: float = 0.0,
        seed_images: Callable[[str], Image.Image] = seed_loop_image,
    ) -> None:
        self.seconds_per_frame = seconds_per_frame
        self.finish_seconds = finish_seconds
        self.overlaps = finish_seconds > 0
        self.params = params or SpectrogramParams()
        self._vocoder = Vocoder(self.params)
        self._seed_images = seed_images
        self._loops: dict[str, tuple[np.ndarray, bytes]] = {}

    def _loop(self, name: str) -> tuple[np.ndarray, bytes]:
        if name not in self._loops:
            if len(self._loops) >= 64:  # composed loops are many: keep the latest few
                self._loops.pop(next(iter(self._loops)))
            image = self._seed_images(name)
            mel, _ = mel_from_image(image)
            self._loops[name] = (self._vocoder.vocode(mel).samples, png_bytes(image))
        return self._loops[name]

    def make(
        self, planned: Sequence[PlannedFrame], is_stale: IsStale = never_stale
    ) -> list[MadeFrame]:
        return self.finish(self.generate(planned, is_stale))

    def generate(
        self, planned: Sequence[PlannedFrame], is_stale: IsStale = never_stale
    ) -> list[MadeFrame]:
        """The frames, after ``seconds_per_frame`` each (the accelerator's stage)."""
        made = []
        for frame in planned:
            started = time.perf_counter()
            loop, png = self._loop(frame.seed_loop)
            period = loop.shape[1]
            # A whole number of cycles per loop keeps the frame periodic.
            cycles = round(prompt_tone_hz(frame.prompts) * period / self.params.sample_rate)
            tone = 0.2 * np.sin(2 * np.pi * cycles * np.arange(period) / period)
            samples = (0.7 * loop + tone.astype(np.float32)).astype(np.float32)
            for step in range(1, STEPS + 1):
                check(is_stale)
                until = started + self.seconds_per_frame * step / STEPS
                time.sleep(max(0.0, until - time.perf_counter()))
            made.append(MadeFrame(frame, samples, png, time.perf_counter() - started))
        return made

    def finish(self, generated: list[MadeFrame]) -> list[MadeFrame]:
        """The same frames, after ``finish_seconds`` each (the CPU's stage)."""
        time.sleep(self.finish_seconds * len(generated))
        return [
            dataclasses.replace(frame, seconds_to_make=frame.seconds_to_make + self.finish_seconds)
            for frame in generated
        ]
