"""The MIDI and OSC inputs' pure parts: thinning fader streams with fake time, the prompt desk,
the MIDI map (default and from TOML), the OSC address space, scenes, and the pump in between."""

from __future__ import annotations

import itertools
import threading
import tomllib

import pytest
from control_fakes import SCENES, RecordingControl
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.errors import UserError
from streamer.inputs.coalesce import Coalescer
from streamer.inputs.desk import PromptDesk
from streamer.inputs.midi_map import (
    Ignored,
    default_midi_map,
    midi_command,
    midi_map_from_toml,
)
from streamer.inputs.osc_map import ADDRESSES, osc_command
from streamer.inputs.pump import Applied, CommandPump, Refused, Routed
from streamer.plan.commands import (
    Pause,
    Prompt,
    RecallScene,
    SetDenoising,
    SetGuidance,
    SetPrompts,
    SetSeed,
    SetTransition,
    Skip,
)
from streamer.plan.controls import ControlError
from streamer.plan.scenes import Scene
from streamer.plan.settings import StreamSettings

mido = pytest.importorskip("mido", reason='mido is not installed (pip install ".[midi]")')

def desk() -> PromptDesk:
    return PromptDesk((("jazz", 1.0), ("rain", 0.0)), SCENES)


def cc(control: int, value: int, channel: int = 0) -> mido.Message:
    return mido.Message("control_change", control=control, value=value, channel=channel)


# -- coalescing -------------------------------------------------------------------------------


def test_a_fader_stream_reaches_the_engine_as_its_latest_value_per_interval():
    coalescer: Coalescer[int] = Coalescer(0.05)
    sent = []
    # 100 values a second for half a second, polled as the pump would.
    for step in range(50):
        now = step * 0.01
        sent += [(now, v) for v in coalescer.due(now)]
        sent += [(now, v) for v in coalescer.offer("weight", step, now)]
    sent += [(1.0, v) for v in coalescer.due(1.0)]
    values = [value for _, value in sent]
    assert values[0] == 0  # the first move is heard at once
    assert values[-1] == 49  # the last value always arrives
    assert len(values) <= 0.5 / 0.05 + 2
    times = [t for t, _ in sent]
    assert all(b - a >= 0.05 - 1e-9 for a, b in itertools.pairwise(times))


def test_targets_are_thinned_apart_and_a_scene_goes_after_what_was_pending():
    coalescer: Coalescer[str] = Coalescer(0.05)
    assert coalescer.offer("weight", "w1", 0.0) == ["w1"]
    assert coalescer.offer("denoising", "d1", 0.001) == ["d1"]
    assert coalescer.offer("weight", "w2", 0.01) == []
    assert coalescer.offer("weight", "w3", 0.02) == []
    assert coalescer.next_due_at() == pytest.approx(0.05)
    # A scene never waits and never overtakes a value played before it.
    assert coalescer.offer(None, "scene", 0.03) == ["w3", "scene"]
    assert coalescer.next_due_at() is None
    assert coalescer.due(1.0) == []


# -- the desk ---------------------------------------------------------------------------------


def test_a_fader_sets_one_prompt_and_the_engine_gets_the_whole_blend():
    d = desk()
    assert d.set_weight(2, 0.5) == SetPrompts((Prompt("jazz", 1.0), Prompt("rain", 0.5)))
    assert d.set_weight(1, 0.0) == SetPrompts((Prompt("rain", 0.5),))
    with pytest.raises(ControlError, match="every prompt weight is 0"):
        d.set_weight(2, 0.0)
    # The silent fader is remembered: raising another one brings the blend back.
    assert d.set_weight(1, 0.25) == SetPrompts((Prompt("jazz", 0.25),))
    with pytest.raises(ControlError, match="there is no prompt 3"):
        d.set_weight(3, 1.0)


def test_a_scene_gives_the_faders_its_prompts():
    d = desk()
    assert d.recall("intro") == RecallScene("intro")
    assert [p.text for p in d.prompts] == ["soft piano", "rain"]
    assert d.recall("drop") == RecallScene("drop")  # no prompts: the faders keep theirs
    assert [p.text for p in d.prompts] == ["soft piano", "rain"]
    with pytest.raises(ControlError, match="no scene called 'outro'; scenes: intro, drop"):
        d.recall("outro")


