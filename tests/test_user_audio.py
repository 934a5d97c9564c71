"""Fine-tuning data from the user's own music: a folder of audio files becomes a data set of
whole-beat loops with captions and a held-out split, or a clear error."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import soundfile
from material import SAMPLE_RATE, groove, low_band_rises, song

from streamer.cli import main
from streamer.errors import UserError
from streamer.seeds import frame_samples
from streamer.seeds.tempo import estimate_tempo
from streamer.spectrogram import SpectrogramParams, mel_from_image
from streamer.training.dataset import read_info, read_split
from streamer.training.user_audio import (
    folder_caption,
    held_out_counts,
    loops_of,
    prepare_user_audio,
)

PARAMS = SpectrogramParams()
FRAME_MINUTES = Fraction(frame_samples(PARAMS), PARAMS.sample_rate) / 60


def write(path, samples: np.ndarray, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.stack([samples, samples], axis=1), SAMPLE_RATE, **options)


def grooves(bpm: float, seconds: float, seed: int) -> np.ndarray:
    loop = groove(bpm=bpm, beats=8, seed=seed).samples
    return np.tile(loop, int(np.ceil(seconds * SAMPLE_RATE / loop.size)))[
        : int(seconds * SAMPLE_RATE)
    ]


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    """A user's folder: nested band/genre folders, a per-file caption, a captions.csv."""
    root = tmp_path_factory.mktemp("music")
    write(root / "my-band" / "ambient" / "slow.flac", grooves(100.0, 17.0, seed=1))
    write(root / "my-band" / "ambient" / "named.wav", song(12.0, seed=2))
    (root / "my-band" / "ambient" / "named.txt").write_text("dusty  lo-fi beat,\nwarm keys\n")
    write(root / "listed.ogg", grooves(140.0, 12.0, seed=3), format="OGG", subtype="VORBIS")
    (root / "captions.csv").write_text('file,caption\nlisted.ogg,"fast techno, acid bass"\n')
    (root / "notes.md").write_text("not audio, not looked at")
    return root


@pytest.fixture(scope="module")
def dataset(music, tmp_path_factory):
    out = tmp_path_factory.mktemp("dataset") / "set"
    seen = []
    prepared = prepare_user_audio(music, out, report=seen.append)
    return out, prepared, seen


def records(out):
    return {split: read_split(out, split) for split in ("train", "test")}


def test_every_file_gives_consecutive_loops_with_its_caption(dataset):
    out, prepared, seen = dataset
    assert [str(p.path) for p in seen] == [
        "listed.ogg",
        "my-band/ambient/named.wav",
        "my-band/ambient/slow.flac",
    ]
    by_source = {}
    for split in records(out).values():
        for record in split:
            by_source.setdefault(record.labels["source"], []).append(record)
    captions = {source: {r.caption for r in rs} for source, rs in by_source.items()}
    assert captions == {
        "listed.ogg": {"fast techno, acid bass"},
        "my-band/ambient/named.wav": {"dusty lo-fi beat, warm keys"},
        "my-band/ambient/slow.flac": {"my band, ambient"},
    }
    assert by_source["my-band/ambient/slow.flac"][0].labels["caption_source"] == "folders"
    # 17 s at 100 BPM, stretched to 105.47 BPM, makes three 5.12 s loops, one after the other.
    slow = sorted(by_source["my-band/ambient/slow.flac"], key=lambda r: r.labels["loop"])
    assert [r.labels["loop"] for r in slow] == [0, 1, 2]
    starts = [r.labels["start_seconds"] for r in slow]
    assert np.allclose(np.diff(starts), 5.12 * 105.46875 / 100.0, atol=0.3)


def test_every_loop_holds_a_whole_number_of_beats(dataset):
    out, _, _ = dataset
    for split in records(out).values():
        for record in split:
            assert Fraction(record.labels["bpm"]) * FRAME_MINUTES == record.labels["beats"]
            mel, params = mel_from_image(_image(split, record))
            assert params == PARAMS and mel.shape == (1, 512, 512)


def _image(split, record):
    from PIL import Image

    with Image.open(split.image_path(record)) as image:
        image.load()
        return image


def test_loops_of_a_steady_beat_keep_every_beat_on_the_grid():
    # 100 BPM source: every loop is stretched to 105.47 BPM (9 beats) and a kick starts each beat.
    music = grooves(100.0, 17.0, seed=4).astype(np.float64)
    tempo = estimate_tempo(music, SAMPLE_RATE)
    loops = list(loops_of(music, PARAMS, tempo.bpm))
    assert len(loops) == 3
    for loop in loops:
        assert (loop.bpm, loop.beats) == (105.46875, 9)
        beat = 60.0 / loop.bpm * SAMPLE_RATE
        on_grid = np.round(np.arange(loop.beats) * beat).astype(int)
        off_grid = np.round((np.arange(loop.beats - 1) + 0.5) * beat).astype(int)
        assert np.all(low_band_rises(loop.samples, on_grid, SAMPLE_RATE) > 10.0)
        assert np.median(low_band_rises(loop.samples, off_grid, SAMPLE_RATE)) < 2.0


