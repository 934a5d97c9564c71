"""The objects made at startup moved out of the garbage collector's way before the clock starts.

CPython's full (generation 2) collection walks every object it tracks while holding the GIL, and
no Python thread runs meanwhile: not the renderer, and not a sound device's callback. With
torch, diffusers and a model loaded that is about half a million objects, almost all made once at
startup and alive for the whole stream, and a full collection takes 250-330 ms here
(``benchmarks/gc_pause.py``): longer than a sound card's buffer, so the callback misses its
deadline and the audience hears a dropout. Once the stream runs they are rare (one waits until
a quarter as many new objects as old ones have outlived two younger collections: none came in
2 minutes of the built-in model's stream or 8 of the stand-in's), but a show runs for hours.
Collecting once before the clock starts and freezing what survives (``gc.freeze``) leaves later
collections only what the stream itself keeps: 0.1 ms.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> None:
    """Collect, then exempt every surviving object from later collections.

    Call it once, after the model is loaded and the first frame made, before the clock starts:
    the collection itself is the long pause, taken while nothing is heard yet. Frozen objects
    are still freed by reference counting; only cycles among them stay.
    """
    gc.collect()
    gc.freeze()
