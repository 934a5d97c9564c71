"""Broadcast to real WebSocket listeners on loopback, fed by a fake clock at the real-time rate.

The helpers here (``FakeClock``, ``FakeControl``, ``record``) are shared with test_server.py.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import ClientConnection, connect

from streamer.audio.blocks import AudioBlock
from streamer.sinks.config import ServerConfig
from streamer.plan.commands import Command, SetSeedLoop
from streamer.sinks.protocol import (
    AudioMessage,
    FrameMessage,
    audio_messages_contiguous,
    decode_binary,
)
from streamer.sinks.server import ServerThread, StreamServer
from streamer.runtime.ports import ControlRejected, FramePicture
from engine_events import as_message, now_playing, status

SAMPLE_RATE = 44100
BLOCK_FRAMES = 882  # 20 ms, the engine clock's tick
NOW_PLAYING_EVERY_BLOCKS = 25


def tone(positions: np.ndarray) -> np.ndarray:
    """The fake stream's samples at these positions: a 441 Hz sine, inverted on the right."""
    left = 0.5 * np.sin(2 * np.pi * 441.0 * positions / SAMPLE_RATE)
    return np.stack([left, -left]).astype(np.float32)


class FakeClock:
    """Publishes 20 ms ``AudioBlock`` objects from its own thread at ``speed`` x real time, and a
    ``now_playing`` event every half second of stream, as the engine's clock will; with
    ``stop_after_blocks``, that many blocks and then nothing (``finished`` is set)."""

    def __init__(self, sink: Any, *, speed: float = 1.0, stop_after_blocks: int | None = None) -> None:
        self.sink = sink
        self.speed = speed
        self.stop_after_blocks = stop_after_blocks
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-clock", daemon=True)

    def __enter__(self) -> FakeClock:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        start = time.monotonic()
        sequence = 0
        while not self._stop.is_set() and sequence != self.stop_after_blocks:
            position = sequence * BLOCK_FRAMES
            delay = start + position / SAMPLE_RATE / self.speed - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            samples = tone(np.arange(position, position + BLOCK_FRAMES))
            self.sink.publish_audio(AudioBlock(sequence, position, samples, SAMPLE_RATE))
            if sequence % NOW_PLAYING_EVERY_BLOCKS == 0:
                frame_id = sequence // NOW_PLAYING_EVERY_BLOCKS
                self.sink.publish_event(now_playing(frame_id, position, alpha=0.5))
            sequence += 1
        self.finished.set()


class FakeControl:
    """Records the commands that reach the engine; knows one seed loop."""

    def __init__(self) -> None:
        self.commands: list[Command] = []

    def apply(self, command: Command) -> dict[str, Any]:
        if isinstance(command, SetSeedLoop) and command.name != "og_beat":
            message = f"no seed loop {command.name!r}; try og_beat"
            raise ControlRejected("unknown_seed_loop", message)
        self.commands.append(command)
        return {"applied": type(command).__name__}


Message = str | AudioMessage | FrameMessage


@dataclasses.dataclass
class Recording:
    """Everything one listener received, in order, with arrival times (monotonic seconds)."""

    connected_at: float
    messages: list[tuple[float, Message]] = dataclasses.field(default_factory=list)

    @property
    def audio(self) -> list[AudioMessage]:
        return [m for _, m in self.messages if isinstance(m, AudioMessage)]

    @property
    def events(self) -> list[dict[str, Any]]:
        return [json.loads(m) for _, m in self.messages if isinstance(m, str)]

    def audio_arrivals(self) -> list[tuple[float, AudioMessage]]:
        return [(t, m) for t, m in self.messages if isinstance(m, AudioMessage)]


def receive_for(websocket: ClientConnection, seconds: float, recording: Recording) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            data = websocket.recv(timeout=left)
        except TimeoutError:
            return
        message = data if isinstance(data, str) else decode_binary(data)
        recording.messages.append((time.monotonic(), message))


def receive_until(
    websocket: ClientConnection, recording: Recording, done: Any, *, guard_seconds: float = 30.0
) -> None:
    """Receive until ``done()`` holds; ``guard_seconds`` only stops a test that would hang."""
    deadline = time.monotonic() + guard_seconds
    while not done():
        data = websocket.recv(timeout=max(0.0, deadline - time.monotonic()))
        message = data if isinstance(data, str) else decode_binary(data)
        recording.messages.append((time.monotonic(), message))


