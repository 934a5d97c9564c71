"""The MIDI input through real MIDI ports: JACK MIDI on the dummy JACK server that the device
tests start (this machine has no ALSA sequencer, /dev/snd/seq; where it has one, the same code
takes ALSA first). A second rtmidi client plays the controller."""

from __future__ import annotations

import shutil

import pytest
from bar_stage import RATE, Stage, heard_at_the_bar
from control_fakes import SCENES, RecordingControl
from test_device import jack, jack_server  # noqa: F401 (a fixture)

from streamer.cli import main
from streamer.errors import UserError
from streamer.inputs.desk import PromptDesk
from streamer.inputs.midi_in import MidiInput, open_midi_input
from streamer.inputs.midi_map import default_midi_map
from streamer.inputs.pump import CommandPump
from streamer.plan.commands import Prompt, RecallScene, SetDenoising, SetPrompts

mido = pytest.importorskip("mido", reason='mido is not installed (pip install ".[midi]")')

pytestmark = [
    pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd (Debian jackd2) is not installed"),
    pytest.mark.usefixtures("jack_server"),
]

JACK_MIDI = "mido.backends.rtmidi/UNIX_JACK"


@pytest.fixture
def pump():
    control = RecordingControl()
    pump = CommandPump(control, coalesce_seconds=0.0)
    pump.start()
    yield pump
    pump.stop()


def _input(port: str | None, pump: CommandPump) -> MidiInput:
    desk = PromptDesk((("jazz", 1.0), ("rain", 0.0)), SCENES)
    return MidiInput(port, default_midi_map(list(SCENES)), desk, pump)


def test_a_controller_on_a_named_port_blends_prompts_and_recalls_scenes(pump, caplog):
    controller = mido.Backend(JACK_MIDI).open_output("nanoKONTROL", virtual=True)
    midi = _input("nanokontrol", pump)  # a part of the name, case ignored
    try:
        assert "nanoKONTROL" in midi.name
        controller.send(mido.Message("control_change", control=21, value=127))  # fader 2 up
        controller.send(mido.Message("control_change", control=99, value=1))  # not mapped
        controller.send(mido.Message("control_change", control=99, value=2))  # ... logged once
        controller.send(mido.Message("control_change", control=28, value=127))  # denoising
        controller.send(mido.Message("note_on", note=36, velocity=100))  # pad 1: scene intro
        assert pump.control.wait_for(3) == [
            SetPrompts((Prompt("jazz", 1.0), Prompt("rain", 1.0))),
            SetDenoising(1.0),
            RecallScene("intro"),
        ]
    finally:
        midi.close()
        controller.close()
    assert caplog.text.count("CC 99 is not mapped") == 1


def test_a_midi_fader_is_heard_from_the_next_bar_line():
    """At ``--quantize bar``, fader 2 (CC 21) on a JACK MIDI port brings the second prompt in:
    what the clock plays is the first blend up to the crossfade into the first bar line after
    the change's first frame is ready, and the new blend from that bar line on (bars of 4 beats
    of the seed loop, 1.71 s at 140.63 BPM; the test plays the clock, see ``bar_stage``)."""
    stage = Stage("techno_141")
    pump = stage.pump()
    pump.start()
    controller = mido.Backend(JACK_MIDI).open_output("faders", virtual=True)
    midi = _input("faders", pump)
    try:
        stage.start()
        stage.play_until(2 * RATE)  # into bar two
        controller.send(mido.Message("control_change", control=21, value=127))
        heard = heard_at_the_bar(stage, stage.wait_for_the_change())
    finally:
        midi.close()
        controller.close()
        stage.stop()
        pump.stop()
    assert heard.bar_line == round(2 * 4 * 60 / 140.625 * RATE)  # bar three begins
    assert heard.rain_before < 1e-4
    assert heard.rain_after / heard.jazz_after == pytest.approx(1.0, rel=1e-3)  # both at 127
    assert [(p.text, p.weight) for p in heard.announced.prompts] == [("jazz", 0.5), ("rain", 0.5)]


def test_bytes_that_are_no_midi_message_are_logged_and_the_port_plays_on(pump, caplog):
    import rtmidi

    controller = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK)
    controller.open_virtual_port("broken")
    midi = _input("broken", pump)
    try:
        controller.send_message([0xB0, 0x80, 0x05])  # a data byte above 127
        controller.send_message([0xB0, 28, 0])
        assert pump.control.wait_for(1) == [SetDenoising(0.05)]
    finally:
        midi.close()
        controller.delete()
    assert "bytes b0 80 05 are no MIDI message" in caplog.text


def test_a_virtual_input_called_streamer_takes_what_is_connected_to_it(pump):
    midi = _input(None, pump)
    controller = mido.Backend(JACK_MIDI).open_output("pads", virtual=True)
    client = jack.Client("streamer-test-patchbay", no_start_server=True)
    try:
        source = next(p.name for p in client.get_ports("pads", is_midi=True, is_output=True))
        assert midi.name == "streamer (virtual, jack)"
        sink = next(p.name for p in client.get_ports("streamer", is_midi=True, is_input=True))
        client.connect(source, sink)
        controller.send(mido.Message("program_change", program=1))
        assert pump.control.wait_for(1) == [RecallScene("drop")]
    finally:
        client.close()
        controller.close()
        midi.close()


def test_a_port_that_is_not_there_names_those_that_are():
    controller = mido.Backend(JACK_MIDI).open_output("keys", virtual=True)
    try:
        with pytest.raises(UserError, match=r"no MIDI input's name contains 'drums'; inputs: .*keys"):
            open_midi_input("drums", print)
    finally:
        controller.close()


def test_the_monitor_lists_the_inputs(capsys):
    controller = mido.Backend(JACK_MIDI).open_output("keys", virtual=True)
    try:
        assert main(["midi-monitor", "--list"]) == 0
    finally:
        controller.close()
    assert "RtMidiOut Client:keys (jack)" in capsys.readouterr().out
