"""Render the seed-loop library: drum and bass loops that are exactly one 5.12 s frame.

A seed loop is the img2img init image that gives generated frames their rhythm. Each style here is
written as a Standard MIDI File, rendered by FluidSynth with the General MIDI sound font, and
turned into a spectrogram image with the circular STFT, so the image tiles seamlessly: its tempo
makes a whole number of beats fill exactly 225792 samples (512 columns of 441 samples).

The MIDI holds several repetitions of the loop and one period is cut from the middle, so decay
tails from the previous repetition wrap into its start, as they do when a loop plays in steady
state. FluidSynth's own reverb and chorus are off: their delay lines are modulated, so no two
repetitions would be alike (4 to 12 % RMS apart). Room ambience is added afterwards by circular
convolution with a fixed impulse response, which keeps the loop exactly periodic.

Usage (from the repository root; needs ``fluidsynth`` and ``fluid-soundfont-gm``):

    .venv/bin/python scripts/render_seed_loops.py [--out streamer/seeds/loops]

It rewrites every PNG and ``manifest.json`` in the output folder; the result is deterministic.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile
import torch

from streamer.seeds.library import frame_samples
from streamer.spectrogram import SpectrogramParams, image_from_mel, mel_from_audio, save_image

PARAMS = SpectrogramParams()
FRAME_SAMPLES = frame_samples(PARAMS)  # 225792 = 5.12 s
FRAME_SECONDS = Fraction(FRAME_SAMPLES, PARAMS.sample_rate)
DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "streamer" / "seeds" / "loops"

#: Repetitions written to the MIDI file; the one before the last is kept (two before it let tails
#: of up to 10 s settle; a ride cymbal rings for more than one 5.12 s loop).
REPETITIONS = 4
#: FluidSynth's master gain: low enough that no rendered sample clips.
FLUIDSYNTH_GAIN = 0.4
#: Room ambience: reverberation time (60 dB decay) and level of the reverb relative to the dry
#: signal.
ROOM_RT60_SECONDS = 0.7
ROOM_WET_GAIN = 0.25
#: Peak level of the kept loop (its image is normalised anyway; this keeps the audio comparable).
PEAK_LEVEL = 0.8

# The MIDI clock runs at one quarter note per second (tempo 1,000,000 us) with 30000 ticks per
# quarter, so a tick is 1/30000 s. Every 16th note at every tempo here is a whole number of ticks
# (140.625 BPM has no whole-microsecond beat, so a beat-based MIDI tempo would drift).
TICKS_PER_SECOND = 30000
MICROSECONDS_PER_QUARTER = 1_000_000

DRUM_CHANNEL = 9  # General MIDI channel 10
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


def events(style: Style, repetitions: int, seed: int) -> Iterator[tuple[int, bytes]]:
    """(tick, MIDI message) pairs of the loop played ``repetitions`` times, each repetition
    identical (the velocity humanisation included), so the render settles into a true loop."""
    step_seconds = FRAME_SECONDS / style.steps

    def tick(step: Fraction | int) -> int:
        return round(step * step_seconds * TICKS_PER_SECOND)

    def swung(step: int) -> Fraction:
        return Fraction(step) + (Fraction(style.swing).limit_denominator(100) if step % 2 else 0)

    # FluidSynth treats channel 10 as percussion: a program change there picks a kit of bank 128.
    yield 0, bytes([0xC0 | DRUM_CHANNEL, style.drum_kit])
    yield 0, bytes([0xC0 | BASS_CHANNEL, style.bass_program])
    for repetition in range(repetitions):
        rng = random.Random(seed)
        first = repetition * style.steps
        for key, row in style.drums.items():
            for step in range(style.steps):
                letter = row[step % len(row)]
                if letter == ".":
                    continue
                velocity = max(1, min(127, VELOCITIES[letter] + rng.randint(-6, 6)))
                start = tick(first + swung(step))
                yield start, bytes([0x90 | DRUM_CHANNEL, key, velocity])
                yield start + tick(Fraction(1, 2)), bytes([0x80 | DRUM_CHANNEL, key, 0])
        for step, length, key in style.bass:
            velocity = 100 + rng.randint(-8, 8)
            yield tick(first + swung(step)), bytes([0x90 | BASS_CHANNEL, key, velocity])
            end = tick(first + step + length) - tick(Fraction(1, 8))  # a short gap: re-articulate
            yield end, bytes([0x80 | BASS_CHANNEL, key, 0])


def variable_length(value: int) -> bytes:
    """MIDI variable-length quantity: 7 bits a byte, high bit set on all but the last."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def standard_midi_file(timed: list[tuple[int, bytes]]) -> bytes:
    """A format-0 Standard MIDI File of (tick, message) pairs."""
    # Note-offs (0x8n) sort before note-ons at the same tick, so a repeated note is re-struck.
    ordered = sorted(timed, key=lambda item: (item[0], item[1][0] & 0xF0 != 0x80))
    track = bytearray(b"\x00\xff\x51\x03" + MICROSECONDS_PER_QUARTER.to_bytes(3, "big"))
    now = 0
    for at, message in ordered:
        track += variable_length(at - now) + message
        now = at
    track += b"\x00\xff\x2f\x00"
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    header += TICKS_PER_SECOND.to_bytes(2, "big")
    return header + b"MTrk" + len(track).to_bytes(4, "big") + bytes(track)


