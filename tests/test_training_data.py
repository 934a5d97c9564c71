"""The built-in model's training data: the composer, its captions, the split and the renders."""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import io
import shutil
import sys
from fractions import Fraction
from pathlib import Path

import mido
import numpy as np
import pytest
from PIL import Image
from test_seeds import seam_and_interior

from streamer.cli import main
from streamer.errors import UserError
from streamer.seeds import frame_samples
from streamer.spectrogram import SpectrogramParams, mel_from_image
from streamer.training.composer import (
    DRUM_KIT,
    INSTRUMENTS,
    KEY_NAMES,
    MAJOR,
    MINOR,
    STYLES,
    compose,
)
from streamer.training.dataset import read_info, read_split
from streamer.training.make_dataset import (
    DatasetConfig,
    composition_midi,
    held_out_indices,
    make_dataset,
    render_clip,
)
from streamer.training.midi import DRUM_CHANNEL
from streamer.training.synth import DEFAULT_SOUNDFONT, SynthConfig, check_synth

PARAMS = SpectrogramParams()
COMPOSITIONS = [compose(0, index) for index in range(360)]
needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not DEFAULT_SOUNDFONT.is_file(),
    reason="needs fluidsynth and fluid-soundfont-gm (./install.sh)",
)


# --- the composer (pure) -----------------------------------------------------------------------


def test_composer_is_deterministic_per_seed_and_index():
    assert compose(0, 17) == compose(0, 17)
    assert compose(3, 17) == compose(3, 17)
    assert compose(0, 17) != compose(1, 17)
    assert compose(0, 17).caption != compose(0, 17 + len(STYLES)).caption


def test_clip_n_is_the_clip_the_built_in_model_learnt_from():
    """The data set is pinned: a change of the composer that moves one note or one random draw
    makes a different data set (then retrain the built-in model, and only then move this)."""
    digest = hashlib.sha256()
    for seed in (0, 7):
        for index in range(240):
            digest.update(repr(compose(seed, index)).encode())
    assert digest.hexdigest() == "956374fc5610b9eb338197bc528ad649370da16cce27c3f3132b6b7cb4361d0e"


def test_every_style_and_many_instruments_are_reached():
    styles = collections.Counter(c.labels["style"] for c in COMPOSITIONS)
    assert set(styles) == {style.name for style in STYLES} and len(styles) >= 10
    assert len(set(styles.values())) == 1  # styles take turns: the same count each
    instruments = {name for c in COMPOSITIONS for name in c.labels["instruments"]}
    assert len(instruments) >= 24
    families = {INSTRUMENTS[name].family for name in instruments}
    assert {"piano", "organ", "guitar", "bass", "strings", "brass", "reed", "pad", "lead",
            "mallet"} <= families
    for label, values in (("drums", {True, False}), ("mode", {"major", "minor"}),
                          ("feel", {"sparse", "busy"}),
                          ("kind", {"ensemble", "solo", "drums_only"})):
        assert values <= {c.labels[label] for c in COMPOSITIONS}, label
    roles = {part.role for c in COMPOSITIONS for part in c.parts}
    assert roles == {"drums", "bass", "chords", "pad", "arpeggio", "melody"}


def test_styles_differ_in_tempo():
    tempi = {style.name: {c.labels["bpm"] for c in COMPOSITIONS if c.style == style.name}
             for style in STYLES}
    assert max(tempi["ambient"]) < min(tempi["house"]) < min(tempi["drum_and_bass"])
    assert max(tempi["lofi"]) < min(tempi["techno"])


def test_every_tempo_fills_the_frame_with_whole_beats():
    frame_minutes = Fraction(frame_samples(PARAMS), PARAMS.sample_rate) / 60
    for composition in COMPOSITIONS:
        assert Fraction(composition.labels["bpm"]) * frame_minutes == composition.beats


def channel_notes(midi: bytes) -> tuple[dict[int, int], dict[int, set[int]]]:
    """Program of each channel, and the keys each channel plays, from a MIDI file."""
    programs, keys = {}, collections.defaultdict(set)
    for message in mido.MidiFile(file=io.BytesIO(midi)).tracks[0]:
        if message.type == "program_change":
            programs[message.channel] = message.program
        elif message.type == "note_on" and message.velocity > 0:
            keys[message.channel].add(message.note)
    return programs, keys


@pytest.mark.parametrize("composition", COMPOSITIONS[:120], ids=lambda c: f"clip{c.index}")
def test_caption_says_what_the_midi_holds(composition):
    labels, caption = composition.labels, composition.caption
    programs, keys = channel_notes(composition_midi(composition, SynthConfig()))
    pitched = {channel for channel in keys if channel != DRUM_CHANNEL}

    # Drums: notes on General MIDI channel 10 exactly when the labels say so.
    assert (DRUM_CHANNEL in keys) == labels["drums"]
    if not labels["drums"]:
        assert "no drums" in caption
    # The instruments sounding are the caption's, each named in it.
    sounding = {programs[channel] for channel in pitched}
    assert sounding == {INSTRUMENTS[name].program for name in labels["instruments"]}
    for name in labels["instruments"]:
        assert name in caption
    assert labels["feel"] in caption
    assert labels["style"] in {style.name for style in STYLES}

    if labels["kind"] == "drums_only":
        assert caption.startswith("drum kit only") and not pitched
        assert labels["lead"] == DRUM_KIT and labels["mode"] is None
        return
    assert labels["lead"] in labels["instruments"]
    assert labels["lead_family"] == INSTRUMENTS[labels["lead"]].family
    # The mode: every pitched note is in the scale of the labelled key.
    tonic_name, mode = labels["key"].split()
    assert mode == labels["mode"] and f", {mode}," in caption
    scale = {(KEY_NAMES.index(tonic_name) + step) % 12
             for step in (MINOR if mode == "minor" else MAJOR)}
    assert {key % 12 for channel in pitched for key in keys[channel]} <= scale
    if labels["kind"] == "solo":
        assert caption.startswith(f"solo {labels['lead']}, no drums")
        assert len(sounding) == 1


