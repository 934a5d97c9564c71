"""The OSC input over real UDP on loopback: python-osc's client sends, the server answers the
sender, a fake ``StreamControl`` (and once the real engine with a stand-in maker) receives."""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Iterator

import pytest
from bar_stage import RATE, Stage, heard_at_the_bar
from control_fakes import SCENES, RecordingControl
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from streamer.generate.cancellation import never_stale
from streamer.inputs.desk import PromptDesk
from streamer.inputs.osc_in import OscServer
from streamer.inputs.pump import CommandPump
from streamer.plan.commands import (
    Prompt,
    RecallScene,
    SetDenoising,
    SetPrompts,
    SetSeed,
)
from streamer.plan.settings import PromptBlend, Transition
from streamer.runtime.assemble import build_engine
from streamer.runtime.control import EngineControl
from streamer.runtime.ports import ControlRejected
from streamer.runtime.standin import StandInFrameMaker
from streamer.runtime.stream_config import StreamConfig

#: Longest wait for a reply that must come; only a failing test waits this long.
REPLY_TIMEOUT_SECONDS = 10


class Sender:
    """An OSC app: one UDP socket that sends and reads the replies."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.settimeout(REPLY_TIMEOUT_SECONDS)

    def send(self, address: str, *args) -> None:
        builder = OscMessageBuilder(address)
        for arg in args:
            builder.add_arg(arg)
        self.socket.sendto(builder.build().dgram, self.server)

    def reply(self) -> tuple[str, list]:
        data, source = self.socket.recvfrom(65536)
        assert source == self.server  # from the port the sender talks to
        message = OscMessage(data)
        return message.address, list(message.params)


@dataclasses.dataclass
class Running:
    server: OscServer
    control: object
    desk: PromptDesk

    def sender(self) -> Sender:
        return Sender(self.server.address)


@pytest.fixture
def osc() -> Iterator[Running]:
    control = RecordingControl()
    desk = PromptDesk((("jazz", 1.0), ("rain", 0.0)), SCENES)
    pump = CommandPump(control, coalesce_seconds=0.0)
    server = OscServer("127.0.0.1", 0, desk, pump)
    pump.start()
    server.start()
    yield Running(server, control, desk)
    server.stop()
    pump.stop()


def test_osc_messages_become_commands_and_are_acknowledged(osc):
    sender = osc.sender()
    sender.send("/streamer/weight/2", 0.5)
    assert sender.reply() == ("/streamer/ack", ["/streamer/weight/2"])
    sender.send("/streamer/denoising", 0.4)
    assert sender.reply() == ("/streamer/ack", ["/streamer/denoising"])
    sender.send("/streamer/seed", 42)
    sender.send("/streamer/scene", "intro")
    assert [sender.reply(), sender.reply()] == [("/streamer/ack", ["/streamer/seed"]), ("/streamer/ack", ["/streamer/scene"])]
    assert osc.control.wait_for(4) == [
        SetPrompts((Prompt("jazz", 1.0), Prompt("rain", 0.5))),
        SetDenoising(0.4),
        SetSeed(42),
        RecallScene("intro"),
    ]


def test_a_bundle_is_applied_in_order(osc):
    bundle = OscBundleBuilder(IMMEDIATELY)
    for address, value in (("/streamer/prompts", None), ("/streamer/weight/1", 0.0)):
        builder = OscMessageBuilder(address)
        for arg in (["a", 1.0, "b", 1.0] if value is None else [value]):
            builder.add_arg(arg)
        bundle.add_content(builder.build())
    sender = osc.sender()
    sender.socket.sendto(bundle.build().dgram, osc.server.address)
    assert [sender.reply()[0], sender.reply()[0]] == ["/streamer/ack"] * 2
    assert osc.control.wait_for(2) == [
        SetPrompts((Prompt("a", 1.0), Prompt("b", 1.0))),
        SetPrompts((Prompt("b", 1.0),)),
    ]


def test_bad_input_is_answered_logged_and_the_server_keeps_serving(osc, caplog):
    sender = osc.sender()
    sender.send("/streamer/volume", 1.0)
    address, (code, message) = sender.reply()
    assert (address, code) == ("/streamer/error", "unknown_type")
    assert "unknown address '/streamer/volume'" in message
    sender.send("/streamer/denoising", "loud")
    assert sender.reply() == ("/streamer/error", ["invalid_value", "denoising must be a number"])
    sender.send("/streamer/weight/1", 0.0)  # jazz was the only prompt playing
    assert sender.reply()[1][0] == "invalid_value"
    sender.send("/streamer/weight/2", 1.0)  # rain comes in
    assert sender.reply()[0] == "/streamer/ack"
    sender.send("/streamer/weight/2", 0.0)
    assert sender.reply() == (
        "/streamer/error",
        ["invalid_value", "every prompt weight is 0: the stream keeps its last blend until one is raised"],
    )
    sender.socket.sendto(b"not OSC at all", osc.server.address)  # no reply: it has no address
    sender.send("/streamer/seed", 7)
    assert sender.reply() == ("/streamer/ack", ["/streamer/seed"])
    assert osc.control.wait_for(2) == [SetPrompts((Prompt("rain", 1.0),)), SetSeed(7)]
    assert "OSC /streamer/volume from 127.0.0.1" in caplog.text
    assert "denoising must be a number" in caplog.text
    assert "not an OSC packet" in caplog.text


def test_osc_blends_the_prompts_of_a_real_engine():
    """The whole path: UDP, the pump, ``EngineControl`` and the engine making frames of the
    blend the faders set (a stand-in maker, no clock: the first frames are made ahead)."""
    made: list[PromptBlend] = []
    blended = threading.Event()
    target = PromptBlend((("jazz", 1.0), ("rain", 0.5)))

    class Watching(StandInFrameMaker):
        def make(self, planned, is_stale=never_stale):
            for frame in planned:
                made.append(frame.prompts)
                if frame.prompts == target:
                    blended.set()
            return super().make(planned, is_stale)

    config = StreamConfig()
    settings = dataclasses.replace(
        config.settings, prompts=PromptBlend.single("jazz"), transition=Transition(seconds=0)
    )
    config = dataclasses.replace(config, settings=settings)
    engine = build_engine(config, Watching(0.0))
    control = EngineControl(engine, frozenset({"boom_bap_94"}), SCENES)
    desk = PromptDesk((("jazz", 1.0), ("rain", 0.0)), SCENES)
    pump = CommandPump(control, coalesce_seconds=0.05)
    server = OscServer("127.0.0.1", 0, desk, pump)
    pump.start()
    server.start()
    engine.start()
    try:
        sender = Sender(server.address)
        sender.send("/streamer/seed_loop", "no_such_loop")
        address, (code, _) = sender.reply()
        assert (address, code) == ("/streamer/error", "unknown_seed_loop")
        for weight in (0.1, 0.2, 0.3, 0.4, 0.5):  # a fader's stream: thinned, the last one wins
            sender.send("/streamer/weight/2", weight)
        sender.send("/streamer/resume")  # never thinned, and applied after what waits
        replies = []
        while not replies or replies[-1] != ("/streamer/ack", ["/streamer/resume"]):
            replies.append(sender.reply())
        weight_acks = replies[:-1]
        assert 1 <= len(weight_acks) <= 5
        assert all(reply == ("/streamer/ack", ["/streamer/weight/2"]) for reply in weight_acks)
        assert engine.settings.prompts == target
        sender.send("/streamer/scene", "drop")
        assert sender.reply() == ("/streamer/ack", ["/streamer/scene"])
        assert engine.settings.denoising == 0.9 and engine.settings.transition.bars == 1
        assert engine.settings.prompts == target, "a scene without prompts keeps them"
        with pytest.raises(ControlRejected, match="no scene called 'outro'; scenes: intro, drop"):
            control.apply(RecallScene("outro"))
        assert blended.wait(REPLY_TIMEOUT_SECONDS * 6), f"no frame of the blend was made: {made}"
    finally:
        engine.stop()
        server.stop()
        pump.stop()


def test_an_osc_fader_is_heard_from_the_next_bar_line():
    """At ``--quantize bar``, /streamer/weight/2 over UDP brings the second prompt in: what
    the clock plays is the first blend up to the crossfade into the first bar line after the
    change's first frame is ready, and the new blend from that bar line on (bars of 4 beats of
    the seed loop, 2.048 s at 117.19 BPM; the test plays the clock, see ``bar_stage``)."""
    stage = Stage("house_117")
    desk = PromptDesk((("jazz", 1.0), ("rain", 0.0)), SCENES)
    pump = stage.pump()
    server = OscServer("127.0.0.1", 0, desk, pump)
    pump.start()
    server.start()
    try:
        stage.start()
        stage.play_until(RATE)  # a second into bar one
        sender = Sender(server.address)
        sender.send("/streamer/weight/2", 0.5)
        assert sender.reply() == ("/streamer/ack", ["/streamer/weight/2"])
        heard = heard_at_the_bar(stage, stage.wait_for_the_change())
    finally:
        stage.stop()
        server.stop()
        pump.stop()
    assert heard.bar_line == round(4 * 60 / 117.1875 * RATE)  # bar two begins
    assert heard.rain_before < 1e-4
    assert heard.rain_after / heard.jazz_after == pytest.approx(0.5, rel=1e-3)  # jazz 1, rain 0.5
    assert [(p.text, p.weight) for p in heard.announced.prompts] == [("jazz", 0.6667), ("rain", 0.3333)]


def test_a_long_message_is_read_whole(osc):
    """Eight prompts of 500 four-byte characters: 16 KB in one datagram."""
    sender = osc.sender()
    prompts = [arg for i in range(8) for arg in ("🎷" * 499 + str(i), 1.0)]
    sender.send("/streamer/prompts", *prompts)
    assert sender.reply() == ("/streamer/ack", ["/streamer/prompts"])
    assert len(osc.control.wait_for(1)[0].prompts) == 8
