"""Novelty: does the endless stream move over minutes, with its beat kept and no clicks at seams?

Renders the stream as ``streamer render`` makes it (the engine's core driven offline), once as
it was (``--form loop``) and once with the song form (``--form song``), and measures:

- **similarity at a lag** (issue 21's measure; the issue's 0.977 / 0.90 / 0.88 were recorded
  nowhere in the repository, so it is defined here): the mono render is cut into windows of one
  frame (5.12 s, from the start); each window's log-mel spectrogram (64 bands to 16 kHz, FFT
  2048, hop 512, ``log(mel + 1e-6)``) is flattened and its own mean removed; the similarity of two
  windows is the cosine of those vectors (their Pearson correlation), averaged over every pair
  of windows the lag apart. Lags: 1 window (5.12 s, "consecutive"), 6 (30.7 s), 12 (61.4 s),
  24 (122.9 s, "2 min"). Goals: consecutive <= 0.90, 30 s <= 0.80.
- **beat**: the onset envelope (positive spectral flux of the log-mel) in 10.24 s windows, its
  autocorrelation (mean removed, over lag 0) at the seed loop's beat period (best within 3 %),
  the median over the windows (a song's break has no drums by design; the median says whether
  the beat holds in most of it): 1 is a perfectly periodic beat, 0 none.
- **seams**: at each frame switch the stitcher reports (start and end of its crossfade), the
  largest second difference within 1 ms over the 99th percentile of it within 0.5 s around
  (a click is a jump the music around it does not make); the worst seam, and seams over 2.

The calibration, ``composed``: the song form's own seed loops rendered straight from MIDI by
FluidSynth (a model that played its seed loops perfectly), one after another, frame by frame;
``composed clips``: a new clip of the composer every frame (the data set's kind of music, a new
style each 5 s: the far end of novelty).

Models: the stand-in (each frame is its seed loop vocoded, with a tone for the prompt: it shows
what the seed loops alone change) and the built-in model (the real path, with the preset the
CLI gives it). Default: 245.76 s (48 frames) each, stand-in and built-in; ``--quick``: 30.72 s
with the stand-in only; ``--smoke``: 10.24 s, the stand-in only (the test's run); ``--seconds``
for longer; ``--measure FILE`` measures a file instead (the issue's check: a 10-minute
``streamer render --seconds 600`` with no options; ``--bpm`` its tempo, the default seed loop's
93.75 unless given; no seams: a file does not say where its frames switch).

    python benchmarks/novelty.py [--quick | --smoke] [--seconds S] [--no-builtin]
    python benchmarks/novelty.py --measure render.wav [--bpm 93.75]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torchaudio

from streamer.plan.arranger import LoopVariation
from streamer.plan.planner import Planner
from streamer.runtime.assemble import build_core, levelled
from streamer.runtime.composed_loops import (
    SONG_SYNTH,
    ComposedLoops,
    compose_loop_audio,
    song_loop_styles,
)
from streamer.runtime.diffusion_maker import seed_loop_image
from streamer.runtime.render import fill_lookahead
from streamer.runtime.standin import StandInFrameMaker
from streamer.runtime.stream_config import StreamConfig
from streamer.seeds.library import list_seed_loops
from streamer.training.composer import compose
from streamer.training.midi import loop_events, standard_midi_file
from streamer.training.synth import FRAME_SECONDS, SynthConfig, loop_image, render_loop

RATE = 44100
WINDOW_SAMPLES = 225792  # one frame, 5.12 s
LAGS = {"5s": 1, "30s": 6, "60s": 12, "2min": 24}
GOALS = {"5s": 0.90, "30s": 0.80}


# --- the measures --------------------------------------------------------------------------------

_MEL = torchaudio.transforms.MelSpectrogram(
    sample_rate=RATE, n_fft=2048, hop_length=512, n_mels=64, f_max=16000.0, power=2.0
)


def log_mel(mono: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.log(_MEL(torch.from_numpy(mono.astype(np.float32))) + 1e-6).numpy()


def window_similarities(mono: np.ndarray) -> dict[str, float | None]:
    """Mean similarity of windows at each lag (None where the render is too short)."""
    count = len(mono) // WINDOW_SAMPLES
    vectors = []
    for i in range(count):
        vector = log_mel(mono[i * WINDOW_SAMPLES : (i + 1) * WINDOW_SAMPLES]).ravel()
        vector = vector - vector.mean()
        vectors.append(vector / max(float(np.linalg.norm(vector)), 1e-12))
    out: dict[str, float | None] = {}
    for name, lag in LAGS.items():
        pairs = [float(vectors[i] @ vectors[i + lag]) for i in range(count - lag)]
        out[name] = float(np.mean(pairs)) if pairs else None
    return out


def beat_regularity(mono: np.ndarray, bpm: float) -> float:
    """Autocorrelation of the onset envelope at the beat period (see the module docstring)."""
    mel = log_mel(mono)
    flux = np.maximum(np.diff(mel, axis=1), 0.0).sum(axis=0)
    rate = RATE / 512
    period = 60.0 / bpm * rate
    lags = np.arange(int(period * 0.97), int(np.ceil(period * 1.03)) + 1)
    size = int(10.24 * rate)
    values = []
    for start in range(0, len(flux) - size + 1, size):
        envelope = flux[start : start + size] - flux[start : start + size].mean()
        energy = float(envelope @ envelope)
        if energy <= 0:
            continue
        values.append(max(float(envelope[:-lag] @ envelope[lag:]) / energy for lag in lags))
    return float(np.median(values)) if values else 0.0


def seam_jumps(mono: np.ndarray, seams: list[int]) -> tuple[float, int]:
    """The worst seam's jump over the music around it, and the seams over 2."""
    second = np.abs(np.diff(mono.astype(np.float64), n=2))
    near, around = int(0.001 * RATE), int(0.5 * RATE)
    ratios = []
    for seam in seams:
        if not around <= seam < len(second) - around:
            continue
        local = np.percentile(second[seam - around : seam + around], 99)
        ratios.append(float(second[seam - near : seam + near].max()) / max(float(local), 1e-9))
    return (max(ratios) if ratios else 0.0), sum(r > 2.0 for r in ratios)


