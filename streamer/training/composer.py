"""The procedural composer of the built-in model's training data: (seed, clip index) -> a loop.

Pure and deterministic: no I/O, no global random state, the same (seed, index) always gives the
same composition. Each composition is one 5.12 s frame holding a whole number of beats, so it
loops as the seed loops do, with parts (drums, bass, chords, pad, arpeggio, melody) on General
MIDI channels, and the caption and labels that say what the MIDI holds.

Styles differ where a classifier of spectrograms can hear them: tempo, drum kit and groove,
swing, bass rhythm, the instruments each part is drawn from, and the harmony (triads or sevenths,
progressions). Some clips are prompt-contrast material: "drum kit only" (drums and nothing else)
and "solo piano, no drums" (one instrument playing bass, chords and melody).
"""

from __future__ import annotations

import dataclasses
import random
from fractions import Fraction
from typing import Any

from streamer.plan.arranger import CHORDS_PER_FRAME, PROGRESSION_CHORDS
from streamer.training.midi import DRUM_CHANNEL, Note
from streamer.training.synth import FRAME_SECONDS

STEPS_PER_BEAT = 4  # the grid is 16th notes
STEPS_PER_BAR = 16

# --- instruments -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Instrument:
    """A General MIDI melodic instrument: the words captions use for it, its program (0-based)
    and its family (the label a lead-instrument classifier learns)."""

    name: str
    program: int
    family: str


_INSTRUMENT_LIST = [
    # keys
    Instrument("piano", 0, "piano"),
    Instrument("rhodes", 4, "piano"),
    Instrument("electric piano", 5, "piano"),
    Instrument("clavinet", 7, "piano"),
    # mallets
    Instrument("celesta", 8, "mallet"),
    Instrument("glockenspiel", 9, "mallet"),
    Instrument("music box", 10, "mallet"),
    Instrument("vibraphone", 11, "mallet"),
    Instrument("marimba", 12, "mallet"),
    Instrument("kalimba", 108, "mallet"),
    # organs
    Instrument("organ", 16, "organ"),
    Instrument("rock organ", 18, "organ"),
    Instrument("church organ", 19, "organ"),
    Instrument("accordion", 21, "organ"),
    Instrument("harmonica", 22, "reed"),
    # guitars
    Instrument("nylon guitar", 24, "guitar"),
    Instrument("acoustic guitar", 25, "guitar"),
    Instrument("jazz guitar", 26, "guitar"),
    Instrument("clean electric guitar", 27, "guitar"),
    Instrument("muted guitar", 28, "guitar"),
    Instrument("overdriven guitar", 29, "guitar"),
    Instrument("distorted guitar", 30, "guitar"),
    # basses
    Instrument("upright bass", 32, "bass"),
    Instrument("electric bass", 33, "bass"),
    Instrument("picked bass", 34, "bass"),
    Instrument("fretless bass", 35, "bass"),
    Instrument("slap bass", 36, "bass"),
    Instrument("synth bass", 38, "bass"),
    Instrument("deep synth bass", 39, "bass"),
    # strings
    Instrument("violin", 40, "strings"),
    Instrument("cello", 42, "strings"),
    Instrument("pizzicato strings", 45, "strings"),
    Instrument("harp", 46, "strings"),
    Instrument("strings", 48, "strings"),
    Instrument("slow strings", 49, "strings"),
    Instrument("synth strings", 50, "strings"),
    # brass
    Instrument("trumpet", 56, "brass"),
    Instrument("trombone", 57, "brass"),
    Instrument("muted trumpet", 59, "brass"),
    Instrument("french horn", 60, "brass"),
    Instrument("brass section", 61, "brass"),
    Instrument("synth brass", 62, "brass"),
    # reeds and pipes
    Instrument("soprano sax", 64, "reed"),
    Instrument("alto sax", 65, "reed"),
    Instrument("tenor sax", 66, "reed"),
    Instrument("clarinet", 71, "reed"),
    Instrument("flute", 73, "pipe"),
    Instrument("pan flute", 75, "pipe"),
    # synth leads and pads
    Instrument("square lead", 80, "lead"),
    Instrument("saw lead", 81, "lead"),
    Instrument("synth lead", 87, "lead"),
    Instrument("warm pad", 89, "pad"),
    Instrument("polysynth pad", 90, "pad"),
    Instrument("choir pad", 91, "pad"),
    Instrument("halo pad", 94, "pad"),
    Instrument("sweep pad", 95, "pad"),
]
INSTRUMENTS: dict[str, Instrument] = {item.name: item for item in _INSTRUMENT_LIST}
DRUM_KIT = "drum kit"  # the lead and the family of a drums-only clip

# General MIDI drum bank (128) programs and percussion keys.
KITS = {"standard": 0, "room": 8, "power": 16, "electronic": 24, "808": 25, "jazz": 32,
        "brush": 40}
KICK, RIM, SNARE, CLAP, E_SNARE = 36, 37, 38, 39, 40
CLOSED_HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE, RIDE_BELL = 42, 44, 46, 49, 51, 53
LOW_TOM, MID_TOM, HIGH_TOM = 45, 47, 50
TAMBOURINE, COWBELL, HIGH_CONGA, LOW_CONGA, CABASA, SHAKER, CLAVES = 54, 56, 62, 64, 69, 70, 75

#: Velocity of each drum-grid letter: accent, normal, ghost.
DRUM_VELOCITIES = {"X": 116, "x": 90, "o": 50}

# --- styles ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Style:
    """What makes a style recognisable.

    Drum grooves are rows of one character per 16th ('X' accent, 'x' hit, 'o' ghost, '.' rest),
    tiled over the loop; ``grooves`` are the busy versions, ``sparse_grooves`` thinner ones. Bass
    and comping rhythms are one bar of (16th step, length in 16ths[, chord tone]) where the tone
    is the scale step above the chord root (0 root, 2 third, 4 fifth, 7 octave). Progressions are
    0-based scale degrees, spread evenly over the loop's beats.
    """

    name: str
    words: str  # the style in plain words
    phrase: str  # how captions name it
    beats: tuple[int, ...]  # whole beats per 5.12 s frame: the tempi of the style
    kits: tuple[str, ...]
    grooves: tuple[dict[int, str], ...]
    sparse_grooves: tuple[dict[int, str], ...]
    bass_rhythms: tuple[tuple[tuple[int, int, int], ...], ...]
    comp_rhythms: tuple[tuple[tuple[int, int], ...], ...]
    major_progressions: tuple[tuple[int, ...], ...]
    minor_progressions: tuple[tuple[int, ...], ...]
    bass: tuple[str, ...]
    chords: tuple[str, ...]
    pads: tuple[str, ...]
    arps: tuple[str, ...]
    melodies: tuple[str, ...]
    sevenths: float  # probability of seventh (and ninth) chords
    minor_share: float  # probability of minor mode
    drums_share: float  # probability that an ensemble clip has drums
    swing: Fraction = Fraction(0)  # delay of off-beat 16ths (or 8ths, below), in 16ths
    swing_eighths: bool = False
    chord_octave: int = 4  # octave of the chord voicing's floor (MIDI octave, C4 = 60)


