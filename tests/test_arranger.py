"""The song form: sections that walk over minutes, composed seed loops named for each frame, and
``--form loop`` planning exactly the stream as it was before forms."""

import dataclasses
import json
from pathlib import Path

import pytest

from streamer.generate.presets import BUILTIN_PROMPTS
from streamer.plan.arranger import (
    CHORDS_PER_FRAME,
    SECTIONS,
    SONG,
    LoopVariation,
    base_loop,
    form_point,
    loop_beats,
    next_loops,
    section_prompt,
    song_beats,
)
from streamer.plan.planner import Planner, PlannerConfig
from streamer.plan.settings import PromptBlend, StreamSettings

FIXTURE = Path(__file__).parent / "fixtures" / "loop_form_frames.json"
BPM = {"boom_bap_94": 93.75, "house_117": 117.1875}
STYLES = tuple((prompt, "lofi" if "lo-fi" in prompt else "house") for prompt in BUILTIN_PROMPTS)
#: The composer's tempi of those styles (``Style.beats``), and one that knows the stream's 8.
TEMPI = (("lofi", (6, 7)), ("house", (10, 11)), ("funk", (8, 9, 10)))


def stream_settings(**changes) -> StreamSettings:
    base = StreamSettings(prompts=PromptBlend.single(BUILTIN_PROMPTS[0]), guidance=4.0)
    return dataclasses.replace(base, **changes)


def song_planner(loop_styles=STYLES, style_beats=(), **changes) -> Planner:
    config = PlannerConfig(
        playlist=BUILTIN_PROMPTS, loop_styles=loop_styles, style_beats=style_beats
    )
    return Planner(stream_settings(**changes), config, BPM)


def test_form_loop_plans_exactly_the_stream_as_it_was_before_forms():
    settings = stream_settings()
    walk = Planner(settings, PlannerConfig(playlist=BUILTIN_PROMPTS, form="loop"), BPM)
    frames = walk.next_frames(60)
    change = dataclasses.replace(
        settings, prompts=PromptBlend.single("jazz"), seed_loop="house_117"
    )
    walk.change(change, 58)
    frames = frames[:58] + walk.next_frames(60)
    rows = [
        [f.index, f.plan_version, [[t, round(w, 9)] for t, w in f.prompts.weighted], f.seed_a,
         f.seed_b, round(f.noise_alpha, 9), round(f.denoising, 9), round(f.guidance, 9),
         f.seed_loop, round(f.transition_alpha, 9)]
        for f in frames
    ]
    assert rows == json.loads(FIXTURE.read_text())["frames"]
    assert all(f.section is None for f in frames)


def test_a_song_walks_its_sections_in_order_with_their_words_and_denoising():
    frames = song_planner().next_frames(80)
    order = [f.section for f in frames]
    sections = [name for i, name in enumerate(order) if i == 0 or order[i - 1] != name]
    assert sections[: len(SONG)] == list(SONG), "one song, every section in order"
    assert sections[len(SONG)] == SONG[0], "then the next song"
    song_length = order.index(SONG[0], order.index("outro"))
    assert 27 <= song_length <= 40, "a song lasts minutes (2.3 to 3.4 at 5.12 s a frame)"
    settled = {}
    for frame in frames:
        if frame.transition_alpha == 1:
            settled.setdefault(frame.section, frame)
    assert settled["break"].prompts.prompts[0].endswith("no drums, sparse")
    assert settled["drop"].prompts.prompts[0].endswith("busy")
    assert "no drums" not in settled["drop"].prompts.prompts[0]
    assert settled["intro"].denoising < settled["groove"].denoising < settled["drop"].denoising
    songs = [frames[0].prompts.prompts[0], frames[song_length].prompts.prompts[-1]]
    assert songs[0].rsplit(",", 1)[0] != songs[1].rsplit(",", 1)[0], "the next song's prompt differs"


