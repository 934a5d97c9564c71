"""Fan-out benchmark: how many listeners one stream server feeds in real time, and at what CPU,
in PCM and in Opus.

Three kinds of process on loopback, so the server's CPU is measured apart from the load:

- the server: ``StreamServer`` fed by a clock thread with 20 ms stereo blocks at the real-time
  rate, a ``now_playing`` event and a spectrogram image (``--image``: a real one, 223 KiB, which
  Opus listeners get as grey WebP)
  every 5.12 s, as the engine does;
- two listener processes, each holding half of the N WebSocket connections with a minimal
  client (frame parsing by hand, so the load generator stays cheaper than the server), all in
  one codec: PCM (``/ws``) or Opus (``/ws?codec=opus``; the server encodes Opus once whichever
  the listeners take);
- this process, which starts them, opens a measurement window once all listeners are connected,
  and reads the server's CPU time with psutil.

Per listener, in the window: the delivered rate (samples received / window / sample rate, in
the codec's own clock), gaps (skipped messages), stalls (a player that starts at its first
message with the burst buffered, plays in real time and stalls whenever it has no sample to
play), and the bytes received per second: audio messages alone, and everything (with the
images and events).

    .venv/bin/python benchmarks/fanout.py            # PCM at 10 to 2000 listeners and Opus at
                                                     # 500 to 2000, 60 s each, then at 500, 20 s
                                                     # each: message lengths, and this fan-out
                                                     # against websockets.broadcast and against
                                                     # a task and queue per listener
    .venv/bin/python benchmarks/fanout.py --quick    # PCM at 10, 100, 500, Opus at 500, 6 s each
    .venv/bin/python benchmarks/fanout.py --smoke    # PCM and Opus at 4, 1 s: that it runs
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

SAMPLE_RATE = 44100
BLOCK_FRAMES = 882  # the clock's 20 ms tick
FRAME_SECONDS = 5.12
LISTENER_PROCESSES = 2
AUDIO_HEADER = struct.Struct("<BBHIQIHH")
OPUS_HEADER = struct.Struct("<BBHIqqIHH")  # streamer/sinks/protocol.py, kind 3
OPUS_RATE = 48000
OPUS_FRAME_SAMPLES = 960
DEFAULT_IMAGE = Path(__file__).resolve().parents[1] / "streamer" / "seeds" / "loops" / "house_117.png"


# ---- server process ------------------------------------------------------------------------


def run_server(args: argparse.Namespace) -> None:
    import numpy as np

    from streamer.audio.blocks import AudioBlock
    from streamer.runtime.ports import FramePicture, NowPlaying, PromptWeight
    from streamer.sinks.config import ServerConfig
    from streamer.sinks.server import ServerThread, StreamServer

    class NoControl:
        def apply(self, command: object) -> dict:
            return {}

    config = ServerConfig(
        port=0,
        max_connections=args.max_listeners + 10,
        message_seconds=args.message_seconds,
        burst_seconds=args.burst_seconds,
    )
    server = StreamServer(config, NoControl())
    if args.fanout == "queues":
        server.broadcaster = queue_broadcaster(config)
    elif args.fanout == "library":
        use_library_broadcast()
    rng = np.random.default_rng(0)
    noise = rng.uniform(-0.5, 0.5, size=(args.channels, SAMPLE_RATE)).astype(np.float32)
    image = Path(args.image).read_bytes() if args.image else b""
    now_playing = NowPlaying(
        frame_id=0, sample_position=0, prompts=(PromptWeight("noise", 1.0),), negative_prompt="",
        alpha=0.0, seed=0, next_seed=1, noise_alpha=0.0, denoising=0.75, guidance=7.0,
        seed_loop="house_117", bpm=117.1875, paused=False,
    )
    stop = threading.Event()

    def clock() -> None:
        start = time.monotonic()
        sequence = 0
        blocks_per_frame = round(FRAME_SECONDS * SAMPLE_RATE / BLOCK_FRAMES)
        while not stop.is_set():
            position = sequence * BLOCK_FRAMES
            delay = start + position / SAMPLE_RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            offset = position % (SAMPLE_RATE - BLOCK_FRAMES)
            samples = noise[:, offset : offset + BLOCK_FRAMES]
            server.publish_audio(AudioBlock(sequence, position, samples, SAMPLE_RATE))
            if sequence % blocks_per_frame == 0:
                frame_id = sequence // blocks_per_frame
                server.publish_event(now_playing)
                if image:
                    server.publish_frame(FramePicture(frame_id, position, image))
            sequence += 1

    with ServerThread(server):
        clock_thread = threading.Thread(target=clock, daemon=True)
        clock_thread.start()
        time.sleep(args.burst_seconds + 0.5)  # so that every listener joins with a full burst
        print(f"READY {server.port}", flush=True)
        sys.stdin.readline()  # the parent writes a line (or closes stdin) to stop us
        stop.set()
        clock_thread.join()
        stats = server.stats()
        summary = {"skipped_messages": stats.skipped_messages, "dropped": stats.dropped_listeners}
        print(json.dumps(summary), flush=True)


def unframe(frame: bytes) -> tuple[bytes, bool]:
    """Payload and text flag of an unmasked WebSocket frame."""
    header = {126: 4, 127: 10}.get(frame[1] & 0x7F, 2)
    return frame[header:], frame[0] & 0x0F == 0x1


def use_library_broadcast() -> None:
    """Variant for comparison: same pacing, but each write goes through ``websockets.broadcast``,
    which serialises the frame again for every connection."""
    from websockets.asyncio.server import broadcast

    from streamer.sinks import broadcast as fan_out

    last: list = [None, None]  # the frame last unframed, and its payload

    def write_frame(connection: object, frame: bytes) -> None:
        if last[0] is not frame:
            last[:] = [frame, unframe(frame)]
        payload, text = last[1]
        broadcast([connection], payload, text=text)  # type: ignore[list-item]

    fan_out.write_frame = write_frame  # type: ignore[assignment]


def queue_broadcaster(config: object) -> object:
    """The design not taken, for comparison: a task and a bounded queue per listener, each
    message awaited with ``send`` (drop-oldest when the queue is full)."""
    from websockets.exceptions import ConnectionClosed

    from streamer.sinks.broadcast import Broadcaster
    from streamer.sinks.opus import OpusEncoding
    from streamer.sinks.pacing import ListenerPacing

    class QueueBroadcaster(Broadcaster):
        def __init__(self, config: object) -> None:
            super().__init__(config, OpusEncoding())  # type: ignore[arg-type]
            self.queues: dict[object, asyncio.Queue] = {}
            self.senders: set[asyncio.Task] = set()

        def join(self, connection: object, codec: str = "pcm") -> None:
            capacity = round(self.config.send_queue_seconds / self.config.message_seconds)
            queue: asyncio.Queue = asyncio.Queue(maxsize=capacity)
            self.queues[connection] = queue
            lane = self._lanes[codec]
            for message in lane.burst:
                queue.put_nowait(unframe(message.frame))
            lane.listeners[connection] = ListenerPacing(self.config.drop_lagging_after_seconds)
            task = asyncio.ensure_future(self.send_loop(connection, queue))
            self.senders.add(task)
            task.add_done_callback(self.senders.discard)

        def leave(self, connection: object) -> None:
            super().leave(connection)  # type: ignore[arg-type]
            self.queues.pop(connection, None)

        async def send_loop(self, connection: object, queue: asyncio.Queue) -> None:
            try:
                while True:
                    data, text = await queue.get()
                    await connection.send(data, text=text)  # type: ignore[attr-defined]
            except ConnectionClosed:
                pass

        def _fan_out(
            self,
            frame: bytes,
            lane: object,
            *,
            state_kind: str | None = None,
            only: list | None = None,
        ) -> None:
            # The broadcaster hands over a serialised frame: take the payload back out, once.
            payload, text = unframe(frame)
            targets = lane.listeners if only is None else only  # type: ignore[attr-defined]
            for connection in targets:
                queue = self.queues.get(connection)
                if queue is None:
                    continue
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait((payload, text))

    return QueueBroadcaster(config)


# ---- listener processes --------------------------------------------------------------------


class Listener(asyncio.Protocol):
    """A minimal WebSocket client: reads frame headers and audio headers, answers pings."""

    def __init__(self, connected: asyncio.Future, codec: str) -> None:
        self.connected = connected
        self.codec = codec
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.handshake_done = False
        self.closed = False
        self.window = (float("inf"), float("inf"))
        self.last_sequence: int | None = None
        self.received_end = 0
        self.play_start: tuple[float, int] | None = None  # (time, stream position)
        self.stalls = 0
        self.gaps = 0
        self.window_frames = 0
        self.lateness_min = float("inf")
        self.lateness_max = float("-inf")
        self.window_bytes = 0
        self.window_audio_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET /ws{'?codec=opus' if self.codec == 'opus' else ''} HTTP/1.1\r\n"
                "Host: 127.0.0.1\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.window[0] <= time.monotonic() <= self.window[1]:
            self.window_bytes += len(data)
        if not self.handshake_done:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                self.connected.set_exception(ConnectionError(bytes(self.buffer[:60]).decode()))
                return
            del self.buffer[: end + 4]
            self.handshake_done = True
            self.connected.set_result(None)
        self._read_frames(time.monotonic())

    def _read_frames(self, now: float) -> None:
        buffer = self.buffer
        offset = 0
        while len(buffer) - offset >= 2:
            opcode = buffer[offset] & 0x0F
            length = buffer[offset + 1] & 0x7F
            header = 2
            if length == 126:
                if len(buffer) - offset < 4:
                    break
                length = struct.unpack_from("!H", buffer, offset + 2)[0]
                header = 4
            elif length == 127:
                if len(buffer) - offset < 10:
                    break
                length = struct.unpack_from("!Q", buffer, offset + 2)[0]
                header = 10
            if len(buffer) - offset < header + length:
                break
            start = offset + header
            if opcode == 0x2 and length >= AUDIO_HEADER.size and buffer[start + 1] == 1:
                fields = AUDIO_HEADER.unpack_from(buffer, start)
                _, _, header_bytes, sequence, position, _, channels, _ = fields
                frames = (length - header_bytes) // (2 * channels)
                self._on_audio(now, sequence, position, frames, SAMPLE_RATE, header + length)
            elif opcode == 0x2 and length >= OPUS_HEADER.size and buffer[start + 1] == 3:
                fields = OPUS_HEADER.unpack_from(buffer, start)
                sequence, codec_position, packets = fields[3], fields[5], fields[8]
                frames = packets * OPUS_FRAME_SAMPLES
                self._on_audio(now, sequence, codec_position, frames, OPUS_RATE, header + length)
            elif opcode == 0x9:  # ping: answer with a masked pong
                payload = bytes(buffer[start : start + length])
                mask = os.urandom(4)
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                assert self.transport is not None
                self.transport.write(bytes([0x8A, 0x80 | len(payload)]) + mask + masked)
            offset = start + length
        del buffer[:offset]

    def _on_audio(
        self, now: float, sequence: int, position: int, frames: int, rate: int, wire_bytes: int
    ) -> None:
        """``position`` and ``frames`` count at ``rate`` (the stream's, or Opus's 48 kHz)."""
        if self.last_sequence is not None and sequence != (self.last_sequence + 1) & 0xFFFFFFFF:
            self.gaps += 1
        self.last_sequence = sequence
        if self.play_start is None:
            self.play_start = (now, position)
        else:
            play_time, play_position = self.play_start
            if play_position + (now - play_time) * rate > self.received_end:
                # The player ran dry before this message came: rebuffer. Counted in the window
                # only: while hundreds of listeners connect, their own process is the bottleneck.
                self.stalls += self.window[0] <= now <= self.window[1]
                self.play_start = (now, position)
        self.received_end = position + frames
        if self.window[0] <= now <= self.window[1]:
            self.window_frames += frames / rate * SAMPLE_RATE
            self.window_audio_bytes += wire_bytes
            lateness = now - self.received_end / rate
            self.lateness_min = min(self.lateness_min, lateness)
            self.lateness_max = max(self.lateness_max, lateness)


async def run_listeners(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    listeners = []
    for _ in range(args.count):
        connected = loop.create_future()
        _, listener = await loop.create_connection(
            lambda: Listener(connected, args.codec), "127.0.0.1", args.port
        )
        await asyncio.wait_for(connected, 10)
        listeners.append(listener)
    print("CONNECTED", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    window_start, window_end = map(float, line.split())
    for listener in listeners:
        listener.window = (window_start, window_end)
    await asyncio.sleep(max(0.0, window_start - time.monotonic()))
    cpu_start = time.process_time()
    await asyncio.sleep(max(0.0, window_end - time.monotonic()))
    cpu_seconds = time.process_time() - cpu_start
    window = window_end - window_start
    print(
        json.dumps(
            {
                "cpu_seconds": cpu_seconds,
                "listeners": [
                    {
                        "rate": listener.window_frames / window / SAMPLE_RATE,
                        "stalls": listener.stalls,
                        "gaps": listener.gaps,
                        "closed": listener.closed,
                        "lateness_spread": listener.lateness_max - listener.lateness_min,
                        "bytes_per_second": listener.window_bytes / window,
                        "audio_bytes_per_second": listener.window_audio_bytes / window,
                    }
                    for listener in listeners
                ],
            }
        ),
        flush=True,
    )


# ---- orchestration -------------------------------------------------------------------------


def spawn(role_args: list[str]) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[1]
    # A script's own folder comes first on sys.path, not the working directory: without this,
    # ``import streamer`` would find whichever checkout the environment has installed.
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, __file__, *role_args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": path},
    )


def measure(
    listeners: int,
    seconds: float,
    message_seconds: float,
    image: str,
    fanout: str = "broadcast",
    codec: str = "pcm",
    channels: int = 2,
) -> dict:
    import psutil

    server = spawn(
        [
            "--role", "server",
            "--max-listeners", str(listeners),
            "--message-seconds", str(message_seconds),
            "--image", image,
            "--channels", str(channels),
            "--fanout", fanout,
        ]
    )
    assert server.stdin is not None and server.stdout is not None
    port = int(server.stdout.readline().split()[1])
    share, extra = divmod(listeners, LISTENER_PROCESSES)
    counts = [share + (i < extra) for i in range(LISTENER_PROCESSES)]
    clients = [
        spawn(["--role", "listeners", "--count", str(n), "--port", str(port), "--codec", codec])
        for n in counts
        if n
    ]
    for client in clients:
        assert client.stdout is not None
        if client.stdout.readline().strip() != "CONNECTED":
            for process in (server, *clients):
                process.kill()
                process.wait()
            raise ConnectionError(f"not all {listeners} listeners could connect (10 s each)")
    window_start = time.monotonic() + 2.0  # let every listener settle after its burst
    window_end = window_start + seconds
    for client in clients:
        assert client.stdin is not None
        client.stdin.write(f"{window_start} {window_end}\n")
        client.stdin.flush()
    process = psutil.Process(server.pid)
    time.sleep(max(0.0, window_start - time.monotonic()))
    cpu_start = process.cpu_times()
    time.sleep(max(0.0, window_end - time.monotonic()))
    cpu_end = process.cpu_times()
    rss_mib = process.memory_info().rss / 2**20
    results = []
    for client in clients:
        assert client.stdout is not None
        results.append(json.loads(client.stdout.readline()))
        client.wait()
    server_stats = json.loads(server.communicate("STOP\n")[0].strip().splitlines()[-1])
    per_listener = [listener for result in results for listener in result["listeners"]]
    rates = [listener["rate"] for listener in per_listener]
    server_cpu = (cpu_end.user + cpu_end.system - cpu_start.user - cpu_start.system) / seconds
    return {
        "fanout": fanout,
        "codec": codec,
        "listeners": listeners,
        "message_ms": round(message_seconds * 1000),
        "server_cpu_pct": 100 * server_cpu,
        "load_cpu_pct": 100 * sum(result["cpu_seconds"] for result in results) / seconds,
        "server_rss_mib": rss_mib,
        "rate_median": statistics.median(rates),
        "rate_min": min(rates),
        "stalls": sum(listener["stalls"] for listener in per_listener),
        "stalled_listeners": sum(1 for listener in per_listener if listener["stalls"]),
        "gaps": sum(listener["gaps"] for listener in per_listener),
        "closed": sum(1 for listener in per_listener if listener["closed"]),
        "jitter_ms_max": 1000 * max(listener["lateness_spread"] for listener in per_listener),
        "audio_kbit_s": statistics.median(l["audio_bytes_per_second"] for l in per_listener) * 8e-3,
        "total_kbit_s": statistics.median(l["bytes_per_second"] for l in per_listener) * 8e-3,
        "server_skipped": server_stats["skipped_messages"],
        "server_dropped": server_stats["dropped"],
    }


COLUMNS = [
    ("fanout", "{:>9}"),
    ("codec", "{:>5}"),
    ("listeners", "{:>9}"),
    ("message_ms", "{:>10}"),
    ("server_cpu_pct", "{:>14.1f}"),
    ("load_cpu_pct", "{:>12.1f}"),
    ("server_rss_mib", "{:>14.0f}"),
    ("rate_median", "{:>11.4f}"),
    ("rate_min", "{:>8.4f}"),
    ("stalls", "{:>6}"),
    ("stalled_listeners", "{:>17}"),
    ("gaps", "{:>4}"),
    ("closed", "{:>6}"),
    ("jitter_ms_max", "{:>13.0f}"),
    ("audio_kbit_s", "{:>12.1f}"),
    ("total_kbit_s", "{:>12.1f}"),
]


def print_row(row: dict) -> None:
    print(" | ".join(fmt.format(row[name]) for name, fmt in COLUMNS), flush=True)


def orchestrate(args: argparse.Namespace) -> None:
    if args.smoke:
        counts, opus_counts, seconds, message_lengths, side_seconds = [4], [4], 1.0, [], 0.0
    elif args.quick:
        counts, opus_counts, seconds, message_lengths, side_seconds = [10, 100, 500], [500], 6.0, [], 0.0
    else:
        counts, opus_counts, seconds = [10, 100, 500, 1000, 2000], [500, 1000, 2000], args.seconds
        message_lengths, side_seconds = [0.02, 0.05, 0.2], 20.0
    if args.only_codecs:
        if args.counts:
            opus_counts = [int(count) for count in args.counts.split(",")]
        counts, message_lengths = list(opus_counts), []
    print(
        f"fan-out on {os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f} before), "
        f"s16 {'stereo' if args.channels == 2 else 'mono'} 44.1 kHz or Opus (default bitrate), "
        f"image {args.image or 'none'} every 5.12 s"
    )
    print(" | ".join(name.rjust(len(fmt.format(0))) for name, fmt in COLUMNS))
    rows = []
    for count in sorted(set(counts) | set(opus_counts)):
        codecs = [codec for codec, listed in (("pcm", counts), ("opus", opus_counts)) if count in listed]
        for codec in codecs:
            try:
                rows.append(
                    measure(count, seconds, 0.1, args.image, codec=codec, channels=args.channels)
                )
            except ConnectionError as error:  # a loaded machine: say so, and go on
                print(f"{codec} at {count}: {error}", flush=True)
                continue
            print_row(rows[-1])
    n = counts[-1] if args.smoke else 500  # the listener count the RESULT lines give
    main_rows = [row for row in rows if row["codec"] == "pcm"]
    opus_rows = [row for row in rows if row["codec"] == "opus"]
    for message_seconds in message_lengths:
        rows.append(measure(500, side_seconds, message_seconds, args.image))
        print_row(rows[-1])
    if not (args.quick or args.smoke or args.only_codecs):
        for fanout in ("broadcast", "library", "queues"):
            rows.append(measure(500, side_seconds, 0.1, args.image, fanout))
            print_row(rows[-1])

    def clean(rows: list[dict]) -> int:
        ok = [row for row in rows if row["stalls"] == row["gaps"] == row["closed"] == 0]
        return max((row["listeners"] for row in ok), default=0)

    at_n = next((row for row in main_rows if row["listeners"] == n), None)
    if at_n is not None:
        print(
            "RESULT fanout "
            f"max_listeners_zero_stalls={clean(main_rows)} "
            f"server_cpu_pct_{n}={at_n['server_cpu_pct']:.1f} "
            f"stalls_{n}={at_n['stalls']} rate_min_{n}={at_n['rate_min']:.4f} "
            f"seconds_each={seconds:g}"
        )
    opus_n = next((row for row in opus_rows if row["listeners"] == n), None)
    if opus_n is None:
        return
    ratio = (
        ""
        if at_n is None
        else f" audio_bytes_vs_pcm_{n}=1/{at_n['audio_kbit_s'] / opus_n['audio_kbit_s']:.1f}"
        f" all_bytes_vs_pcm_{n}=1/{at_n['total_kbit_s'] / opus_n['total_kbit_s']:.1f}"
    )
    print(
        "RESULT fanout_opus "
        f"max_listeners_zero_stalls={clean(opus_rows)} "
        f"server_cpu_pct_{n}={opus_n['server_cpu_pct']:.1f} stalls_{n}={opus_n['stalls']} "
        f"audio_kbit_s_{n}={opus_n['audio_kbit_s']:.1f}{ratio} seconds_each={seconds:g}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs (< 60 s)")
    parser.add_argument(
        "--smoke", action="store_true", help="PCM and Opus at 4 listeners, 1 s (for the tests)"
    )
    parser.add_argument(
        "--image",
        default=str(DEFAULT_IMAGE),
        help="spectrogram PNG sent every 5.12 s ('': none; default: a seed loop's, 223 KiB)",
    )
    roles = ["orchestrate", "server", "listeners"]
    parser.add_argument("--role", choices=roles, default="orchestrate", help="internal")
    parser.add_argument("--max-listeners", type=int, default=1000)
    parser.add_argument("--fanout", choices=["broadcast", "library", "queues"], default="broadcast")
    parser.add_argument("--message-seconds", type=float, default=0.1)
    parser.add_argument("--burst-seconds", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--codec", choices=["pcm", "opus"], default="pcm", help="internal")
    parser.add_argument("--seconds", type=float, default=60.0, help="window of each main run")
    parser.add_argument(
        "--channels", type=int, choices=[1, 2], default=2, help="of the stream (the engine's: 1)"
    )
    parser.add_argument(
        "--only-codecs", action="store_true", help="only the Opus rows (and PCM at the same counts)"
    )
    parser.add_argument("--counts", help="listener counts of --only-codecs, e.g. 500,1000")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.role == "server":
        run_server(args)
    elif args.role == "listeners":
        asyncio.run(run_listeners(args))
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