def _bar(*rows: tuple[int, str]) -> dict[int, str]:
    return dict(rows)


ROOT, THIRD, FIFTH, SIXTH, SEVENTH, OCTAVE = 0, 2, 4, 5, 6, 7

STYLES: tuple[Style, ...] = (
    Style(
        name="house",
        words="house",
        phrase="house track",
        beats=(10, 11),
        kits=("electronic", "808"),
        grooves=(
            _bar((KICK, "X...X...X...X..."), (CLAP, "....x.......x..."),
                 (CLOSED_HAT, "o.o.o.o.o.o.o.o."), (OPEN_HAT, "..x...x...x...x.")),
            _bar((KICK, "X...X...X...X..."), (CLAP, "....x.......x..."),
                 (CLOSED_HAT, "oxo.oxo.oxo.oxo."), (OPEN_HAT, "..x...x...x...x."),
                 (SHAKER, "oooooooooooooooo")),
        ),
        sparse_grooves=(
            _bar((KICK, "X...X...X...X..."), (OPEN_HAT, "..x...x...x...x.")),
        ),
        bass_rhythms=(((2, 2, ROOT), (6, 2, ROOT), (10, 2, ROOT), (14, 2, OCTAVE)),
                      ((2, 1, ROOT), (3, 1, ROOT), (6, 2, ROOT), (10, 1, ROOT), (14, 2, FIFTH))),
        comp_rhythms=(((2, 1), (6, 1), (10, 1), (14, 1)), ((0, 2), (3, 2), (6, 1), (10, 2))),
        major_progressions=((0, 3, 4, 3), (0, 5, 3, 4), (0, 0, 3, 3)),
        minor_progressions=((0, 5, 6, 5), (0, 3, 0, 3), (0, 6, 5, 6)),
        bass=("synth bass", "deep synth bass", "electric bass"),
        chords=("organ", "electric piano", "piano", "rhodes", "brass section"),
        pads=("warm pad", "strings", "synth strings"),
        arps=("square lead", "marimba", "electric piano"),
        melodies=("saw lead", "synth lead", "alto sax", "flute"),
        sevenths=0.6,
        minor_share=0.6,
        drums_share=0.95,
    ),
    Style(
        name="techno",
        words="techno",
        phrase="techno track",
        beats=(11, 12),
        kits=("electronic", "808"),
        grooves=(
            _bar((KICK, "X...X...X...X..."), (CLAP, "....x.......x..."),
                 (CLOSED_HAT, "oxXxoxXxoxXxoxXx"), (RIDE, "..o...o...o...o.")),
            _bar((KICK, "X...X...X...X..."), (RIM, "...x..x....x..x."),
                 (CLOSED_HAT, "xxXxxxXxxxXxxxXx"), (OPEN_HAT, "..x...x...x...x.")),
        ),
        sparse_grooves=(
            _bar((KICK, "X...X...X...X..."), (CLOSED_HAT, "..x...x...x...x.")),
        ),
        bass_rhythms=(((1, 1, ROOT), (2, 1, ROOT), (3, 1, ROOT), (5, 1, ROOT), (6, 1, ROOT),
                       (7, 1, ROOT), (9, 1, ROOT), (10, 1, ROOT), (11, 1, ROOT), (13, 1, ROOT),
                       (14, 1, ROOT), (15, 1, OCTAVE)),
                      ((2, 2, ROOT), (6, 2, ROOT), (10, 2, ROOT), (14, 2, ROOT))),
        comp_rhythms=(((3, 1), (6, 1), (11, 1)), ((0, 1), (3, 1), (6, 1), (10, 1), (13, 1))),
        major_progressions=((0, 0), (0, 5)),
        minor_progressions=((0, 0), (0, 5), (0, 6)),
        bass=("synth bass", "deep synth bass"),
        chords=("synth brass", "polysynth pad", "organ", "synth strings"),
        pads=("sweep pad", "halo pad", "synth strings"),
        arps=("square lead", "saw lead", "synth lead"),
        melodies=("saw lead", "square lead"),
        sevenths=0.2,
        minor_share=0.85,
        drums_share=0.95,
    ),
    Style(
        name="boom_bap",
        words="boom bap",
        phrase="boom bap beat",
        beats=(7, 8),
        kits=("standard", "room"),
        grooves=(
            _bar((KICK, "X.........X.x..."), (SNARE, "....X.......X..o"),
                 (CLOSED_HAT, "x.x.x.x.x.x.x.x."), (OPEN_HAT, "..............x.")),
            _bar((KICK, "X......x..X....."), (SNARE, "....X..o....X..."),
                 (CLOSED_HAT, "x.x.x.x.x.x.x.o.")),
        ),
        sparse_grooves=(_bar((KICK, "X.........X....."), (SNARE, "....X.......X..."),
                             (CLOSED_HAT, "x...x...x...x...")),),
        bass_rhythms=(((0, 6, ROOT), (10, 2, ROOT), (12, 3, FIFTH)),
                      ((0, 3, ROOT), (7, 3, ROOT), (10, 4, THIRD))),
        comp_rhythms=(((0, 8), (8, 8)), ((0, 3), (6, 2), (10, 4))),
        major_progressions=((0, 3), (1, 4), (0, 5, 3, 4)),
        minor_progressions=((0, 3), (0, 5), (0, 6, 5, 4)),
        bass=("electric bass", "upright bass", "fretless bass"),
        chords=("rhodes", "piano", "vibraphone", "jazz guitar"),
        pads=("strings", "slow strings"),
        arps=("vibraphone", "harp"),
        melodies=("flute", "muted trumpet", "vibraphone", "tenor sax", "violin"),
        sevenths=0.8,
        minor_share=0.75,
        drums_share=0.92,
        swing=Fraction(3, 10),
        chord_octave=4,
    ),
    Style(
        name="trap",
        words="trap",
        phrase="trap beat",
        beats=(12,),
        kits=("808",),
        grooves=(
            _bar((KICK, "X.....x...x....."), (CLAP, "........X......."),
                 (CLOSED_HAT, "x.x.x.x.xxx.x.x."), (OPEN_HAT, "..............x.")),
            _bar((KICK, "X.......x.x....."), (CLAP, "........X......."),
                 (CLOSED_HAT, "xxx.x.x.x.xxxxxx")),
        ),
        sparse_grooves=(_bar((KICK, "X.........x....."), (CLAP, "........X......."),
                             (CLOSED_HAT, "x...x...x...x.x.")),),
        bass_rhythms=(((0, 6, ROOT), (6, 4, ROOT), (10, 6, ROOT)),
                      ((0, 10, ROOT), (10, 6, FIFTH))),
        comp_rhythms=(((0, 16),), ((0, 3), (3, 3), (6, 10))),
        major_progressions=((0, 5), (0, 3, 5, 4)),
        minor_progressions=((0, 5, 0, 6), (0, 1, 0, 5), (0, 5, 2, 6)),
        bass=("deep synth bass",),
        chords=("piano", "slow strings", "choir pad", "music box"),
        pads=("choir pad", "halo pad", "slow strings"),
        arps=("glockenspiel", "music box", "celesta", "pizzicato strings"),
        melodies=("glockenspiel", "flute", "saw lead", "celesta"),
        sevenths=0.1,
        minor_share=0.9,
        drums_share=0.95,
        chord_octave=4,
    ),
    Style(
        name="drum_and_bass",
        words="drum and bass",
        phrase="drum and bass",
        beats=(15, 16),
        kits=("power", "standard"),
        grooves=(
            _bar((KICK, "X.........X....."), (SNARE, "....X..o.o..X..o"),
                 (CLOSED_HAT, "x.x.x.x.x.x.x.x."), (RIDE, "..o...o...o...o.")),
            _bar((KICK, "X.........x.X..."), (SNARE, "....X.......X.o."),
                 (CLOSED_HAT, "xxx.xxx.xxx.xxx."), (SHAKER, "oooooooooooooooo")),
        ),
        sparse_grooves=(_bar((KICK, "X.........X....."), (SNARE, "....X.......X..."),
                             (RIDE, "x...x...x...x...")),),
        bass_rhythms=(((0, 14, ROOT),), ((0, 6, ROOT), (10, 6, FIFTH))),
        comp_rhythms=(((0, 16),), ((0, 2), (6, 2), (10, 6))),
        major_progressions=((0, 5, 3, 4), (0, 3)),
        minor_progressions=((0, 5, 2, 6), (0, 3), (0, 6, 5, 6)),
        bass=("deep synth bass", "synth bass", "fretless bass"),
        chords=("slow strings", "rhodes", "warm pad", "electric piano"),
        pads=("warm pad", "halo pad", "sweep pad", "slow strings"),
        arps=("electric piano", "glockenspiel", "square lead"),
        melodies=("flute", "saw lead", "soprano sax", "violin"),
        sevenths=0.6,
        minor_share=0.8,
        drums_share=0.95,
    ),
    Style(
        name="reggaeton",
        words="reggaeton",
        phrase="reggaeton beat",
        beats=(8,),
        kits=("electronic", "808"),
        grooves=(
            _bar((KICK, "X...X...X...X..."), (E_SNARE, "...x..x....x..x."),
                 (CLOSED_HAT, "x.x.x.x.x.x.x.x.")),
            _bar((KICK, "X...X...X...X..."), (E_SNARE, "...x..x....x..x."),
                 (SHAKER, "oxoxoxoxoxoxoxox"), (HIGH_CONGA, "..x...x...x...x.")),
        ),
        sparse_grooves=(_bar((KICK, "X...X...X...X..."), (E_SNARE, "...x..x....x..x.")),),
        bass_rhythms=(((0, 3, ROOT), (6, 2, ROOT), (8, 3, ROOT), (14, 2, FIFTH)),
                      ((0, 3, ROOT), (3, 3, ROOT), (6, 2, FIFTH), (8, 3, ROOT), (11, 3, ROOT),
                       (14, 2, OCTAVE))),
        comp_rhythms=(((0, 3), (3, 3), (6, 2), (8, 3), (11, 3), (14, 2)),
                      ((3, 1), (6, 2), (11, 1), (14, 2))),
        major_progressions=((0, 4, 5, 3), (0, 3, 4, 4)),
        minor_progressions=((0, 5, 2, 6), (0, 6, 5, 4), (0, 3, 6, 5)),
        bass=("synth bass", "deep synth bass"),
        chords=("nylon guitar", "piano", "polysynth pad", "marimba"),
        pads=("warm pad", "polysynth pad"),
        arps=("marimba", "nylon guitar", "pizzicato strings"),
        melodies=("synth lead", "pan flute", "trumpet", "accordion"),
        sevenths=0.1,
        minor_share=0.8,
        drums_share=0.95,
    ),
    Style(
        name="jazz",
        words="jazz",
        phrase="jazz",
        beats=(9, 10, 11, 12),
        kits=("jazz", "brush"),
        grooves=(
            _bar((RIDE, "x...x.x.x...x.x."), (PEDAL_HAT, "....x.......x..."),
                 (KICK, "o..............."), (SNARE, "..........o...o.")),
            _bar((RIDE, "x...x.x.x...x.x."), (PEDAL_HAT, "....x.......x..."),
                 (SNARE, "......o.....o.o.")),
        ),
        sparse_grooves=(_bar((RIDE, "x...x.x.x...x.x."), (PEDAL_HAT, "....x.......x...")),),
        bass_rhythms=(((0, 4, ROOT), (4, 4, THIRD), (8, 4, FIFTH), (12, 4, SIXTH)),
                      ((0, 4, ROOT), (4, 4, FIFTH), (8, 4, OCTAVE), (12, 4, FIFTH))),
        comp_rhythms=(((0, 3), (6, 2)), ((2, 2), (10, 3)), ((0, 2), (7, 2), (12, 2))),
        major_progressions=((1, 4, 0, 0), (1, 4, 0, 5), (0, 5, 1, 4)),
        minor_progressions=((1, 4, 0, 0), (0, 3, 1, 4), (0, 5, 1, 4)),
        bass=("upright bass",),
        chords=("piano", "jazz guitar", "vibraphone", "rhodes"),
        pads=("slow strings", "strings"),
        arps=("vibraphone", "harp", "piano"),
        melodies=("tenor sax", "alto sax", "trumpet", "muted trumpet", "clarinet", "trombone",
                  "vibraphone"),
        sevenths=1.0,
        minor_share=0.45,
        drums_share=0.85,
        swing=Fraction(2, 3),
        swing_eighths=True,
        chord_octave=4,
    ),
    Style(
        name="funk",
        words="funk",
        phrase="funk groove",
        beats=(8, 9, 10),
        kits=("standard", "room"),
        grooves=(
            _bar((KICK, "X..x..x...X....."), (SNARE, "....X..o.o..X..o"),
                 (CLOSED_HAT, "xxxxxxxxxxxxxxxx")),
            _bar((KICK, "X.x...x..xX....."), (SNARE, "....X.o.....X.o."),
                 (CLOSED_HAT, "x.xxx.xxx.xxx.x."), (OPEN_HAT, "......x.......x."),
                 (COWBELL, "x...x...x...x...")),
        ),
        sparse_grooves=(_bar((KICK, "X.....x...X....."), (SNARE, "....X.......X..."),
                             (CLOSED_HAT, "x.x.x.x.x.x.x.x.")),),
        bass_rhythms=(((0, 2, ROOT), (3, 1, OCTAVE), (6, 1, ROOT), (7, 1, FIFTH), (10, 2, ROOT),
                       (14, 1, OCTAVE)),
                      ((0, 1, ROOT), (2, 1, OCTAVE), (4, 1, ROOT), (7, 2, SEVENTH), (10, 1, ROOT),
                       (11, 1, FIFTH), (13, 2, OCTAVE))),
        comp_rhythms=(((2, 1), (4, 1), (7, 1), (10, 1), (12, 1), (15, 1)),
                      ((1, 1), (3, 1), (6, 1), (9, 1), (11, 1), (14, 1))),
        major_progressions=((0, 0, 3, 3), (0, 3), (0, 6, 3, 0)),
        minor_progressions=((0, 0, 3, 3), (0, 3), (0, 6)),
        bass=("slap bass", "electric bass", "picked bass"),
        chords=("clavinet", "muted guitar", "clean electric guitar", "rhodes"),
        pads=("brass section", "organ"),
        arps=("clavinet", "muted guitar"),
        melodies=("brass section", "trumpet", "alto sax", "synth brass", "organ"),
        sevenths=0.9,
        minor_share=0.55,
        drums_share=0.92,
        swing=Fraction(1, 8),
    ),
    Style(
        name="rock",
        words="rock",
        phrase="rock",
        beats=(10, 11, 12),
        kits=("power", "standard"),
        grooves=(
            _bar((KICK, "X.......X.x....."), (SNARE, "....X.......X..."),
                 (CLOSED_HAT, "x.x.x.x.x.x.x.x."), (CRASH, "X...............")),
            _bar((KICK, "X.x.....X.x....."), (SNARE, "....X.......X..x"),
                 (RIDE, "x.x.x.x.x.x.x.x."), (LOW_TOM, "..............x.")),
        ),
        sparse_grooves=(_bar((KICK, "X.......X......."), (SNARE, "....X.......X..."),
                             (CLOSED_HAT, "x...x...x...x...")),),
        bass_rhythms=(((0, 2, ROOT), (2, 2, ROOT), (4, 2, ROOT), (6, 2, ROOT), (8, 2, ROOT),
                       (10, 2, ROOT), (12, 2, ROOT), (14, 2, ROOT)),
                      ((0, 6, ROOT), (6, 2, ROOT), (8, 6, FIFTH), (14, 2, OCTAVE))),
        comp_rhythms=(((0, 2), (2, 2), (4, 2), (6, 2), (8, 2), (10, 2), (12, 2), (14, 2)),
                      ((0, 6), (6, 2), (8, 8))),
        major_progressions=((0, 4, 5, 3), (0, 3, 4, 3), (0, 6, 3, 0)),
        minor_progressions=((0, 6, 5, 6), (0, 5, 2, 6), (0, 3, 6, 0)),
        bass=("picked bass", "electric bass"),
        chords=("overdriven guitar", "distorted guitar", "clean electric guitar",
                "acoustic guitar", "rock organ"),
        pads=("rock organ", "strings"),
        arps=("clean electric guitar", "acoustic guitar"),
        melodies=("overdriven guitar", "distorted guitar", "rock organ", "harmonica"),
        sevenths=0.0,
        minor_share=0.45,
        drums_share=0.95,
        chord_octave=3,
    ),
    Style(
        name="ambient",
        words="ambient",
        phrase="ambient",
        beats=(5, 6),
        kits=("electronic",),
        grooves=(_bar((KICK, "X.......x......."), (SHAKER, "..o...o...o...o.")),),
        sparse_grooves=(_bar((KICK, "X..............."), (RIDE, "........o.......")),),
        bass_rhythms=(((0, 16, ROOT),), ((0, 12, ROOT), (12, 4, FIFTH))),
        comp_rhythms=(((0, 16),), ((0, 8), (8, 8))),
        major_progressions=((0, 3), (0, 5, 3, 0), (0, 4)),
        minor_progressions=((0, 5), (0, 3), (0, 6, 5, 0)),
        bass=("fretless bass", "synth bass", "cello"),
        chords=("warm pad", "halo pad", "slow strings", "choir pad", "church organ"),
        pads=("warm pad", "halo pad", "sweep pad", "choir pad", "slow strings"),
        arps=("glockenspiel", "celesta", "harp", "kalimba", "music box"),
        melodies=("flute", "pan flute", "violin", "french horn", "halo pad"),
        sevenths=0.5,
        minor_share=0.5,
        drums_share=0.15,
        chord_octave=4,
    ),
    Style(
        name="lofi",
        words="lo-fi",
        phrase="lo-fi hip hop beat",
        beats=(6, 7),
        kits=("standard", "brush", "room"),
        grooves=(
            _bar((KICK, "X......x..X....."), (SNARE, "....X.......X..."),
                 (CLOSED_HAT, "x.x.x.x.x.x.x.x.")),
            _bar((KICK, "X.........X..x.."), (RIM, "....X.......X..."),
                 (CLOSED_HAT, "x.o.x.o.x.o.x.o."), (SHAKER, "..o...o...o...o.")),
        ),
        sparse_grooves=(_bar((KICK, "X.........X....."), (RIM, "....x.......x...")),),
        bass_rhythms=(((0, 6, ROOT), (8, 4, FIFTH), (14, 2, THIRD)),
                      ((0, 10, ROOT), (10, 6, FIFTH))),
        comp_rhythms=(((0, 7), (7, 9)), ((0, 16),), ((0, 3), (8, 6))),
        major_progressions=((1, 4, 0, 5), (3, 2, 1, 0), (0, 5, 1, 4)),
        minor_progressions=((0, 3, 6, 2), (0, 5, 3, 4), (0, 3)),
        bass=("upright bass", "electric bass", "fretless bass"),
        chords=("rhodes", "electric piano", "piano", "nylon guitar"),
        pads=("warm pad", "slow strings"),
        arps=("music box", "kalimba", "vibraphone"),
        melodies=("vibraphone", "flute", "muted trumpet", "clarinet", "kalimba"),
        sevenths=0.95,
        minor_share=0.6,
        drums_share=0.9,
        swing=Fraction(7, 20),
        chord_octave=4,
    ),
    Style(
        name="bossa_nova",
        words="bossa nova",
        phrase="bossa nova",
        beats=(10, 11, 12),
        kits=("brush", "jazz"),
        grooves=(
            _bar((RIM, "x..x..x...x..x.."), (KICK, "x..xx..xx..xx..x"),
                 (CLOSED_HAT, "xxxxxxxxxxxxxxxx")),
            _bar((RIM, "x..x..x...x..x.."), (KICK, "x..x....x..x...."),
                 (SHAKER, "oxoxoxoxoxoxoxox"), (CABASA, "..x...x...x...x.")),
        ),
        sparse_grooves=(_bar((RIM, "x..x..x...x..x.."), (SHAKER, "o.o.o.o.o.o.o.o.")),),
        bass_rhythms=(((0, 6, ROOT), (6, 2, FIFTH), (8, 6, FIFTH), (14, 2, ROOT)),
                      ((0, 6, ROOT), (6, 2, FIFTH), (8, 8, ROOT))),
        comp_rhythms=(((0, 2), (3, 2), (6, 2), (10, 2), (13, 2)),
                      ((0, 3), (3, 3), (8, 2), (12, 3))),
        major_progressions=((0, 1, 4, 0), (1, 4, 0, 0), (0, 3, 1, 4)),
        minor_progressions=((0, 3, 1, 4), (0, 0, 3, 4), (1, 4, 0, 0)),
        bass=("upright bass", "fretless bass"),
        chords=("nylon guitar", "piano", "rhodes"),
        pads=("strings", "slow strings"),
        arps=("nylon guitar", "vibraphone", "harp"),
        melodies=("flute", "soprano sax", "tenor sax", "clarinet", "vibraphone"),
        sevenths=1.0,
        minor_share=0.5,
        drums_share=0.85,
    ),
)
STYLE_NAMES = tuple(style.name for style in STYLES)

