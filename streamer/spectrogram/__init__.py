"""The spectrogram codec: audio <-> mel amplitudes <-> images, in Riffusion's format."""

from streamer.spectrogram.codec import (
    audio_from_mel,
    linear_from_mel,
    mel_from_audio,
    mel_pseudo_inverse,
    to_channels,
)
from streamer.spectrogram.image import image_from_mel, mel_from_image, png_bytes, save_image
from streamer.spectrogram.params import ExifTag, SpectrogramParams

__all__ = [
    "ExifTag",
    "SpectrogramParams",
    "audio_from_mel",
    "image_from_mel",
    "linear_from_mel",
    "mel_from_audio",
    "mel_from_image",
    "mel_pseudo_inverse",
    "png_bytes",
    "save_image",
    "to_channels",
]
