"""Everything a user can set about a training run, in one place (no torch: the CLI reads it)."""

from __future__ import annotations

import dataclasses

from streamer.errors import UserError
from streamer.training.architecture import ARCHITECTURES

STAGES = ("vae", "unet", "guidance", "decoder")

#: What ``streamer train --stage all`` trains: the model itself. Guidance distillation and the
#: light decoder are later runs on a trained model (``--stage guidance|decoder --init MODEL``).
MODEL_STAGES = ("vae", "unet")

#: Guidance scales a student learns, uniformly drawn: from 1 (no guidance, where the student
#: must predict as its teacher does) to 15, the top of the guidance fader (MIDI CC 29); the
#: ``builtin`` preset's 4 is well inside. Typed values above 15 (the control allows 30) are
#: extrapolated.
GUIDANCE_SCALE_RANGE = (1.0, 15.0)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a user can set about a training run (the CLI maps its flags here).

    ``init``: None trains from random weights of ``architecture``; otherwise an exported model
    folder (a run's RUN/model, or the built-in model's) to fine-tune, whose sizes win; the
    ``guidance`` stage distils the model it starts from (``init``, or this run's ``unet``
    stage), its *teacher*; the ``decoder`` stage distils its VAE decoder into a light one.
    ``*_steps`` are totals per stage: a resumed run trains up to them.
    ``precision`` "bf16" autocasts the forward pass where bf16 is native (a CPU with AVX-512
    BF16 or AMX, CUDA) and falls back to fp32 elsewhere; "fp32" never autocasts.
    """

    stages: tuple[str, ...] = MODEL_STAGES
    architecture: str = "builtin"
    init: str | None = None
    vae_steps: int = 3000
    unet_steps: int = 20000
    vae_batch_size: int = 8
    unet_batch_size: int = 8
    vae_learning_rate: float = 2e-4
    unet_learning_rate: float = 3e-4
    warmup_steps: int = 100
    vae_crop_pixels: int = 128
    vae_kl_weight: float = 1e-6
    caption_drop_fraction: float = 0.1
    min_snr_gamma: float = 5.0
    guidance_steps: int = 4000
    guidance_batch_size: int = 8
    guidance_learning_rate: float = 1e-4
    guidance_scale_range: tuple[float, float] = GUIDANCE_SCALE_RANGE
    decoder_steps: int = 2000
    decoder_batch_size: int = 8
    decoder_learning_rate: float = 5e-4
    decoder_crop_pixels: int = 128
    decoder_corner_weight: float = 1.0
    ema_decay: float = 0.999
    checkpoint_every_steps: int = 250
    log_every_steps: int = 10
    device: str = "cpu"
    precision: str = "bf16"
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for stage in self.stages:
            if stage not in STAGES:
                raise UserError(
                    f"unknown stage {stage!r}: choose vae, unet, all, guidance or decoder"
                )
        low, high = self.guidance_scale_range
        if not 1.0 <= low <= high:
            raise UserError(
                f"the guidance scale range must have 1 <= low <= high, got {low}..{high}"
            )
        if self.architecture not in ARCHITECTURES:
            raise UserError(
                f"unknown architecture {self.architecture!r}: choose {', '.join(ARCHITECTURES)}"
            )
        if self.precision not in ("bf16", "fp32"):
            raise UserError(f"precision must be bf16 or fp32, got {self.precision!r}")
        for name, crop in (("VAE", self.vae_crop_pixels), ("decoder", self.decoder_crop_pixels)):
            if crop % 8:
                raise UserError(f"the {name} crop must be a multiple of 8 pixels, got {crop}")