def render(midi: bytes, soundfont: Path, workdir: Path) -> np.ndarray:
    """Mono float audio of a MIDI file at 44.1 kHz, by FluidSynth."""
    midi_path, wav_path = workdir / "loop.mid", workdir / "loop.wav"
    midi_path.write_bytes(midi)
    subprocess.run(
        ["fluidsynth", "-ni", "-R", "0", "-C", "0", "-g", str(FLUIDSYNTH_GAIN),
         "-r", str(PARAMS.sample_rate), "-O", "float", "-F", str(wav_path),
         str(soundfont), str(midi_path)],
        check=True,
        capture_output=True,
    )
    audio, rate = soundfile.read(wav_path, dtype="float32", always_2d=True)
    if rate != PARAMS.sample_rate:
        raise RuntimeError(f"FluidSynth rendered at {rate} Hz instead of {PARAMS.sample_rate}")
    return audio.mean(axis=1)


def one_period(audio: np.ndarray) -> np.ndarray:
    """The repetition before the last, checked to be the same as the last: the loop in steady
    state."""
    if audio.size < REPETITIONS * FRAME_SAMPLES:
        raise RuntimeError(f"FluidSynth rendered only {audio.size} samples")
    kept = audio[(REPETITIONS - 2) * FRAME_SAMPLES : (REPETITIONS - 1) * FRAME_SAMPLES]
    last = audio[(REPETITIONS - 1) * FRAME_SAMPLES : REPETITIONS * FRAME_SAMPLES]
    difference = float(np.sqrt(np.mean((kept - last) ** 2) / np.mean(kept**2)))
    if difference > 1e-4:
        raise RuntimeError(f"repetitions differ by {difference:.1e} RMS: not a steady loop")
    return kept


def with_room(loop: np.ndarray, seed: int) -> np.ndarray:
    """The loop with room ambience, by circular convolution so the reverb tail of its end rings
    into its start exactly as when it repeats."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(ROOM_RT60_SECONDS * PARAMS.sample_rate)) / PARAMS.sample_rate
    response = rng.standard_normal(t.size) * np.power(10.0, -3.0 * t / ROOM_RT60_SECONDS)
    response *= ROOM_WET_GAIN / np.sqrt(np.sum(response**2))
    wet = np.fft.irfft(np.fft.rfft(loop) * np.fft.rfft(response, n=loop.size), n=loop.size)
    return loop + wet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    parser.add_argument("--soundfont", type=Path, default=DEFAULT_SOUNDFONT)
    args = parser.parse_args(argv)
    if shutil.which("fluidsynth") is None:
        sys.exit("fluidsynth is not installed (apt-get install fluidsynth fluid-soundfont-gm)")
    if not args.soundfont.exists():
        sys.exit(f"sound font {args.soundfont} is missing (apt-get install fluid-soundfont-gm)")
    args.out.mkdir(parents=True, exist_ok=True)

    manifest = []
    with tempfile.TemporaryDirectory() as workdir:
        for index, style in enumerate(STYLES):
            midi = standard_midi_file(list(events(style, REPETITIONS, seed=index)))
            loop = with_room(one_period(render(midi, args.soundfont, Path(workdir))), seed=index)
            loop = loop * (PEAK_LEVEL / np.max(np.abs(loop)))
            mel = mel_from_audio(torch.from_numpy(loop.astype(np.float32))[None], PARAMS,
                                 circular=True)
            file = f"{style.name}.png"
            save_image(image_from_mel(mel.numpy(), PARAMS), args.out / file)
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
