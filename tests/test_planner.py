"""The score: where each upcoming frame comes from, and how control changes reshape it."""

import dataclasses

import pytest

from streamer.plan.planner import Planner, PlannerConfig
from streamer.plan.settings import PromptBlend, StreamSettings, Transition

BPM = {"loop": 117.1875}


def settings(prompt: str = "jazz", **changes) -> StreamSettings:
    base = StreamSettings(
        prompts=PromptBlend.single(prompt), seed_loop="loop", transition=Transition(seconds=5.12)
    )
    return dataclasses.replace(base, **changes)


def planner(config: PlannerConfig | None = None, **changes) -> Planner:
    config = config or PlannerConfig(frame_seconds=1.28, endless=False)
    return Planner(settings(**changes), config, BPM)


def test_the_same_settings_plan_the_same_stream():
    first = planner().next_frames(40)
    second = planner().next_frames(40)
    assert first == second
    assert [f.index for f in first] == list(range(40))


def test_the_noise_walks_on_through_new_seeds_without_jumps():
    frames = planner(seed=7).next_frames(60)
    assert frames[0].seed_a == 7
    seeds_visited = {f.seed_a for f in frames} | {f.seed_b for f in frames}
    assert len(seeds_visited) >= 5, "a fixed prompt must still keep moving"
    for before, after in zip(frames, frames[1:]):
        if after.seed_a == before.seed_a:
            assert after.noise_alpha > before.noise_alpha
        else:  # a new leg starts where the last one ended: at seed_b
            assert before.noise_alpha == pytest.approx(1.0)
            assert after.seed_a == before.seed_b


def test_a_prompt_change_moves_evenly_to_the_target_over_the_transition():
    walk = planner()
    walk.next_frames(3)
    walk.change(settings("rock", denoising=0.5, guidance=3.0))
    frames = walk.next_frames(6)
    # 5.12 s at 1.28 s per frame: four frames of transition, then settled.
    assert [round(f.prompts.weight_of("rock"), 6) for f in frames] == [0.25, 0.5, 0.75, 1, 1, 1]
    assert [round(f.transition_alpha, 6) for f in frames] == [0.25, 0.5, 0.75, 1, 1, 1]
    assert frames[1].denoising == pytest.approx(0.75 + (0.5 - 0.75) * 0.5)
    assert frames[1].guidance == pytest.approx(7.0 + (3.0 - 7.0) * 0.5)
    assert all(f.plan_version == 1 for f in frames)


def test_a_change_in_the_middle_of_a_transition_starts_from_where_the_stream_is():
    walk = planner()
    walk.change(settings("rock"))
    mid = walk.next_frames(2)[-1]  # halfway to rock
    walk.change(settings("ambient"))
    frame = walk.next_frames(1)[0]
    assert frame.prompts.weight_of("jazz") == pytest.approx(0.75 * mid.prompts.weight_of("jazz"))
    assert frame.prompts.weight_of("rock") == pytest.approx(0.75 * mid.prompts.weight_of("rock"))
    assert frame.prompts.weight_of("ambient") == pytest.approx(0.25)


def test_a_change_rewinds_over_frames_that_will_not_be_heard():
    walk = planner()
    walk.next_frames(10)  # frames 0..9 planned; 6..9 are still waiting, unheard
    walk.change(settings("rock"), first_unheard_index=6)
    frames = walk.next_frames(2)
    assert [f.index for f in frames] == [6, 7]
    assert frames[0].prompts.weight_of("rock") == pytest.approx(0.25)
    reference = planner().next_frames(8)
    assert (frames[0].seed_a, frames[0].noise_alpha) == (
        reference[6].seed_a,
        reference[6].noise_alpha,
    ), "the noise walk continues exactly where the last heard frame left it"


def test_a_transition_in_bars_follows_the_seed_loops_tempo():
    walk = planner()
    # 2 bars of 4 beats at 117.1875 BPM = 4.096 s -> 4 frames of 1.28 s.
    walk.change(settings("rock", transition=Transition(seconds=None, bars=2)))
    weights = [f.prompts.weight_of("rock") for f in walk.next_frames(5)]
    assert weights == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


def test_a_zero_length_transition_is_a_cut():
    walk = planner()
    walk.change(settings("rock", transition=Transition(seconds=0)))
    assert walk.next_frames(1)[0].prompts.weighted == (("rock", 1.0),)


def test_a_new_seed_restarts_the_noise_walk_there():
    walk = planner()
    walk.next_frames(5)
    walk.change(settings(seed=1234))
    assert walk.next_frames(1)[0].seed_a == 1234


def test_endless_mode_drifts_through_the_playlist_when_nobody_steers():
    config = PlannerConfig(
        frame_seconds=1.28,
        endless=True,
        form="loop",
        playlist=("a", "b", "c"),
        endless_prompt_seconds=12.8,
        endless_hold_after_control_seconds=25.6,
    )
    frames = Planner(settings("a"), config, BPM).next_frames(100)
    heard = {text for f in frames for text in f.prompts.prompts}
    assert heard == {"a", "b", "c"}
    walk = Planner(settings("a"), config, BPM)
    walk.change(settings("mine"))
    held = walk.next_frames(20)  # 25.6 s of hold
    assert all(f.prompts.weighted == (("mine", 1.0),) for f in held[4:])


def test_blends_normalise_merge_and_reject_bad_weights():
    assert PromptBlend((("a", 2), ("b", 2))) == PromptBlend((("a", 1), ("b", 1)))
    assert PromptBlend((("a", 1), ("a", 1))).weighted == (("a", 1.0),)
    for bad in [(), (("a", -1),), (("a", float("nan")),), (("", 1),), (("a", 0),)]:
        with pytest.raises(ValueError):
            PromptBlend(bad)
    with pytest.raises(ValueError, match="denoising"):
        settings(denoising=3.0)
    with pytest.raises(ValueError, match="seconds or in bars"):
        Transition(seconds=1, bars=1)
