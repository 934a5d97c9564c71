"""Offline rendering: the live engine's core and frame maker, driven as fast as the machine
allows instead of by threads and a clock, into a WAV or FLAC file.

Time here is stream time: a back-off the core asks for after a failed frame passes at once
(nobody is listening while it is made), so a render is the same whatever the machine's speed.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import soundfile
from tqdm import tqdm

from streamer.errors import UserError
from streamer.generate.cancellation import FrameCancelled, IsStale, never_stale
from streamer.runtime.core import EngineCore, Wait
from streamer.runtime.frames import FrameMaker

log = logging.getLogger(__name__)

#: Output formats by file extension, with 16-bit samples as in a CD.
FORMATS = {".wav": "WAV", ".flac": "FLAC"}
#: Stream seconds rendered between checks for new frames and progress updates.
CHUNK_SECONDS = 1.0


def render_to_file(
    core: EngineCore,
    maker: FrameMaker,
    path: str | os.PathLike[str],
    seconds: float,
    stop: threading.Event,
) -> int:
    """Render ``seconds`` of the stream into ``path``; returns the samples written.

    Setting ``stop`` ends early; the file is closed and valid either way.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UserError(f"--out must end in {' or '.join(FORMATS)}, got {os.fspath(path)!r}")
    rate, channels = core.stitcher.config.sample_rate, core.stitcher.config.channels
    total = round(seconds * rate)
    chunk = round(CHUNK_SECONDS * rate)
    written = 0
    try:
        output = soundfile.SoundFile(
            path, "w", rate, channels, subtype="PCM_16", format=FORMATS[suffix]
        )
    except (OSError, RuntimeError) as error:
        raise UserError(f"cannot write {os.fspath(path)}: {error}") from None
    with output, tqdm(total=round(seconds, 2), unit="s", desc="rendering", leave=False) as progress:
        while written < total and not stop.is_set():
            try:
                fill_lookahead(core, maker, written / rate, stop.is_set)
            except FrameCancelled:  # stopped within the frame being made, however slow it is
                break
            rendered = core.render(min(chunk, total - written), written / rate)
            assert rendered is not None, "the lookahead holds a frame"
            output.write(rendered.audio.samples.T)
            written += rendered.audio.samples.shape[1]
            progress.update(round(rendered.audio.samples.shape[1] / rate, 2))
    return written


def fill_lookahead(
    core: EngineCore, maker: FrameMaker, now: float, is_stale: IsStale = never_stale
) -> None:
    """Make frames until the core has as many ready as it wants. A maker that raises stops the
    render (there is no stream to keep alive); one that keeps returning unplayable frames too.
    ``is_stale`` true ends the frame being made (``FrameCancelled``): a stop request."""
    for _ in range(3 * core.config.lookahead_frames):
        work = core.next_work(now)
        if isinstance(work, Wait):
            if work.until is None:
                return
            now = work.until  # a back-off passes at once offline
            continue
        for line in core.frames_made(maker.make(list(work.frames), is_stale), now):
            log.log(line.level, line.message)
    raise RuntimeError("the frame maker keeps returning unusable frames; see the log")
