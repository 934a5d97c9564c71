"""Everything a user can set about a training run, in one place (no torch: the CLI reads it)."""

from __future__ import annotations

import dataclasses

from streamer.errors import UserError
from streamer.training.architecture import ARCHITECTURES

STAGES = ("vae", "unet")
PRECISIONS = ("auto", "bf16", "fp32")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a user can set about a training run (the CLI maps its flags here).

    ``init``: None trains from random weights of ``architecture``; otherwise an exported model
    folder (a run's RUN/model, or the built-in model's) to fine-tune, whose sizes win.
    ``*_steps`` are totals per stage: a resumed run trains up to them. ``precision`` "bf16"
    autocasts the forward pass; "fp32" does not; "auto" autocasts where bf16 is native (CUDA, a
    CPU with AVX-512 BF16 or AMX) and not where a CPU would emulate it 70x slower (AVX2).
    """

    stages: tuple[str, ...] = STAGES
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
    ema_decay: float = 0.999
    checkpoint_every_steps: int = 250
    log_every_steps: int = 10
    device: str = "cpu"
    precision: str = "auto"
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for stage in self.stages:
            if stage not in STAGES:
                raise UserError(f"unknown stage {stage!r}: choose vae, unet or all")
        if self.architecture not in ARCHITECTURES:
            raise UserError(
                f"unknown architecture {self.architecture!r}: choose {', '.join(ARCHITECTURES)}"
            )
        if self.precision not in PRECISIONS:
            raise UserError(
                f"precision must be {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if self.vae_crop_pixels % 8:
            raise UserError(
                f"the VAE crop must be a multiple of 8 pixels, got {self.vae_crop_pixels}"
            )
