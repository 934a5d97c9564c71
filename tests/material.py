"""Realistic test music, synthesised with numpy: drums on a beat grid, a bass line and chords with
harmonics, so tests hear transients, tones and noise as in real music, with onsets known exactly.

Deterministic for a seed. Nothing here is a test; tests import it, and the measure that finds
its kicks (``low_band_rises``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

SAMPLE_RATE = 44100


@dataclasses.dataclass(frozen=True)
class Groove:
    """A loop of ``beats`` beats at ``bpm`` with its drum onsets (sample indices in the loop)."""

    samples: np.ndarray  # float32, shape (num_samples,), peak about 0.5
    bpm: float
    beats: int
    kick_onsets: tuple[int, ...]
    snare_onsets: tuple[int, ...]


def _kick(rate: int) -> np.ndarray:
    t = np.arange(int(0.25 * rate)) / rate
    frequency = 45.0 + 90.0 * np.exp(-t * 30.0)
    phase = 2.0 * np.pi * np.cumsum(frequency) / rate
    return np.sin(phase) * np.exp(-t * 12.0)


def _snare(rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.18 * rate)) / rate
    noise = rng.standard_normal(t.size) * np.exp(-t * 25.0)
    body = np.sin(2.0 * np.pi * 190.0 * t) * np.exp(-t * 30.0)
    return 0.5 * noise + 0.6 * body


def _hat(rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.05 * rate)) / rate
    noise = rng.standard_normal(t.size)
    noise = np.diff(noise, prepend=0.0)  # crude high-pass: hats live above a few kHz
    return 0.25 * noise * np.exp(-t * 80.0)


def _tone(frequency: float, seconds: float, rate: int, harmonics: int, decay: float) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = sum(np.sin(2.0 * np.pi * frequency * k * t) / k**1.2 for k in range(1, harmonics + 1))
    attack = np.minimum(1.0, t / 0.005)
    release = np.minimum(1.0, (seconds - t) / 0.01)
    return wave * attack * release * np.exp(-t * decay)


def _add(out: np.ndarray, sound: np.ndarray, at: int) -> None:
    """Add a sound at a position of a loop, wrapping around its end (the loop is periodic)."""
    indices = (at + np.arange(sound.size)) % out.size
    np.add.at(out, indices, sound)


def groove(
    bpm: float = 117.1875,
    beats: int = 10,
    seed: int = 0,
    rate: int = SAMPLE_RATE,
    root_hz: float = 55.0,
) -> Groove:
    """One seamless loop of exactly ``beats`` beats: kick on every beat, snare on the off beats,
    eighth-note hats, a bass note per beat and a chord every two beats.

    The default tempo makes 10 beats last exactly 5.12 s, one Riffusion frame.
    """
    rng = np.random.default_rng(seed)
    beat = 60.0 / bpm * rate
    length = int(round(beats * beat))
    out = np.zeros(length)
    kick, snare, hat = _kick(rate), _snare(rate, rng), _hat(rate, rng)
    scale = [0, 3, 5, 7, 10, 12]
    kicks, snares = [], []
    for b in range(beats):
        at = int(round(b * beat))
        _add(out, kick * 0.9, at)
        kicks.append(at)
        if b % 2 == 1:
            _add(out, snare * 0.6, at)
            snares.append(at)
        for half in (0, 1):
            _add(out, hat * rng.uniform(0.6, 1.0), int(round((b + half / 2) * beat)))
        semitone = scale[rng.integers(len(scale))]
        _add(out, 0.35 * _tone(root_hz * 2 ** (semitone / 12), 0.9 * beat / rate, rate, 6, 3.0), at)
        if b % 2 == 0:
            chord_root = root_hz * 4 * 2 ** (scale[rng.integers(len(scale))] / 12)
            for interval in (0, 4, 7):
                pad = _tone(chord_root * 2 ** (interval / 12), 1.9 * beat / rate, rate, 4, 1.0)
                _add(out, 0.12 * pad, at)
    out *= 0.5 / np.max(np.abs(out))
    return Groove(out.astype(np.float32), bpm, beats, tuple(kicks), tuple(snares))


def song(seconds: float, seed: int = 0, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A longer, non-repeating piece: grooves of changing harmony at 117.1875 BPM, float32."""
    pieces, total, part = [], 0, 0
    while total < seconds * rate:
        loop = groove(seed=seed * 1000 + part, root_hz=[55.0, 49.0, 61.7, 43.7][part % 4]).samples
        pieces.append(loop)
        total += loop.size
        part += 1
    return np.concatenate(pieces)[: int(seconds * rate)]


def low_band_rises(audio: np.ndarray, positions: np.ndarray, rate: int) -> np.ndarray:
    """Energy below 150 Hz just after each position over the energy just before it."""
    spectrum = np.fft.rfft(audio)
    spectrum[np.fft.rfftfreq(audio.size, 1.0 / rate) > 150.0] = 0.0
    low = np.fft.irfft(spectrum, n=audio.size)
    span = int(0.02 * rate)
    guard = int(0.008 * rate)  # onsets may land a few ms either side of the grid
    ratios = []
    for at in positions:
        before = low[max(0, at - guard - span) : max(0, at - guard)]
        after = low[at + guard : at + guard + span]
        ratios.append(np.mean(after**2) / max(np.mean(before**2), 1e-12) if before.size else np.inf)
    return np.asarray(ratios)


def groove_dataset(root, captions: tuple[str, str], columns: int | None = None):
    """Four one-frame grooves (two keys, two tempi) as a training data set folder at ``root``,
    captioned alternately with ``captions``; each image cut to its first ``columns`` pixel
    columns when given (a narrower latent, a faster training step). Returns ``root``."""
    from pathlib import Path

    import torch

    from streamer.spectrogram.codec import mel_from_audio
    from streamer.spectrogram.image import image_from_mel, save_image
    from streamer.spectrogram.params import SpectrogramParams
    from streamer.training.dataset import ClipRecord, write_info, write_metadata

    root = Path(root)
    (root / "train").mkdir(parents=True)
    params = SpectrogramParams()
    records = []
    for index, (bpm, beats, root_hz) in enumerate(
        ((117.1875, 10, 55.0), (117.1875, 10, 73.4), (140.625, 12, 49.0), (140.625, 12, 65.4))
    ):
        audio = groove(bpm=bpm, beats=beats, seed=index, root_hz=root_hz).samples
        mel = mel_from_audio(
            torch.from_numpy(audio[None].astype(np.float32)), params, circular=True
        )
        image = image_from_mel(np.asarray(mel), params)
        if columns is not None:
            image = image.crop((0, 0, columns, image.height))
        name = f"{index:06d}.png"
        save_image(image, root / "train" / name)
        caption = captions[index % 2]
        records.append(ClipRecord(name, caption, {"style": caption[:5]}))
    write_metadata(root / "train", records)
    write_info(root, {"clips": len(records)})
    return root


def logged_losses(run, stage: str) -> list[float]:
    """The losses a training run folder logged for ``stage`` (RUN/log.jsonl), in order."""
    import json
    from pathlib import Path

    lines = (Path(run) / "log.jsonl").read_text().splitlines()
    return [entry["loss"] for entry in map(json.loads, lines) if entry["stage"] == stage]