def wait_until(condition: Any, *, guard_seconds: float = 30.0) -> None:
    """Poll ``condition()`` until it holds; ``guard_seconds`` only stops a test that would hang."""
    deadline = time.monotonic() + guard_seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def heard_up_to(recording: Recording) -> int:
    """The stream position just past the last audio received (0 before any)."""
    audio = recording.audio
    return audio[-1].sample_position + audio[-1].num_frames if audio else 0


def kind_of(message: Message) -> str:
    return json.loads(message)["type"] if isinstance(message, str) else type(message).__name__


def open_listener(
    port: int, *, receive_buffer_bytes: int | None = None, **kwargs: Any
) -> ClientConnection:
    sock = socket.socket()
    if receive_buffer_bytes is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
    sock.connect(("127.0.0.1", port))
    return connect(f"ws://127.0.0.1:{port}/ws", sock=sock, **kwargs)


def record(port: int, seconds: float) -> Recording:
    with open_listener(port) as websocket:
        recording = Recording(connected_at=time.monotonic())
        receive_for(websocket, seconds, recording)
    return recording


def delivered_rate(recording: Recording, *, after_seconds: float) -> float:
    """Samples per second delivered once the burst is over: the slope of a least-squares line
    through (arrival time, end position), so that network jitter averages out."""
    points = [
        (t, m.sample_position + m.num_frames)
        for t, m in recording.audio_arrivals()
        if t >= recording.connected_at + after_seconds
    ]
    times, positions = np.array(points, dtype=np.float64).T
    return float(np.polyfit(times, positions, 1)[0])


@pytest.fixture
def serve(tmp_path: Any) -> Iterator[Any]:
    """Start a server (and a fake clock feeding it) with the given settings."""
    started: list[tuple[ServerThread, FakeClock]] = []

    def start(
        *, speed: float = 1.0, stop_after_blocks: int | None = None, **settings: Any
    ) -> tuple[StreamServer, FakeControl]:
        """``stop_after_blocks``: the clock publishes that many blocks, and this returns once it has."""
        control = FakeControl()
        (tmp_path / "index.html").write_text("<!doctype html><title>player</title>")
        server_thread = ServerThread(
            StreamServer(ServerConfig(port=0, **settings), control, client_dir=tmp_path)
        )
        server = server_thread.start()
        clock = FakeClock(server, speed=speed, stop_after_blocks=stop_after_blocks).__enter__()
        started.append((server_thread, clock))
        if stop_after_blocks is not None:
            assert clock.finished.wait(60), "the fake clock never finished publishing"
        return server, control

    yield start
    for server_thread, clock in started:
        clock.__exit__(None, None, None)
        server_thread.stop()


# ---- tests ---------------------------------------------------------------------------------

LISTEN_SECONDS = 4.0


def test_three_listeners_hear_the_whole_stream_contiguously_sample_for_sample(serve: Any) -> None:
    server, _ = serve(speed=4.0)
    listen_frames = round(LISTEN_SECONDS * SAMPLE_RATE)

    def listen(_: int) -> Recording:
        """Hear LISTEN_SECONDS of stream, however long the machine takes to publish it."""
        with open_listener(server.port) as websocket:
            recording = Recording(connected_at=time.monotonic())
            receive_until(
                websocket,
                recording,
                lambda: bool(recording.audio)
                and heard_up_to(recording) - recording.audio[0].sample_position >= listen_frames,
            )
        return recording

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        recordings = list(pool.map(listen, range(3)))

    for recording in recordings:
        audio = recording.audio
        assert audio_messages_contiguous(audio)
        heard = np.concatenate([message.samples() for message in audio], axis=1)
        positions = np.arange(audio[0].sample_position, audio[0].sample_position + heard.shape[1])
        np.testing.assert_allclose(heard, tone(positions), atol=1.0 / 32767)
        events = recording.events
        frame_ids = [event["frame_id"] for event in events if event["type"] == "now_playing"]
        assert frame_ids == list(range(frame_ids[0], frame_ids[0] + len(frame_ids)))
        seconds_between = NOW_PLAYING_EVERY_BLOCKS * BLOCK_FRAMES / SAMPLE_RATE
        assert len(frame_ids) >= LISTEN_SECONDS / seconds_between


