"""Opus for listeners: the stream encoder, the message framing and packing (pure), and the server
giving Opus to the listeners who ask for it beside PCM to the others."""

from __future__ import annotations

import base64
import io
import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from websockets.sync.client import connect

from opus_reference import decode_opus
from streamer.errors import UserError
from streamer.runtime.ports import FramePicture
from streamer.audio.blocks import AudioBlock
from streamer.sinks.opus import (
    FRAME_SAMPLES,
    OPUS_RATE,
    OpusEncoding,
    OpusPacket,
    OpusStreamEncoder,
)
from streamer.sinks.packer import OpusPacker
from streamer.sinks.protocol import (
    AudioMessage,
    FrameMessage,
    MessageFormatError,
    OpusMessage,
    audio_messages_contiguous,
    decode_binary,
)
from test_broadcast import SAMPLE_RATE, Recording, kind_of, receive_for, serve  # noqa: F401 (serve: a fixture)

BLOCK = 882


def sine(positions: np.ndarray, rate: int) -> np.ndarray:
    left = 0.5 * np.sin(2 * np.pi * 441.0 * positions / rate)
    return np.stack([left, -left]).astype(np.float32)


def snr_db(reference: np.ndarray, decoded: np.ndarray) -> float:
    error = decoded - reference
    return float(10 * np.log10(np.mean(reference**2) / np.mean(error**2)))


def encode_blocks(positions: list[int], *, channels: int = 2) -> tuple[OpusStreamEncoder, list[OpusPacket]]:
    encoder = OpusStreamEncoder(
        channels=channels, input_rate=SAMPLE_RATE, kbit_per_second=96, first_position=positions[0]
    )
    packets = []
    for position in positions:
        samples = sine(np.arange(position, position + BLOCK), SAMPLE_RATE)[:channels]
        packets += encoder.encode(samples, position)
    return encoder, packets


# ---- the encoder ---------------------------------------------------------------------------------


def test_packets_are_20_ms_and_their_positions_say_where_the_decoded_audio_belongs() -> None:
    start = 10 * SAMPLE_RATE
    encoder, packets = encode_blocks([start + i * BLOCK for i in range(100)])  # 2 s
    assert len(encoder.opus_head) == 19 and encoder.opus_head[:8] == b"OpusHead"
    assert encoder.pre_skip == int.from_bytes(encoder.opus_head[10:12], "little") > 0

    codec = [packet.codec_position for packet in packets]
    assert codec[0] == start * OPUS_RATE // SAMPLE_RATE - encoder.pre_skip
    assert np.all(np.diff(codec) == FRAME_SAMPLES)
    stream = np.array([packet.sample_position for packet in packets])
    assert np.all(np.abs(np.diff(stream) - FRAME_SAMPLES * SAMPLE_RATE / OPUS_RATE) <= 1)
    assert abs(stream[0] - (start - encoder.pre_skip * SAMPLE_RATE / OPUS_RATE)) <= 1

    # A decoder from the middle of the stream (a listener who joined): once settled, its output
    # is the input at those positions, resampled.
    middle = 20
    decoded = decode_opus([packet.data for packet in packets[middle:]], 2)
    first = packets[middle].codec_position - start * OPUS_RATE // SAMPLE_RATE
    expected = sine(start * OPUS_RATE / SAMPLE_RATE + first + np.arange(decoded.shape[1]), OPUS_RATE)
    settled = slice(5 * FRAME_SAMPLES, None)  # libopus needs ~80 ms to converge from cold
    assert snr_db(expected[:, settled], decoded[:, settled]) > 25


def test_a_jump_in_the_stream_positions_moves_the_packets_stream_positions_not_their_codec_clock() -> None:
    positions = [i * BLOCK for i in range(20)] + [100_000 + i * BLOCK for i in range(20)]
    _, packets = encode_blocks(positions)
    codec = [packet.codec_position for packet in packets]
    assert np.all(np.diff(codec) == FRAME_SAMPLES)
    stream = np.array([packet.sample_position for packet in packets])
    steps = np.diff(stream)
    jumps = np.flatnonzero(np.abs(steps - 882) > 1)
    assert len(jumps) == 1 and steps[jumps[0]] > 100_000 - 20 * BLOCK


def test_the_encoder_refuses_blocks_of_another_channel_count() -> None:
    encoder = OpusStreamEncoder(channels=1, input_rate=SAMPLE_RATE, kbit_per_second=64, first_position=0)
    with pytest.raises(ValueError, match="channels"):
        encoder.encode(np.zeros((2, BLOCK), np.float32), 0)