# --- the renders ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Render:
    key: str  # its name in the RESULT line
    name: str
    mono: np.ndarray
    seams: list[int]
    bpm: float
    sections: list[str]
    seconds_to_make: float


def stream_render(key: str, name: str, config: StreamConfig, maker, seconds: float) -> Render:
    """The stream as ``streamer render`` makes it, with the frame switches and sections."""
    core = build_core(config)
    started = time.perf_counter()
    total, chunk = round(seconds * RATE), RATE
    pieces, seams, written = [], [], 0
    while written < total:
        fill_lookahead(core, maker, written / RATE)
        rendered = core.render(min(chunk, total - written), written / RATE)
        audio = rendered.audio
        for switch in audio.events:
            seams += [switch.start_position, switch.end_position]
        pieces.append(audio.samples.mean(axis=0))
        written += audio.samples.shape[1]
    planned = Planner(config.settings, core.planner.config, {}).next_frames(int(seconds / 5.12))
    sections = [frame.section or "-" for frame in planned]
    seconds_to_make = time.perf_counter() - started
    bpm = core.seed_bpm() or 0.0
    return Render(key, name, np.concatenate(pieces), seams, bpm, sections, seconds_to_make)


class LoopAudio:
    """Composed loops by variation: their audio (for the MIDI reference) and their images (for
    the frame makers), each composed once."""

    def __init__(self, beats_of: dict[str, int]) -> None:
        self.beats_of, self.synth = beats_of, SONG_SYNTH
        self.audio: dict[str, np.ndarray] = {}
        self.lock = threading.Lock()

    def loop(self, variation: LoopVariation, beats: int) -> np.ndarray:
        with self.lock:
            if variation.name not in self.audio:
                self.audio[variation.name] = compose_loop_audio(variation, beats, self.synth)
            return self.audio[variation.name]

    def image(self, variation: LoopVariation, beats: int, synth: SynthConfig):
        return loop_image(self.loop(variation, beats))


def composed_reference(config: StreamConfig, loops: LoopAudio, seconds: float) -> Render:
    """The song form's seed loops straight from FluidSynth, frame after frame."""
    frames = Planner(config.settings, config.planner, {}).next_frames(int(np.ceil(seconds / 5.12)))
    beats = loops.beats_of[config.settings.seed_loop]
    pieces = [loops.loop(LoopVariation.parse(f.seed_loop), beats) for f in frames]
    mono = np.concatenate(pieces)[: round(seconds * RATE)]
    seams = [i * WINDOW_SAMPLES for i in range(1, len(frames))]
    return Render("midi_song", "composed (MIDI, song form)", mono, seams, beats * 60 / 5.12,
                  [f.section or "-" for f in frames], 0.0)


def composed_clips(seconds: float) -> Render:
    """A new composer clip every frame (the data set's music), straight from FluidSynth."""
    synth, pieces = SONG_SYNTH, []
    with tempfile.TemporaryDirectory() as workdir:
        for index in range(int(np.ceil(seconds / 5.12))):
            clip = compose(2026, index)
            events = loop_events(clip.programs, clip.notes, clip.steps, FRAME_SECONDS,
                                 synth.repetitions)
            loop = render_loop(standard_midi_file(events), index, synth, Path(workdir))
            pieces.append(loop / max(float(np.abs(loop).max()), 1e-9))
    mono = np.concatenate(pieces)[: round(seconds * RATE)]
    return Render("midi_clips", "composed clips (a new one each frame)", mono, [], 120.0, [], 0.0)


def configs(preset_config: StreamConfig, only: str | None = None) -> dict[str, StreamConfig]:
    """Today's stream (--form loop) and the song form, on the same settings (or ``only`` one)."""
    planner = preset_config.planner
    song = dataclasses.replace(
        planner, form="song", loop_styles=planner.loop_styles or song_loop_styles(planner.playlist)
    )
    both = {
        "loop": dataclasses.replace(
            preset_config, planner=dataclasses.replace(planner, form="loop")
        ),
        "song": dataclasses.replace(preset_config, planner=song),
    }
    return {form: config for form, config in both.items() if only in (None, form)}


