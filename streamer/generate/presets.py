"""Sampling presets: which scheduler, how many steps, and the keyframe defaults that suit them.

A frame is img2img from a seed loop: of a schedule of ``num_inference_steps`` steps it runs only
the last ``int(num_inference_steps * denoising)`` (diffusers' convention), each one UNet
evaluation, doubled in batch when guidance > 1 (classifier-free guidance runs the prompt and the
negative prompt together). These evaluations are nearly all of a frame's cost.

``default``: DPM-Solver++ (2nd order, multistep) reaches in about 20 steps what Riffusion's 50
PNDM/DDIM steps reach (Lu et al., 2022): 15 evaluations at denoising 0.75, with guidance 7.

``builtin``: for the small model shipped in the package (``--model builtin``), which plays it
unless another preset is chosen (``config.MODEL_PRESETS``): DPM-Solver++ on an 8-step schedule,
the last 6 at denoising 0.75, guidance 4 (a from-scratch model on templated captions needs less
than SD's 7). It knows only its captions' words, so it also brings the stream's first prompt
and endless playlist, written in them (``BUILTIN_PROMPTS``). 8 steps rather than the 12 it was
sized at: the same quality figures on the held-out data (benchmarks/model_quality.py, side by
side in benchmarks/RESULTS.md) for a third fewer UNet calls, which an AVX2-only CPU needs to
keep up in fp32.

``lcm``: a latent consistency model distilled into a LoRA (LCM-LoRA for SD 1.5, which Riffusion
is fine-tuned from) samples in 2-8 steps without classifier-free guidance: a 6-step schedule at
denoising 0.75 runs 4 evaluations at batch 1, about 7x fewer UNet rows than ``default``. LCM-LoRA
was trained on SD 1.5, not on spectrograms: expect lower fidelity than ``default``.
"""

from __future__ import annotations

import dataclasses

#: Scheduler names a preset or the command line can choose (see schedulers.py). PNDM, the SD 1.x
#: checkpoints' own scheduler, is not offered: without ``skip_prk_steps`` its Runge-Kutta warm-up
#: spends extra evaluations and breaks img2img's step counting.
SCHEDULER_NAMES = ("dpm++", "ddim", "euler", "lcm")

#: LCM-LoRA for Stable Diffusion 1.5 on the Hugging Face hub.
LCM_LORA_SD15 = "latent-consistency/lcm-lora-sdv1-5"


@dataclasses.dataclass(frozen=True)
class GeneratorPreset:
    """How frames are sampled; ``denoising`` and ``guidance`` are defaults for new keyframes."""

    name: str
    scheduler: str
    num_inference_steps: int
    denoising: float
    guidance: float
    lora: str | None = None
    lora_scale: float = 1.0
    #: Classifier-free guidance runs only on steps whose timestep is at least this (0: on every
    #: step); later steps run the frame's prompt row alone. See ``guides_at``.
    guidance_until_timestep: int = 0
    #: Prompts in the words the model knows: the stream's first prompt and its endless playlist
    #: when the user gives none (empty: the stream's own, for models that know any words).
    prompts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULER_NAMES:
            raise ValueError(
                f"unknown scheduler {self.scheduler!r}: choose one of {', '.join(SCHEDULER_NAMES)}"
            )
        if not 0 <= self.guidance_until_timestep <= 1000:
            raise ValueError(
                f"guidance_until_timestep must be within 0..1000, got {self.guidance_until_timestep}"
            )
        if self.num_inference_steps < 1:
            raise ValueError(
                f"num_inference_steps must be at least 1, got {self.num_inference_steps}"
            )

    def guides_at(self, timestep: int) -> bool:
        """Whether a guided frame runs its negative-prompt row at this timestep.

        Guidance shapes what a frame becomes while the noise is high; near the end of the
        schedule the guided and unguided predictions nearly agree (Kynkaenniemi et al., 2024,
        "Applying guidance in a limited interval"), so there the second row costs most of a UNet
        call (a 2-row batch is 1.6-2.4x one row on a CPU) for little change.
        """
        return timestep >= self.guidance_until_timestep

    def unet_evaluations(self, denoising: float | None = None) -> int:
        """UNet evaluations one frame takes at this denoising (the preset's by default)."""
        return evaluations(
            self.num_inference_steps, self.denoising if denoising is None else denoising
        )


def evaluations(num_inference_steps: int, denoising: float) -> int:
    """Steps img2img runs: the last ``int(steps * denoising)`` of the schedule (at least one)."""
    return max(1, min(int(num_inference_steps * denoising), num_inference_steps))


#: The built-in model's first prompt and playlist: captions as its training data writes them
#: (streamer.training.composer), one style after another.
BUILTIN_PROMPTS = (
    "lo-fi hip hop beat, mellow rhodes chords, upright bass, minor, sparse",
    "house track, mellow piano chords, deep synth bass, minor, busy",
    "jazz, mellow alto sax melody, upright bass, piano chords, major, sparse",
    "ambient, slow strings chords, synth bass, choir pad, major, sparse",
    "funk groove, clavinet chords, slap bass, major, busy",
    "bossa nova, vibraphone melody, upright bass, nylon guitar chords, major, sparse",
)

PRESETS: dict[str, GeneratorPreset] = {
    preset.name: preset
    for preset in (
        GeneratorPreset("default", "dpm++", num_inference_steps=20, denoising=0.75, guidance=7.0),
        GeneratorPreset(
            "builtin", "dpm++", num_inference_steps=8, denoising=0.75, guidance=4.0,
            prompts=BUILTIN_PROMPTS,
        ),
        GeneratorPreset(
            "lcm", "lcm", num_inference_steps=6, denoising=0.75, guidance=1.0, lora=LCM_LORA_SD15
        ),
    )
}


def preset_named(name: str) -> GeneratorPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}") from None
