"""Render the seed-loop library: drum and bass loops that are exactly one 5.12 s frame.

A seed loop is the img2img init image that gives generated frames their rhythm. Each style here is
written as a Standard MIDI File, rendered by FluidSynth with the General MIDI sound font, and
turned into a spectrogram image with the circular STFT, so the image tiles seamlessly: its tempo
makes a whole number of beats fill exactly 225792 samples (512 columns of 441 samples).

The MIDI writing and the rendering (steady-state period, room, circular STFT) live in
``streamer.training.midi`` and ``streamer.training.synth``, shared with ``streamer make-dataset``.

Usage (from the repository root; needs ``fluidsynth`` and ``fluid-soundfont-gm``):

    .venv/bin/python scripts/render_seed_loops.py [--out streamer/seeds/loops]

It rewrites every PNG and ``manifest.json`` in the output folder; the result is deterministic.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from streamer.errors import UserError
from streamer.spectrogram import save_image
from streamer.training.midi import DRUM_CHANNEL, Note, loop_events, standard_midi_file
from streamer.training.synth import (
    DEFAULT_SOUNDFONT,
    FRAME_SECONDS,
    SynthConfig,
    check_synth,
    loop_image,
    render_loop,
)

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "streamer" / "seeds" / "loops"
#: Peak level of the kept loop (its image is normalised anyway; this keeps the audio comparable).
PEAK_LEVEL = 0.8

BASS_CHANNEL = 0

# General MIDI percussion keys.
KICK, SNARE, CLAP, ELECTRIC_SNARE = 36, 38, 39, 40
CLOSED_HAT, OPEN_HAT, RIDE, SHAKER = 42, 46, 51, 70

#: Velocity of each grid letter: accent, normal, ghost.
VELOCITIES = {"X": 118, "x": 92, "o": 52}


@dataclasses.dataclass(frozen=True)
class Style:
    """One loop: drum rows and a bass line on a 16th-note grid, tiled to fill the frame.

    Drum rows are strings with one character per 16th note ('X' accent, 'x' hit, 'o' ghost,
    '.' rest), as long as one cell; the cell repeats to fill ``beats``. The bass line covers the
    whole loop: (16th step, length in 16ths, MIDI key).
    """

    name: str
    beats: int
    description: str
    drum_kit: int  # program in GM drum bank 128
    bass_program: int  # General MIDI program, 0-based
    drums: dict[int, str]
    bass: tuple[tuple[int, int, int], ...]
    swing: float = 0.0  # delay of every second 16th, in 16ths

    def __post_init__(self) -> None:
        for key, row in self.drums.items():
            if self.steps % len(row):
                raise ValueError(f"{self.name}: drum row {key} of {len(row)} steps does not tile "
                                 f"{self.steps} steps")
        if any(step + length > self.steps for step, length, _ in self.bass):
            raise ValueError(f"{self.name}: a bass note runs past the end of the loop")

    @property
    def bpm(self) -> Fraction:
        return self.beats * 60 / FRAME_SECONDS

    @property
    def steps(self) -> int:
        return 4 * self.beats


def bass_line(steps: int, pattern: list[tuple[int, int, int]], cell: int) -> tuple:
    """A bass pattern of ``cell`` 16ths tiled over ``steps``."""
    return tuple(
        (start + offset, length, key)
        for start in range(0, steps, cell)
        for offset, length, key in pattern
        if start + offset < steps
    )


STYLES = [
    Style(
        name="boom_bap_94",
        beats=8,
        description="Boom-bap hip hop, 93.75 BPM, two bars: swung hats, snare on 2 and 4, "
        "kick pushes, a fingered electric bass following the kick.",
        drum_kit=0,
        bass_program=33,
        swing=0.3,
        drums={
            KICK: "X.........X.x...X.x.......X.....",
            SNARE: "....X.......X.......X.......X..o",
            CLOSED_HAT: "x.x.x.x.x.x.x.x.x.x.x.x.x.x.o.x.",
            OPEN_HAT: "..............x.................",
        },
        bass=((0, 6, 40), (10, 2, 40), (12, 3, 43), (16, 4, 45), (18, 4, 45), (26, 6, 38)),
    ),
    Style(
        name="reggaeton_94",
        beats=8,
        description="Reggaeton dembow, 93.75 BPM, two bars: four-on-the-floor kick, the "
        "3-3-2 snare figure, shaker 16ths and a synth bass on the kick.",
        drum_kit=24,
        bass_program=38,
        drums={
            KICK: "X...X...X...X...",
            ELECTRIC_SNARE: "...x..x....x..x.",
            CLOSED_HAT: "x.x.x.x.x.x.x.x.",
            SHAKER: "oxoxoxoxoxoxoxox",
        },
        bass=((0, 3, 45), (6, 2, 45), (8, 3, 41), (14, 2, 41), (16, 3, 36), (22, 2, 36),
              (24, 3, 43), (30, 2, 43)),
    ),
    Style(
        name="house_117",
        beats=10,
        description="Four-on-the-floor house, 117.1875 BPM, ten beats: kick on every beat, clap "
        "on the backbeat, open hats on the off-beats, off-beat synth bass.",
        drum_kit=24,
        bass_program=38,
        drums={
            KICK: "X...x...",
            CLAP: "....x...",
            CLOSED_HAT: "oxo.oxo.",
            OPEN_HAT: "..x...x.",
        },
        bass=((2, 2, 33), (6, 2, 33), (10, 2, 36), (14, 1, 33), (15, 1, 45), (18, 2, 31),
              (22, 2, 31), (26, 2, 31), (30, 2, 38), (34, 2, 33), (38, 2, 40)),
    ),
    Style(
        name="techno_141",
        beats=12,
        description="Driving techno, 140.625 BPM, three bars: kick on every beat, 16th hats with "
        "off-beat accents, clap on 2 and 4, rolling off-beat bass.",
        drum_kit=24,
        bass_program=38,
        drums={
            KICK: "X...X...X...X...",
            CLAP: "....x.......x...",
            CLOSED_HAT: "oxXxoxXxoxXxoxXx",
            RIDE: "..o...o...o...o.",
        },
        bass=bass_line(48, [(1, 1, 29), (2, 1, 29), (3, 1, 29)], cell=4),
    ),
    Style(
        name="trap_141",
        beats=12,
        description="Half-time trap, 140.625 BPM, three bars: TR-808 kit, snare on beat 3, "
        "8th hats with 16th-note rolls, long sub-bass notes on the kick.",
        drum_kit=25,
        bass_program=39,
        drums={
            KICK: "X.....x...x.....X.......x.x.....X.....x.........",
            CLAP: "........X...............X...............X.......",
            CLOSED_HAT: "x.x.x.x.xxx.x.x.x.x.x.xxxxx.x.x.x.x.x.x.x.xxxxxx",
        },
        bass=((0, 6, 31), (6, 4, 31), (10, 6, 34), (16, 8, 29), (24, 2, 29), (26, 6, 36),
              (32, 6, 31), (38, 10, 26)),
    ),
    Style(
        name="dnb_188",
        beats=16,
        description="Drum and bass two-step, 187.5 BPM, four bars: kick on 1 and the and of 3, "
        "snare on 2 and 4 with ghost notes, 8th hats and ride, a long reese-style bass line.",
        drum_kit=16,
        bass_program=39,
        drums={
            KICK: "X.........X.....X.........x...x.",
            SNARE: "....X..o.o..X.......X..o....X.o.",
            CLOSED_HAT: "x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.",
            RIDE: "....................o...o...o...",
        },
        bass=((0, 14, 38), (16, 14, 41), (32, 12, 36), (44, 4, 43), (48, 16, 33)),
    ),
]


def notes(style: Style, seed: int) -> list[Note]:
    """The notes of one repetition of the loop, velocities humanised (the same in every
    repetition, so the render settles into a true loop)."""

    def swung(step: int) -> Fraction:
        return Fraction(step) + (Fraction(style.swing).limit_denominator(100) if step % 2 else 0)

    rng = random.Random(seed)
    out = []
    for key, row in style.drums.items():
        for step in range(style.steps):
            letter = row[step % len(row)]
            if letter == ".":
                continue
            velocity = max(1, min(127, VELOCITIES[letter] + rng.randint(-6, 6)))
            start = swung(step)
            out.append(Note(DRUM_CHANNEL, key, velocity, start, start + Fraction(1, 2)))
    for step, length, key in style.bass:
        velocity = 100 + rng.randint(-8, 8)
        end = step + length - Fraction(1, 8)  # a short gap: re-articulate
        out.append(Note(BASS_CHANNEL, key, velocity, swung(step), end))
    return out


def render_style_audio(style: Style, index: int, config: SynthConfig, workdir: Path) -> np.ndarray:
    """One period of the ``index``-th style's loop, peaking at ``PEAK_LEVEL`` (the index seeds
    its humanisation and room)."""
    programs = [(DRUM_CHANNEL, style.drum_kit), (BASS_CHANNEL, style.bass_program)]
    events = loop_events(programs, notes(style, seed=index), style.steps, FRAME_SECONDS,
                         config.repetitions)
    loop = render_loop(standard_midi_file(events), index, config, workdir)
    return loop * (PEAK_LEVEL / np.max(np.abs(loop)))


def render_style(style: Style, index: int, config: SynthConfig, workdir: Path) -> Image.Image:
    """The seed image of the ``index``-th style."""
    return loop_image(render_style_audio(style, index, config, workdir))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--soundfont", type=Path, default=DEFAULT_SOUNDFONT)
    args = parser.parse_args(argv)
    config = SynthConfig(soundfont=args.soundfont)
    try:
        check_synth(config.soundfont)
    except UserError as error:
        sys.exit(str(error))
    args.out.mkdir(parents=True, exist_ok=True)

    manifest = []
    with tempfile.TemporaryDirectory() as workdir:
        for index, style in enumerate(STYLES):
            file = f"{style.name}.png"
            save_image(render_style(style, index, config, Path(workdir)), args.out / file)
            bpm = float(style.bpm)
            assert bpm == style.bpm, "tempo must be exact in binary floating point"
            manifest.append(
                {"name": style.name, "file": file, "bpm": bpm, "beats": style.beats,
                 "description": style.description}
            )
            print(f"{file:18} {bpm:9.4f} BPM {style.beats:3} beats")
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {len(manifest)} loops and manifest.json to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
