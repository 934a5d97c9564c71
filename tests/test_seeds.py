"""Seed loops: the shipped library and seeds made from the user's own audio files."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest
import soundfile
import torch
import torchaudio
from PIL import Image

from material import groove, low_band_rises, song
from streamer.cli import main
from streamer.errors import UserError
from streamer.seeds import frame_samples, list_seed_loops, load_seed_loop
from streamer.seeds.from_audio import fit_to_frame, seed_from_audio
from streamer.seeds.library import _folder
from streamer.spectrogram import SpectrogramParams, mel_from_image

PARAMS = SpectrogramParams()
FRAME = frame_samples(PARAMS)
SOURCE_RATE = 48000  # user files at 48 kHz stereo exercise resampling and mixing


def seam_and_interior(pixels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean pixel change across the wrap (last column -> first) and between every pair of
    neighbouring columns inside the image."""
    pixels = pixels.astype(np.float64)
    interior = np.abs(np.diff(pixels, axis=1)).mean(axis=0)
    return float(np.abs(pixels[:, 0] - pixels[:, -1]).mean()), interior


def gray(image) -> np.ndarray:
    return np.asarray(image.convert("L"))


# --- the shipped library ---------------------------------------------------------------------


def test_library_has_the_promised_tempi():
    tempi = {loop.bpm for loop in list_seed_loops()}
    assert {93.75, 117.1875, 140.625, 187.5} <= tempi
    names = [loop.name for loop in list_seed_loops()]
    assert len(names) == len(set(names)) >= 5


@pytest.mark.parametrize("loop", list_seed_loops(), ids=lambda loop: loop.name)
def test_every_loop_is_a_whole_number_of_beats_in_one_frame(loop):
    # Exactly, not approximately: a fraction of a beat would jump the grid at every repetition.
    # Every tempo in the manifest is a binary fraction, so Fraction() is exact.
    frame_minutes = Fraction(FRAME, PARAMS.sample_rate) / 60
    assert Fraction(loop.bpm) * frame_minutes == loop.beats
    assert loop.description and loop.path.is_file()

    mel, params = loop.mel()
    assert params == PARAMS
    assert mel.shape == (1, 512, 512)
    assert np.all(np.isfinite(mel)) and mel.max() > 0


def test_manifest_lists_every_image_shipped():
    files = {entry["file"] for entry in json.loads((_folder() / "manifest.json").read_text())}
    shipped = {item.name for item in _folder().iterdir() if item.name.endswith(".png")}
    assert files == shipped


@pytest.mark.parametrize("loop", list_seed_loops(), ids=lambda loop: loop.name)
def test_loop_image_tiles_seamlessly(loop):
    pixels = gray(loop.image())
    seam, interior = seam_and_interior(pixels)
    # The wrap is no outlier among the image's own column-to-column changes. Measured: at the
    # 71st to 91st percentile, 1.3 to 2.4 times the median change, and below the changes at the
    # beats' onsets.
    assert seam <= np.percentile(interior, 95)
    # The same check catches a loop that is not whole: 0.4 beat cut off its end puts the seam at
    # the 99th percentile or above (measured: 17 to 35 levels against at most 8.7).
    cut = int(0.4 * pixels.shape[1] / loop.beats)
    broken_seam, broken_interior = seam_and_interior(pixels[:, :-cut])
    assert broken_seam > np.percentile(broken_interior, 95)


def test_unknown_seed_name_lists_the_choices():
    with pytest.raises(UserError) as error:
        load_seed_loop("polka_200")
    message = str(error.value)
    assert "no seed loop called 'polka_200'" in message
    for loop in list_seed_loops():
        assert loop.name in message


def test_loading_a_seed_by_name():
    loop = load_seed_loop("house_117")
    assert (loop.bpm, loop.beats) == (117.1875, 10)
    assert loop.image().size == (512, 512)


# --- seeds from audio files ------------------------------------------------------------------