def builtin_config(denoising: float | None = None) -> StreamConfig:
    """The configuration ``streamer render`` with no options plays the built-in model with
    (``denoising``: another denoising, ``--denoising``)."""
    from streamer.config import add_stream_options, stream_config_from_args

    parser = argparse.ArgumentParser()
    add_stream_options(parser)
    extra = [] if denoising is None else ["--denoising", str(denoising)]
    return stream_config_from_args(parser.parse_args(["--model", "builtin", *extra]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30.72 s, the stand-in only")
    parser.add_argument("--smoke", action="store_true", help="10.24 s, the stand-in only")
    parser.add_argument("--seconds", type=float, help="seconds per render (default 245.76)")
    parser.add_argument("--no-builtin", action="store_true", help="the stand-in only")
    parser.add_argument("--form", choices=("loop", "song"), help="render only this form")
    parser.add_argument("--denoising", type=float, help="the stream's denoising (a lever to try)")
    parser.add_argument("--measure", metavar="FILE", help="measure this audio file instead")
    parser.add_argument("--bpm", type=float, default=93.75, help="the file's tempo (--measure)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.measure:
        import soundfile

        audio, rate = soundfile.read(args.measure, dtype="float32", always_2d=True)
        if rate != RATE:
            sys.exit(f"{args.measure} is at {rate} Hz; the stream's rate is {RATE}")
        mono = audio.mean(axis=1)
        report([Render("file", Path(args.measure).name, mono, [], args.bpm, [], 0.0)],
               len(mono) / RATE)
        return 0
    seconds = args.seconds or (10.24 if args.smoke else 30.72 if args.quick else 245.76)
    builtin = not (args.quick or args.smoke or args.no_builtin)

    beats_of = {loop.name: loop.beats for loop in list_seed_loops()}
    loops = LoopAudio(beats_of)
    base = builtin_config(args.denoising)  # its settings and playlist, for the stand-in too
    forms = configs(base, args.form)
    song = configs(base, "song")["song"]
    if not song.planner.loop_styles:
        print("FluidSynth is missing: the song form walks on the built-in seed loops; "
              "no composed reference", file=sys.stderr)
    renders = []
    if song.planner.loop_styles and args.form != "loop":
        renders.append(composed_reference(song, loops, seconds))
        if not (args.quick or args.smoke):
            renders.append(composed_clips(seconds))

    def composed_images() -> ComposedLoops:
        return ComposedLoops(beats_of, seed_loop_image, compose=loops.image)

    for form, config in forms.items():
        maker = StandInFrameMaker(0.0, seed_images=composed_images())
        renders.append(stream_render(f"standin_{form}", f"stand-in, --form {form}", config,
                                     levelled(config, maker), seconds))
    if builtin:
        from streamer.audio.vocoder import Vocoder, VocoderConfig
        from streamer.generate.generator import FrameGenerator
        from streamer.runtime.diffusion_maker import DiffusionFrameMaker
        from streamer.spectrogram.params import SpectrogramParams

        real = builtin_config(args.denoising)
        for form, config in configs(real, args.form).items():
            generator = FrameGenerator.load(config.model, composed_images())
            maker = DiffusionFrameMaker(generator, Vocoder(SpectrogramParams(), VocoderConfig()))
            renders.append(stream_render(f"builtin_{form}", f"built-in, --form {form}", config,
                                         levelled(config, maker), seconds))

    report(renders, seconds)
    return 0


def report(renders: list[Render], seconds: float) -> None:
    """The table and the RESULT line."""
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{seconds:.2f} s per render, windows of 5.12 s")
    header = f"{'render':40} " + " ".join(f"{'sim ' + lag:>9}" for lag in LAGS)
    print(header + f" {'beat':>6} {'worst seam':>10} {'clicks':>6} {'make s':>7}")
    result = []
    for render in renders:
        sims = window_similarities(render.mono)
        beat = beat_regularity(render.mono, render.bpm)
        worst, clicks = seam_jumps(render.mono, render.seams)
        cells = " ".join(f"{'-' if sims[lag] is None else format(sims[lag], '.3f'):>9}"
                         for lag in LAGS)
        print(f"{render.name:40} {cells} {beat:6.3f} {worst:10.2f} {clicks:6d} "
              f"{render.seconds_to_make:7.1f}")
        key = render.key
        for lag in ("5s", "30s"):
            if sims[lag] is not None:
                result.append(f"{key}_{lag}={sims[lag]:.3f}")
        result.append(f"{key}_beat={beat:.3f}")
        if render.seams and render.seconds_to_make:
            result.append(f"{key}_clicks={clicks}")
    sections = next((r.sections for r in renders if "song" in r.name and r.sections), [])
    if sections:
        walked = [s for i, s in enumerate(sections) if i == 0 or sections[i - 1] != s]
        print("song form sections:", " > ".join(walked))
    print("goals: consecutive <= 0.90, 30 s apart <= 0.80")
    print("RESULT " + " ".join(result))


if __name__ == "__main__":
    raise SystemExit(main())