#: Instruments that carry a whole arrangement alone, for "solo X, no drums" clips, and how often
#: each is drawn (the piano most: "solo piano" is the contrast prompt people reach for).
SOLO_INSTRUMENTS = {"piano": 4, "rhodes": 1, "nylon guitar": 1, "acoustic guitar": 1,
                    "jazz guitar": 1, "vibraphone": 1, "marimba": 1, "harp": 1, "organ": 1,
                    "electric piano": 1}


@dataclasses.dataclass(frozen=True)
class ComposerConfig:
    """How often the contrast material and the optional parts appear."""

    drums_only_share: float = 0.08
    solo_share: float = 0.08
    sparse_share: float = 0.45
    pad_share: float = 0.35
    arp_share: float = 0.35
    melody_share: float = 0.6
    velocity_jitter: int = 7  # +- humanisation of every velocity


# --- compositions ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Part:
    """One MIDI channel of a composition: what it plays (``role``) and on what."""

    role: str  # drums, bass, chords, pad, arpeggio or melody
    channel: int
    program: int  # GM program; for drums the kit's program in bank 128
    instrument: str  # name in INSTRUMENTS, or DRUM_KIT
    notes: tuple[Note, ...]


@dataclasses.dataclass(frozen=True)
class Composition:
    """A loop of ``beats`` beats filling one 5.12 s frame, with its caption and labels."""

    seed: int
    index: int
    style: str
    beats: int
    parts: tuple[Part, ...]
    caption: str
    labels: dict[str, Any]

    @property
    def steps(self) -> int:
        return STEPS_PER_BEAT * self.beats

    @property
    def bpm(self) -> Fraction:
        return loop_bpm(self.beats)

    @property
    def programs(self) -> list[tuple[int, int]]:
        return [(part.channel, part.program) for part in self.parts]

    @property
    def notes(self) -> list[Note]:
        return [note for part in self.parts for note in part.notes]


MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
KEY_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
ROLE_WORDS = {"chords": "chords", "arpeggio": "arpeggios", "melody": "melody", "pad": "",
              "bass": ""}


class _Harmony:
    """Scale degrees of one key and mode to MIDI keys."""

    def __init__(self, tonic: int, minor: bool):
        self.tonic, self.scale = tonic, MINOR if minor else MAJOR

    def key(self, degree: int, floor: int) -> int:
        """The MIDI key of a scale degree (any integer) at or above ``floor``, below floor + 12."""
        pitch_class = (self.tonic + self.scale[degree % 7]) % 12
        return floor + (pitch_class - floor) % 12

    def melodic(self, position: int, floor: int) -> int:
        """The MIDI key of the ``position``-th scale step (0 and up) counted from the lowest
        tonic at or above ``floor``: ordered, so steps of position are steps of pitch."""
        octave, degree = divmod(position, 7)
        return floor + (self.tonic - floor) % 12 + self.scale[degree] + 12 * octave

    def chord(self, root: int, tones: int, floor: int) -> list[int]:
        """A close voicing of the chord on ``root`` (3 tones: triad, 4: seventh, 5: ninth)."""
        return sorted(self.key(root + 2 * n, floor) for n in range(tones))


def _segments(beats: int, progression: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """(start step, end step, degree): the progression spread over the loop on whole beats."""
    count = len(progression)
    edges = [STEPS_PER_BEAT * ((i * beats * 2 + count) // (2 * count)) for i in range(count + 1)]
    return [(edges[i], edges[i + 1], degree) for i, degree in enumerate(progression)
            if edges[i + 1] > edges[i]]


def _degree_at(segments: list[tuple[int, int, int]], step: int) -> int:
    return next(degree for start, end, degree in segments if start <= step < end)


def _tiled(rhythm, steps: int):
    """One-bar rhythm entries tiled over the loop: (absolute step, entry)."""
    for bar_start in range(0, steps, STEPS_PER_BAR):
        for entry in rhythm:
            if bar_start + entry[0] < steps:
                yield bar_start + entry[0], entry


def loop_bpm(beats: int) -> Fraction:
    """The tempo of a loop of ``beats`` beats that fills one frame."""
    return beats * 60 / FRAME_SECONDS


def compose(seed: int, index: int, config: ComposerConfig = ComposerConfig()) -> Composition:
    """The composition of clip ``index`` of the data set made with ``seed``.

    Styles take turns (clip ``index`` has style ``index % len(STYLES)``), so every style has the
    same number of clips; everything else is drawn from a generator seeded by (seed, index).
    """
    rng = random.Random(f"streamer-composer:{seed}:{index}")
    style = STYLES[index % len(STYLES)]
    arranger = _Arranger(rng, style, config)
    return _described(seed, index, arranger, arranger.arrangement())


def _kind(draw: float, config: ComposerConfig) -> str:
    """The clip's kind for a uniform draw in [0, 1): drums only, a solo, or an ensemble."""
    if draw < config.drums_only_share:
        return "drums_only"
    return "solo" if draw < config.drums_only_share + config.solo_share else "ensemble"


class _Arranger:
    """One clip's arrangement: its loop, kind, feel and harmony, drawn on construction, and one
    method per part.

    Every draw comes from ``rng`` in a fixed order (the order of the calls below), so a clip is
    the same clip from release to release: drawing one more number, or one fewer, anywhere
    changes every clip after it in the data set's renders.
    """

    def __init__(self, rng: random.Random, style: Style, config: ComposerConfig) -> None:
        self.rng, self.style, self.config = rng, style, config
        self.beats = rng.choice(style.beats)
        self.steps = STEPS_PER_BEAT * self.beats
        self.kind = _kind(rng.random(), config)
        self.sparse = rng.random() < config.sparse_share
        self.feel = "sparse" if self.sparse else "busy"
        self.minor = rng.random() < style.minor_share
        self.harmony = _Harmony(rng.randrange(12), self.minor)
        progression = rng.choice(style.minor_progressions if self.minor
                                 else style.major_progressions)
        self.segments = _segments(self.beats, progression)
        self.tones = (4 + (rng.random() < 0.3)) if rng.random() < style.sevenths else 3

    # --- the arrangement, by kind ----------------------------------------------------------------

    def arrangement(self) -> tuple[Part, ...]:
        if self.kind == "drums_only":
            return (self.drums(),)
        if self.kind == "solo":
            return self.solo()
        return self.ensemble()

    def solo(self) -> tuple[Part, ...]:
        """One instrument plays bass, chords and (mostly) a melody; no drums."""
        rng, style = self.rng, self.style
        solo = INSTRUMENTS[rng.choices(list(SOLO_INSTRUMENTS), list(SOLO_INSTRUMENTS.values()))[0]]
        floor = 12 * style.chord_octave
        parts = [
            Part("bass", 0, solo.program, solo.name, self.bass(0, floor - 12)),
            Part("chords", 1, solo.program, solo.name, self.chords(1, floor, 72)),
        ]
        if not self.sparse or rng.random() < 0.5:
            parts.append(Part("melody", 2, solo.program, solo.name, self.melody(2)))
        return tuple(parts)

    def ensemble(self) -> tuple[Part, ...]:
        """Bass and chords, then a pad, an arpeggio and a melody by chance, then drums by
        chance; each part on its own instrument where the style has enough."""
        rng, style, config = self.rng, self.style, self.config
        bass = self._pick(style.bass, set())
        chords = self._pick(style.chords, {bass.name})
        taken = {bass.name, chords.name}
        bass_floor = 28 if bass.family == "bass" else 36
        chord_floor = 12 * style.chord_octave + 3
        parts = [
            Part("bass", 0, bass.program, bass.name, self.bass(0, bass_floor)),
            Part("chords", 1, chords.program, chords.name, self.chords(1, chord_floor, 76)),
        ]
        for role, share, names in (("pad", config.pad_share, style.pads),
                                   ("arpeggio", config.arp_share, style.arps),
                                   ("melody", config.melody_share, style.melodies)):
            if self.sparse and role != "melody":
                share /= 2
            if rng.random() >= share:
                continue
            instrument = self._pick(names, taken)
            taken.add(instrument.name)
            channel = len(parts)
            if role == "pad":
                notes = self.pad(channel, chord_floor)
            elif role == "arpeggio":
                notes = self.arpeggio(channel)
            else:
                notes = self.melody(channel)
            parts.append(Part(role, channel, instrument.program, instrument.name, notes))
        if rng.random() < style.drums_share:
            parts.append(self.drums())
        return tuple(parts)

    def _pick(self, names: tuple[str, ...], taken: set[str]) -> Instrument:
        free = [name for name in names if name not in taken] or list(names)
        return INSTRUMENTS[self.rng.choice(free)]

    # --- the parts ---------------------------------------------------------------------------

    def drums(self) -> Part:
        style = self.style
        kit = self.rng.choice(style.kits)
        groove = self.rng.choice(style.sparse_grooves if self.sparse else style.grooves)
        notes = []
        for key, row in groove.items():
            for step in range(self.steps):
                letter = row[step % len(row)]
                if letter != ".":
                    vel = self._velocity(DRUM_VELOCITIES[letter])
                    start = self._swung(step)
                    notes.append(Note(DRUM_CHANNEL, key, vel, start, start + Fraction(1, 2)))
        return Part("drums", DRUM_CHANNEL, KITS[kit], DRUM_KIT, tuple(notes))

    def bass(self, channel: int, floor: int) -> tuple[Note, ...]:
        rhythm = self.rng.choice(self.style.bass_rhythms)
        timed = []
        for step, (_, length, tone) in _tiled(rhythm, self.steps):
            if self.sparse and tone != ROOT and self.rng.random() < 0.5:
                continue
            degree = _degree_at(self.segments, step)
            root = self.harmony.key(degree, floor)
            key = root + 12 if tone == OCTAVE else self.harmony.key(degree + tone, root)
            timed.append((step, length, key, self._velocity(100)))
        return self._monophonic(channel, timed)

    def chords(self, channel: int, floor: int, base: int) -> tuple[Note, ...]:
        """The style's comping rhythm (every other hit when sparse) in the clip's voicing."""
        rhythm = self.rng.choice(self.style.comp_rhythms)
        hits = [(step, length) for step, (_, length) in _tiled(rhythm, self.steps)]
        if self.sparse and len(hits) > 4:
            hits = hits[::2]
        return self._chordal(channel, hits, floor, base, self.tones)

    def pad(self, channel: int, floor: int) -> tuple[Note, ...]:
        """Triads held for each chord of the progression."""
        hits = [(start, end - start) for start, end, _ in self.segments]
        return self._chordal(channel, hits, floor, 60, 3)

    def arpeggio(self, channel: int, spacing: int | None = None) -> tuple[Note, ...]:
        """Chord tones in turn, every ``spacing`` 16ths (a beat when sparse, else drawn)."""
        rng = self.rng
        if spacing is None:
            spacing = 4 if self.sparse else rng.choice((1, 2))
        shape = rng.choice(("up", "down", "updown"))
        timed = []
        floor = 12 * (self.style.chord_octave + 2)
        for number, step in enumerate(range(0, self.steps, spacing)):
            chord = self.harmony.chord(_degree_at(self.segments, step), self.tones, floor)
            cycle = chord + [chord[0] + 12]
            if shape == "down":
                cycle = cycle[::-1]
            elif shape == "updown":
                cycle = cycle + cycle[-2:0:-1]
            timed.append((step, spacing, cycle[number % len(cycle)], self._velocity(80)))
        return self._monophonic(channel, timed)

    def melody(self, channel: int) -> tuple[Note, ...]:
        """A one-bar motif repeated over the loop: chord tones on the beat, near the last
        note; steps of the scale between."""
        rng, steps = self.rng, self.steps
        grid = 2 if self.sparse or rng.random() < 0.5 else 1
        density = 0.35 if self.sparse else 0.6
        position = rng.randrange(7)  # scale degree above the melody's floor
        floor = 12 * (self.style.chord_octave + 2) - 5
        timed = []
        motif_steps = min(steps, STEPS_PER_BAR)
        motif = [step for step in range(0, motif_steps, grid)
                 if step == 0 or rng.random() < density]
        for bar_start in range(0, steps, motif_steps):
            for offset in motif:
                step = bar_start + offset
                if step >= steps:
                    break
                chord_root = _degree_at(self.segments, step)
                if step % STEPS_PER_BEAT == 0:  # on the beat: a chord tone near the last note
                    position = min((chord_root + 2 * n + 7 * octave for n in range(3)
                                    for octave in (-1, 0, 1)), key=lambda d: abs(d - position))
                else:
                    position += rng.choice((-2, -1, -1, 1, 1, 2))
                position = max(0, min(11, position))
                key = self.harmony.melodic(position, floor)
                timed.append((step, 4 * grid, key, self._velocity(96)))
        return self._monophonic(channel, timed)

    # --- timing, dynamics and note ends ----------------------------------------------------------

    def _swung(self, step: int) -> Fraction:
        offbeat = step % 4 == 2 if self.style.swing_eighths else step % 2 == 1
        return Fraction(step) + (self.style.swing if offbeat else 0)

    def _velocity(self, base: int) -> int:
        soft = -14 if self.sparse else 0
        jitter = self.rng.randint(-self.config.velocity_jitter, self.config.velocity_jitter)
        return max(1, min(127, base + soft + jitter))

    def _span(
        self, step: int, length: int, following: int, *limits: int
    ) -> tuple[Fraction, Fraction]:
        """Start and end of a note at ``step``: it ends an eighth of a step before its length,
        the next onset or any of ``limits`` (so no note is cut off by a later one on the same
        key), and lasts a quarter of a step at least."""
        start = self._swung(step)
        end = min(step + length, following, *limits) - Fraction(1, 8)
        return start, max(end, start + Fraction(1, 4))

    def _onsets(self, timed: list) -> list[tuple[tuple, int]]:
        """Each entry (sorted) with the step of the next onset, the loop's end for the last."""
        timed = sorted(timed)
        following = [entry[0] for entry in timed[1:]] + [self.steps]
        return list(zip(timed, following))

    def _monophonic(self, channel: int, timed: list[tuple[int, int, int, int]]) -> tuple[Note, ...]:
        """Notes (step, length, key, velocity), one at a time."""
        return tuple(Note(channel, key, vel, *self._span(step, length, following))
                     for (step, length, key, vel), following in self._onsets(timed))

    def _chordal(self, channel: int, hits: list[tuple[int, int]], floor: int, base: int,
                 voices: int) -> tuple[Note, ...]:
        """Chords of ``voices`` tones at (step, length) ``hits``, on the progression's degree."""
        out = []
        for (step, length), following in self._onsets(hits):
            # A chord never holds past the change of harmony.
            segment_end = next(end for start, end, _ in self.segments if start <= step < end)
            span = self._span(step, length, following, segment_end)
            vel = self._velocity(base)
            for key in self.harmony.chord(_degree_at(self.segments, step), voices, floor):
                out.append(Note(channel, key, vel, *span))
        return tuple(out)


def _described(seed: int, index: int, arranger: _Arranger, parts: tuple[Part, ...]) -> Composition:
    """The composition with the caption and labels its parts say."""
    style, beats, kind, feel = arranger.style, arranger.beats, arranger.kind, arranger.feel
    minor, harmony = arranger.minor, arranger.harmony
    drums = any(part.role == "drums" for part in parts)
    pitched = [part for part in parts if part.role != "drums"]
    instruments = list(dict.fromkeys(part.instrument for part in pitched))
    mode = "minor" if minor else "major"
    if kind == "drums_only":
        lead, family = DRUM_KIT, "drums"
        caption = f"drum kit only, {style.words} drums, {feel}"
        mode_label, key_label = None, None
    else:
        mode_label, key_label = mode, f"{KEY_NAMES[harmony.tonic]} {mode}"
        if kind == "solo":
            lead = instruments[0]
            words = [f"solo {lead}", "no drums", style.phrase]
        else:
            by_role = {part.role: part for part in pitched}
            leader = next(by_role[role] for role in ("melody", "arpeggio", "chords")
                          if role in by_role)
            lead = leader.instrument
            adjective = "mellow " if feel == "sparse" else ""
            ordered = [leader] + [part for part in pitched if part is not leader]
            words = [style.phrase]
            for number, part in enumerate(ordered):
                role = ROLE_WORDS[part.role]
                words.append(f"{adjective if number == 0 else ''}{part.instrument}"
                             f"{' ' + role if role else ''}")
            if not drums:
                words.append("no drums")
        family = INSTRUMENTS[lead].family
        caption = ", ".join(words + [mode, feel])
    labels = {
        "style": style.name,
        "lead": lead,
        "lead_family": family,
        "instruments": instruments,
        "mode": mode_label,
        "feel": feel,
        "drums": drums,
        "bpm": float(loop_bpm(beats)),
        "beats": beats,
        "key": key_label,
        "kind": kind,
    }
    return Composition(seed, index, style.name, beats, parts, caption, labels)


# --- seed loops of an endless song (streamer.plan.arranger) ------------------------------------


def compose_song_loop(
    style_name: str,
    beats: int,
    song: int,
    groove: int,
    drums: str,
    chord_step: int,
    fill: bool,
    config: ComposerConfig = ComposerConfig(),
) -> Composition:
    """One frame's seed loop of an endless song, ``beats`` beats a frame (the song's tempo).

    Everything a listener follows across frames is drawn from ``song`` alone: key, mode, the
    eight-chord progression, the instruments, the rhythms of bass and chords. A frame plays the
    progression's chords from ``chord_step`` on, one a bar, so the harmony moves across frames;
    ``groove`` picks the drum pattern (another section, another pattern); ``drums`` is "none",
    "sparse" (thinner bass and chords too) or "busy"; ``fill`` ends the loop with a snare and
    tom fill on its last beat.

    Frames answer each other in four-bar phrases (two frames): the first of a pair (the call)
    plays the lead line over the groove, the second (the answer, where the fill comes) hands it
    to another instrument: the melody of a busy frame, or a sparse frame's bare groove, is
    answered by an arpeggio on the beat; a break's bass by a melody over the pad. The built-in
    model follows its seed loop's parts far more than its chords (``benchmarks/RESULTS.md``,
    "Novelty": a frame two chords on reads 0.95 alike, one whose melody is answered 0.84), so
    this is what makes a frame sound unlike the one before. The arpeggio keeps to the beat: in
    16ths it blurred the groove in the model's frames (beat figure 0.17 against 0.39).
    """
    style = next((s for s in STYLES if s.name == style_name), None)
    if style is None:
        raise ValueError(f"unknown style {style_name!r}: choose one of {', '.join(STYLE_NAMES)}")
    drawn = random.Random(f"streamer-song:{song}:{style_name}")
    arranger = _Arranger(drawn, style, config)
    minor = arranger.minor
    progressions = style.minor_progressions if minor else style.major_progressions
    progression = drawn.choice(progressions) + drawn.choice(progressions)
    progression = (progression * PROGRESSION_CHORDS)[:PROGRESSION_CHORDS]
    bass = arranger._pick(style.bass, set())
    chords = arranger._pick(style.chords, {bass.name})
    lead = arranger._pick(style.melodies, {bass.name, chords.name})
    pad = arranger._pick(style.pads, {bass.name, chords.name, lead.name})
    kit = drawn.choice(style.kits)
    arp = arranger._pick(style.arps, {bass.name, chords.name, lead.name})
    grooves = style.sparse_grooves if drums == "sparse" else style.grooves
    answer = (chord_step // CHORDS_PER_FRAME) % 2 == 1

    arranger.beats, arranger.steps, arranger.kind = beats, STEPS_PER_BEAT * beats, "ensemble"
    arranger.sparse = drums != "busy"
    arranger.feel = "sparse" if arranger.sparse else "busy"
    bars = max(1, beats // 4)
    arranger.segments = _segments(
        beats, tuple(progression[(chord_step + bar) % len(progression)] for bar in range(bars))
    )
    # The rhythms are the song's: the same draws in every frame of it.
    arranger.rng = random.Random(f"streamer-song-rhythm:{song}:{style_name}")
    bass_floor = 28 if bass.family == "bass" else 36
    chord_floor = 12 * style.chord_octave + 3
    parts = [
        Part("bass", 0, bass.program, bass.name, arranger.bass(0, bass_floor)),
        Part("chords", 1, chords.program, chords.name, arranger.chords(1, chord_floor, 76)),
    ]
    if drums == "none" and answer:  # the break's melody sings where its bass was
        parts = parts[1:]
    if drums == "none":
        parts.append(Part("pad", 2, pad.program, pad.name, arranger.pad(2, chord_floor)))
        if answer:
            parts.append(Part("melody", 3, lead.program, lead.name, arranger.melody(3)))
    elif answer:  # on the beat, where the drums are: the groove stays clear
        notes = arranger.arpeggio(2, spacing=STEPS_PER_BEAT)
        parts.append(Part("arpeggio", 2, arp.program, arp.name, notes))
    elif drums == "busy":
        parts.append(Part("melody", 2, lead.program, lead.name, arranger.melody(2)))
    if drums != "none":
        parts.append(_song_drums(arranger, grooves[groove % len(grooves)], KITS[kit], fill))
    return _described(song, chord_step, arranger, tuple(parts))


def _song_drums(arranger: _Arranger, groove: dict[int, str], kit: int, fill: bool) -> Part:
    """The groove over the loop; with ``fill``, its last beat is a snare and tom run instead."""
    fill_from = arranger.steps - STEPS_PER_BEAT if fill else arranger.steps
    notes = []
    for key, row in groove.items():
        for step in range(fill_from):
            letter = row[step % len(row)]
            if letter != ".":
                start = arranger._swung(step)
                vel = arranger._velocity(DRUM_VELOCITIES[letter])
                notes.append(Note(DRUM_CHANNEL, key, vel, start, start + Fraction(1, 2)))
    for number, step in enumerate(range(fill_from, arranger.steps)):
        key = (SNARE, HIGH_TOM, MID_TOM, LOW_TOM)[number % 4]
        vel = arranger._velocity(84 + 10 * number)
        start = Fraction(step)
        notes.append(Note(DRUM_CHANNEL, key, vel, start, start + Fraction(1, 2)))
    return Part("drums", DRUM_CHANNEL, kit, DRUM_KIT, tuple(notes))