def stereo_file(tmp_path, name: str, samples: np.ndarray, **format_options) -> str:
    """Write music as a 48 kHz stereo file: the right channel quieter and a little delayed."""
    stereo = np.stack([samples, 0.6 * np.roll(samples, 300)], axis=1)
    path = tmp_path / name
    soundfile.write(path, stereo, SOURCE_RATE, **format_options)
    return str(path)


@pytest.fixture(scope="module")
def music_48k() -> np.ndarray:
    """7 s of music at 48 kHz."""
    music = torch.from_numpy(song(7.0, seed=2))
    return torchaudio.functional.resample(music, PARAMS.sample_rate, SOURCE_RATE).numpy()


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("music.wav", {}),
        ("music.flac", {}),
        ("music.ogg", {"format": "OGG", "subtype": "VORBIS"}),
    ],
)
def test_seed_from_an_audio_file(tmp_path, music_48k, name, options):
    path = stereo_file(tmp_path, name, music_48k, **options)
    seed = seed_from_audio(path)
    loop = seed.loop

    assert loop.samples.shape == (FRAME,) and loop.samples.dtype == np.float32
    assert loop.bpm is None and loop.beats is None
    mel, params = mel_from_image(seed.image)
    assert params == PARAMS and mel.shape == (1, 512, 512)

    # The loop is the mono mix of the source at 44.1 kHz, from where it says it starts (its last
    # 30 ms are crossfaded into what came before the start, so they are left out).
    left, right = soundfile.read(path, dtype="float32")[0].T
    mix = torchaudio.functional.resample(
        torch.from_numpy((left + right) / 2), SOURCE_RATE, PARAMS.sample_rate
    ).numpy()
    start = round(loop.start_seconds * PARAMS.sample_rate)
    body = slice(0, FRAME - int(0.03 * PARAMS.sample_rate))
    correlation = np.corrcoef(loop.samples[body], mix[start : start + FRAME][body])[0, 1]
    assert correlation > 0.99

    seam, interior = seam_and_interior(gray(seed.image))
    assert seam <= np.percentile(interior, 95)


def test_seed_with_a_tempo_is_stretched_to_whole_beats_on_the_grid(tmp_path):
    # 16 beats at 112 BPM: the nearest whole-beat tempo is 117.1875 (10 beats per frame).
    music = groove(bpm=112.0, beats=16, seed=4, rate=SOURCE_RATE)
    path = stereo_file(tmp_path, "groove.flac", music.samples)
    loop = seed_from_audio(path, bpm=112.0).loop

    assert (loop.bpm, loop.beats) == (117.1875, 10)
    assert loop.samples.shape == (FRAME,)
    # The loop starts on a kick of the source (within 10 ms; measured 3 ms).
    kicks = np.asarray(music.kick_onsets) / SOURCE_RATE
    assert np.min(np.abs(kicks - loop.start_seconds)) < 0.010
    # Every beat of the stretched loop lands on the frame's grid: a kick starts at each multiple
    # of 60 / 117.1875 s, the low band rising sharply there (measured: at least 170-fold) and not
    # between beats (median 0.7). Unstretched, the beats would drift 4.6 % of a beat per beat.
    beat = 60.0 / loop.bpm * PARAMS.sample_rate
    grid = np.round(np.arange(loop.beats) * beat).astype(int)
    assert np.all(low_band_rises(loop.samples, grid, PARAMS.sample_rate) > 10.0)
    off_grid = np.round((np.arange(1, loop.beats) + 0.5) * beat).astype(int)
    assert np.median(low_band_rises(loop.samples, off_grid, PARAMS.sample_rate)) < 2.0


def dominant_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.fft.rfftfreq(audio.size, 1.0 / rate)[np.argmax(spectrum)])