def test_a_joining_listener_gets_the_latest_state_then_a_burst_to_start_playing_at_once(
    serve: Any,
) -> None:
    # 1.5 s of stream (15 whole 0.1 s messages) is published, then the clock stops: whatever
    # audio the listener gets was sent at once on joining, not as the stream went on.
    published_blocks = 75
    server, _ = serve(burst_seconds=1.0, speed=4.0, stop_after_blocks=published_blocks)
    live_edge = published_blocks * BLOCK_FRAMES
    server.publish_event(status("ok", lookahead_seconds=6.5))
    server.publish_frame(FramePicture(3, 3 * 225792, b"\x89PNG fake image"))
    with open_listener(server.port) as websocket:
        recording = Recording(connected_at=time.monotonic())
        receive_until(websocket, recording, lambda: heard_up_to(recording) >= live_edge)

    kinds = [kind_of(message) for _, message in recording.messages]
    assert kinds[:4] == ["hello", "now_playing", "status", "FrameMessage"]
    assert recording.events[2] == as_message(status("ok", lookahead_seconds=6.5))
    burst = recording.audio
    assert audio_messages_contiguous(burst)
    assert burst[0].sample_position <= live_edge - 1.0 * SAMPLE_RATE
    assert heard_up_to(recording) == live_edge


def test_a_stalled_listener_does_not_hold_up_the_others_and_is_dropped(serve: Any) -> None:
    server, _ = serve(burst_seconds=0.2, send_queue_seconds=0.5, drop_lagging_after_seconds=1.5)

    def listen_until_the_stalled_one_is_dropped(_: int) -> Recording:
        with open_listener(server.port) as websocket:
            recording = Recording(connected_at=time.monotonic())
            receive_until(websocket, recording, lambda: server.stats().dropped_listeners == 1)
        return recording

    # Connects, then never reads a byte: its queue fills within a second.
    with open_listener(server.port, receive_buffer_bytes=4096, max_queue=1) as stalled:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            recordings = list(pool.map(listen_until_the_stalled_one_is_dropped, range(2)))
        stats = server.stats()
        stalled.close_socket()  # a close handshake would wait behind the unread stream
    assert stats.dropped_listeners == 1
    assert stats.skipped_messages > 0, "the stalled listener was skipped before it was dropped"
    for recording in recordings:
        # Every message, in order, all the while the stalled one filled its queue and was
        # dropped: the others were never skipped.
        assert recording.audio and audio_messages_contiguous(recording.audio)


def test_a_slow_listener_is_skipped_forward_to_the_live_edge_with_the_latest_state(
    serve: Any,
) -> None:
    server, _ = serve(burst_seconds=0.2, send_queue_seconds=0.5, drop_lagging_after_seconds=10.0)
    message_frames = round(ServerConfig().message_seconds * SAMPLE_RATE)

    def jumped(recording: Recording) -> int | None:
        """Index of the first audio message after a jump, if there was one."""
        audio = recording.audio
        return next((i for i in range(1, len(audio)) if not audio_messages_contiguous(audio[i - 1 : i + 1])), None)

    with open_listener(server.port, receive_buffer_bytes=4096, max_queue=1) as websocket:
        recording = Recording(connected_at=time.monotonic())
        receive_until(websocket, recording, lambda: len(recording.audio) >= 3)
        # The listener's app hangs: it reads nothing until the server has started skipping it.
        wait_until(lambda: server.stats().lagging_listeners == 1)
        live_edge = server.stats().audio_messages * message_frames  # the stream's end, at least
        receive_until(
            websocket,
            recording,
            lambda: (jump := jumped(recording)) is not None and len(recording.audio) >= jump + 3,
        )

    audio = recording.audio
    gaps = [i for i in range(1, len(audio)) if not audio_messages_contiguous(audio[i - 1 : i + 1])]
    assert len(gaps) == 1, "one clean jump, not a trickle of holes"
    after_gap = audio[gaps[0] :]
    assert audio_messages_contiguous(after_gap)
    # The jump lands at the live edge: on audio the stream reached after the listener hung, not
    # where the listener left off.
    assert after_gap[0].sample_position >= live_edge
    # The latest now_playing is resent just before the first message after the jump.
    first_after_gap = next(i for i, (_, m) in enumerate(recording.messages) if m is after_gap[0])
    assert kind_of(recording.messages[first_after_gap - 1][1]) == "now_playing"


def test_an_image_sent_over_several_turns_reaches_every_listener_once(serve: Any) -> None:
    server, _ = serve(speed=4.0, image_listeners_per_loop_turn=1)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        listening = [pool.submit(record, server.port, 1.0) for _ in range(3)]
        while server.stats().listeners < 3:
            time.sleep(0.01)
        server.publish_frame(FramePicture(9, 12345, b"\x89PNG image nine"))
        recordings = [future.result() for future in listening]
    for recording in recordings:
        images = [m for _, m in recording.messages if isinstance(m, FrameMessage)]
        assert images == [FrameMessage(9, 12345, b"\x89PNG image nine")]
        assert audio_messages_contiguous(recording.audio)
