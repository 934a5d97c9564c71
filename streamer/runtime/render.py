"""Offline rendering: the live engine's planner, frame maker and stitcher, driven as fast as the
machine allows instead of by a clock, into a WAV or FLAC file."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import soundfile
from tqdm import tqdm

from streamer.errors import UserError
from streamer.runtime.engine import Engine

#: Output formats by file extension, with 16-bit samples as in a CD.
FORMATS = {".wav": "WAV", ".flac": "FLAC"}
#: Stream seconds rendered between checks for new frames and progress updates.
CHUNK_SECONDS = 1.0


def render_to_file(
    engine: Engine, path: str | os.PathLike[str], seconds: float, stop: threading.Event
) -> int:
    """Render ``seconds`` of the stream into ``path``; returns the samples written.

    Setting ``stop`` ends early; the file is closed and valid either way.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"--out must end in {' or '.join(FORMATS)}, got {os.fspath(path)!r}")
    total = round(seconds * engine.sample_rate)
    chunk = round(CHUNK_SECONDS * engine.sample_rate)
    written = 0
    try:
        output = soundfile.SoundFile(
            path, "w", engine.sample_rate, engine.channels, subtype="PCM_16", format=FORMATS[suffix]
        )
    except (OSError, RuntimeError) as error:
        raise UserError(f"cannot write {os.fspath(path)}: {error}") from None
    with output, tqdm(total=round(seconds, 2), unit="s", desc="rendering", leave=False) as progress:
        while written < total and not stop.is_set():
            engine.fill_lookahead()
            rendered = engine.stitcher.render(min(chunk, total - written))
            output.write(rendered.samples.T)
            written += rendered.samples.shape[1]
            progress.update(round(rendered.samples.shape[1] / engine.sample_rate, 2))
    return written
