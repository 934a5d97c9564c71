"""Any audio file as a seed: mono, 44.1 kHz, exactly one frame long, imaged as a loop.

Without a tempo the loudest 5.12 s are taken. With the tempo of the music, it is time-stretched
to the nearest tempo at which a whole number of beats fills the frame (a multiple of 11.71875 BPM),
so the seed loops without a jump in the beat grid.

The stretch is WSOLA (waveform-similarity overlap-add): 23 ms pieces of the source, each shifted
by up to 5.8 ms to continue the previous one's waveform, overlap-added at the new spacing. It keeps
the pitch (a resampling stretch would detune the seed by up to a semitone, since the nearest
whole-beat tempo can be 6 % away) and, unlike a phase vocoder, keeps drum attacks sharp: with
torchaudio's phase vocoder at 46 ms windows the energy just before a kick rose to as much as that
just after it (pre-echo); with WSOLA it stays at least 40 times lower, as in the source. A seed
is about its beat grid, so attacks matter more than the phase vocoder's smoother sustained tones.

The excerpt starts on the strongest onset near the loudest part, and its last 30 ms are
crossfaded into the audio just before that start, so the end of the loop leads into its
beginning as the music did.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio
from PIL import Image

from streamer.errors import UserError
from streamer.seeds.library import frame_samples
from streamer.spectrogram import SpectrogramParams, image_from_mel, mel_from_audio, to_channels

#: Tempi a user may give, in beats per minute.
MIN_BPM, MAX_BPM = 40.0, 300.0
#: The end of the loop fades into the audio before its start over this time.
WRAP_CROSSFADE_SECONDS = 0.03
#: The loop start moves to the strongest onset within this time of the loudest excerpt's start
#: (or within half a beat when the tempo is known).
ONSET_SEARCH_SECONDS = 0.25
#: WSOLA time stretch: pieces of 1024 samples (23 ms) overlapping by half, each moved by up to
#: 256 samples (5.8 ms) to continue the previous piece's waveform.
STRETCH_PIECE_SAMPLES, STRETCH_TOLERANCE_SAMPLES = 1024, 256
#: Onset detection resolution: spectral flux of 1024-sample windows every 128 samples (2.9 ms).
ONSET_N_FFT, ONSET_HOP = 1024, 128

READABLE_FORMATS = "WAV, FLAC or OGG"


@dataclasses.dataclass(frozen=True)
class FittedLoop:
    """Audio fitted to one frame: what becomes a seed image."""

    samples: np.ndarray  # float32 mono, exactly one frame at the parameters' sample rate
    start_seconds: float  # where the loop starts in the source, in source time
    bpm: float | None  # the whole-beat tempo it was stretched to, when the source tempo was given
    beats: int | None


@dataclasses.dataclass(frozen=True)
class AudioSeed:
    """A seed made from an audio file: its image and the loop it shows."""

    image: Image.Image
    loop: FittedLoop


def whole_beat_tempo(bpm: float, params: SpectrogramParams) -> tuple[float, int]:
    """The tempo nearest ``bpm`` at which a whole number of beats fills one frame, and that
    number of beats."""
    frame_minutes = frame_samples(params) / params.sample_rate / 60.0
    beats = max(1, round(bpm * frame_minutes))
    return beats / frame_minutes, beats


def seed_from_audio(
    path: str | os.PathLike[str], bpm: float | None = None, params: SpectrogramParams | None = None
) -> AudioSeed:
    """Read an audio file (WAV, FLAC, OGG), mix it to mono, resample it and fit it into one
    frame (see the module docstring); ``bpm`` is the music's tempo, if known.

    Raises :class:`UserError` for a file that cannot be read, holds no audio or only silence,
    is shorter than it must be, or a tempo outside 40-300 BPM.
    """
    params = SpectrogramParams() if params is None else params
    check_bpm(bpm)
    audio, source_rate = read_audio(path)
    mono = mono_at_rate(audio, source_rate, params)
    needed = source_samples_needed(params, bpm)
    if mono.size < needed:
        stretch = ""
        if bpm is not None:
            stretch = f" at {bpm:g} BPM, stretched to {whole_beat_tempo(bpm, params)[0]:.8g} BPM"
        raise UserError(
            f"{path} is {audio.shape[1] / source_rate:.2f} s long, but a seed needs at least "
            f"{needed / params.sample_rate:.2f} s of audio "
            f"(one {frame_samples(params) / params.sample_rate:g} s frame{stretch})"
        )
    loop = fit_to_frame(mono, params, bpm)
    return AudioSeed(image=loop_image(loop, params), loop=loop)


def mono_at_rate(audio: np.ndarray, source_rate: int, params: SpectrogramParams) -> np.ndarray:
    """Audio shaped (channels, samples) mixed to mono and resampled to the parameters' rate."""
    mono = torch.from_numpy(audio).mean(dim=0)
    if source_rate != params.sample_rate:
        mono = torchaudio.functional.resample(mono, source_rate, params.sample_rate)
    return mono.numpy().astype(np.float64)