def test_a_scene_sets_only_what_it_names_in_one_change():
    start = StreamSettings(seed=5, guidance=3.0)
    after = SCENES["intro"].applied_to(start)
    assert after.prompts == SCENES["intro"].prompts and after.seed_loop == "house_117"
    assert (after.seed, after.guidance) == (5, 3.0)
    with pytest.raises(ValueError, match="denoising"):
        Scene("bad", denoising=2.0)


# -- MIDI -------------------------------------------------------------------------------------


def test_the_default_midi_map():
    mapping = default_midi_map(list(SCENES))
    d = desk()
    assert midi_command(cc(21, 127), mapping, d) == Routed(
        "prompts", SetPrompts((Prompt("jazz", 1.0), Prompt("rain", 1.0)))
    )
    assert midi_command(cc(28, 0), mapping, d) == Routed("denoising", SetDenoising(0.05))
    assert midi_command(cc(29, 127), mapping, d) == Routed("guidance", SetGuidance(15.0))
    assert midi_command(cc(30, 127), mapping, d) == Routed("transition", SetTransition(seconds=32.0))
    assert midi_command(cc(31, 64), mapping, d) == Routed("seed", SetSeed(64))
    assert midi_command(mido.Message("note_on", note=37), mapping, d) == Routed(None, RecallScene("drop"))
    assert midi_command(mido.Message("program_change", program=0), mapping, d) == Routed(
        None, RecallScene("intro")
    )
    assert isinstance(midi_command(mido.Message("note_on", note=37, velocity=0), mapping, d), Ignored)
    assert midi_command(cc(99, 3), mapping, d) == Ignored("CC 99 is not mapped", ("cc", 99))
    assert midi_command(mido.Message("note_on", note=90), mapping, d).unmapped == ("note", 90)


MAP_TOML = """
channel = 2
[cc]
7 = { target = "weight", prompt = 2, range = [0, 4] }
8 = { target = "transition_bars" }
64 = { target = "skip" }
65 = { target = "pause" }
[notes]
60 = "drop"
[programs]
3 = "intro"
"""


def test_a_midi_map_file():
    mapping = midi_map_from_toml(tomllib.loads(MAP_TOML), list(SCENES), "map.toml")
    d = desk()
    assert isinstance(midi_command(cc(7, 127, channel=0), mapping, d), Ignored)  # other channel
    assert midi_command(cc(7, 127, channel=1), mapping, d).command == SetPrompts(
        (Prompt("jazz", 1.0), Prompt("rain", 4.0))
    )
    assert midi_command(cc(8, 127, channel=1), mapping, d).command == SetTransition(bars=16.0)
    assert midi_command(cc(64, 127, channel=1), mapping, d) == Routed(None, Skip())
    assert isinstance(midi_command(cc(64, 0, channel=1), mapping, d), Ignored)  # released
    assert midi_command(cc(65, 100, channel=1), mapping, d) == Routed(None, Pause())
    assert midi_command(mido.Message("note_on", note=60, channel=1), mapping, d).command == RecallScene("drop")
    assert isinstance(midi_command(cc(20, 5, channel=1), mapping, d), Ignored)  # the default is gone


