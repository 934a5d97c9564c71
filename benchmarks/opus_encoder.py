"""What the one Opus encoding of the stream costs the server, how much later its audio is ready,
and what bitrate it holds on both of its paths (WebSocket messages and an Ogg Icecast mount).

Feeds ``--seconds`` of 44.1 kHz audio in the clock's 20 ms blocks through what the server's
publisher thread does for each block: the PCM path (``encode_samples`` + ``AudioPacker``) and the
Opus path (``OpusEncoding``: soxr to 48 kHz and libopus, + ``OpusPacker`` + message bytes),
timing each call with the thread's CPU clock; then what an Ogg Icecast mount's sender does with
the same packets (``OggOpusMuxer``, Ogg pages of 100 ms). The audio is white noise under a tone
(the hardest case for the encoder; the fan-out benchmark streams the same noise).

Bitrates: the asked one, the Opus packets' own (what constrained VBR holds), the WebSocket
messages' (packets + framing) and the Ogg stream's (packets + page headers).

Added latency: for every stream sample, the block after which the message holding it is ready,
in Opus and in PCM; the difference, times 20 ms, is how much later an Opus listener can hear it
(resampler delay + the encoder's look-ahead + filling a 20 ms packet), on top of the measured
encoding time.

    .venv/bin/python benchmarks/opus_encoder.py               # 60 s, mono and stereo
    .venv/bin/python benchmarks/opus_encoder.py --seconds 10
    .venv/bin/python benchmarks/opus_encoder.py --smoke       # 1 s: that it runs, no figures
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from streamer.audio.blocks import AudioBlock
from streamer.sinks.icecast_encoder import OggOpusMuxer
from streamer.sinks.opus import OPUS_RATE, OpusEncoding
from streamer.sinks.packer import AudioPacker, EncodedBlock, OpusPacker
from streamer.sinks.protocol import encode_samples

SAMPLE_RATE = 44100
BLOCK_FRAMES = 882
MESSAGE_SECONDS = 0.1
#: ``--smoke``: enough audio for every path to produce messages and pages.
SMOKE_SECONDS = 1.5


def test_audio(channels: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    frames = round(seconds * SAMPLE_RATE)
    tone = 0.3 * np.sin(2 * np.pi * 441.0 * np.arange(frames) / SAMPLE_RATE)
    return (rng.uniform(-0.3, 0.3, size=(channels, frames)) + tone).astype(np.float32)


def ready_block(starts: list[int], ends: list[int], emitted_at: list[int], positions: np.ndarray) -> np.ndarray:
    """For each position, the block index after which a message covering it was ready."""
    order = np.argsort(starts)
    starts_sorted = np.asarray(starts)[order]
    index = np.searchsorted(starts_sorted, positions, side="right") - 1
    chosen = order[np.clip(index, 0, None)]
    inside = (index >= 0) & (positions < np.asarray(ends)[chosen])
    return np.where(inside, np.asarray(emitted_at)[chosen], -1)


def measure(channels: int, seconds: float) -> dict:
    audio = test_audio(channels, seconds)
    encoding = OpusEncoding()
    kbit = encoding.kbit_per_second(channels)
    opus_packer = OpusPacker(MESSAGE_SECONDS, channels=channels)
    pcm_packer = AudioPacker(MESSAGE_SECONDS, "s16")
    muxer = OggOpusMuxer("benchmark")
    opus_cpu, pcm_cpu, ogg_cpu = [], [], []
    opus_spans: tuple[list[int], list[int], list[int]] = ([], [], [])
    pcm_spans: tuple[list[int], list[int], list[int]] = ([], [], [])
    opus_bytes = packet_bytes = ogg_bytes = 0
    blocks = audio.shape[1] // BLOCK_FRAMES
    for index in range(blocks):
        position = index * BLOCK_FRAMES
        samples = audio[:, position : position + BLOCK_FRAMES]
        audio_block = AudioBlock(index, position, samples, SAMPLE_RATE)

        started = time.thread_time()
        block = EncodedBlock(index, position, SAMPLE_RATE, channels, BLOCK_FRAMES, encode_samples(samples, "s16"))
        pcm_messages = pcm_packer.add(block)
        for message in pcm_messages:
            message.encode()
        pcm_cpu.append(time.thread_time() - started)

        started = time.thread_time()
        batch = encoding.encode(audio_block)
        opus_messages = opus_packer.add(batch.packets, stream_rate=SAMPLE_RATE)
        opus_bytes += sum(len(message.encode()) for message in opus_messages)
        opus_cpu.append(time.thread_time() - started)
        packet_bytes += sum(len(packet.data) for packet in batch.packets)

        started = time.thread_time()
        ogg_bytes += len(muxer.write(batch))
        ogg_cpu.append(time.thread_time() - started)

        for message in pcm_messages:
            for spans, value in zip(pcm_spans, (message.sample_position, message.sample_position + message.num_frames, index)):
                spans.append(value)
        for message in opus_messages:
            end = message.sample_position + round(message.num_frames * SAMPLE_RATE / OPUS_RATE)
            for spans, value in zip(opus_spans, (message.sample_position, end, index)):
                spans.append(value)

    positions = np.arange(SAMPLE_RATE, (blocks - 10) * BLOCK_FRAMES, 49)  # past the first second
    pcm_ready = ready_block(*pcm_spans, positions)
    opus_ready = ready_block(*opus_spans, positions)
    later_ms = (opus_ready - pcm_ready) * BLOCK_FRAMES / SAMPLE_RATE * 1000
    audio_seconds = blocks * BLOCK_FRAMES / SAMPLE_RATE
    ogg_bytes += len(muxer.close())
    return {
        "channels": channels,
        "kbit_per_second": kbit,
        "opus_cpu_pct": 100 * sum(opus_cpu) / audio_seconds,
        "opus_block_ms_median": 1000 * statistics.median(opus_cpu),
        "opus_block_ms_max": 1000 * max(opus_cpu),
        "pcm_cpu_pct": 100 * sum(pcm_cpu) / audio_seconds,
        "ogg_cpu_pct": 100 * sum(ogg_cpu) / audio_seconds,
        "packet_kbit_s": packet_bytes * 8 / 1000 / audio_seconds,
        "opus_message_kbit_s": opus_bytes * 8 / 1000 / audio_seconds,
        "ogg_kbit_s": ogg_bytes * 8 / 1000 / audio_seconds,
        "encoder_delay_ms": 1000 * batch.format.pre_skip / OPUS_RATE,
        "later_ms_mean": float(np.mean(later_ms)),
        "later_ms_max": float(np.max(later_ms)),
        "later_ms_min": float(np.min(later_ms)),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="audio fed per channel count")
    parser.add_argument(
        "--smoke", action="store_true", help=f"{SMOKE_SECONDS:g} s: that it runs (for the tests)"
    )
    args = parser.parse_args(argv)
    seconds = SMOKE_SECONDS if args.smoke else args.seconds
    load = os.getloadavg()[0]
    print(f"Opus encoder on {os.cpu_count()} CPUs (load average {load:.1f} before), {seconds:g} s each")
    print("channels | asked | packets | WebSocket messages | Ogg stream  (kbit/s)")
    rows = [measure(channels, seconds) for channels in (1, 2)]
    for row in rows:
        asked = row["kbit_per_second"]
        print(
            f"{row['channels']:8d} | {asked:5g} | {row['packet_kbit_s']:7.1f} | "
            f"{row['opus_message_kbit_s']:7.1f} ({row['opus_message_kbit_s'] / asked - 1:+.1%}) | "
            f"{row['ogg_kbit_s']:5.1f} ({row['ogg_kbit_s'] / asked - 1:+.1%})"
        )
    for row in rows:
        print(
            f"RESULT opus_encoder channels={row['channels']} "
            f"kbit_per_second={row['kbit_per_second']:g} "
            f"opus_cpu_pct={row['opus_cpu_pct']:.2f} pcm_cpu_pct={row['pcm_cpu_pct']:.2f} "
            f"ogg_cpu_pct={row['ogg_cpu_pct']:.2f} "
            f"opus_block_ms_median={row['opus_block_ms_median']:.3f} opus_block_ms_max={row['opus_block_ms_max']:.2f} "
            f"packet_kbit_s={row['packet_kbit_s']:.1f} "
            f"opus_message_kbit_s={row['opus_message_kbit_s']:.1f} "
            f"ogg_kbit_s={row['ogg_kbit_s']:.1f} encoder_delay_ms={row['encoder_delay_ms']:.1f} "
            f"later_ms_mean={row['later_ms_mean']:.1f} later_ms_min={row['later_ms_min']:.1f} "
            f"later_ms_max={row['later_ms_max']:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
