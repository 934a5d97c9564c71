"""Icecast output: the source protocol, the encoders, and a real icecast2 serving listeners."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest
import soxr
from websockets.sync.client import connect

from streamer.audio.blocks import AudioBlock
from streamer.backoff import Backoff
from streamer.errors import UserError
from streamer.runtime.clocks import SoftwareClock
from streamer.runtime.ports import NowPlaying
from streamer.runtime.standin import StandInFrameMaker
from streamer.sinks.icecast import IcecastSink
from streamer.sinks.icecast_encoder import Mp3Encoder, OggOpusMuxer
from streamer.sinks.icecast_protocol import (
    IcecastConfig,
    SourceRefused,
    check_source_response,
    metadata_request,
    parse_target,
    source_request,
    target_of,
    title_of,
)
from streamer.sinks.config import ServerConfig
from streamer.sinks.opus import OPUS_RATE, OpusEncoding
from streamer.sinks.protocol import OpusMessage, decode_binary
from streamer.sinks.server import ServerThread, StreamServer
from engine_events import now_playing
from test_broadcast import FakeControl
from test_engine import Recorder
from test_reliability import start_engine
from icecast_server import (
    SOURCE_PASSWORD,
    IcecastServer,
    Listener,
    config_xml,
    current_user_can_run_icecast,
    free_port,
    icecast_folder,
    wait_for,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "icecast"
RATE = 44100
BLOCK = 882  # the engine's 20 ms blocks

needs_icecast = pytest.mark.skipif(
    not current_user_can_run_icecast(), reason="needs icecast2 (install.sh installs it)"
)


# -- the protocol, without a server -----------------------------------------------------------------
def test_a_url_gives_host_port_mount_credentials_and_the_format_of_its_extension():
    target = parse_target("icecast://source:p%40ss@example.org:8010/live/stream.opus")
    assert (target.host, target.port, target.mount) == ("example.org", 8010, "/live/stream.opus")
    assert (target.user, target.password, target.format) == ("source", "p@ss", "ogg")
    assert parse_target("http://:pw@host/radio.mp3").format == "mp3"
    assert parse_target("http://:pw@host/radio.mp3").port == 8000
    assert parse_target("http://:pw@host/radio", format="ogg").format == "ogg"


@pytest.mark.parametrize(
    "url, fix",
    [
        ("ftp://source:pw@host/a.ogg", "icecast://"),
        ("icecast://host/a.ogg", "password"),
        ("icecast://source:pw@host/", "mount point"),
        ("icecast://source:pw@host/radio", "--icecast-format"),
        ("icecast://source:pw@host:99999/a.ogg", "port"),
    ],
)
def test_a_bad_url_says_what_to_fix(url, fix):
    with pytest.raises(UserError, match=fix):
        parse_target(url)


def test_the_source_request_names_the_station_and_asks_before_sending():
    config = IcecastConfig("icecast://source:pw@host/a.ogg", name="My\nRadio")
    head = source_request(parse_target(config.url), config, "channels=1").decode()
    assert head.startswith("PUT /a.ogg HTTP/1.1\r\n") and head.endswith("\r\n\r\n")
    for line in (
        "Authorization: Basic c291cmNlOnB3",
        "Content-Type: audio/ogg",
        "ice-name: My Radio",
        "ice-public: 0",
        "Expect: 100-continue",
    ):
        assert f"\r\n{line}\r\n" in head
    check_source_response(b"HTTP/1.1 100 Continue\r\n\r\n")
    with pytest.raises(SourceRefused, match="password"):
        check_source_response(b"HTTP/1.0 401 Authentication Required\r\n\r\n")
    path, headers = metadata_request(parse_target(config.url), "jazz + rain")
    assert path.startswith("/admin/metadata?") and "song=jazz+%2B+rain" in path
    assert headers["Authorization"] == "Basic c291cmNlOnB3"


def test_reconnection_waits_double_up_to_the_cap_and_reset_after_a_connection():
    backoff = Backoff(0.5, 3.0)
    assert [backoff.failed() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.succeeded()
    assert backoff.failed() == 0.5


def test_the_title_is_the_prompts_sounding_now_strongest_first():
    assert title_of(playing(("rain", 0.25), ("jazz piano", 0.75), ("off", 0.0))) == "jazz piano + rain"


# -- the encoders ------------------------------------------------------------------------------------
def test_an_mp3_stream_decodes_to_the_published_audio():
    audio = chirp(2.0)
    encoder = Mp3Encoder(RATE, 1, 128)
    data = b"".join(encoder.write(block) for block in blocks_of(audio))
    decoded, rate, _ = decode(data + encoder.close())
    assert_continuous(decoded, rate, audio)


@pytest.mark.parametrize("first_block", [0, 40])
def test_an_ogg_stream_carries_the_encodings_packets_and_header_from_any_packet_on(first_block):
    """An Ogg mount's stream is the WebSocket listeners' encoding, packet for packet, whether it
    starts with the encoding (0) or joins it later (a reconnection: block 40, 0.8 s in)."""
    audio = chirp(3.0)
    encoding = OpusEncoding()
    batches = [encoding.encode(block) for block in blocks_of(audio)]
    muxer = OggOpusMuxer("jazz")
    data = b"".join(muxer.write(batch) for batch in batches[first_block:]) + muxer.close()
    sent = [packet for batch in batches[first_block:] for packet in batch.packets]

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.extradata == batches[0].format.opus_head
        assert dict(stream.metadata).get("title") == "jazz"  # Ogg's comment header
        muxed = [bytes(packet) for packet in container.demux(stream) if packet.size]
    assert muxed == [packet.data for packet in sent]
    decoded, rate, _ = decode(data)
    assert rate == OPUS_RATE
    # The granule positions count the pre-skip: a player drops it, and only it.
    assert decoded.shape[1] == len(sent) * 960 - batches[0].format.pre_skip
    if first_block == 0:  # all but the last 0.1 s, which the live encoding still holds
        assert_continuous(decoded, rate, audio[:, : -RATE // 10], extra_tail_seconds=0.1)


def test_an_icecast_bitrate_for_an_ogg_mount_points_to_the_one_opus_bitrate():
    assert target_of(IcecastConfig("icecast://:pw@host/a.mp3", bitrate_kbps=192)).format == "mp3"
    with pytest.raises(UserError, match="--opus-bitrate"):
        target_of(IcecastConfig("icecast://:pw@host/a.ogg", bitrate_kbps=192))


# -- a real Icecast --------------------------------------------------------------------------------
@pytest.fixture
def folder():
    with icecast_folder() as path:
        yield path


def start_icecast(folder, port=None) -> IcecastServer:
    port = port or free_port()
    server = IcecastServer(folder, port, config_xml(port, folder / "icecast-log"))
    server.start()
    return server


@needs_icecast
@pytest.mark.parametrize("mount", ["/stream.ogg", "/stream.mp3"])
def test_a_listener_hears_every_published_sample_and_the_title(folder, mount):
    server = start_icecast(folder)
    url = f"icecast://source:{SOURCE_PASSWORD}@127.0.0.1:{server.port}{mount}"
    sink = IcecastSink(IcecastConfig(url, queue_seconds=60), RATE, 1)
    try:
        sink.publish_event(playing(("jazz piano", 1.0)))
        sink.start()
        wait_for(lambda: server.source(mount) is not None, "the source", server)
        listener = Listener(server.url + mount)
        sink.publish_event(playing(("rain", 0.25), ("jazz piano", 0.75)))
        audio = chirp(4.0)
        publish(sink, audio)
        # Published at once, not over 4 s: the listener must catch up before the source ends, as
        # Icecast drops what a listener has not read when its source leaves. A second more of
        # sound (silence would encode to almost nothing) is the margin: Icecast may hold 4 kB,
        # 0.5 s of Ogg Opus.
        publish(sink, chirp(1.0), first=audio.shape[1])
        wait_for(
            lambda: sink.queued_seconds == 0 and len(listener.data) >= sink.bytes_sent - 4096,
            "the listener to catch up",
            server,
        )
        if mount.endswith(".mp3"):  # MP3 titles go through Icecast's admin request
            title = lambda: (server.source(mount) or {}).get("title")  # noqa: E731
            wait_for(lambda: title() == "jazz piano + rain", "the title", server)
    finally:
        sink.stop()
        server.stop()
    listener.wait_until_closed()
    decoded, rate, metadata = decode(bytes(listener.data))
    assert sink.dropped_blocks == 0 and sink.connections == 1
    assert_continuous(decoded, rate, audio, extra_tail_seconds=1.0)
    if mount.endswith(".ogg"):  # the title when its first audio went, in its header
        assert metadata.get("title") == "jazz piano + rain"


@needs_icecast
def test_icecast_listeners_hear_what_the_engine_published_without_a_gap(folder):
    """The live engine (stand-in frames, a software clock at 4x) feeds a recorder and Icecast;
    the Icecast listener's decoded stream lines up with the recording all through."""
    server = start_icecast(folder)
    url = f"icecast://source:{SOURCE_PASSWORD}@127.0.0.1:{server.port}/engine.ogg"
    sink = IcecastSink(IcecastConfig(url, queue_seconds=60), RATE, 1)
    recorder = Recorder()
    sink.start()
    wait_for(lambda: server.source("/engine.ogg") is not None, "the source", server)
    listener = Listener(server.url + "/engine.ogg")
    engine = start_engine(StandInFrameMaker(0.02), sinks=(recorder, sink))
    clock = SoftwareClock(engine, speed=4)
    try:
        assert engine.wait_until_playing(60)
        clock.start()
        wait_for(lambda: len(recorder.blocks) * BLOCK >= 6 * RATE, "6 s of stream", server)
    finally:
        clock.stop()
        engine.stop()
    try:
        wait_for(
            lambda: sink.queued_seconds == 0 and len(listener.data) >= sink.bytes_sent - 4096,
            "the listener to catch up",
            server,
        )
    finally:
        sink.stop()
        server.stop()
    listener.wait_until_closed()
    decoded, rate, metadata = decode(bytes(listener.data))
    published = recorder.audio()
    assert metadata.get("title") == recorder.of_type("now_playing")[0]["prompts"][0]["text"]
    assert sink.dropped_blocks == 0
    assert [b.sequence for b in recorder.blocks] == list(range(len(recorder.blocks)))
    # All of it but what Icecast held at the end (4 kB: 0.5 s of Opus), each half second at
    # the same lag behind the recording: a gap or a repeat would move the lag.
    reference = soxr.resample(published, RATE, rate)
    assert len(reference) - 0.6 * rate <= decoded.shape[1] <= len(reference) + 2400
    lags = [segment_lag(decoded[0], reference, start, rate // 2) for start in range(0, decoded.shape[1] - rate, rate // 2)]
    assert len(lags) >= 8 and all(lag == lags[0] for lag in lags), lags


@needs_icecast
def test_an_ogg_mount_and_a_websocket_listener_get_the_same_opus_packets(folder, tmp_path):
    """The engine (stand-in frames, a software clock at 4x) feeds the WebSocket server, and an
    Ogg mount joins the running stream: sharing the stream's one Opus encoding, the Icecast
    listener gets the WebSocket listener's packets, byte for byte and in order, under the same
    OpusHead (an encoder of the mount's own, started later, would make other packets)."""
    icecast = start_icecast(folder)
    url = f"icecast://source:{SOURCE_PASSWORD}@127.0.0.1:{icecast.port}/shared.ogg"
    opus = OpusEncoding()
    sink = IcecastSink(IcecastConfig(url, queue_seconds=60), RATE, 1, opus)
    (tmp_path / "index.html").write_text("<!doctype html><title>player</title>")
    server_thread = ServerThread(
        StreamServer(ServerConfig(port=0), FakeControl(), opus=opus, client_dir=tmp_path)
    )
    server = server_thread.start()
    websocket_listener = OpusListener(server.port)
    engine = start_engine(StandInFrameMaker(0.02), sinks=(server,))
    clock = SoftwareClock(engine, speed=4)
    try:
        assert engine.wait_until_playing(60)
        clock.start()
        wait_for(lambda: len(websocket_listener.packets) >= 50, "1 s of Opus on the WebSocket")
        engine.add_sink(sink)
        sink.start()
        wait_for(lambda: icecast.source("/shared.ogg") is not None, "the source", icecast)
        icecast_listener = Listener(icecast.url + "/shared.ogg")
        wait_for(lambda: len(icecast_listener.data) > 24_000, "3 s of Ogg Opus", icecast)
    finally:
        clock.stop()
        engine.stop()
        websocket_listener.close()
        sink.stop()
        server_thread.stop()
        icecast.stop()
    icecast_listener.wait_until_closed()

    with av.open(io.BytesIO(bytes(icecast_listener.data))) as container:
        stream = container.streams.audio[0]
        head = stream.codec_context.extradata
        ogg = [bytes(packet) for packet in container.demux(stream) if packet.size]
    websocket = websocket_listener.packets
    assert head == websocket_listener.opus_head
    start = websocket.index(ogg[0])
    both = min(len(ogg), len(websocket) - start)  # each may have stopped a few packets earlier
    assert both >= 100  # 2 s and more
    assert websocket[start : start + both] == ogg[:both]


@needs_icecast
def test_the_source_comes_back_after_icecast_restarts_and_publishing_never_waits(folder):
    server = start_icecast(folder)
    url = f"icecast://source:{SOURCE_PASSWORD}@127.0.0.1:{server.port}/live.ogg"
    config = IcecastConfig(url, reconnect_seconds=0.05, max_reconnect_seconds=0.2, queue_seconds=0.5)
    sink = IcecastSink(config, RATE, 1)
    stream = Publisher(sink)
    try:
        sink.start()
        wait_for(lambda: server.source("/live.ogg") is not None, "the source", server, stream.step)
        server.stop()
        wait_for(lambda: sink.dropped_blocks > 0, "blocks dropped while Icecast is away", None, stream.step)
        server = start_icecast(folder, server.port)
        wait_for(lambda: server.source("/live.ogg") is not None, "the source to come back", server, stream.step)
        listener = Listener(server.url + "/live.ogg")
        wait_for(lambda: len(listener.data) > 8000, "audio after the restart", server, stream.step)
        listener.close()
    finally:
        sink.stop()
        server.stop()
    assert sink.connections == 2
    decoded, rate, _ = decode(bytes(listener.data))
    assert decoded.shape[1] > 0.5 * rate


@needs_icecast
def test_a_relay_configured_as_in_the_docs_serves_the_stream_from_a_second_icecast(folder):
    """docs/icecast/origin.xml and relay.xml, as documented in docs/ICECAST.md, on loopback."""
    origin_port, relay_port = free_port(), free_port()

    def documented(name: str) -> IcecastServer:
        text = (DOCS / f"{name}.xml").read_text(encoding="utf-8")
        for documented_value, here in (
            ("<port>8000</port>", f"<port>{origin_port}</port>"),
            ("<port>8001</port>", f"<port>{relay_port}</port>"),
            ("origin.example.org", "127.0.0.1"),
            ("relay1.example.org", "127.0.0.1"),
            ("0.0.0.0", "127.0.0.1"),
            ("/var/log/icecast2", str(folder / f"{name}-log")),
        ):
            text = text.replace(documented_value, here)
        port = origin_port if name == "origin" else relay_port
        return IcecastServer(folder, port, text, name=name)

    origin, relay = documented("origin"), documented("relay")
    url = f"icecast://source:CHANGE-ME-SOURCE@127.0.0.1:{origin_port}/stream.ogg"
    sink = IcecastSink(IcecastConfig(url), RATE, 1)
    stream = Publisher(sink)
    try:
        origin.start()
        sink.start()
        wait_for(lambda: origin.source("/stream.ogg") is not None, "the source", origin, stream.step)
        relay.start()
        wait_for(lambda: relay.source("/stream.ogg") is not None, "the relay", relay, stream.step)
        listener = Listener(relay.url + "/stream.ogg")
        wait_for(lambda: len(listener.data) > 12000, "1.5 s through the relay", relay, stream.step)
        listener.close()
    finally:
        sink.stop()
        relay.stop()
        origin.stop()
    decoded, rate, _ = decode(bytes(listener.data))
    assert decoded.shape[1] >= 1.0 * rate
    # It is a stretch of the published chirp loop, whole: in line all through.
    loop = np.tile(stream.audio, 3)
    heard = soxr.resample(decoded[0], rate, RATE)
    start = int(np.argmax(np.correlate(loop[0], heard[: RATE // 2], mode="valid")))
    published = loop[:, start : start + len(heard) - 2400]
    assert_continuous(decoded, rate, published, extra_tail_seconds=0.1)


# -- helpers -------------------------------------------------------------------------------------------
class OpusListener:
    """A WebSocket listener of the Opus lane: the OpusHead of its ``audio_config`` and every
    packet of its messages, in order, until ``close``."""

    def __init__(self, port: int) -> None:
        self.opus_head = b""
        self.packets: list[bytes] = []
        self._url = f"ws://127.0.0.1:{port}/ws?codec=opus"
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self._listening.wait(10), "the WebSocket listener did not connect"

    def _read(self) -> None:
        with connect(self._url) as websocket:
            self._listening.set()
            while not self._stop.is_set():
                try:
                    data = websocket.recv(timeout=0.1)
                except TimeoutError:
                    continue
                if isinstance(data, str):
                    event = json.loads(data)
                    if event["type"] == "audio_config":
                        self.opus_head = base64.b64decode(event["opus_head"])
                elif isinstance(message := decode_binary(data), OpusMessage):
                    self.packets.extend(message.packets)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class Publisher:
    """Plays the engine's publisher: one 20 ms block per step, as fast as the test calls."""

    def __init__(self, sink: IcecastSink) -> None:
        self.sink = sink
        self.audio = chirp(5.12)
        self.position = 0

    def step(self) -> None:
        start = self.position % self.audio.shape[1]
        block = self.audio[:, start : start + BLOCK]
        self.sink.publish_audio(AudioBlock(self.position // BLOCK, self.position, block, RATE))
        self.position += BLOCK
        time.sleep(BLOCK / RATE)  # the stream's own pace, as the engine's clock would set it


def playing(*prompts: tuple[str, float]) -> NowPlaying:
    return now_playing(0, prompts=prompts)


def chirp(seconds: float) -> np.ndarray:
    """A tone gliding 200 -> 2000 Hz: any gap or repeat shifts it out of line."""
    t = np.arange(round(seconds * RATE)) / RATE
    phase = 2 * np.pi * (200 * t + (1800 / (2 * seconds)) * t**2)
    return (0.3 * np.sin(phase))[None].astype(np.float32)


def blocks_of(audio: np.ndarray, first: int = 0) -> list[AudioBlock]:
    """``audio`` in the engine's blocks, the first at stream position ``first``."""
    return [
        AudioBlock((first + start) // BLOCK, first + start, audio[:, start : start + BLOCK], RATE)
        for start in range(0, audio.shape[1], BLOCK)
    ]


def publish(sink: IcecastSink, audio: np.ndarray, first: int = 0) -> None:
    """Publish ``audio`` in the engine's blocks, the first at stream position ``first``."""
    for block in blocks_of(audio, first):
        sink.publish_audio(block)


def decode(data: bytes) -> tuple[np.ndarray, int, dict]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        frames = [frame.to_ndarray() for frame in container.decode(stream)]
        return np.concatenate(frames, axis=1), stream.rate, dict(stream.metadata)


def segment_lag(decoded: np.ndarray, reference: np.ndarray, start: int, length: int) -> int:
    """Where ``reference[start:start + length]`` lies in ``decoded``, as an offset (0..2400)."""
    segment = reference[start : start + length]
    window = decoded[start : start + length + 2400]
    scores = np.correlate(window, segment, mode="valid")
    return int(np.argmax(scores))


def assert_continuous(decoded, rate, published, extra_tail_seconds=0.0):
    """The decoded stream is the published one: the same length (within the codec's delay, and
    up to ``extra_tail_seconds`` of what was published after it) and in line all through (no
    gap, no repeat)."""
    reference = soxr.resample(published[0], RATE, rate) if rate != RATE else published[0]
    head = min(rate // 2, decoded.shape[1])
    lags = np.arange(0, 2400)
    scores = [np.dot(decoded[0, lag : lag + head], reference[:head]) for lag in lags]
    lag = int(lags[int(np.argmax(scores))])
    heard = decoded[0, lag:]
    assert len(reference) <= len(heard) <= len(reference) + extra_tail_seconds * rate + 2400
    window = rate // 10
    for start in range(0, min(len(heard), len(reference)) - window, window):
        a, b = heard[start : start + window], reference[start : start + window]
        correlation = np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b))
        assert correlation > 0.9, f"out of line at {start / rate:.2f} s (correlation {correlation:.2f})"


@pytest.mark.parametrize("command", ["serve", "play"])
def test_a_bad_icecast_url_is_refused_before_the_model_loads(command, capsys):
    from streamer.cli import main

    missing_model = "/nonexistent/model"  # loading it would fail with another message
    assert main([command, "--icecast", "icecast://source:pw@host/radio", "--model", missing_model]) == 2
    assert "--icecast-format" in capsys.readouterr().err