@pytest.mark.parametrize(
    ("toml", "words"),
    [
        ("colour = 1", "unknown key 'colour'"),
        ("channel = 17", "channel must be 1..16"),
        ('[cc]\n200 = { target = "skip" }', "cc.200 is not a number 0..127"),
        ('[cc]\n7 = { target = "volume" }', "cc.7: unknown target 'volume'"),
        ('[cc]\n7 = { target = "weight" }', "cc.7: a weight needs prompt = 1..8"),
        ('[cc]\n7 = { target = "denoising", range = [0, 2] }', "cc.7: range must be two numbers within [0, 1]"),
        ('[cc]\n7 = { target = "skip", range = [0, 1] }', "cc.7: a skip button takes no prompt or range"),
        ('[notes]\n60 = "outro"', "notes.60: there is no scene called 'outro'"),
    ],
)
def test_a_bad_midi_map_names_the_key(toml, words):
    with pytest.raises(UserError, match=words.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        midi_map_from_toml(tomllib.loads(toml), list(SCENES), "map.toml")


# -- OSC --------------------------------------------------------------------------------------


def test_osc_addresses_mirror_the_control_messages():
    d = desk()
    assert osc_command("/streamer/prompt", ["techno"], d) == Routed(None, SetPrompts((Prompt("techno", 1.0),)))
    assert osc_command("/streamer/prompts", ["a", 1, "b", 0.5], d).command == SetPrompts(
        (Prompt("a", 1.0), Prompt("b", 0.5))
    )
    assert osc_command("/streamer/weight/1", [0.0], d).command == SetPrompts((Prompt("b", 0.5),))
    assert osc_command("/streamer/denoising", [0.4], d) == Routed("denoising", SetDenoising(0.4))
    assert osc_command("/streamer/seed", [7], d) == Routed("seed", SetSeed(7))
    assert osc_command("/streamer/scene", ["drop"], d) == Routed(None, RecallScene("drop"))
    assert osc_command("/streamer/transition", [4], d).command == SetTransition(seconds=4.0)
    assert osc_command("/streamer/skip", [], d) == Routed(None, Skip())
    assert osc_command("/streamer/pause", [1.0], d) == Routed(None, Pause())  # a button's press
    assert osc_command("/streamer/pause", [0.0], d) is None  # ... and its release


@pytest.mark.parametrize(
    ("address", "args", "code", "words"),
    [
        ("/streamer/volume", [1.0], "unknown_type", "unknown address '/streamer/volume'"),
        ("/other/thing", [], "unknown_type", "unknown address"),
        ("/streamer/weight/x", [1.0], "unknown_type", "prompt number"),
        ("/streamer/denoising", ["loud"], "invalid_value", "denoising must be a number"),
        ("/streamer/denoising", [True], "invalid_value", "denoising must be a number"),
        ("/streamer/denoising", [1.5], "invalid_value", r"denoising must be in \[0, 1\]"),
        ("/streamer/denoising", [], "bad_message", "takes one number, got 0 arguments"),
        ("/streamer/guidance", [float("nan")], "invalid_value", "guidance must be in"),
        ("/streamer/seed", [1.5], "invalid_value", "seed must be an integer"),
        ("/streamer/seed", [-1], "invalid_value", "seed must be an integer"),
        ("/streamer/prompts", ["a", 1, "b"], "bad_message", "pairs of text and weight"),
        ("/streamer/prompts", ["a", -1], "invalid_value", r"prompts\[0\]\.weight must be in"),
        ("/streamer/prompt", [""], "invalid_value", r"prompts\[0\]\.text must not be empty"),
        ("/streamer/prompt", ["x" * 501], "too_large", "at most 500"),
        ("/streamer/prompt", [b"bytes"], "invalid_value", "must be a string"),
        ("/streamer/weight/9", [1.0], "invalid_value", "there is no prompt 9"),
        ("/streamer/scene", ["outro"], "invalid_value", "no scene called 'outro'"),
        ("/streamer/skip", ["now"], "invalid_value", "no argument or a button's number"),
    ],
)
def test_bad_osc_messages_get_the_protocols_errors(address, args, code, words):
    with pytest.raises(ControlError, match=words) as raised:
        osc_command(address, args, desk())
    assert raised.value.code == code


# -- the pump ---------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_pump_applies_in_order_thins_faders_and_survives_refusals(caplog):
    control = RecordingControl()
    clock = FakeClock()
    pump = CommandPump(control, 0.05, clock)
    outcomes: list = []
    done = threading.Event()
    pump.start()
    try:
        for value in (0.1, 0.2, 0.3):  # one interval: the first, then only the latest
            pump.submit(Routed("denoising", SetDenoising(value)), outcomes.append)
        pump.submit(Routed(None, RecallScene("outro")), outcomes.append)
        pump.submit(Routed(None, Skip()), outcomes.append)
        pump.submit(Routed(None, Pause()), lambda outcome: (outcomes.append(outcome), done.set()))
        assert done.wait(10)
        assert control.wait_for(5) == [
            SetDenoising(0.1), SetDenoising(0.3), RecallScene("outro"), Skip(), Pause()
        ]
        assert isinstance(outcomes[0], Applied) and outcomes[0].details == {"plan_version": 1}
        assert outcomes[2] == Refused(RecallScene("outro"), "unknown_scene", "no scene 'outro'")
        assert outcomes[3].code == "internal_error"
        # A value within the interval waits for it to end, on the pump's own timer.
        pump.submit(Routed("guidance", SetGuidance(1.0)))
        pump.submit(Routed("guidance", SetGuidance(2.0)))
        assert control.wait_for(6)[-1] == SetGuidance(1.0)
        clock.now = 1.0
        pump.submit(Routed("seed", SetSeed(1)))  # wakes the pump, whose clock has moved on
        assert control.wait_for(8)[-2:] in ([SetGuidance(2.0), SetSeed(1)], [SetSeed(1), SetGuidance(2.0)])
    finally:
        pump.stop()
    assert "the engine failed to apply Skip()" in caplog.text


# -- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--osc", "localhost:99999"], "--osc takes [HOST:]PORT with PORT 0..65535"),
        (["--osc", "nine"], "--osc takes [HOST:]PORT"),
        (["--midi", "--midi-map", "nowhere.toml"], "--midi-map: no such file: nowhere.toml"),
    ],
)
def test_bad_input_options_stop_before_the_model_loads(argv, words, capsys):
    from streamer.cli import main

    assert main(["play", "--model", "/nowhere/never-loaded", *argv]) == 2
    error = capsys.readouterr().err
    assert words in error and "loading" not in error


