"""A light VAE decoder: the model's decoder distilled into a narrower one, for CPUs.

On a 2-core AVX2 CPU the built-in model's VAE decoder took 1.2-1.3 s of a 2.9 s frame (42 %,
OpenVINO, fp32; benchmarks/RESULTS.md): at the image's full 512 x 512 it convolves 32 and 64
channels. The light decoder has the same shape of network (diffusers' ``Decoder``: a mid block,
then an up block per level, each upsampling x2) with half the channels at the three largest
levels (:func:`light_decoder_for`), (16, 32, 64, 128) against (32, 64, 128, 128): 1.6M
parameters against 2.4M, and 2.8x faster in OpenVINO on that CPU (0.47 s against 1.31 s). It is
trained to give the model decoder's own pixels from the same latents (``streamer train --stage
decoder``), so the encoder, the UNet and the latent scale stay the model's.

It lives in its own subfolder of a model folder (``light_decoder/``, beside ``vae/``), outside
``model_index.json``, so the folder stays a plain diffusers Stable Diffusion folder that any
pipeline loads without it. Which decoder a frame uses is streamer.generate.autoencoder' rule.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import Decoder
from diffusers.models.modeling_utils import ModelMixin


class LightDecoder(ModelMixin, ConfigMixin):
    """Latent (already divided by the VAE's scaling factor, as ``vae.decode`` takes it) in,
    pixels in about [-1, 1] out: a drop-in for ``vae.decode(latent).sample``."""

    @register_to_config
    def __init__(
        self,
        latent_channels: int,
        out_channels: int,
        block_out_channels: tuple[int, ...],
        layers_per_block: int,
        norm_num_groups: int,
    ) -> None:
        super().__init__()
        self.decoder = Decoder(
            in_channels=latent_channels,
            out_channels=out_channels,
            up_block_types=("UpDecoderBlock2D",) * len(block_out_channels),
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            act_fn="silu",
            mid_block_add_attention=False,
        )

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.decoder(latent)


def light_decoder_for(vae_config: Any) -> LightDecoder:
    """A light decoder (random weights) for the VAE of ``vae_config``: as many levels as its
    decoder, so the same upsampling, and its layers per block; half its channels at every
    level but the deepest, where the image is smallest and the channels cost least (the
    built-in model's (32, 64, 128, 128) gives (16, 32, 64, 128))."""
    channels = tuple(max(count // 2, 4) for count in vae_config.block_out_channels[:-1])
    channels += (vae_config.block_out_channels[-1],)
    return LightDecoder(
        latent_channels=vae_config.latent_channels,
        out_channels=vae_config.out_channels,
        block_out_channels=channels,
        layers_per_block=vae_config.layers_per_block,
        norm_num_groups=math.gcd(*channels),
    )
