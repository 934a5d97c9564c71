"""The seed-loop library shipped as package data: PNG spectrograms and their manifest.

The loops are rendered by ``scripts/render_seed_loops.py``; ``loops/manifest.json`` lists each one
(name, file, BPM, beats, description). The files are read through ``importlib.resources`` so the
library works from a wheel as well as from a source checkout.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from importlib import resources
from importlib.resources.abc import Traversable

import numpy as np
from PIL import Image

from streamer.errors import UserError
from streamer.spectrogram import SpectrogramParams, mel_from_image


def frame_samples(params: SpectrogramParams) -> int:
    """Samples in one frame: a frame is a square image, as many columns as mel bins
    (512 x 441 = 225792 samples = 5.12 s with the defaults)."""
    return params.num_samples(params.num_frequencies)


@dataclasses.dataclass(frozen=True)
class SeedLoop:
    """One loop of the library: ``beats`` beats at ``bpm`` filling exactly one frame."""

    name: str
    bpm: float
    beats: int
    description: str
    path: Traversable

    def image(self) -> Image.Image:
        """The spectrogram image, loaded into memory (its EXIF included)."""
        with self.path.open("rb") as file:
            image = Image.open(file)
            image.load()
        return image

    def mel(self) -> tuple[np.ndarray, SpectrogramParams]:
        """Mel amplitudes (1, bins, columns) and the parameters stored in the image."""
        return mel_from_image(self.image())


def _folder() -> Traversable:
    return resources.files("streamer.seeds") / "loops"


@functools.cache
def list_seed_loops() -> tuple[SeedLoop, ...]:
    """Every loop of the library, in manifest order."""
    folder = _folder()
    entries = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return tuple(
        SeedLoop(
            name=entry["name"],
            bpm=float(entry["bpm"]),
            beats=int(entry["beats"]),
            description=entry["description"],
            path=folder / entry["file"],
        )
        for entry in entries
    )


def load_seed_loop(name: str) -> SeedLoop:
    """The loop called ``name``; a :class:`UserError` naming the choices when there is none."""
    loops = list_seed_loops()
    for loop in loops:
        if loop.name == name:
            return loop
    available = ", ".join(loop.name for loop in loops)
    raise UserError(
        f"there is no seed loop called {name!r}; choose one of: {available} "
        "(or make one from an audio file with `streamer make-seed`)"
    )