def test_every_frame_of_a_song_has_its_own_composed_seed_loop_on_the_streams_tempo():
    frames = song_planner().next_frames(40)
    variations = [LoopVariation.parse(f.seed_loop) for f in frames]
    assert {v.base for v in variations} == {"boom_bap_94"}
    assert {base_loop(f.seed_loop) for f in frames} == {"boom_bap_94"}
    # The harmony moves on every frame and comes round every four.
    assert [v.chord_step for v in variations[:5]] == [0, 2, 4, 6, 0]
    by_section = {}
    for frame, variation in zip(frames, variations):
        by_section.setdefault(frame.section, []).append(variation)
    assert {v.drums for v in by_section["break"]} == {"none"}
    assert {v.drums for v in by_section["groove"]} == {"busy"}
    groove = by_section["groove"]
    assert [v.fill for v in groove[:4]] in ([False, True] * 2, [True, False] * 2), "every 4 bars"
    answers = [v for v in variations if (v.chord_step // CHORDS_PER_FRAME) % 2 == 1]
    assert all(v.fill for v in answers if v.drums == "busy"), "the fill ends a phrase's answer"
    assert len({v.groove for v in variations}) >= 4, "the drum pattern changes between sections"


def test_without_a_composer_the_form_walks_on_the_streams_own_seed_loop():
    frames = song_planner(loop_styles=()).next_frames(40)
    assert {f.seed_loop for f in frames} == {"boom_bap_94"}
    assert len({f.section for f in frames}) >= 4


def test_a_performers_change_holds_the_form_off_as_it_held_the_drift():
    walk = song_planner()
    walk.next_frames(3)
    mine = stream_settings(prompts=PromptBlend.single("mine"), seed_loop="house_117",
                           denoising=0.6)
    walk.change(mine)
    hold = walk.config.frames_for(walk.config.endless_hold_after_control_seconds)
    held = walk.next_frames(hold)
    assert all(f.section is None and f.seed_loop == "house_117" for f in held)
    assert all(f.prompts.weighted == (("mine", 1.0),) for f in held[2:])
    after = walk.next_frames(10)
    assert all(f.section is not None for f in after), "the form comes back after the hold"
    assert "mine" not in after[3].prompts.prompts, "at once, with its section's words"
    assert {base_loop(f.seed_loop) for f in after} == {"house_117"}, "on the performer's loop"
    assert all(abs(f.denoising - 0.6) <= 0.05 + 1e-9 for f in after[2:])


def test_the_same_seed_plans_the_same_song_and_another_seed_another():
    assert song_planner().next_frames(50) == song_planner().next_frames(50)
    first = [f.prompts for f in song_planner().next_frames(200)]
    other = [f.prompts for f in song_planner(seed=99).next_frames(200)]
    assert first != other


def test_a_frame_far_into_the_stream_is_planned_at_once():
    point = form_point(20_000, 7, "jazz", BUILTIN_PROMPTS, "boom_bap_94", 0.75, dict(STYLES))
    assert point.section in SECTIONS and point.song > 400  # 28 hours in


def test_section_words_replace_the_prompts_feel_and_thin_the_band():
    prompt = "house track, mellow piano chords, deep synth bass, minor, sparse"
    assert section_prompt(prompt, SECTIONS["drop"]) == (
        "house track, mellow piano chords, deep synth bass, minor, busy"
    )
    assert section_prompt(prompt, SECTIONS["break"]) == (
        "house track, mellow piano chords, minor, no drums, sparse"
    ), "only the lead plays a break"
    assert section_prompt(prompt, SECTIONS["intro"]) == (
        "house track, mellow piano chords, minor, sparse"
    )
    assert section_prompt("free jazz", SECTIONS["intro"]) == "free jazz, sparse"
    assert section_prompt("jazz, piano", SECTIONS["intro"]) == "jazz, piano, sparse"


def test_a_variation_name_says_everything_and_nothing_else_parses():
    variation = LoopVariation("boom_bap_94", "lofi", 7001, 3, "none", 6, True)
    assert LoopVariation.parse(variation.name) == variation
    assert base_loop(variation.name) == "boom_bap_94"
    assert base_loop("house_117") == "house_117"
    at_seven = dataclasses.replace(variation, beats=7)
    assert at_seven.name == variation.name + ".b7"
    assert LoopVariation.parse(at_seven.name) == at_seven
    assert LoopVariation.parse(dataclasses.replace(at_seven, fill=False).name).beats == 7
    for bad in ("boom_bap_94", "a~lofi.s1.g1.busy", "a~lofi.s1.g1.loud.c0", "a~lofi.x1.g1.busy.c0",
                "a~lofi.s1.g1.busy.c0.fil", "a~lofi.s1.g1.busy.c0.b", "a~lofi.s1.g1.busy.c0.b0",
                "a~lofi.s1.g1.busy.c0.b7.fill", "a~lofi.s1.g1.busy.c0.fill.fill"):
        with pytest.raises(ValueError, match="not the name of a composed seed loop"):
            LoopVariation.parse(bad)


def test_the_first_song_plays_the_streams_own_prompt():
    frames = song_planner(prompts=PromptBlend((("free jazz", 3), ("rain", 1)))).next_frames(4)
    assert frames[-1].prompts.weighted == (("free jazz, sparse", 1.0),)
    assert frames[-1].section == "intro"


def test_the_next_loops_hold_every_loop_the_song_plays_next_and_at_most_two():
    """What the song form composes ahead: each frame's loop, within a song, is among the loops
    ``next_loops`` names for the frame before it (so the producer never waits for FluidSynth
    mid-song), and it names at most two."""
    styles = {"house track": "house", "jazz": "jazz"}
    points = [
        form_point(index, 7, "house track", ("jazz",), "boom_bap_94", 0.75, styles)
        for index in range(150)
    ]
    for before, after in zip(points, points[1:]):
        ahead = next_loops(before.loop)
        assert len(ahead) <= 2
        if after.song == before.song:
            assert after.loop in ahead, (before.section, after.section)


def test_a_song_plays_at_the_tempo_its_style_knows_nearest_the_streams():
    assert song_beats(8, (10, 11)) == 10, "house: up to its slowest"
    assert song_beats(8, (6, 7)) == 7, "lo-fi: down to its fastest"
    assert song_beats(8, (7, 9)) == 7, "as near either way: the slower"
    assert song_beats(8, (8, 9, 10)) is None, "a style that knows the stream's tempo keeps it"
    assert song_beats(None, (10, 11)) is None and song_beats(8, ()) is None, "nothing to go on"
    beats_of = {"boom_bap_94": 8}
    assert loop_beats("boom_bap_94", beats_of) == 8
    assert loop_beats("boom_bap_94~house.s0.g1.busy.c0", beats_of) == 8
    assert loop_beats("boom_bap_94~house.s0.g1.busy.c0.b10", beats_of) == 10
    assert loop_beats("mine.png", beats_of) is None


def test_the_tempo_changes_between_songs_only_and_each_song_keeps_its_own():
    frames = song_planner(style_beats=TEMPI).next_frames(150)
    variations = [LoopVariation.parse(f.seed_loop) for f in frames]
    assert {v.base for v in variations} == {"boom_bap_94"}, "the bar grid's and fallback's"
    songs = {}
    for variation in variations:
        songs.setdefault(variation.song, set()).add(variation.beats)
    assert len(songs) >= 4
    by_style = {LoopVariation.parse(f.seed_loop).style: set() for f in frames}
    for variation in variations:
        by_style[variation.style].add(variation.beats)
    assert by_style == {"lofi": {7}, "house": {10}}, "one tempo a song, its style's"
    changes = [i for i in range(1, len(frames)) if variations[i].beats != variations[i - 1].beats]
    assert changes and all(frames[i].section == "intro" for i in changes), "at a song's start"
    assert all(frames[i - 1].section == "outro" for i in changes), "after the last one's outro"


def test_the_loops_composed_ahead_are_at_the_songs_tempo():
    point = form_point(10, 7, "house track", ("jazz",), "boom_bap_94", 0.75,
                       {"house track": "house", "jazz": "lofi"}, dict(TEMPI), 8)
    assert point.loop.beats == 10 and {v.beats for v in next_loops(point.loop)} == {10}
    funk = form_point(10, 7, "funk", ("jazz",), "boom_bap_94", 0.75, {"funk": "funk"},
                      dict(TEMPI), 8)
    assert funk.loop.beats is None, "funk knows 8 beats: its name is as before"


def test_a_performers_seed_loop_keeps_its_tempo_through_every_song():
    walk = song_planner(style_beats=TEMPI)
    walk.next_frames(3)
    walk.change(stream_settings(seed_loop="house_117"))
    hold = walk.config.frames_for(walk.config.endless_hold_after_control_seconds)
    walk.next_frames(hold)
    after = [LoopVariation.parse(f.seed_loop) for f in walk.next_frames(80)]
    assert {v.base for v in after} == {"house_117"} and {v.beats for v in after} == {None}
    prompt_only = song_planner(style_beats=TEMPI)
    prompt_only.change(stream_settings(prompts=PromptBlend.single("mine")))
    prompt_only.next_frames(hold)
    later = [LoopVariation.parse(f.seed_loop) for f in prompt_only.next_frames(80)]
    assert {7, 10} <= {v.beats for v in later}, "a prompt is no choice of tempo"
