"""Seed loops captured from the live input, kept in memory by name beside the library's.

Captures are named ``captured-1``, ``captured-2``, ... in order, and the newest ``max_kept`` are
kept, as PNG files in memory (the older ones go first; only the newest can be playing or about
to). With ``save_dir`` each is also written there as ``<name>.png``, a file
``streamer make-seed`` could have made: ``--seed-loop DIR/captured-3.png`` plays it again later.

The frame makers look seed images up through ``image``: a capture by its name, anything else as
before (``seed_loop_image``: the library by name, or a PNG by path).
"""

from __future__ import annotations

import collections
import dataclasses
import io
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the spectrogram codec and the model load torch: not for `streamer --help`
    from PIL import Image

#: How captures are named: the prefix and then their number, from 1.
CAPTURE_PREFIX = "captured-"


@dataclasses.dataclass(frozen=True)
class CapturedSeed:
    """One capture, made into a seed loop: ``beats`` beats at ``bpm`` fill its frame."""

    name: str
    image: "Image.Image"
    bpm: float
    beats: int


class CapturedSeeds:
    """The captures kept in memory (thread-safe: captures are made on their own thread and
    looked up on the producer's)."""

    def __init__(self, max_kept: int = 8, save_dir: Path | None = None) -> None:
        if max_kept < 2:
            raise ValueError("max_kept must be at least 2: the capture before the newest may still be playing")
        self.max_kept = max_kept
        self.save_dir = save_dir
        #: The kept captures' images as PNG files in memory (about 0.5 MB each), oldest first.
        self._png: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self._count = 0
        self._lock = threading.Lock()

    def next_name(self) -> str:
        """A name for the next capture (each is used once)."""
        with self._lock:
            self._count += 1
            return f"{CAPTURE_PREFIX}{self._count}"

    def add(self, seed: CapturedSeed) -> Path | None:
        """Keep ``seed`` (forgetting the oldest beyond ``max_kept``); returns where it was saved,
        if a folder was given."""
        from streamer.spectrogram import png_bytes

        png = png_bytes(seed.image)
        with self._lock:
            self._png[seed.name] = png
            while len(self._png) > self.max_kept:
                self._png.popitem(last=False)
        if self.save_dir is None:
            return None
        path = self.save_dir / f"{seed.name}.png"
        path.write_bytes(png)
        return path

    def names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._png)

    def image(self, name: str) -> Image.Image:
        """The seed image called ``name``: a capture kept here, else the library's or a PNG."""
        from PIL import Image

        from streamer.runtime.diffusion_maker import seed_loop_image

        with self._lock:
            png = self._png.get(name)
        if png is None:
            return seed_loop_image(name)
        # Read back as from a file: a copy of a made image would lose its EXIF (its parameters).
        image = Image.open(io.BytesIO(png))
        image.load()
        return image