def test_stretching_to_the_grid_keeps_the_pitch():
    # From 100 to 105.47 BPM: a resampling stretch would raise a 220 Hz tone to 232 Hz.
    rate = PARAMS.sample_rate
    t = np.arange(7 * rate) / rate
    tone = 0.5 * np.sin(2 * np.pi * 220.0 * t) * (1.0 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    loop = fit_to_frame(tone, PARAMS, bpm=100.0)
    assert (loop.bpm, loop.beats) == (105.46875, 9)
    assert dominant_hz(loop.samples, rate) == pytest.approx(220.0, abs=0.5)


def test_audio_of_exactly_one_frame_is_used_whole():
    # A loop the user already cut to 5.12 s stays as it is: nothing to choose, nothing to fade.
    samples = groove().samples.astype(np.float64)
    loop = fit_to_frame(samples, PARAMS)
    assert loop.start_seconds == 0.0
    np.testing.assert_allclose(loop.samples, samples, atol=1e-7)


def test_a_file_shorter_than_a_frame_is_refused_with_the_length_it_needs(tmp_path):
    path = stereo_file(tmp_path, "short.wav", np.tile(groove().samples, 2)[: 4 * SOURCE_RATE])
    with pytest.raises(UserError, match=r"is 4\.00 s long, but a seed needs at least 5\.12 s"):
        seed_from_audio(path)
    # Stretching 100 BPM up to 105.47 BPM takes 5.40 s of music to fill 5.12 s.
    with pytest.raises(UserError, match=r"at least 5\.40 s of audio .* at 100 BPM, stretched to "
                                        r"105\.46875 BPM"):
        seed_from_audio(path, bpm=100.0)


def test_unreadable_empty_silent_and_missing_files_are_refused(tmp_path):
    garbage = tmp_path / "notes.wav"
    garbage.write_text("not audio")
    with pytest.raises(UserError, match=r"cannot read .*notes\.wav as audio .* WAV, FLAC or OGG"):
        seed_from_audio(garbage)

    no_bytes = tmp_path / "zero.ogg"
    no_bytes.touch()
    with pytest.raises(UserError, match=r"zero\.ogg is an empty file \(0 bytes\)"):
        seed_from_audio(no_bytes)

    no_samples = tmp_path / "empty.wav"
    soundfile.write(no_samples, np.zeros((0, 2), dtype=np.float32), SOURCE_RATE)
    with pytest.raises(UserError, match=r"empty\.wav contains no audio \(zero samples\)"):
        seed_from_audio(no_samples)

    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros((6 * SOURCE_RATE, 2), dtype=np.float32), SOURCE_RATE)
    with pytest.raises(UserError, match=r"silent\.wav is silent"):
        seed_from_audio(silent)

    with pytest.raises(UserError, match=r"missing\.wav: no such file"):
        seed_from_audio(tmp_path / "missing.wav")


@pytest.mark.parametrize("bpm", [0.0, -120.0, 1000.0, float("nan")])
def test_an_impossible_tempo_is_refused(tmp_path, bpm):
    path = stereo_file(tmp_path, "music.wav", groove().samples)
    with pytest.raises(UserError, match="beats per minute, 40 to 300"):
        seed_from_audio(path, bpm=bpm)


# --- the command line ------------------------------------------------------------------------


def test_cli_lists_the_library(capsys):
    assert main(["seeds"]) == 0
    out = capsys.readouterr().out
    for loop in list_seed_loops():
        assert loop.name in out and loop.description in out
    assert "117.1875" in out


def test_cli_makes_a_seed(tmp_path, capsys):
    music = groove(bpm=112.0, beats=16, seed=5, rate=SOURCE_RATE)
    source = stereo_file(tmp_path, "loop.wav", music.samples)
    out = tmp_path / "seed.png"

    assert main(["make-seed", source, str(out), "--bpm", "112"]) == 0
    assert "stretched to 117.1875 BPM (10 beats)" in capsys.readouterr().out
    mel, params = mel_from_image(Image.open(out))
    assert params == PARAMS and mel.shape == (1, 512, 512)


def test_cli_reports_bad_input_as_an_error_message(tmp_path, capsys):
    garbage = tmp_path / "notes.wav"
    garbage.write_text("not audio")
    assert main(["make-seed", str(garbage), str(tmp_path / "seed.png")]) == 2
    assert "streamer make-seed: error: cannot read" in capsys.readouterr().err

    source = stereo_file(tmp_path, "loop.wav", groove().samples)
    assert main(["make-seed", source, str(tmp_path / "seed.jpg")]) == 2
    assert "ending in .png" in capsys.readouterr().err
