"""The control vocabulary has one home: an entry of ``streamer.plan.controls`` is all that the
WebSocket, MIDI and OSC inputs need to name, check, thin and send a control."""

from __future__ import annotations

import pytest
from control_fakes import SCENES

from streamer.errors import UserError
from streamer.inputs.desk import PromptDesk
from streamer.inputs.midi_map import midi_command, midi_map_from_toml
from streamer.inputs.osc_map import osc_command
from streamer.inputs.pump import Routed
from streamer.plan.commands import SetGuidance
from streamer.plan.controls import (
    CONTROLS,
    Control,
    ControlError,
    ControlSchema,
    ErrorCode,
    Number,
)
from streamer.sinks.config import ServerConfig
from streamer.sinks.control import parse_client_message

mido = pytest.importorskip("mido", reason='mido is not installed (pip install ".[midi]")')

#: The guidance control, written out as a new control would be: this entry and nothing else.
GUIDANCE = Control(
    "guidance",
    Number(0.0, 30.0, "classifier-free guidance scale", fader=(0.0, 15.0)),
    SetGuidance,
    key="guidance",
    message="set_guidance",
    field="guidance",
    osc="guidance",
)
WITHOUT = ControlSchema(control for control in CONTROLS.controls if control.name != "guidance")
WITH = ControlSchema((*WITHOUT.controls, GUIDANCE))
MIDI_MAP = {"cc": {"15": {"target": "guidance"}}}


def desk() -> PromptDesk:
    return PromptDesk((("jazz", 1.0),), SCENES)


def websocket(value: object, schema: ControlSchema) -> object:
    text = '{"type": "set_guidance", "guidance": %s}' % value
    return parse_client_message(text, ServerConfig(), schema).body


def test_the_entry_written_here_is_the_streams_own():
    assert GUIDANCE == CONTROLS.by_name["guidance"]


def test_without_its_entry_no_input_knows_a_control():
    with pytest.raises(ControlError) as websocket_error:
        websocket(9, WITHOUT)
    assert websocket_error.value.code == ErrorCode.UNKNOWN_TYPE
    with pytest.raises(ControlError) as osc_error:
        osc_command("/streamer/guidance", [9.0], desk(), WITHOUT)
    assert osc_error.value.code == ErrorCode.UNKNOWN_TYPE
    with pytest.raises(UserError, match="unknown target 'guidance'"):
        midi_map_from_toml(MIDI_MAP, (), "map.toml", WITHOUT)


def test_one_entry_makes_a_control_that_every_input_sends_thinned_and_checked():
    assert websocket(9, WITH) == SetGuidance(9.0)
    assert osc_command("/streamer/guidance", [9.0], desk(), WITH) == Routed(
        "guidance", SetGuidance(9.0)
    )
    mapping = midi_map_from_toml(MIDI_MAP, (), "map.toml", WITH)
    fader_top = mido.Message("control_change", control=15, value=127)
    assert midi_command(fader_top, mapping, desk()) == Routed("guidance", SetGuidance(15.0))

    with pytest.raises(ControlError, match=r"guidance must be in \[0, 30\]"):
        websocket(31, WITH)
    with pytest.raises(ControlError, match=r"guidance must be in \[0, 30\]"):
        osc_command("/streamer/guidance", [31.0], desk(), WITH)
    too_wide = {"cc": {"15": {"target": "guidance", "range": [0, 31]}}}
    with pytest.raises(UserError, match=r"within \[0, 30\] \(classifier-free guidance scale\)"):
        midi_map_from_toml(too_wide, (), "map.toml", WITH)


def test_two_controls_may_not_share_a_name_or_an_address():
    with pytest.raises(ValueError, match="share a name"):
        ControlSchema((*CONTROLS.controls, GUIDANCE))
    elsewhere = Control("guidance_2", GUIDANCE.value, SetGuidance, "g", "set_g", "g", "guidance")
    with pytest.raises(ValueError, match="share an OSC address"):
        ControlSchema((*WITHOUT.controls, GUIDANCE, elsewhere))