def test_the_streams_encoding_encodes_each_block_once_for_every_output_that_asks() -> None:
    """Two outputs (the WebSocket fan-out, an Ogg Icecast mount) each ask for every block, as
    the engine hands the same block to each sink: they get the same packets, which come out of
    one encoder exactly as if one output had asked."""
    positions = [i * BLOCK for i in range(30)]
    blocks = [
        AudioBlock(i, p, sine(np.arange(p, p + BLOCK), SAMPLE_RATE), SAMPLE_RATE)
        for i, p in enumerate(positions)
    ]
    shared, alone = OpusEncoding(), OpusEncoding()
    for block in blocks:
        first, second = shared.encode(block), shared.encode(block)
        assert second is first
        assert first == alone.encode(block)  # the same packets, the same positions
    assert first.format.kbit_per_second == 96.0 and first.format.channels == 2
    with pytest.raises(ValueError, match="22050 Hz"):
        shared.encode(AudioBlock(30, 30 * BLOCK, blocks[0].samples, 22050))


# ---- framing and packing (pure) ------------------------------------------------------------------


def test_an_opus_message_round_trips_and_a_damaged_one_is_refused() -> None:
    message = OpusMessage(
        sequence=2**32 - 1,
        sample_position=-287,
        codec_position=-312,
        codec_rate=48000,
        channels=2,
        packets=(b"\xfc" * 240, b"", b"\x01\x02\x03"),
    )
    data = message.encode()
    assert data[:4] == bytes([1, 3, 32, 0])  # version 1, kind 3, 32-byte header
    assert decode_binary(data) == message
    assert message.num_frames == 3 * 960
    with pytest.raises(MessageFormatError, match="truncated"):
        decode_binary(data[:20])
    with pytest.raises(MessageFormatError, match="packets of"):
        decode_binary(data[:-1])
    with pytest.raises(MessageFormatError, match="packet lengths"):
        decode_binary(data[:33])


def packet(index: int, *, stream_offset: int = 0) -> OpusPacket:
    return OpusPacket(index * 960, stream_offset + round(index * 882), bytes([index % 256]))


def test_packets_are_packed_a_message_seconds_at_a_time_and_split_where_the_stream_jumps() -> None:
    packer = OpusPacker(0.1, channels=1)
    messages = packer.add([packet(i) for i in range(12)], stream_rate=SAMPLE_RATE)
    assert [len(m.packets) for m in messages] == [5, 5]
    assert audio_messages_contiguous(messages)
    assert [m.sample_position for m in messages] == [0, 5 * 882]

    jumped = packer.add([packet(12, stream_offset=50_000), packet(13, stream_offset=50_000)], stream_rate=SAMPLE_RATE)
    assert [len(m.packets) for m in jumped] == [2]  # packets 10 and 11, flushed before the jump
    rest = packer.add([packet(i, stream_offset=50_000) for i in range(14, 17)], stream_rate=SAMPLE_RATE)
    assert [(m.codec_position, len(m.packets)) for m in rest] == [(12 * 960, 5)]
    assert rest[0].sample_position == 50_000 + 12 * 882


def test_an_opus_bitrate_outside_what_libopus_takes_is_a_user_error() -> None:
    with pytest.raises(UserError, match="6..510 kbit/s"):
        OpusEncoding(1000)


# ---- served ------------------------------------------------------------------------------------------


def listen(port: int, seconds: float, codec: str | None) -> tuple[Recording, int]:
    """What one listener got, and the bytes of its binary audio messages (payload + header)."""
    query = "" if codec is None else f"?codec={codec}"
    with connect(f"ws://127.0.0.1:{port}/ws{query}") as websocket:
        recording = Recording(connected_at=time.monotonic())
        audio_bytes = 0
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                data = websocket.recv(timeout=left)
            except TimeoutError:
                break
            message: Any = data if isinstance(data, str) else decode_binary(data)
            if isinstance(message, (AudioMessage, OpusMessage)):
                audio_bytes += len(data)
            recording.messages.append((time.monotonic(), message))
    return recording, audio_bytes