def test_osc_addresses_on_the_command_line():
    from streamer.commands.live_inputs import parse_osc_address

    assert parse_osc_address("9000") == ("127.0.0.1", 9000)
    assert parse_osc_address("0.0.0.0:9000") == ("0.0.0.0", 9000)
    assert parse_osc_address("[::1]:57120") == ("::1", 57120)


def test_the_monitor_says_what_the_mapping_makes_of_a_message():
    from streamer.inputs.midi_in import describe, map_message

    mapping, d = default_midi_map(list(SCENES)), desk()
    assert describe(map_message(cc(28, 127), mapping, d)) == "SetDenoising(denoising=1.0)"
    assert describe(map_message(cc(99, 1), mapping, d)) == "ignored: CC 99 is not mapped"
    assert describe(map_message(cc(20, 0), mapping, d)) == (
        "refused: every prompt weight is 0: the stream keeps its last blend until one is raised"
    )


# -- whatever arrives -------------------------------------------------------------------------

OSC_ARGUMENTS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=600),
    st.binary(max_size=20),
    st.booleans(),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(
    address=st.one_of(
        st.sampled_from([a.replace("<n>", "1") for a in ADDRESSES]),
        st.text(max_size=40).map(lambda tail: "/streamer/" + tail),
        st.text(max_size=40),
    ),
    args=st.lists(OSC_ARGUMENTS, max_size=6),
)
def test_any_osc_message_is_a_command_or_a_control_error(address, args):
    try:
        outcome = osc_command(address, args, desk())
    except ControlError as error:
        assert error.code and error.message
    else:
        assert outcome is None or isinstance(outcome, Routed)


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.integers(0, 255), max_size=4))
def test_any_bytes_are_a_midi_command_ignored_or_a_control_error(data):
    from streamer.inputs.midi_in import midi_message

    try:
        message = midi_message(data)
    except ValueError:
        return  # the port logs and drops these (tests/test_midi.py)
    try:
        outcome = midi_command(message, default_midi_map(list(SCENES)), desk())
    except ControlError as error:
        assert error.code and error.message
    else:
        assert isinstance(outcome, Routed | Ignored)
