"""Seed loops composed on the fly for the song form: the composition (pure), the producer-side
shell that renders them (FluidSynth, ahead of need, bounded), and a stream that plays them on
its own tempo. ``--form`` on the command line."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamer.audio.measures import onset_positions
from streamer.config import add_stream_options, stream_config_from_args
from streamer.errors import UserError
from streamer.plan.arranger import LoopVariation
from streamer.runtime.assemble import build_core
from streamer.runtime.composed_loops import (
    ComposedLoops,
    compose_loop_audio,
    song_loop_styles,
    style_of_prompt,
)
from streamer.runtime.diffusion_maker import seed_loop_image
from streamer.runtime.render import fill_lookahead
from streamer.runtime.standin import StandInFrameMaker
from streamer.runtime.stream_config import StreamConfig
from streamer.seeds.library import frame_samples
from streamer.spectrogram.params import SpectrogramParams
from streamer.training.composer import DRUM_KIT, HIGH_TOM, compose_song_loop
from streamer.training.synth import DEFAULT_SOUNDFONT, SynthConfig

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not DEFAULT_SOUNDFONT.is_file(),
    reason="needs fluidsynth and fluid-soundfont-gm (./install.sh)",
)
BEATS = 8  # boom_bap_94: 93.75 BPM, two bars a frame


def variation(**changes) -> LoopVariation:
    base = LoopVariation("boom_bap_94", "house", 5, 1, "busy", 0, False)
    return dataclasses.replace(base, **changes)


def pitches(composition, role: str) -> set[int]:
    return {n.key for part in composition.parts if part.role == role for n in part.notes}


def drum_hits(composition) -> list[tuple[int, object]]:
    return [(n.key, n.start) for p in composition.parts if p.role == "drums" for n in p.notes]


def compose(v: LoopVariation):
    return compose_song_loop(v.style, BEATS, v.song, v.groove, v.drums, v.chord_step, v.fill)


def test_a_song_keeps_its_instruments_while_its_harmony_moves_and_its_drums_change():
    first, later = compose(variation()), compose(variation(chord_step=2))
    assert first.programs == compose(variation(chord_step=4)).programs, "one band all song long"
    assert pitches(first, "chords") != pitches(later, "chords"), "the next chords"
    assert first.steps == 4 * BEATS
    # Across the progression's four frames the bass visits more roots than one loop holds.
    roots = set().union(*(pitches(compose(variation(chord_step=s)), "bass") for s in (0, 2, 4, 6)))
    assert len(roots) > len(pitches(first, "bass"))
    breakdown = compose(variation(drums="none"))
    assert all(part.instrument != DRUM_KIT for part in breakdown.parts)
    assert any(part.role == "pad" for part in breakdown.parts)
    filled = compose(variation(fill=True))
    last_beat = [n for p in filled.parts if p.role == "drums" for n in p.notes if n.start >= 28]
    assert HIGH_TOM in {n.key for n in last_beat}
    other_groove = compose(variation(groove=0))
    assert drum_hits(other_groove) != drum_hits(first), "another section, another drum pattern"
    with pytest.raises(ValueError, match="unknown style"):
        compose(variation(style="polka"))


def roles(composition) -> dict[str, int]:
    return {part.role: part.program for part in composition.parts}


def test_the_frames_of_a_phrase_answer_each_other_over_the_same_groove():
    """A four-bar phrase is two frames: the second hands the lead line to another instrument,
    so that consecutive frames differ in what the model follows most (its seed loop's parts)."""
    for drums, call_lead, answer_lead in (("busy", "melody", "arpeggio"),
                                          ("sparse", None, "arpeggio"),
                                          ("none", "bass", "melody")):
        call = roles(compose(variation(drums=drums, chord_step=4)))
        answer = roles(compose(variation(drums=drums, chord_step=6)))
        assert (call_lead is None or call_lead in call) and call_lead not in answer, drums
        assert answer_lead in answer and answer_lead not in call, drums
        assert call["chords"] == answer["chords"], "the band's chords play throughout"
    call, answer = compose(variation(chord_step=4)), compose(variation(chord_step=6))
    assert drum_hits(call) == drum_hits(answer), "the groove holds across the phrase"


def test_a_prompt_names_the_style_its_loops_are_composed_in():
    assert style_of_prompt("house track, mellow piano chords, minor, busy") == "house"
    assert style_of_prompt("lo-fi hip hop beat, rhodes, sparse") == "lofi"
    assert style_of_prompt("rain on a tin roof") == "boom_bap"


@needs_fluidsynth
def test_a_composed_seed_loop_is_one_frame_on_the_streams_beat_grid():
    audio = compose_loop_audio(variation(), BEATS, SynthConfig())
    assert audio.shape == (frame_samples(SpectrogramParams()),)
    assert np.all(np.isfinite(audio)) and 0.5 < np.abs(audio).max() <= 0.8 + 1e-6
    onsets = onset_positions(audio[None], 44100) / 44100.0
    sixteenth = 60.0 / 93.75 / 4
    off_grid = np.abs(onsets / sixteenth - np.round(onsets / sixteenth)) * sixteenth
    assert len(onsets) >= 8 and np.mean(off_grid < 0.012) >= 0.9


class Recorded:
    """The real composer, counting what it is asked for and when."""

    def __init__(self, fail_for: str | None = None) -> None:
        self.asked: list[str] = []
        self.fail_for = fail_for
        self.lock = threading.Lock()

    def __call__(self, v: LoopVariation, beats: int, synth: SynthConfig) -> Image.Image:
        with self.lock:
            self.asked.append(v.name)
        if v.style == self.fail_for:
            raise RuntimeError("repetitions differ: not a steady loop")
        return seed_loop_image("house_117")  # any image: the test is about the plumbing


def test_each_loop_is_composed_once_the_next_ones_ahead_and_a_failure_plays_the_base(caplog):
    recorded = Recorded(fail_for="jazz")
    loops = ComposedLoops({"boom_bap_94": BEATS}, seed_loop_image, compose=recorded)
    try:
        assert loops("boom_bap_94").size == (512, 512), "library loops pass through"
        first = variation()
        loops(first.name)
        loops.wait_ahead()
        ahead = {  # the groove's next frame (a fill) and the break's first (no drums)
            variation(chord_step=2, fill=True).name,
            variation(groove=2, drums="none", chord_step=2).name,
        }
        assert ahead == set(recorded.asked) - {first.name}, "only what the song can ask next"
        loops(first.name), loops(variation(chord_step=2, fill=True).name)
        assert recorded.asked.count(first.name) == 1, "kept, not composed again"
        assert recorded.asked.count(variation(chord_step=2, fill=True).name) == 1, "made ahead"
        with caplog.at_level(logging.WARNING):
            image = loops(variation(style="jazz").name)
            loops(variation(style="jazz", chord_step=4).name)
        assert image.tobytes() == seed_loop_image("boom_bap_94").tobytes()
        warned = [r for r in caplog.records if "could not compose" in r.getMessage()]
        assert len(warned) == 1, "one line per cause, not one per frame"
    finally:
        loops.close()


def test_without_fluidsynth_the_form_composes_nothing_and_says_so(caplog, tmp_path):
    with caplog.at_level(logging.WARNING):
        assert song_loop_styles(("house track",), soundfont=tmp_path / "missing.sf2") == ()
    assert "walks on the built-in seed loops" in caplog.text


@needs_fluidsynth
def test_a_song_form_stream_plays_composed_loops_on_its_tempo_and_names_its_sections():
    config = StreamConfig()
    playlist = config.planner.playlist
    planner = dataclasses.replace(config.planner, loop_styles=song_loop_styles(playlist))
    config = dataclasses.replace(config, planner=planner)
    core = build_core(config)
    loops = ComposedLoops({"boom_bap_94": BEATS}, seed_loop_image)
    maker = StandInFrameMaker(0.0, seed_images=loops)
    heard, samples = [], []
    try:
        for second in range(7):  # frames 0 and 1 heard, 2 and 3 made
            fill_lookahead(core, maker, float(second))
            rendered = core.render(44100, float(second))
            samples.append(rendered.audio.samples)
            heard += [core.heard(switch, float(second)) for switch in rendered.audio.events]
    finally:
        loops.close()
    playing = [pair[0] for pair in heard if pair is not None]
    assert len(playing) >= 2
    assert {p.section for p in playing} == {"intro"}
    assert {p.seed_loop for p in playing} == {"boom_bap_94"}
    assert {p.bpm for p in playing} == {93.75}, "the stream's tempo and bar grid hold"
    variations = [LoopVariation.parse(p.seed_variation) for p in playing]
    assert len({v.chord_step for v in variations}) == len(variations), "the harmony moves"
    assert np.all(np.isfinite(np.concatenate(samples, axis=1)))


def parse(*argv: str) -> StreamConfig:
    parser = argparse.ArgumentParser()
    add_stream_options(parser)
    return stream_config_from_args(parser.parse_args(list(argv)))


def test_form_comes_from_a_flag_or_the_file_song_by_default(tmp_path: Path):
    assert parse().planner.form == "song"
    assert parse("--form", "loop").planner.form == "loop"
    path = tmp_path / "stream.toml"
    path.write_text('form = "rondo"\n')
    with pytest.raises(UserError, match="--form: form must be one of song, loop"):
        parse("--config", str(path))


@needs_fluidsynth
def test_songs_play_at_their_styles_tempi_unless_a_seed_loop_or_link_sets_one(tmp_path: Path):
    path = tmp_path / "stream.toml"
    path.write_text('prompt = "lo-fi"\nplaylist = ["house track"]\n')
    tempi = dict(parse("--config", str(path)).planner.style_beats)
    assert tempi == {"house": (10, 11), "lofi": (6, 7)}, "the composer's Style.beats"
    assert parse("--seed-loop", "boom_bap_94").planner.style_beats == (), "a performer's loop"
    path.write_text('seed_loop = "house_117"\n')
    assert parse("--config", str(path)).planner.style_beats == ()
    linked = argparse.Namespace(**vars(_args()), link=True)
    assert stream_config_from_args(linked).planner.style_beats == (), "Link's tempo holds"


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_stream_options(parser)
    return parser.parse_args(list(argv))