def loop_image(loop: FittedLoop, params: SpectrogramParams) -> Image.Image:
    """The spectrogram image of a loop, made with the circular STFT so that it tiles."""
    waveform = to_channels(torch.from_numpy(loop.samples)[None], params.channels)
    mel = mel_from_audio(waveform, params, circular=True)
    return image_from_mel(mel.numpy(), params)


def check_bpm(bpm: float | None) -> None:
    if bpm is not None and not (math.isfinite(bpm) and MIN_BPM <= bpm <= MAX_BPM):
        raise UserError(
            f"the tempo (bpm) must be given in beats per minute, {MIN_BPM:g} to {MAX_BPM:g}; "
            f"got {bpm:g}"
        )


def source_samples_needed(params: SpectrogramParams, bpm: float | None) -> int:
    """Samples of mono source audio at the parameters' rate that make one frame."""
    speed = 1.0 if bpm is None else whole_beat_tempo(bpm, params)[0] / bpm
    return math.ceil(frame_samples(params) * speed)


def fit_to_frame(
    mono: np.ndarray,
    params: SpectrogramParams,
    bpm: float | None = None,
    start: int | None = None,
) -> FittedLoop:
    """One frame of mono audio (at the parameters' rate, at least
    :func:`source_samples_needed` long) as a loop: stretched to whole beats when ``bpm`` is
    given, started on the strongest onset near the loudest part (or near source sample
    ``start``, which leaves room for one frame's worth of source after it), its end crossfaded
    into what preceded its start."""
    frame, rate = frame_samples(params), params.sample_rate
    target_bpm, beats = whole_beat_tempo(bpm, params) if bpm is not None else (None, None)
    speed = 1.0 if bpm is None else target_bpm / bpm
    search = _onset_search_samples(params, target_bpm)
    needed = source_samples_needed(params, bpm)
    if start is None:
        start = _loudest_start(mono, needed)
    if start < 0 or mono.size < start + needed:
        raise ValueError(
            f"{mono.size} samples do not hold the {needed} one frame needs from sample {start}"
        )

    # Stretch only the chosen excerpt and the margins the onset search and crossfade reach.
    fade = int(WRAP_CROSSFADE_SECONDS * rate)
    margin = lead_in_samples(params, bpm)
    first = max(0, start - margin)
    segment = mono[first : start + needed + margin]
    if speed != 1.0:
        segment = _time_stretch(segment, speed)
    nominal = min(round((start - first) / speed), segment.size - frame)
    lowest, highest = max(0, nominal - search), min(segment.size - frame, nominal + search)
    onset = _strongest_onset(segment, lowest, highest, fallback=nominal)
    return FittedLoop(
        samples=_wrap_crossfaded(segment, onset, frame, fade).astype(np.float32),
        start_seconds=(first + onset * speed) / rate,
        bpm=target_bpm,
        beats=beats,
    )


def lead_in_samples(params: SpectrogramParams, bpm: float | None) -> int:
    """Source samples before a loop's nominal start that its onset search and its wrap
    crossfade reach: a loop started nearer the beginning of the music has less to choose from."""
    target_bpm = whole_beat_tempo(bpm, params)[0] if bpm is not None else None
    speed = 1.0 if bpm is None else target_bpm / bpm
    fade = int(WRAP_CROSSFADE_SECONDS * params.sample_rate)
    return math.ceil((_onset_search_samples(params, target_bpm) + fade) * speed)


def _onset_search_samples(params: SpectrogramParams, target_bpm: float | None) -> int:
    """How far (in output samples) the loop start may move to an onset: half a beat."""
    seconds = ONSET_SEARCH_SECONDS if target_bpm is None else 0.5 * 60.0 / target_bpm
    return int(seconds * params.sample_rate)