def test_held_out_split_is_fixed_disjoint_and_covers_every_style():
    held_out = held_out_indices(seed=0, clips=6000, fraction=0.1)
    assert held_out == held_out_indices(seed=0, clips=6000, fraction=0.1)
    assert held_out != held_out_indices(seed=1, clips=6000, fraction=0.1)
    assert len(held_out) >= 600 and held_out <= set(range(6000))
    per_style = collections.Counter(index % len(STYLES) for index in held_out)
    assert set(per_style.values()) == {50}
    # Never less than the fraction asked, whatever the count.
    for clips in (1, 13, 100, 1001):
        assert len(held_out_indices(0, clips, 0.15)) >= 0.15 * clips
    with pytest.raises(UserError):
        held_out_indices(0, 100, 1.0)


# --- renders -----------------------------------------------------------------------------------


def first(kind: str):
    return next(c for c in COMPOSITIONS if c.labels["kind"] == kind)


def assert_loops_seamlessly(image: Image.Image, beats: int) -> None:
    pixels = np.asarray(image.convert("L"))
    seam, interior = seam_and_interior(pixels)
    # A clip starts on its downbeat, so the wrap is an onset like the others: no larger than
    # the biggest change inside (measured over 40 clips: 0.18 to 0.69 of it). Cutting 0.4 beat
    # off the end makes the wrap a jump: 0.8 to 3 times the biggest change inside.
    assert seam <= 0.8 * interior.max()
    cut = int(0.4 * pixels.shape[1] / beats)
    broken_seam, _ = seam_and_interior(pixels[:, :-cut])
    assert broken_seam > 1.5 * seam


@needs_fluidsynth
@pytest.mark.parametrize("kind", ["drums_only", "solo"])
def test_rendered_clips_loop_seamlessly(tmp_path, kind):
    composition = first(kind)
    image = render_clip(composition, DatasetConfig(), tmp_path)
    mel, params = mel_from_image(image)
    assert params == PARAMS and mel.shape == (1, 512, 512)
    assert_loops_seamlessly(image, composition.beats)


@needs_fluidsynth
def test_make_dataset_writes_the_format_and_continues_an_interrupted_run(tmp_path, capsys):
    directory = tmp_path / "data"
    assert main(["make-dataset", str(directory), "--clips", "2", "--jobs", "2"]) == 0
    assert "2 held out" in capsys.readouterr().out  # every style keeps a held-out clip
    test = read_split(directory, "test")
    assert [record.file_name for record in test] == ["000000.png", "000001.png"]
    assert len(read_split(directory, "train")) == 0
    for record, index in zip(test, (0, 1)):
        assert record.caption == compose(0, index).caption
        assert record.labels == compose(0, index).labels
        assert_loops_seamlessly(Image.open(test.image_path(record)), record.labels["beats"])
    info = read_info(directory)
    assert (info["seed"], info["clips"], info["splits"]) == (0, 2, {"train": 0, "test": 2})

    # An interrupted run: one image lost, a half-written one left behind. The rerun renders
    # only the missing clip, the same bytes as before.
    kept, lost = test.image_path(test.records[0]), test.image_path(test.records[1])
    kept_before, lost_before = kept.stat().st_mtime_ns, lost.read_bytes()
    lost.unlink()
    make_dataset(directory, clips=2, jobs=1, progress=False)
    assert kept.stat().st_mtime_ns == kept_before
    assert lost.read_bytes() == lost_before

    with pytest.raises(UserError, match="seed=0"):
        make_dataset(directory, clips=2, seed=5, jobs=1, progress=False)


@needs_fluidsynth
def test_a_clip_that_fails_to_render_is_left_out_and_said(tmp_path):
    # No loop is ever this steady: the clip fails its check and the data set is written without it.
    strict = DatasetConfig(synth=SynthConfig(steady_tolerance=-1.0))
    summary = make_dataset(tmp_path, clips=1, jobs=1, config=strict, progress=False)
    assert list(summary["failed_clips"]) == ["0"]
    assert "not a steady loop" in summary["failed_clips"]["0"]
    assert len(read_split(tmp_path, "test")) == len(read_split(tmp_path, "train")) == 0


def test_missing_synth_says_what_to_install(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="fluid-soundfont-gm"):
        check_synth(tmp_path / "missing.sf2")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError, match="apt-get install fluidsynth"):
        check_synth(DEFAULT_SOUNDFONT)


@needs_fluidsynth
def test_seed_loop_script_still_renders_the_shipped_loops(tmp_path, monkeypatch):
    # The script shares the MIDI writer and the renderer with make-dataset: a shipped loop
    # rendered again is the same image, bit for bit.
    path = Path(__file__).resolve().parents[1] / "scripts" / "render_seed_loops.py"
    spec = importlib.util.spec_from_file_location("render_seed_loops", path)
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # dataclasses look their module up
    spec.loader.exec_module(script)
    style = next(style for style in script.STYLES if style.name == "house_117")
    image = script.render_style(style, script.STYLES.index(style), SynthConfig(), tmp_path)
    shipped = Image.open(script.DEFAULT_OUT / "house_117.png")
    assert np.array_equal(np.asarray(image), np.asarray(shipped))
