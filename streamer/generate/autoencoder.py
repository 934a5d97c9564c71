"""The model's autoencoder as the generator uses it: its two halves as plain modules (pixels to
latent, latent to pixels), which the CPU runtime converts like the UNet, and which decoder turns
a frame's latent into its image.

A model folder may hold a light decoder beside its VAE (streamer.generate.light_decoder: the
VAE's decoder distilled into a narrower one, 2.8x faster on a CPU). :func:`choose_decoder` is
the rule, pure: what was asked for, where the model runs and whether the model has one come in
as values. Without diffusers, so the generator imports it at no cost.
"""

from __future__ import annotations

import dataclasses

import torch

from streamer.generate.config import DECODERS

#: The subfolder of a model folder that holds a light decoder.
LIGHT_DECODER_FOLDER = "light_decoder"


class VaeEncoder(torch.nn.Module):
    """The VAE's encoder as a module from pixels in [-1, 1] to the latent distribution's mean
    (unscaled): what a seed image becomes (the mean, so the latent is a function of the image
    alone and can be cached)."""

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(pixels).latent_dist.mode()


class VaeDecoder(torch.nn.Module):
    """The VAE's own decoder as a module from latent to pixels, as the light decoder is: either
    one is what the generator decodes with and the CPU runtime converts."""

    def __init__(self, vae: torch.nn.Module) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latent, return_dict=False)[0]


@dataclasses.dataclass(frozen=True)
class DecoderChoice:
    """The decoder chosen and why, in words for the start-up line."""

    light: bool
    reason: str

    def announcement(self) -> str:
        if self.light:
            return f"decoding with the light decoder ({self.reason}; --decoder full for the VAE's)"
        return f"decoding with the VAE's decoder ({self.reason})"


def choose_decoder(requested: str, device_type: str, has_light: bool) -> DecoderChoice:
    """The light decoder on a CPU where the model has one (``auto``) or where asked for; the
    VAE's own elsewhere: on a GPU the full decoder takes milliseconds, so the light one would
    cost fidelity for nothing. Asking for a light decoder the model lacks is an error."""
    if requested not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {requested!r}")
    if requested == "full":
        return DecoderChoice(False, "asked for with --decoder full")
    if requested == "light":
        if not has_light:
            raise ValueError(
                f"--decoder light: this model has no {LIGHT_DECODER_FOLDER}/ (train one with "
                "`streamer train DATA --out RUN --init MODEL --stage decoder`)"
            )
        return DecoderChoice(True, "asked for with --decoder light")
    if not has_light:
        return DecoderChoice(False, f"the model has no {LIGHT_DECODER_FOLDER}/")
    if device_type != "cpu":
        return DecoderChoice(False, f"on {device_type} the VAE's decoder is fast enough")
    return DecoderChoice(True, "the model's light decoder, on a CPU")