def read_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Float32 audio shaped (channels, samples) and its sample rate; UserErrors for files that
    are missing, unreadable, empty or silent."""
    if not Path(path).is_file():
        raise UserError(f"{path}: no such file")
    if Path(path).stat().st_size == 0:
        raise UserError(f"{path} is an empty file (0 bytes)")
    try:
        audio, source_rate = soundfile.read(path, dtype="float32", always_2d=True)
    except soundfile.SoundFileError as error:
        raise UserError(
            f"cannot read {path} as audio ({error}); give a {READABLE_FORMATS} file"
        ) from error
    if audio.shape[0] == 0:
        raise UserError(f"{path} contains no audio (zero samples)")
    if not np.any(audio):
        raise UserError(f"{path} is silent: a seed needs audible music")
    return np.ascontiguousarray(audio.T), int(source_rate)


def _loudest_start(mono: np.ndarray, length: int) -> int:
    """Start of the loudest excerpt of ``length`` samples."""
    energy = np.concatenate([[0.0], np.cumsum(mono**2)])
    return int(np.argmax(energy[length:] - energy[:-length]))


def _time_stretch(mono: np.ndarray, speed: float) -> np.ndarray:
    """Play ``speed`` times faster, keeping the pitch (WSOLA, see the module docstring).

    Piece k is written at ``k * hop`` and read near ``k * hop * speed`` in the source, so the time
    map is exact on average and never drifts; each piece moves by at most the tolerance.
    """
    size, tolerance = STRETCH_PIECE_SAMPLES, STRETCH_TOLERANCE_SAMPLES
    hop = size // 2
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(size) / size)  # sums to 1 at hop size/2
    length = round(mono.size / speed)
    tail = size + 2 * tolerance + math.ceil(2 * hop * speed)  # room for the last pieces' search
    padded = np.concatenate([np.zeros(tolerance), mono, np.zeros(tail)])
    out = np.zeros(length + size)
    weight = np.zeros(length + size)
    previous = None
    for k in range(math.ceil(length / hop)):
        nominal = round(k * hop * speed) + tolerance  # index in ``padded``
        if previous is None:
            position = nominal
        else:
            continuation = padded[previous + hop : previous + hop + size]
            candidates = padded[nominal - tolerance : nominal + tolerance + size]
            similarity = np.correlate(candidates, continuation, mode="valid")
            position = nominal - tolerance + int(np.argmax(similarity))
        out[k * hop : k * hop + size] += window * padded[position : position + size]
        weight[k * hop : k * hop + size] += window
        previous = position
    return out[:length] / np.maximum(weight[:length], 1e-3)


def _strongest_onset(mono: np.ndarray, lowest: int, highest: int, fallback: int) -> int:
    """Sample index in [lowest, highest] where the strongest onset begins; ``fallback`` when
    nothing there changes. The flux of plain magnitudes favours loud attacks (kick, bass), which
    mark the beat more often than the hats a log-magnitude flux would favour."""
    first = max(0, lowest - ONSET_N_FFT)
    piece = torch.from_numpy(mono[first : highest + ONSET_N_FFT])
    window = torch.hann_window(ONSET_N_FFT, dtype=piece.dtype)
    spectrum = torch.stft(
        piece, ONSET_N_FFT, ONSET_HOP, window=window, center=True, return_complex=True
    ).abs()
    flux = spectrum.diff(dim=-1).clamp(min=0.0).sum(dim=0)
    # Entry k of the flux compares STFT columns k and k + 1, centred at (k + 1) * hop; the loop
    # starts one hop earlier, near the attack (within about 10 ms of the kicks of test music).
    positions = first + torch.arange(flux.shape[0]) * ONSET_HOP
    allowed = (positions >= lowest) & (positions <= highest)
    if not bool(allowed.any()) or float(flux[allowed].max()) <= 0.0:
        return fallback
    return int(positions[allowed][torch.argmax(flux[allowed])])


def _wrap_crossfaded(audio: np.ndarray, start: int, frame: int, fade: int) -> np.ndarray:
    """``frame`` samples from ``start`` whose end fades into what preceded ``start``, so that the
    loop's end leads into its beginning as the source did."""
    loop = audio[start : start + frame].copy()
    fade = min(fade, start)
    if fade > 0:
        gain = 0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)  # 0 -> 1
        end = slice(frame - fade, frame)
        loop[end] = loop[end] * (1.0 - gain) + audio[start - fade : start] * gain
    return loop
