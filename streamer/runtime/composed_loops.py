"""Seed loops composed while the stream plays: a variation's name in, its spectrogram out.

The song form (``streamer.plan.arranger``) names a seed loop for every frame; the name says what
to compose (style, song, groove, drums, chords, fill), on which of the library's loops (whose
tempo it keeps unless the name gives the song's own beats), and so at which tempo. The frame maker asks for seed images by name on the producer
thread, never on the audio clock: a loop not made yet is composed there (the project's composer,
FluidSynth and the circular STFT, about a second), and the loops the song plays next
(``arranger.next_loops``: the section's next frame, and the next section's first) are composed
ahead by one background thread. At most ``capacity`` images are kept. A loop that cannot be
composed plays as its base loop, and the log says why once (a song at another tempo then plays
the base loop's beat, with the song's switch points: crossfades, no click).

Without FluidSynth nothing is composed: :func:`song_loop_styles` says so in one log line and
returns no styles, and the form walks on the stream's own seed loop; :func:`style_beats` gives
the tempi the composer's styles were trained at, which the songs play at.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import queue
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from PIL import Image

from streamer.errors import UserError
from streamer.plan.arranger import LoopVariation, loop_beats, next_loops
from streamer.training.composer import STYLES, compose_song_loop
from streamer.training.midi import loop_events, standard_midi_file
from streamer.training.synth import (
    DEFAULT_SOUNDFONT,
    FRAME_SECONDS,
    SynthConfig,
    check_synth,
    loop_image,
    render_loop,
)

log = logging.getLogger(__name__)

#: Peak level of a composed loop before its image is made (as the library's loops).
PEAK_LEVEL = 0.8
#: How loops are rendered: as ``make-dataset`` renders them (a few sounds, the choir pad, never
#: settle below about 1e-3 between repetitions).
SONG_SYNTH = SynthConfig(steady_tolerance=3e-3)
#: The style of prompts that name none the composer knows.
FALLBACK_STYLE = "boom_bap"


def style_of_prompt(prompt: str) -> str:
    """The composer's style a prompt names (the longest name found in it), else a fallback."""
    text = prompt.lower()
    found = [
        (len(name), style.name)
        for style in STYLES
        for name in (style.phrase, style.words)
        if name.lower() in text
    ]
    return max(found)[1] if found else FALLBACK_STYLE


def song_loop_styles(
    playlist: tuple[str, ...], soundfont: Path = DEFAULT_SOUNDFONT
) -> tuple[tuple[str, str], ...]:
    """(prompt, style) for each playlist prompt, or () with a log line when FluidSynth or the
    sound font is missing (the song form then walks on the stream's own seed loop)."""
    try:
        check_synth(soundfont)
    except UserError as error:
        log.warning("%s: the song form walks on the built-in seed loops, composing none", error)
        return ()
    return tuple((prompt, style_of_prompt(prompt)) for prompt in playlist)


