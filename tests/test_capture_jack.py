"""Capturing the band through a real sound server: JACK's dummy driver runs in real time with no
hardware; a JACK client plays a known drum loop (or the stream itself, looped back) into
streamer's input port while the stream plays on the device, and captures are asked for over OSC
and the WebSocket, as a performer's apps and page ask."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from material import groove
from streamer.commands.live_audio import live_audio
from streamer.inputs.config import InputConfig
from streamer.inputs.desk import PromptDesk
from streamer.inputs.osc_in import OscServer
from streamer.inputs.pump import CommandPump
from streamer.plan.settings import Transition
from streamer.runtime.assemble import build_engine
from streamer.runtime.capture import AudioInputConfig
from streamer.runtime.captured_seeds import CapturedSeeds
from streamer.runtime.clocks import DeviceClock, DeviceConfig
from streamer.runtime.control import EngineControl
from streamer.runtime.standin import StandInFrameMaker
from streamer.runtime.stream_config import StreamConfig
from streamer.seeds.capture import captured_seed
from streamer.audio.capture import CaptureWindow
from streamer.sinks.config import ServerConfig
from streamer.sinks.server import ServerThread, StreamServer
from streamer.spectrogram import SpectrogramParams, mel_from_image
from test_device import jack_server  # noqa: F401 (the fixture)
from test_engine import Recorder
from test_osc import Sender
from test_server import converse, replies

jack = pytest.importorskip("jack", reason="JACK-Client is not installed")
pytestmark = pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd (Debian jackd2) is not installed")

RATE = 44100
#: The stream's seed loop: 187.5 BPM, 16 beats (4 bars) a frame, so two bars last 2.6 s.
SEED_LOOP, BPM, BEATS = "dnb_188", 187.5, 16
BEAT_SAMPLES = 225792 // BEATS
BAR_SAMPLES = 4 * BEAT_SAMPLES
#: The JACK server's period (test_device.py starts it with -p 512).
PERIOD = 512
#: Longest wait for something that must happen; only a failing test waits this long.
TIMEOUT_SECONDS = 20.0


@dataclasses.dataclass
class Stream:
    engine: object
    control: EngineControl
    seeds: CapturedSeeds
    emitted: Recorder


@contextlib.contextmanager
def stream_with_input(input_latency: float | None = None) -> Iterator[Stream]:
    """The stand-in stream at dnb_188 on the JACK device, listening to the JACK input as
    ``serve --play --input [--input-latency]`` does."""
    config = StreamConfig()
    config = dataclasses.replace(
        config,
        planner=dataclasses.replace(config.planner, endless=False),
        settings=dataclasses.replace(config.settings, seed_loop=SEED_LOOP, transition=Transition(seconds=0)),
    )
    seeds = CapturedSeeds()
    engine = build_engine(config, StandInFrameMaker(0.2, seed_images=seeds.image))
    emitted = Recorder()
    engine.add_sink(emitted)
    control = EngineControl(engine, frozenset({SEED_LOOP}))
    player = DeviceClock(engine, DeviceConfig())
    engine.start()
    try:
        assert engine.wait_until_playing(60)
        player.start()
        with live_audio(AudioInputConfig(latency_seconds=input_latency), engine, control, seeds):
            yield Stream(engine, control, seeds, emitted)
    finally:
        player.stop()
        engine.stop()


@contextlib.contextmanager
def jack_client(name: str, process) -> Iterator[object]:
    """A JACK client with one input and one output port, running ``process(client, frames)``."""
    client = jack.Client(name, no_start_server=True)
    client.inports.register("in")
    client.outports.register("out")
    client.set_process_callback(lambda frames: process(client, frames))
    client.xruns = []
    client.set_xrun_callback(client.xruns.append)
    client.activate()
    try:
        yield client
    finally:
        client.deactivate()
        client.close()


def portaudio_port(client, *, is_input: bool) -> str:
    ports = [
        p.name
        for p in client.get_ports(is_input=is_input, is_output=not is_input, is_audio=True)
        if p.name.startswith("PortAudio")
    ]
    assert ports, f"PortAudio's {'input' if is_input else 'output'} port is not on the JACK graph"
    return ports[0]


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_drum_loop_captured_over_osc_becomes_the_seed_loop(jack_server):  # noqa: F811
    loop = groove(bpm=BPM, beats=8, rate=RATE).samples  # two bars
    played = [0]

    def drummer(client, frames):
        indices = (played[0] + np.arange(frames)) % loop.size
        client.outports[0].get_array()[:] = loop[indices]
        played[0] += frames

    with stream_with_input() as stream, jack_client("drummer", drummer) as client:
        client.connect(client.outports[0], portaudio_port(client, is_input=True))
        desk = PromptDesk((("jazz", 1.0),), {})
        pump = CommandPump(stream.control, InputConfig().coalesce_seconds)
        server = OscServer("127.0.0.1", 0, desk, pump)
        pump.start()
        server.start()
        try:
            sender = Sender(server.address)
            sender.send("/streamer/capture", 2)
            address, (code, message) = sender.reply()
            assert (address, code) == ("/streamer/error", "not_enough_input"), message
            # Two whole bars: the last bar line may have passed up to a bar ago.
            wait_for(lambda: played[0] > loop.size + BAR_SAMPLES + RATE // 4, "two bars of drums")
            sender.send("/streamer/capture", 2)
            assert sender.reply() == ("/streamer/ack", ["/streamer/capture"])
            wait_for(lambda: stream.engine.settings.seed_loop == "captured-1", "the captured seed loop")
            wait_for(
                lambda: any(e["seed_loop"] == "captured-1" for e in stream.emitted.of_type("now_playing")),
                "a frame of the captured seed loop to be heard",
            )
        finally:
            server.stop()
            pump.stop()
        captured = stream.control.capturer.captures[0]
        heard = stream.control.capturer.audio_input.ring.read(captured.window.first, captured.window.last)
    assert captured.window.bars == 2 and captured.window.tempo_bpm == pytest.approx(BPM)
    # The drummer did not start on the stream's bar line, so the bars hold the loop from some
    # point in it: pieces of the loop, bit for bit (JACK carries floats as they are); all of them
    # unless the busy machine starved the sound server (a dropped period is silence or a repeat).
    twice = np.concatenate([loop, loop])
    chunks = [heard[at : at + 4096] for at in range(0, heard.size - 4095, 4096)]
    whole = [
        any(np.array_equal(twice[i : i + 4096], chunk) for i in np.flatnonzero(loop == chunk[0]))
        for chunk in chunks
    ]
    assert all(whole) if not client.xruns else np.mean(whole) > 0.7, f"{np.mean(whole):.0%} are the loop's"
    # The seed the stream plays is the make-seed seed of those bars (no resampling at 44.1 kHz).
    ours, _ = mel_from_image(stream.seeds.image("captured-1"))
    window = CaptureWindow(0, loop.size, 2, 0.0, BPM, 0.0)
    offline = captured_seed(heard, RATE, window, SpectrogramParams())
    theirs, _ = mel_from_image(offline.image)
    assert np.abs(ours - theirs).max() <= 1e-3 * theirs.max()
    assert (offline.loop.beats, offline.loop.bpm) == (BEATS, BPM)


def test_a_capture_over_the_websocket_takes_the_bars_of_the_heard_grid(jack_server, caplog):  # noqa: F811
    """The stream looped back into its own input, as a player plays exactly on the beat they
    hear: the captured bars are the stream's own bars, within 10 ms of its bar lines. Silence is
    refused, and a device that stops is logged while the stream plays on."""
    caplog.set_level(logging.INFO)
    silent = threading.Event()

    heard_last_period = np.zeros(PERIOD, np.float32)

    def loopback(client, frames):
        # What the device's port carries now reaches the speaker a period later (the latency
        # PortAudio reports for it): that is when the player hears it and plays along.
        out = client.outports[0].get_array()
        out[:] = 0.0 if silent.is_set() else heard_last_period
        heard_last_period[:] = client.inports[0].get_array()

    with stream_with_input() as stream, jack_client("loopback", loopback) as client:
        client.connect(portaudio_port(client, is_input=False), client.inports[0])
        client.connect(client.outports[0], portaudio_port(client, is_input=True))
        server = StreamServer(ServerConfig(port=0), stream.control)
        with ServerThread(server):
            stream.engine.add_sink(server)
            auth = json.dumps({"type": "auth", "token": server.performer_token})
            time.sleep(2.2 * BAR_SAMPLES / RATE)  # a whole bar, wherever the bar lines fall
            recording = converse(server.port, [auth, '{"type": "capture", "bars": 1, "id": 1}'])
            ack = replies(recording)[-1]
            assert ack["of"] == "capture" and ack.get("details", {}).get("capture") == "captured-1", ack
            window = stream.control.capturer.captures[0].window
            heard = stream.control.capturer.audio_input.ring.read(window.first, window.last)
            # Silence: nothing comes back from the loopback for a bar.
            silent.set()
            time.sleep(2.2 * BAR_SAMPLES / RATE)  # a whole bar after the next bar line
            recording = converse(server.port, [auth, '{"type": "capture", "bars": 1}'])
            refusal = replies(recording)[-1]
            assert (refusal["type"], refusal["code"]) == ("error", "silence"), refusal
            assert "the seed loop stays" in refusal["message"]
            # The device stops by itself (PortAudio calls the same hook when one is unplugged).
            audio_input = stream.control.capturer.audio_input
            audio_input._stream.abort()
            wait_for(lambda: audio_input.stopped_reason is not None, "the input to report it stopped")
            recording = converse(server.port, [auth, '{"type": "capture"}'], seconds=1.2)
            refusal = replies(recording)[-1]
            assert refusal["code"] == "no_input" and "stopped" in refusal["message"]
            statuses = [e for e in recording.events if e["type"] == "status"]
            assert statuses and statuses[-1]["input"]["ok"] is False
            played_before = len(stream.emitted.blocks)
            time.sleep(0.5)
            assert len(stream.emitted.blocks) > played_before, "the stream stopped with its input"
    assert "the input device stopped" in caplog.text
    # Where the captured bar is in what the stream played: it starts on a bar line. (A period
    # the busy machine dropped breaks a bit-exact match: the first probe found says where.)
    sent = stream.emitted.audio()
    start = next(
        (
            found - at
            for at in range(0, BAR_SAMPLES - 2048, 4096)
            for found in np.flatnonzero(sent == heard[at])
            if np.array_equal(sent[found : found + 2048], heard[at : at + 2048])
        ),
        None,
    )
    assert start is not None, "the captured bar is not in what the stream played"
    off_grid = (start + BAR_SAMPLES // 2) % BAR_SAMPLES - BAR_SAMPLES // 2
    assert abs(off_grid) <= 0.010 * RATE, f"the capture starts {1000 * off_grid / RATE:.1f} ms off the bar line"


def test_play_with_input_listens_to_the_jack_input_and_stops_cleanly(jack_server, tiny_model_dir, caplog):  # noqa: F811
    from streamer.cli import main

    caplog.set_level(logging.INFO)
    model = ["--model", str(tiny_model_dir), "--offline", "--device", "cpu", "--no-endless"]
    assert main(["play", *model, "--audio-device", "JACK", "--input", "JACK", "--seconds", "1"]) == 0
    assert "listening to" in caplog.text and "at 44100 Hz" in caplog.text
