"""The local sound device, tested against a real sound server: JACK's dummy driver runs in real
time with no hardware, and a JACK client records exactly what reached it."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gc
import os
import shutil
import subprocess
import time

import numpy as np
import pytest

from streamer.cli import main
from streamer.runtime.stream_config import StreamConfig
from streamer.runtime.assemble import build_engine
from streamer.runtime.standin import StandInFrameMaker
from streamer.runtime.clocks import DeviceClock, DeviceConfig
from streamer.runtime.control import EngineControl
from streamer.runtime.heap import freeze_startup_objects
from streamer.sinks.config import ServerConfig
from streamer.sinks.protocol import audio_messages_contiguous
from streamer.sinks.server import ServerThread, StreamServer
from test_broadcast import record
from test_engine import Recorder

#: Listeners of the stream while the device plays it.
LISTENERS = 20

jack = pytest.importorskip("jack", reason="JACK-Client is not installed")
pytestmark = pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd (Debian jackd2) is not installed")


def _server_running() -> bool:
    try:
        jack.Client("streamer-probe", no_start_server=True).close()
        return True
    except jack.JackError:
        return False


@pytest.fixture(scope="module")
def jack_server():
    """A JACK server with the dummy driver at 44.1 kHz (started unless one already runs)."""
    os.environ["JACK_NO_START_SERVER"] = "1"
    process = None
    if not _server_running():
        process = subprocess.Popen(
            ["jackd", "--no-realtime", "-d", "dummy", "-r", "44100", "-p", "512"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _server_running():
            assert time.monotonic() < deadline, "jackd did not start"
            time.sleep(0.1)
    import sounddevice

    # PortAudio lists devices when it starts: restart it so it sees the JACK server.
    sounddevice._terminate()
    sounddevice._initialize()
    yield
    if process is not None:
        # PortAudio must let go of the server before it goes, or it aborts the process at exit.
        sounddevice._terminate()
        process.terminate()
        process.wait(timeout=10)
        sounddevice._initialize()


def test_list_devices_shows_the_jack_output(jack_server, capsys):
    assert main(["play", "--list-devices"]) == 0
    assert "JACK Audio Connection Kit" in capsys.readouterr().out


#: Captures tried when the JACK server itself reports xruns: the dummy driver runs without
#: real-time scheduling, so a busy machine can starve the whole sound server (measured: 3-5
#: server xruns per capture beside four busy processes), which says nothing about the engine.
CAPTURE_TRIES = 3


def capture_played_and_emitted(seconds: float, *, full_collections: int = 0):
    """Play the engine on the JACK device for ``seconds`` while a JACK client records the
    device's output; returns (heard, emitted, engine, player, JACK server xruns). With
    ``full_collections``, startup's objects are frozen before the device starts, as ``serve`` and
    ``play`` do, and the garbage collector makes that many full collections while it plays."""
    config = StreamConfig()
    config = dataclasses.replace(config, planner=dataclasses.replace(config.planner, endless=False))
    engine = build_engine(config, StandInFrameMaker(0.2))
    emitted = Recorder()
    engine.add_sink(emitted)
    recorded: list[np.ndarray] = []
    server_xruns: list[float] = []
    if full_collections:  # before the recorder's callback (in this process too) runs
        freeze_startup_objects()
    client = jack.Client("streamer-recorder", no_start_server=True)
    port = client.inports.register("in")
    client.set_process_callback(lambda frames: recorded.append(port.get_array().copy()))
    client.set_xrun_callback(server_xruns.append)
    client.activate()
    engine.start()
    player = DeviceClock(engine, DeviceConfig())
    try:
        assert engine.wait_until_playing(60)
        player.start()
        outputs = [p for p in client.get_ports(is_output=True, is_audio=True) if p.name.startswith("PortAudio")]
        assert outputs, "PortAudio's output port is not on the JACK graph"
        client.connect(outputs[0], port)
        for _ in range(full_collections):
            time.sleep(seconds / (full_collections + 1))
            gc.collect()
        time.sleep(seconds / (full_collections + 1))
    finally:
        client.deactivate()  # stop recording first: after the player stops, JACK carries silence
        client.close()
        player.stop()
        engine.stop()
    heard = np.concatenate(recorded)
    heard = heard[np.flatnonzero(heard)[0] :]  # from the first sample after connecting
    return heard, emitted.audio(), engine, player, len(server_xruns)


def test_what_the_device_plays_is_exactly_what_the_engine_emitted(jack_server):
    for _ in range(CAPTURE_TRIES):
        heard, sent, engine, player, server_xruns = capture_played_and_emitted(3.0)
        if server_xruns == 0:
            break
    assert server_xruns == 0, f"the JACK server itself had xruns in all {CAPTURE_TRIES} captures"
    assert heard.size > 2 * 44100, "less than two seconds reached the sound server"
    # Find where the recording starts in what the engine emitted, then compare bit for bit.
    probe = heard[:4096]
    starts = [i for i in np.flatnonzero(sent == probe[0]) if np.array_equal(sent[i : i + 4096], probe)]
    assert len(starts) == 1
    length = min(heard.size, sent.size - starts[0])
    assert np.array_equal(heard[:length], sent[starts[0] : starts[0] + length]), (
        f"PortAudio reported xruns in {player.xrun_callbacks} callbacks"
    )
    assert engine.metrics.underrun_samples == 0


def test_a_full_garbage_collection_while_the_device_plays_is_not_heard(jack_server):
    # Unfrozen, a full collection of this process's objects holds the GIL for 0.1-0.3 s: the
    # device's callback and the recorder's miss their deadlines (10 xruns in 3 s, measured).
    for _ in range(CAPTURE_TRIES):
        heard, sent, engine, player, server_xruns = capture_played_and_emitted(3.0, full_collections=4)
        if server_xruns == 0:
            break
    # The recorder's callback runs in this process too: a stall here is an xrun of the whole graph.
    assert server_xruns == 0, f"the JACK graph had xruns in all {CAPTURE_TRIES} captures"
    assert player.xrun_callbacks == 0, "PortAudio reported under- or overruns"
    probe = heard[:4096]
    start = next(i for i in np.flatnonzero(sent == probe[0]) if np.array_equal(sent[i : i + 4096], probe))
    length = min(heard.size, sent.size - start)
    assert length > 2 * 44100 and np.array_equal(heard[:length], sent[start : start + length])


def test_play_freezes_startup_objects_before_the_device_starts(jack_server, tiny_model_dir):
    gc.unfreeze()  # what conftest.py froze
    model = ["--model", str(tiny_model_dir), "--offline", "--device", "cpu", "--no-endless"]
    assert main(["play", *model, "--audio-device", "JACK", "--seconds", "1"]) == 0
    assert gc.get_freeze_count() > 100_000  # torch alone makes more


def serve_and_play(seconds: float):
    """`serve --play`: the device callback is the clock while the server feeds LISTENERS
    listeners for ``seconds``; returns (player, engine, recordings, JACK server xruns)."""
    config = StreamConfig()
    config = dataclasses.replace(config, planner=dataclasses.replace(config.planner, endless=False))
    engine = build_engine(config, StandInFrameMaker(0.2))
    server = StreamServer(ServerConfig(port=0), EngineControl(engine, frozenset()))
    player = DeviceClock(engine, DeviceConfig())
    server_xruns: list[float] = []
    watcher = jack.Client("streamer-xrun-watch", no_start_server=True)
    watcher.set_xrun_callback(server_xruns.append)
    watcher.activate()
    with ServerThread(server):
        engine.add_sink(server)
        engine.start()
        try:
            assert engine.wait_until_playing(60)
            player.start()
            with concurrent.futures.ThreadPoolExecutor(LISTENERS) as pool:
                recordings = list(pool.map(lambda _: record(server.port, seconds), range(LISTENERS)))
        finally:
            watcher.deactivate()
            watcher.close()
            player.stop()
            engine.stop()
    return player, engine, recordings, len(server_xruns)


def test_playing_on_the_device_while_serving_listeners_has_no_underrun(jack_server):
    for _ in range(CAPTURE_TRIES):
        player, engine, recordings, server_xruns = serve_and_play(3.0)
        if server_xruns == 0:
            break
    assert server_xruns == 0, f"the JACK server itself had xruns in all {CAPTURE_TRIES} captures"
    assert player.xrun_callbacks == 0, "PortAudio reported under- or overruns"
    assert engine.metrics.underrun_samples == 0
    for recording in recordings:
        assert audio_messages_contiguous(recording.audio)
        assert sum(m.num_frames for m in recording.audio) >= 2.5 * 44100
