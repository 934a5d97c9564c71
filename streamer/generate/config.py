"""Everything a user can set about the generator, in one place (the CLI maps its flags here)."""

from __future__ import annotations

import dataclasses

from streamer.generate.presets import GeneratorPreset, preset_named


#: Riffusion v1: Stable Diffusion 1.5 fine-tuned on 512x512 mel spectrograms (4 GB).
DEFAULT_MODEL = "riffusion/riffusion-model-v1"
#: The files of a diffusers Stable Diffusion repository that a frame needs (loading.py loads only
#: these parts): not its safety checker, feature extractor or original-layout checkpoints, which
#: in Riffusion's repository are several times the size of what streamer uses.
MODEL_FILE_PATTERNS = (
    "model_index.json",
    "scheduler/*",
    "tokenizer/*",
    "text_encoder/*",
    "unet/*",
    "vae/*",
)
#: The small model trained here and shipped inside the package (streamer/generate/builtin/).
BUILTIN_MODEL = "builtin"
#: Riffusion's checkpoint on a GPU that can get it, else the built-in model (model_choice.py).
AUTO_MODEL = "auto"

#: What may run the UNet and VAE decoder on a CPU (streamer.generate.cpu_runtime): ``auto``
#: takes OpenVINO where it is installed and measured no slower at load.
CPU_RUNTIMES = ("auto", "torch", "openvino")

#: What may turn latents into images (streamer.generate.autoencoder, which reads it from here):
#: ``auto`` takes the model's light decoder on a CPU where it has one.
DECODERS = ("auto", "full", "light")

#: The preset a model plays with when the user chooses none; models not named play "default".
MODEL_PRESETS = {BUILTIN_MODEL: "builtin"}


def download_command(repo_id: str) -> str:
    """The command that downloads the parts of a hub model streamer loads, into the cache."""
    patterns = " ".join(f"'{pattern}'" for pattern in MODEL_FILE_PATTERNS)
    return f"hf download {repo_id} --include {patterns}"


def default_preset_for(model: str) -> str:
    """The preset ``model`` plays with unless the user chooses one: the one home of that rule."""
    if model == AUTO_MODEL:
        raise ValueError(
            "the preset of --model auto depends on the model it picks: resolve it first "
            "(streamer.generate.model_choice.resolve_model)"
        )
    return MODEL_PRESETS.get(model, "default")


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Which checkpoint, where it runs, and how frames are sampled.

    ``model`` is "auto" (resolved before loading, see model_choice.py), "builtin" (the model
    shipped in the package), a hub id, a local diffusers folder, or one ``.safetensors`` or
    ``.ckpt`` file; a single file takes its component configs and tokenizer from
    ``model_config`` (a diffusers folder of the same architecture), or from its own folder if
    that holds a model_index.json.
    ``device`` None picks cuda, then mps, then cpu; ``dtype`` None picks the fastest safe type
    for the device (see loading.py). ``offline`` never touches the network (as HF_HUB_OFFLINE=1).
    ``preset`` None plays the model's own (``default_preset_for``); ``scheduler``,
    ``num_inference_steps``, ``guidance_until_timestep`` and ``lora`` override the preset's when
    set.
    ``compile`` is "none", "default" (torch.compile) or "reduce-overhead" (torch.compile with
    CUDA graphs); compiling costs a minute or more at start-up and pays off only on a GPU.
    ``cpu_runtime`` is what runs the UNet and VAE decoder on a CPU: "auto" (OpenVINO where it
    is installed and measured no slower at load), "openvino" or "torch"
    (streamer.generate.cpu_runtime).
    ``decoder`` is which VAE decoder turns latents into images: "auto" (the model's light
    decoder on a CPU where it has one, the VAE's own elsewhere), "full" or "light"
    (streamer.generate.autoencoder).
    """

    model: str = AUTO_MODEL
    model_config: str | None = None
    device: str | None = None
    dtype: str | None = None
    offline: bool = False
    cache_dir: str | None = None
    preset: str | None = None
    scheduler: str | None = None
    num_inference_steps: int | None = None
    guidance_until_timestep: int | None = None
    lora: str | None = None
    compile: str = "none"
    cpu_runtime: str = "auto"
    decoder: str = "auto"
    max_cached_prompts: int = 256
    max_cached_seed_images: int = 64

    def __post_init__(self) -> None:
        if self.compile not in ("none", "default", "reduce-overhead"):
            raise ValueError(
                f"compile must be none, default or reduce-overhead, got {self.compile!r}"
            )
        if self.cpu_runtime not in CPU_RUNTIMES:
            raise ValueError(
                f"cpu_runtime must be one of {', '.join(CPU_RUNTIMES)}, got {self.cpu_runtime!r}"
            )
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        # Fail early on an unknown preset or scheduler, even before "auto" is resolved.
        self._with_overrides(preset_named(self.preset or "default"))

    def resolved_preset(self) -> GeneratorPreset:
        """The preset with this config's overrides applied (the model's own if none is chosen)."""
        return self._with_overrides(preset_named(self.preset or default_preset_for(self.model)))

    def _with_overrides(self, preset: GeneratorPreset) -> GeneratorPreset:
        overrides = {
            "scheduler": self.scheduler,
            "num_inference_steps": self.num_inference_steps,
            "guidance_until_timestep": self.guidance_until_timestep,
            "lora": self.lora,
        }
        return dataclasses.replace(preset, **{k: v for k, v in overrides.items() if v is not None})
