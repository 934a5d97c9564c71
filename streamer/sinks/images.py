"""A lighter spectrogram image for listeners who chose Opus to save bandwidth.

A frame's PNG (Riffusion's format, ~200-230 KB for real music) arrives every 5.12 s: about
340 kbit/s, three times the Opus audio itself. The browser's waterfall shows one grey level per
pixel, the louder stereo channel (``255 - min(G, B)``; mono images have R = G = B). That level
alone, as lossy WebP at quality 80, is 29-37 KiB for the seed loops' spectrograms (~58 kbit/s)
and costs ~26 ms of CPU per frame. The EXIF parameters are not carried: the image is for
looking at, not for inverting back to sound (the PNG stays with PCM listeners).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

#: WebP quality of the waterfall image (0-100): 80 keeps the spectrogram's texture visible.
WATERFALL_WEBP_QUALITY = 80


def waterfall_image(png: bytes) -> bytes:
    """The grey level the waterfall draws from a frame's PNG, as WebP bytes."""
    with Image.open(io.BytesIO(png)) as image:
        rgb = np.asarray(image.convert("RGB"))
    grey = np.minimum(rgb[:, :, 1], rgb[:, :, 2])
    out = io.BytesIO()
    Image.fromarray(grey, mode="L").save(out, "WEBP", quality=WATERFALL_WEBP_QUALITY)
    return out.getvalue()