def test_an_opus_listener_gets_its_config_a_burst_and_a_contiguous_stream_that_decodes_to_the_music(
    serve: Any,  # noqa: F811
) -> None:
    server, _ = serve(burst_seconds=1.0)
    time.sleep(1.5)
    recording, opus_bytes = listen(server.port, 1.5, "opus")
    pcm, pcm_bytes = listen(server.port, 1.5, None)

    kinds = [kind_of(message) for _, message in recording.messages]
    assert kinds[:3] == ["hello", "now_playing", "audio_config"]
    hello, _, config = (json.loads(m) for _, m in recording.messages[:3])
    assert (hello["codec"], hello["codecs"]) == ("opus", ["pcm", "opus"])
    assert (config["codec"], config["channels"], config["kbit_per_second"]) == ("opus", 2, 96.0)
    assert base64.b64decode(config["opus_head"])[:8] == b"OpusHead"
    opus = [m for _, m in recording.messages if isinstance(m, OpusMessage)]
    assert not any(isinstance(m, AudioMessage) for _, m in recording.messages)
    assert audio_messages_contiguous(opus)
    assert all(len(m.packets) == 5 for m in opus)
    assert sum(m.num_frames for m in opus) >= 2.4 * OPUS_RATE  # the 1 s burst, then live

    # The fake clock's sine, at the stream positions the messages give.
    decoded = decode_opus([p for m in opus for p in m.packets], 2)
    positions = opus[0].sample_position + np.arange(decoded.shape[1]) * SAMPLE_RATE / OPUS_RATE
    settled = slice(5 * FRAME_SAMPLES, None)
    assert snr_db(sine(positions, SAMPLE_RATE)[:, settled], decoded[:, settled]) > 25

    # PCM listeners are served as before, beside it; Opus takes a small share of the bytes.
    assert json.loads(pcm.messages[0][1])["codec"] == "pcm"
    assert "audio_config" not in [kind_of(message) for _, message in pcm.messages]
    assert audio_messages_contiguous(pcm.audio)
    pcm_per_frame = pcm_bytes / sum(m.num_frames for m in pcm.audio) * SAMPLE_RATE
    opus_per_frame = opus_bytes / sum(m.num_frames for m in opus) * OPUS_RATE
    assert opus_per_frame < pcm_per_frame / 8
    assert server.stats().opus_messages > 0


def test_a_slow_opus_listener_is_skipped_forward_to_the_live_edge_with_the_latest_state(
    serve: Any,  # noqa: F811
) -> None:
    # Opus is small: kernel buffers of 4 KiB, so that 2.5 s of a hung listener overflow its queue.
    settings = {"burst_seconds": 0.2, "send_queue_seconds": 0.5, "socket_send_buffer_bytes": 4096}
    server, _ = serve(drop_lagging_after_seconds=10.0, **settings)
    time.sleep(0.3)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    with connect(f"ws://127.0.0.1:{server.port}/ws?codec=opus", sock=sock, max_queue=1) as websocket:
        recording = Recording(connected_at=time.monotonic())
        receive_for(websocket, 0.6, recording)
        time.sleep(2.5)  # the listener's app hangs; its queue fills and the server skips it
        receive_for(websocket, 1.5, recording)

    arrivals = [(t, m) for t, m in recording.messages if isinstance(m, OpusMessage)]
    opus = [m for _, m in arrivals]
    gaps = [i for i in range(1, len(opus)) if not audio_messages_contiguous(opus[i - 1 : i + 1])]
    assert len(gaps) == 1, "one clean jump, not a trickle of holes"
    assert audio_messages_contiguous(opus[gaps[0] :])
    delays = np.array([t - (m.codec_position + m.num_frames) / OPUS_RATE for t, m in arrivals])
    assert np.all(delays[gaps[0] :] - delays.min() < 0.25)
    first_after_gap = next(i for i, (_, m) in enumerate(recording.messages) if m is opus[gaps[0]])
    assert kind_of(recording.messages[first_after_gap - 1][1]) == "now_playing"


SEED_PNG = Path(__file__).resolve().parents[1] / "streamer" / "seeds" / "loops" / "house_117.png"


def test_opus_listeners_get_the_waterfall_image_as_the_grey_level_it_shows_in_a_sixth_of_the_bytes(
    serve: Any,  # noqa: F811
) -> None:
    server, _ = serve()
    png = SEED_PNG.read_bytes()
    server.publish_frame(FramePicture(3, 3 * 225792, png))
    images = {}
    for codec in ("pcm", "opus"):
        recording, _ = listen(server.port, 0.2, codec)
        (image,) = [m for _, m in recording.messages if isinstance(m, FrameMessage)]
        assert (image.frame_id, image.sample_position) == (3, 3 * 225792)
        images[codec] = image.png
    assert images["pcm"] == png
    assert images["opus"][:4] == b"RIFF" and images["opus"][8:12] == b"WEBP"
    assert len(images["opus"]) < len(png) / 5
    with Image.open(io.BytesIO(png)) as original, Image.open(io.BytesIO(images["opus"])) as light:
        rgb = np.asarray(original.convert("RGB")).astype(np.int16)
        grey = np.asarray(light.convert("L")).astype(np.int16)
    shown = np.minimum(rgb[:, :, 1], rgb[:, :, 2])  # what client/waterfall.js draws
    assert np.mean(np.abs(grey - shown)) < 4  # of 255 levels


def test_a_listener_asking_for_an_unknown_codec_is_told_at_the_handshake(serve: Any) -> None:  # noqa: F811
    server, _ = serve()
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/ws?codec=mp3",
        headers={"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                 "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode()},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 400
    assert b"opus" in refused.value.read()
