"""The real frame maker: planned frames -> diffusion model -> vocoder -> audio loops."""

from __future__ import annotations

import time
from collections.abc import Sequence

from PIL import Image

from streamer.audio.vocoder import VocodedFrame, Vocoder
from streamer.errors import UserError
from streamer.generate.cancellation import IsStale, check, never_stale
from streamer.generate.generator import FrameGenerator, GeneratedFrame
from streamer.generate.request import FrameRequest
from streamer.plan.planner import PlannedFrame
from streamer.runtime.frames import MadeFrame
from streamer.seeds.library import load_seed_loop
from streamer.spectrogram.image import png_bytes


def seed_loop_image(name: str) -> Image.Image:
    """A seed loop of the library by name, or a PNG made by ``streamer make-seed`` by path."""
    if name.lower().endswith(".png"):
        try:
            with Image.open(name) as image:
                image.load()
                return image.copy()
        except OSError as error:
            raise UserError(f"cannot read seed loop image {name}: {error}") from None
    return load_seed_loop(name).image()


def request_for(planned: PlannedFrame) -> FrameRequest:
    """The generator's request for one point of the walk."""
    return FrameRequest(
        prompts=planned.prompts,
        seed_image=planned.seed_loop,
        seed_a=planned.seed_a,
        seed_b=planned.seed_b,
        noise_alpha=planned.noise_alpha,
        denoising=planned.denoising,
        guidance=planned.guidance,
        negative_prompt=planned.negative_prompt,
    )


class DiffusionFrameMaker:
    """Generates a batch of frames and vocodes each, warm-starting from the frame before.

    The vocoder's warm start assumes consecutive frames follow each other in the stream; after a
    control change discarded frames, the next frame starts from the last one made, which is
    still the nearest in sound. A ``StagedFrameMaker``: on an accelerator, the engine vocodes
    one batch while the model generates the next.
    """

    def __init__(self, generator: FrameGenerator, vocoder: Vocoder) -> None:
        self.generator = generator
        self.vocoder = vocoder
        self.overlaps = generator.device.type != "cpu"  # on a CPU both stages want its cores
        self._previous: VocodedFrame | None = None

    def make(
        self, planned: Sequence[PlannedFrame], is_stale: IsStale = never_stale
    ) -> list[MadeFrame]:
        return self.finish(self.generate(planned, is_stale), is_stale)

    def generate(
        self, planned: Sequence[PlannedFrame], is_stale: IsStale = never_stale
    ) -> tuple[Sequence[PlannedFrame], list[GeneratedFrame], float]:
        """The model's frames for ``planned``, and the seconds they took."""
        started = time.perf_counter()
        frames = self.generator.generate([request_for(frame) for frame in planned], is_stale)
        return planned, frames, time.perf_counter() - started

    def finish(
        self,
        generated: tuple[Sequence[PlannedFrame], list[GeneratedFrame], float],
        is_stale: IsStale = never_stale,
    ) -> list[MadeFrame]:
        """Vocode each generated frame and encode its picture."""
        planned, frames, generate_seconds = generated
        started = time.perf_counter()
        loops = []
        for frame in frames:
            check(is_stale)
            self._previous = self.vocoder.vocode(frame.mel, self._previous)
            loops.append(self._previous.samples)
        seconds = generate_seconds + time.perf_counter() - started
        per_frame = seconds / max(1, len(frames))  # working time, not time spent waiting
        return [
            MadeFrame(plan, samples, png_bytes(frame.image), seconds_to_make=per_frame)
            for plan, frame, samples in zip(planned, frames, loops)
        ]