def style_beats(styles: tuple[tuple[str, str], ...]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(style, beats a frame it was trained at) for each composer style of ``styles``'
    (prompt, style) pairs: the tempi the song form plays each style's songs at."""
    used = {style for _, style in styles}
    return tuple((style.name, style.beats) for style in STYLES if style.name in used)


def compose_loop_image(variation: LoopVariation, beats: int, synth: SynthConfig) -> Image.Image:
    """The spectrogram of a variation, ``beats`` beats in one frame (FluidSynth: slow)."""
    return loop_image(compose_loop_audio(variation, beats, synth))


def compose_loop_audio(variation: LoopVariation, beats: int, synth: SynthConfig) -> np.ndarray:
    """One frame of a variation's audio, a steady-state loop peaking at ``PEAK_LEVEL``."""
    composition = compose_song_loop(
        variation.style, beats, variation.song, variation.groove, variation.drums,
        variation.chord_step, variation.fill,
    )
    events = loop_events(
        composition.programs, composition.notes, composition.steps, FRAME_SECONDS,
        synth.repetitions,
    )
    with tempfile.TemporaryDirectory() as workdir:
        loop = render_loop(standard_midi_file(events), variation.song, synth, Path(workdir))
    return loop * (PEAK_LEVEL / max(float(np.max(np.abs(loop))), 1e-9))


class ComposedLoops:
    """Seed images by name: composed variations, and anything else from ``base_images``.

    ``beats_of`` gives each base loop's beats per frame. Thread-safe: the producer asks, one
    daemon thread composes ahead (at most ``AHEAD`` loops queued; a stopping process does not
    wait for it).
    """

    AHEAD = 4

    def __init__(
        self,
        beats_of: Mapping[str, int],
        base_images: Callable[[str], Image.Image],
        synth: SynthConfig = SONG_SYNTH,
        capacity: int = 32,
        compose: Callable[[LoopVariation, int, SynthConfig], Image.Image] = compose_loop_image,
    ) -> None:
        self._beats_of = beats_of
        self._base_images = base_images
        self._synth = synth
        self._capacity = capacity
        self._compose = compose
        self._lock = threading.Lock()
        self._made: collections.OrderedDict[str, Image.Image] = collections.OrderedDict()
        self._ahead: dict[str, concurrent.futures.Future[Image.Image]] = {}
        self._queued: queue.SimpleQueue[LoopVariation | None] = queue.SimpleQueue()
        self._failed: set[str] = set()
        self._worker = threading.Thread(target=self._compose_queued, name="compose", daemon=True)
        self._worker.start()

    def __call__(self, name: str) -> Image.Image:
        try:
            variation = LoopVariation.parse(name)
        except ValueError:
            return self._base_images(name)
        try:
            image = self._image(variation)
        except Exception as error:  # noqa: BLE001 - any failure: the base loop plays
            cause = f"{type(error).__name__}: {error}"
            if cause not in self._failed:
                self._failed.add(cause)
                log.warning("could not compose seed loop %s (%s); its base loop plays", name, cause)
            return self._base_images(variation.base)
        for later in next_loops(variation):
            self._compose_ahead(later)
        return image

    def _image(self, variation: LoopVariation) -> Image.Image:
        with self._lock:
            image = self._made.get(variation.name)
            ahead = self._ahead.get(variation.name)
        if image is not None:
            return image
        if ahead is not None:
            return ahead.result()
        image = self._compose(variation, self._beats(variation), self._synth)
        self._keep(variation.name, image)
        return image

    def _beats(self, variation: LoopVariation) -> int:
        beats = loop_beats(variation.name, self._beats_of)
        if not beats:
            raise UserError(
                f"seed loop {variation.base!r} does not say its beats: nothing to compose on"
            )
        return beats

    def _keep(self, name: str, image: Image.Image) -> None:
        with self._lock:
            self._made[name] = image
            self._made.move_to_end(name)
            while len(self._made) > self._capacity:
                self._made.popitem(last=False)

    def _compose_ahead(self, variation: LoopVariation) -> None:
        name = variation.name
        with self._lock:
            if name in self._made or name in self._ahead or len(self._ahead) >= self.AHEAD:
                return
            self._ahead[name] = concurrent.futures.Future()
        self._queued.put(variation)

    def _compose_queued(self) -> None:
        """The worker: compose each queued variation, until ``close``."""
        while (variation := self._queued.get()) is not None:
            with self._lock:
                future = self._ahead[variation.name]
            if not future.set_running_or_notify_cancel():
                continue
            try:
                image = self._compose(variation, self._beats(variation), self._synth)
                self._keep(variation.name, image)
                future.set_result(image)
            except Exception as error:  # noqa: BLE001 - told to whoever asks for it
                future.set_exception(error)
            finally:
                with self._lock:
                    self._ahead.pop(variation.name, None)

    def wait_ahead(self) -> None:
        """Wait until the loops queued ahead are composed (or failed)."""
        with self._lock:
            futures = list(self._ahead.values())
        concurrent.futures.wait(futures)

    def close(self) -> None:
        """Stop composing ahead (a loop being composed is finished)."""
        with self._lock:
            for future in self._ahead.values():
                future.cancel()
        self._queued.put(None)
