"""MIDI loops to Riffusion images: FluidSynth with the General MIDI sound font, one steady-state
period of the loop, room ambience that wraps around, and the circular STFT so the image tiles.

The MIDI holds several repetitions of the loop and one period is cut from the middle, so decay
tails from the previous repetition wrap into its start, as they do when a loop plays in steady
state. FluidSynth's own reverb and chorus are off: their delay lines are modulated, so no two
repetitions would be alike (4 to 12 % RMS apart). Room ambience is added afterwards by circular
convolution with a fixed impulse response, which keeps the loop exactly periodic.

Used by ``scripts/render_seed_loops.py`` (the seed-loop library) and ``streamer make-dataset``.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np

from streamer.errors import UserError
from streamer.seeds.library import frame_samples
from streamer.spectrogram import SpectrogramParams

PARAMS = SpectrogramParams()
FRAME_SAMPLES = frame_samples(PARAMS)  # 225792 = 5.12 s
FRAME_SECONDS = Fraction(FRAME_SAMPLES, PARAMS.sample_rate)
DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
DEBIAN_PACKAGES = "fluidsynth fluid-soundfont-gm"


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    """How a loop is rendered."""

    soundfont: Path = DEFAULT_SOUNDFONT
    #: Repetitions written to the MIDI file; the one before the last is kept (two before it let
    #: tails of up to 10 s settle; a ride cymbal rings for more than one 5.12 s loop).
    repetitions: int = 4
    #: FluidSynth's master gain: low enough that no rendered sample clips.
    fluidsynth_gain: float = 0.4
    #: Room ambience: reverberation time (60 dB decay) and level of the reverb relative to the
    #: dry signal.
    room_rt60_seconds: float = 0.7
    room_wet_gain: float = 0.25
    #: Largest relative RMS difference between the kept repetition and the next one.
    steady_tolerance: float = 1e-4


def check_synth(soundfont: Path) -> None:
    """Fail with what to install when FluidSynth or the sound font is missing."""
    if shutil.which("fluidsynth") is None:
        raise UserError(f"fluidsynth is not installed (sudo apt-get install {DEBIAN_PACKAGES})")
    if not Path(soundfont).is_file():
        raise UserError(
            f"the General MIDI sound font {soundfont} is missing "
            f"(sudo apt-get install fluid-soundfont-gm, or pass the path of another .sf2)"
        )


def render_midi(midi: bytes, config: SynthConfig, workdir: Path) -> np.ndarray:
    """Mono float audio of a MIDI file at 44.1 kHz, by FluidSynth."""
    import soundfile

    midi_path, wav_path = workdir / "loop.mid", workdir / "loop.wav"
    midi_path.write_bytes(midi)
    subprocess.run(
        ["fluidsynth", "-ni", "-R", "0", "-C", "0", "-g", str(config.fluidsynth_gain),
         "-r", str(PARAMS.sample_rate), "-O", "float", "-F", str(wav_path),
         str(config.soundfont), str(midi_path)],
        check=True,
        capture_output=True,
    )
    audio, rate = soundfile.read(wav_path, dtype="float32", always_2d=True)
    if rate != PARAMS.sample_rate:
        raise RuntimeError(f"FluidSynth rendered at {rate} Hz instead of {PARAMS.sample_rate}")
    return audio.mean(axis=1)


def one_period(audio: np.ndarray, config: SynthConfig) -> np.ndarray:
    """The repetition before the last, checked to be the same as the last: the loop in steady
    state."""
    repetitions = config.repetitions
    if audio.size < repetitions * FRAME_SAMPLES:
        raise RuntimeError(f"FluidSynth rendered only {audio.size} samples")
    kept = audio[(repetitions - 2) * FRAME_SAMPLES : (repetitions - 1) * FRAME_SAMPLES]
    last = audio[(repetitions - 1) * FRAME_SAMPLES : repetitions * FRAME_SAMPLES]
    difference = float(np.sqrt(np.mean((kept - last) ** 2) / max(np.mean(kept**2), 1e-20)))
    if difference > config.steady_tolerance:
        raise RuntimeError(f"repetitions differ by {difference:.1e} RMS: not a steady loop")
    return kept


def with_room(loop: np.ndarray, seed: int, config: SynthConfig) -> np.ndarray:
    """The loop with room ambience, by circular convolution so the reverb tail of its end rings
    into its start exactly as when it repeats."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(config.room_rt60_seconds * PARAMS.sample_rate)) / PARAMS.sample_rate
    response = rng.standard_normal(t.size) * np.power(10.0, -3.0 * t / config.room_rt60_seconds)
    response *= config.room_wet_gain / np.sqrt(np.sum(response**2))
    wet = np.fft.irfft(np.fft.rfft(loop) * np.fft.rfft(response, n=loop.size), n=loop.size)
    return loop + wet


def render_loop(midi: bytes, room_seed: int, config: SynthConfig, workdir: Path) -> np.ndarray:
    """One steady-state period (exactly one frame) of a looping MIDI file, with the room."""
    return with_room(one_period(render_midi(midi, config, workdir), config), room_seed, config)


def loop_image(loop: np.ndarray):
    """The Riffusion image of one frame of looping audio, by the circular STFT, so the image
    tiles seamlessly."""
    import torch

    from streamer.spectrogram import image_from_mel, mel_from_audio

    mel = mel_from_audio(torch.from_numpy(loop.astype(np.float32))[None], PARAMS, circular=True)
    return image_from_mel(mel.numpy(), PARAMS)
