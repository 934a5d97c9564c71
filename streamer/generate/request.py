"""What the generator is asked for: one frame, already placed on the stream's walk.

A frame is fixed by what the music is (a weighted blend of prompts, and a negative prompt to steer
away from), which random noise it grows from (``noise_alpha`` of the way from seed ``seed_a``'s
noise to seed ``seed_b``'s, spherically), how far it may stray from its seed image (``denoising``,
the img2img strength) and how closely it follows the text (``guidance``). The planner mixes these
values along its walk; Riffusion's two-keyframe interpolation is the special case that
:func:`transition` builds, where the blend, the noise, denoising and guidance all move with one
alpha.

Pure data: no torch, so the planner and its tests stay light.
"""

from __future__ import annotations

import dataclasses
import math

from streamer.plan.settings import PromptBlend

__all__ = ["FrameRequest", "Keyframe", "PromptBlend", "lerp", "transition"]


@dataclasses.dataclass(frozen=True)
class FrameRequest:
    """One 5.12 s frame to generate.

    ``seed_image`` names the img2img init image (a seed loop); the generator looks it up by this
    name and caches its latent under it. ``seed_b`` defaults to ``seed_a`` (no noise walk).
    ``denoising`` in (0, 1]: the fraction of the noise schedule run on the seed image (0.75 keeps
    its beat grid, 1.0 ignores it). ``guidance``: the classifier-free guidance scale; at 1 or below
    guidance is off and the negative prompt unused.
    """

    prompts: PromptBlend
    seed_image: str
    seed_a: int
    seed_b: int | None = None
    noise_alpha: float = 0.0
    denoising: float = 0.75
    guidance: float = 7.0
    negative_prompt: str = ""

    def __post_init__(self) -> None:
        if self.seed_b is None:
            object.__setattr__(self, "seed_b", self.seed_a)
        for name in ("seed_a", "seed_b"):
            seed = getattr(self, name)
            if not (isinstance(seed, int) and 0 <= seed < 2**63):
                raise ValueError(f"{name} must be an integer in [0, 2**63), got {seed!r}")
        if not 0.0 <= self.noise_alpha <= 1.0:
            raise ValueError(f"noise_alpha must be in [0, 1], got {self.noise_alpha}")
        if not 0.0 < self.denoising <= 1.0:
            raise ValueError(f"denoising must be in (0, 1], got {self.denoising}")
        if not (math.isfinite(self.guidance) and self.guidance >= 0):
            raise ValueError(f"guidance must be a finite number >= 0, got {self.guidance}")

    @property
    def uses_guidance(self) -> bool:
        return self.guidance > 1.0

    def texts(self) -> tuple[str, ...]:
        """Every text this frame needs encoded: its prompts, and the negative prompt if used."""
        negative = (self.negative_prompt,) if self.uses_guidance else ()
        return (*self.prompts.prompts, *negative)


@dataclasses.dataclass(frozen=True)
class Keyframe:
    """One end of a Riffusion-style transition: prompts, seed, denoising and guidance."""

    prompts: PromptBlend
    seed: int
    denoising: float = 0.75
    guidance: float = 7.0

    @classmethod
    def of(cls, prompt: str, seed: int, denoising: float = 0.75, guidance: float = 7.0) -> Keyframe:
        return cls(PromptBlend.single(prompt), seed, denoising, guidance)


def lerp(start: float, end: float, alpha: float) -> float:
    """Linear interpolation that returns ``start`` and ``end`` exactly at alpha 0 and 1."""
    return end if alpha == 1.0 else start + alpha * (end - start)


def transition(
    start: Keyframe,
    end: Keyframe,
    frames: int,
    seed_image: str,
    negative_prompt: str = "",
) -> list[FrameRequest]:
    """Frames from ``start`` to ``end`` with alpha evenly spaced over [0, 1] (one frame: alpha 0).

    At alpha the blend is ``start`` weighted 1 - alpha plus ``end`` weighted alpha (the same as
    lerping the two blends' embeddings), the noise is slerped from ``start.seed`` to
    ``end.seed``, and denoising and guidance are lerped: Riffusion's interpolation.
    """
    if frames < 1:
        raise ValueError(f"a transition needs at least one frame, got {frames}")
    alphas = [i / (frames - 1) for i in range(frames)] if frames > 1 else [0.0]
    return [
        FrameRequest(
            prompts=start.prompts.mix(end.prompts, alpha),
            seed_image=seed_image,
            seed_a=start.seed,
            seed_b=end.seed,
            noise_alpha=alpha,
            denoising=lerp(start.denoising, end.denoising, alpha),
            guidance=lerp(start.guidance, end.guidance, alpha),
            negative_prompt=negative_prompt,
        )
        for alpha in alphas
    ]
