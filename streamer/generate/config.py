"""Everything a user can set about the generator, in one place (the CLI maps its flags here)."""

from __future__ import annotations

import dataclasses

from streamer.generate.presets import GeneratorPreset, preset_named

#: Riffusion v1: Stable Diffusion 1.5 fine-tuned on 512x512 mel spectrograms.
DEFAULT_MODEL = "riffusion/riffusion-model-v1"


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Which checkpoint, where it runs, and how frames are sampled.

    ``model`` is a hub id, a local diffusers folder, or one ``.safetensors``/``.ckpt`` file;
    a single file takes its component configs and tokenizer from ``model_config`` (a diffusers
    folder of the same architecture), or from its own folder if that holds a model_index.json.
    ``device`` None picks cuda, then mps, then cpu; ``dtype`` None picks the fastest safe type
    for the device (see loading.py). ``offline`` never touches the network (as HF_HUB_OFFLINE=1).
    ``scheduler``, ``num_inference_steps`` and ``lora`` override the preset's when set.
    ``compile`` is "none", "default" (torch.compile) or "reduce-overhead" (torch.compile with
    CUDA graphs); compiling costs a minute or more at start-up and pays off only on a GPU.
    """

    model: str = DEFAULT_MODEL
    model_config: str | None = None
    device: str | None = None
    dtype: str | None = None
    offline: bool = False
    cache_dir: str | None = None
    preset: str = "default"
    scheduler: str | None = None
    num_inference_steps: int | None = None
    lora: str | None = None
    compile: str = "none"
    max_cached_prompts: int = 256
    max_cached_seed_images: int = 64

    def __post_init__(self) -> None:
        if self.compile not in ("none", "default", "reduce-overhead"):
            raise ValueError(
                f"compile must be none, default or reduce-overhead, got {self.compile!r}"
            )
        self.resolved_preset()  # fail early on an unknown preset or scheduler

    def resolved_preset(self) -> GeneratorPreset:
        """The preset with this config's overrides applied."""
        preset = preset_named(self.preset)
        overrides = {
            "scheduler": self.scheduler,
            "num_inference_steps": self.num_inference_steps,
            "lora": self.lora,
        }
        return dataclasses.replace(preset, **{k: v for k, v in overrides.items() if v is not None})