@pytest.mark.parametrize("bpm", [100.0, 117.1875, 140.0])
def test_the_tempo_is_estimated_within_a_fraction_of_a_percent(bpm):
    tempo = estimate_tempo(grooves(bpm, 16.0, seed=5), SAMPLE_RATE)
    assert tempo.bpm == pytest.approx(bpm, rel=0.002)


def test_the_held_out_split_is_the_last_loops_of_each_file_and_at_least_a_tenth(dataset, music):
    out, prepared, _ = dataset
    splits = records(out)
    total = len(splits["train"]) + len(splits["test"])
    assert len(splits["test"]) >= 0.1 * total and len(splits["train"]) > 0
    loops = {str(p.path): p.loops for p in prepared}
    for record in splits["test"]:
        assert record.labels["loop"] >= loops[record.labels["source"]] - 1
    info = read_info(out)
    assert info["clips"] == total and info["held_out_clips"] == len(splits["test"])


def test_the_same_folder_makes_the_same_data_set(dataset, music, tmp_path):
    out, _, _ = dataset
    again = tmp_path / "again"
    prepare_user_audio(music, again)
    for split in ("train", "test"):
        first = (out / split / "metadata.jsonl").read_text()
        assert (again / split / "metadata.jsonl").read_text() == first


@pytest.mark.parametrize(
    ("loops", "held"),
    [
        ([10], [1]),
        ([10, 3, 2], [1, 1, 1]),
        ([1, 1, 1, 1, 1], [1, 0, 0, 0, 0]),
        ([1, 1], [1, 0]),
        ([20, 1, 1], [2, 1, 0]),  # 3 of 22 loops: 2 from the long file and a one-loop file
    ],
)
def test_held_out_counts(loops, held):
    assert held_out_counts(loops, 0.1) == held


def test_captions_from_folder_names():
    from pathlib import Path

    assert folder_caption(Path("/music/Jazz_Trio"), Path("a.wav")) == "Jazz Trio"
    assert folder_caption(Path("/m"), Path("my-band/ambient/x.wav")) == "my band, ambient"


# --- errors -----------------------------------------------------------------------------------


def test_a_folder_without_audio_is_an_error(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "readme.txt").write_text("hi")
    with pytest.raises(UserError, match="no audio in"):
        prepare_user_audio(tmp_path / "in", tmp_path / "out")


def test_an_unreadable_file_is_named(tmp_path):
    write(tmp_path / "in" / "good.wav", grooves(120.0, 12.0, seed=6))
    (tmp_path / "in" / "broken.flac").write_text("not audio")
    with pytest.raises(UserError, match=r"cannot read .*broken\.flac as audio"):
        prepare_user_audio(tmp_path / "in", tmp_path / "out")


def test_short_files_are_skipped_and_too_little_music_is_an_error(tmp_path):
    write(tmp_path / "in" / "long.wav", grooves(120.0, 11.0, seed=7))
    write(tmp_path / "in" / "short.wav", grooves(120.0, 3.0, seed=8))
    prepared = prepare_user_audio(tmp_path / "in", tmp_path / "out")
    short = [p for p in prepared if p.path.name == "short.wav"][0]
    assert short.loops == 0 and "3.00 s long, shorter than" in short.skipped

    (tmp_path / "in" / "long.wav").unlink()
    with pytest.raises(UserError, match=r"makes 0 loop\(s\).*short\.wav: 3\.00 s long"):
        prepare_user_audio(tmp_path / "in", tmp_path / "out2")
    assert not (tmp_path / "out2").exists()  # no half-written data set is left behind


def test_a_caption_file_naming_a_missing_file_and_a_used_output_are_errors(tmp_path):
    write(tmp_path / "in" / "a.wav", grooves(120.0, 11.0, seed=9))
    (tmp_path / "in" / "captions.txt").write_text("# mine\nb.wav: jazz\n")
    with pytest.raises(UserError, match=r"captions\.txt, line 2: no audio file 'b\.wav'"):
        prepare_user_audio(tmp_path / "in", tmp_path / "out")
    (tmp_path / "in" / "captions.txt").write_text("a.wav: jazz\n")
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    with pytest.raises(UserError, match="not an empty folder"):
        prepare_user_audio(tmp_path / "in", tmp_path / "used")
    prepare_user_audio(tmp_path / "in", tmp_path / "out")
    captions = {r.caption for split in records(tmp_path / "out").values() for r in split}
    assert captions == {"jazz"}


def test_the_command_writes_the_data_set_and_says_how_to_train(music, tmp_path, capsys):
    assert main(["prepare-audio", str(music), str(tmp_path / "set"), "--bpm", "120"]) == 0
    out = capsys.readouterr().out
    assert "streamer train" in out and "--init builtin" in out
    assert "listed.ogg: 2 loop(s) at 117.19 BPM (10 beats), caption 'fast techno" in out
    assert read_info(tmp_path / "set")["clips"] > 0
    assert (
        main(["prepare-audio", str(music), str(tmp_path / "x"), "--held-out-fraction", "0.9"]) == 2
    )
