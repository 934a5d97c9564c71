"""The whole stream end to end with the tiny model: diffusion -> vocoder -> stitcher -> clock ->
WebSocket listeners, and the offline renderer."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from websockets.sync.client import connect

from streamer.cli import main
from streamer.runtime.stream_config import StreamConfig
from streamer.generate.config import GeneratorConfig
from streamer.plan.settings import PromptBlend, StreamSettings, Transition
from streamer.runtime.assemble import build_engine, load_diffusion_maker
from streamer.runtime.control import EngineControl
from streamer.runtime.clocks import SoftwareClock
from streamer.seeds.library import list_seed_loops
from streamer.sinks.config import ServerConfig
from streamer.sinks.protocol import AudioMessage, decode_binary
from streamer.sinks.server import ServerThread, StreamServer

RATE = 44100
TOKEN = "performer-token-for-tests"


def tiny_config(model_dir: Path) -> StreamConfig:
    config = StreamConfig(
        model=GeneratorConfig(model=str(model_dir), device="cpu", dtype="fp32"),
        settings=StreamSettings(
            prompts=PromptBlend.single("warm jazz"), seed_loop="house_117", transition=Transition(seconds=0)
        ),
    )
    return dataclasses.replace(config, planner=dataclasses.replace(config.planner, endless=False))


@pytest.fixture(scope="module")
def live_stream(tiny_model_dir: Path):
    """A real engine on the tiny model, served on a free port, playing in real time."""
    config = tiny_config(tiny_model_dir)
    engine = build_engine(config, load_diffusion_maker(config))
    loops = frozenset(loop.name for loop in list_seed_loops())
    server = StreamServer(
        ServerConfig(port=0, performer_token=TOKEN, burst_seconds=0.5), EngineControl(engine, loops)
    )
    clock = SoftwareClock(engine)
    with ServerThread(server):
        engine.add_sink(server)
        engine.start()
        assert engine.wait_until_playing(120), "the tiny model made no frame"
        clock.start()
        try:
            yield engine, server
        finally:
            clock.stop()
            engine.stop()


def ws_url(server: StreamServer) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


class Listener(threading.Thread):
    """Receives for ``seconds`` and keeps every message."""

    def __init__(self, url: str, seconds: float) -> None:
        super().__init__(daemon=True)
        self.url, self.seconds = url, seconds
        self.audio: list[tuple[float, AudioMessage]] = []
        self.events: list[dict] = []

    def run(self) -> None:
        with connect(self.url, max_size=None) as ws:
            end = time.monotonic() + self.seconds
            while (left := end - time.monotonic()) > 0:
                try:
                    message = ws.recv(timeout=left)
                except TimeoutError:
                    break
                if isinstance(message, bytes):
                    decoded = decode_binary(message)
                    if isinstance(decoded, AudioMessage):
                        self.audio.append((time.monotonic(), decoded))
                else:
                    self.events.append(json.loads(message))


def test_listeners_get_a_contiguous_stream_at_the_real_time_rate_even_beside_a_stalled_one(live_stream):
    engine, server = live_stream
    stalled = socket.create_connection(("127.0.0.1", server.port))
    stalled.sendall(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )  # ... and never reads again
    listeners = [Listener(ws_url(server), seconds=8.0) for _ in range(3)]
    try:
        for listener in listeners:
            listener.start()
        for listener in listeners:
            listener.join(timeout=30)
    finally:
        stalled.close()
    for listener in listeners:
        messages = [m for _, m in listener.audio]
        assert len(messages) > 40
        for before, after in zip(messages, messages[1:]):
            assert after.sequence == before.sequence + 1
            assert after.sample_position == before.sample_position + before.num_frames
        # Rate after the join burst: stream samples received per wall second.
        live = [(t, m) for t, m in listener.audio if t > listener.audio[0][0] + 1.0]
        seconds = live[-1][0] - live[0][0]
        samples = live[-1][1].sample_position - live[0][1].sample_position
        assert samples / seconds == pytest.approx(RATE, rel=0.05)
        assert any(e["type"] == "now_playing" for e in listener.events)
    assert engine.metrics.underrun_samples == 0


def test_control_without_the_token_is_refused_and_the_stream_goes_on(live_stream):
    engine, server = live_stream
    with connect(ws_url(server), max_size=None) as ws:
        ws.send(json.dumps({"type": "set_seed", "seed": 5, "id": 1}))
        replies = []
        audio_after = 0
        end = time.monotonic() + 3
        while time.monotonic() < end:
            message = ws.recv(timeout=5)
            if isinstance(message, bytes):
                audio_after += bool(replies)
            elif (event := json.loads(message))["type"] in ("ack", "error"):
                replies.append(event)
    assert replies == [
        {**replies[0], "type": "error", "code": "unauthorized", "of": "set_seed", "id": 1}
    ]
    assert audio_after > 10, "the stream stopped after a refused command"
    assert engine.settings.seed == 0


def test_a_performers_prompt_change_shows_in_the_events_and_the_audio(live_stream):
    engine, server = live_stream
    with connect(ws_url(server), max_size=None) as ws:
        ws.send(json.dumps({"type": "auth", "token": TOKEN}))
        audio: dict[int, np.ndarray] = {}
        replies, changed = [], None
        change_at = time.monotonic() + 5.5  # first hear a whole loop of what plays now
        end = time.monotonic() + 90
        while time.monotonic() < end:
            if change_at and time.monotonic() > change_at:
                change_at = None
                ws.send(json.dumps(
                    {"type": "set_prompts", "id": 7, "prompts": [{"text": "ambient drone", "weight": 1}]}
                ))  # fmt: skip
            message = ws.recv(timeout=30)
            if isinstance(message, bytes):
                decoded = decode_binary(message)
                if isinstance(decoded, AudioMessage):
                    audio[decoded.sample_position] = decoded.samples()[0]
                continue
            event = json.loads(message)
            if event["type"] in ("ack", "error"):
                replies.append(event)
            if event["type"] == "now_playing" and event["prompts"][0]["text"] == "ambient drone":
                changed = event
            if changed and max(audio, default=0) > changed["sample_position"] + RATE:
                break
    assert [(r["type"], r["of"]) for r in replies] == [("ack", "auth"), ("ack", "set_prompts")]
    assert changed is not None, "no frame of the new prompt was announced"
    assert changed["prompts"] == [{"text": "ambient drone", "weight": 1.0}]
    # After the switch the audio is the new frame, not another round of the old frame's loop.
    stream = np.concatenate([audio[k] for k in sorted(audio)])
    first = min(audio)
    period = 512 * 441
    start = changed["sample_position"] - first + int(0.2 * RATE)
    now, loop_before = stream[start : start + RATE // 2], stream[start - period : start - period + RATE // 2]
    assert loop_before.size == now.size and not np.allclose(now, loop_before, atol=1e-3)


def test_render_writes_the_requested_length_with_no_clicks_at_the_seams(tiny_model_dir, tmp_path):
    out = tmp_path / "set.flac"
    status = main(
        ["render", "--model", str(tiny_model_dir), "--device", "cpu", "--seconds", "12",
         "--out", str(out), "--seed-loop", "house_117", "--no-endless"]
    )  # fmt: skip
    assert status == 0
    audio, rate = soundfile.read(out, dtype="float32")
    assert rate == RATE and audio.shape == (12 * RATE,)
    # Switches happen on beats of the loop (117.1875 BPM) after each 5.12 s frame: compare the
    # high-passed jump at every beat with the jumps everywhere else.
    jumps = np.abs(np.diff(audio))
    beat = RATE * 60 / 117.1875
    seams = [int(round(k * beat)) for k in range(1, int(audio.size / beat))]
    near = max(jumps[max(0, s - 256) : s + 256].max() for s in seams)
    assert near <= 1.5 * np.percentile(jumps, 99.99), "a click at a frame switch"
