"""The built-in model's sizes: a Stable Diffusion 1.x pipeline small enough to stream on a CPU.

Same parts and file layout as Riffusion's checkpoint (a KL autoencoder, a cross-attention UNet,
a CLIP text encoder with CLIP's real tokenizer), so the existing loader and ``FrameGenerator``
run it unchanged. What changes is the size, chosen by measurement
(``benchmarks/builtin_model_speed.py``, figures in benchmarks/RESULTS.md): the whole stream, a
frame at the ``builtin`` preset (``streamer.generate.presets``) plus the vocoder, must run at >= 2x real time on 2 CPU cores,
and the weights must fit 80 MB in fp16.

Choices, and why:
- VAE at SD's 8x downsampling with 4 latent channels: a 512x512 spectrogram is a 4x64x64 latent,
  fine enough to keep the horizontal lines of harmonics (one mel bin is one pixel row; 16x
  would merge 16 rows into one latent row). No self-attention at its lowest level: a 4096-token
  attention costs more than the rest of the decoder on a CPU and buys little for spectrograms.
- UNet: no attention at the 64x64 level (same reason), cross-attention at 32x32 and 16x16,
  where the prompt decides what plays.
- Text encoder: 4 layers of width 256. The captions are templated plain words; its size is
  mostly CLIP's 49408-token embedding table (12.6M parameters, 25 MB in fp16).
"""

from __future__ import annotations

from streamer.generate.tiny_model import TINY, Architecture

_TEXT = {
    "text_hidden_size": 256,
    "text_intermediate_size": 1024,
    "text_layers": 4,
    "text_heads": 4,
}
_VAE = {
    "vae_channels": (32, 64, 128, 128),
    "vae_layers_per_block": 1,
    "vae_mid_attention": False,
    "latent_channels": 4,
}
_UNET_BLOCKS = {
    "unet_layers_per_block": 1,
    "unet_down_blocks": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "unet_up_blocks": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "unet_attention_heads": 4,
    "norm_groups": 32,
}

#: Sizes measured against the 2x-real-time budget (benchmarks/builtin_model_speed.py).
CANDIDATES: dict[str, Architecture] = {
    "small": Architecture(unet_channels=(64, 128, 256), **_UNET_BLOCKS, **_VAE, **_TEXT),
    "medium": Architecture(unet_channels=(96, 192, 384), **_UNET_BLOCKS, **_VAE, **_TEXT),
    "large": Architecture(unet_channels=(128, 256, 512), **_UNET_BLOCKS, **_VAE, **_TEXT),
}

#: The built-in model: the largest candidate that streams at >= 2x real time on 2 CPU cores
#: within 80 MB of fp16 weights (see the module docstring); "tiny" trains in seconds, for tests.
ARCHITECTURES: dict[str, Architecture] = {"builtin": CANDIDATES["small"], "tiny": TINY}


def parameter_counts(architecture: Architecture) -> dict[str, int]:
    """Parameters of each part of ``architecture`` (builds it with random weights)."""
    from streamer.generate.tiny_model import random_components

    unet, vae, text_encoder = random_components(architecture)
    return {
        name: sum(p.numel() for p in part.parameters())
        for name, part in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder))
    }
