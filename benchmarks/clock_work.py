"""Clock work per block: the real-time path costs the same with 0 or 1000 listeners.

The live engine (stand-in frame maker, producer, renderer, publisher) feeds a real
``StreamServer`` in this process; a clock thread paced like ``SoftwareClock`` (20 ms blocks)
times every ``Engine.play_into`` call, which is all a sound device's callback does too: its
wall time, and the thread's own CPU time (the work, without the waits for the GIL and the cores
that other threads and processes cause). Listener processes (fanout.py's minimal WebSocket
clients) connect 0 or N listeners on loopback and report whether they were fed in real time.

Side by side, ``--sinks-on-clock`` rows time what the clock did before the engine redesign on
top of the copy: handing the block to the server on the clock thread (int16 encoding and a wake
of the event loop; the frame switches' JSON and image messages came on top, every 5.12 s).

    .venv/bin/python benchmarks/clock_work.py           # 0 and 1000 listeners, 30 s each
    .venv/bin/python benchmarks/clock_work.py --quick   # 0 and 300 listeners, 8 s each
    .venv/bin/python benchmarks/clock_work.py --smoke   # 0 and 2 listeners, 0.5 s: that it runs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import fanout  # noqa: E402
from streamer.audio.blocks import AudioBlock  # noqa: E402
from streamer.plan.settings import PromptBlend, StreamSettings, Transition  # noqa: E402
from streamer.runtime.assemble import build_engine  # noqa: E402
from streamer.runtime.stream_config import StreamConfig  # noqa: E402
from streamer.runtime.control import EngineControl  # noqa: E402
from streamer.runtime.standin import StandInFrameMaker  # noqa: E402
from streamer.sinks.config import ServerConfig  # noqa: E402
from streamer.sinks.server import ServerThread, StreamServer  # noqa: E402


class TimedClock:
    """``SoftwareClock``'s pacing, timing each ``play_into`` (nanoseconds, preallocated)."""

    def __init__(self, engine, max_blocks: int, server: StreamServer | None) -> None:
        self.engine = engine
        self.server = server  # also publish to it on this thread, as the old design did
        self.buffer = np.zeros((engine.channels, engine.block_samples), dtype=np.float32)
        self.durations_ns = np.zeros(max_blocks, dtype=np.int64)
        self.cpu_ns = np.zeros(max_blocks, dtype=np.int64)
        self.blocks = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        block = self.buffer.shape[1]
        start = time.monotonic()
        while not self.stop.is_set() and self.blocks < self.durations_ns.size:
            delay = start + (self.blocks + 1) * block / self.engine.sample_rate - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
                continue
            self.engine.ring.wait_for_samples(block, 0.5)
            began, began_cpu = time.perf_counter_ns(), time.thread_time_ns()
            self.engine.play_into(self.buffer)
            if self.server is not None:
                position = self.blocks * block
                self.server.publish_audio(
                    AudioBlock(self.blocks, position, self.buffer.copy(), self.engine.sample_rate)
                )
            self.cpu_ns[self.blocks] = time.thread_time_ns() - began_cpu
            self.durations_ns[self.blocks] = time.perf_counter_ns() - began
            self.blocks += 1


def measure(
    listeners: int, seconds: float, sinks_on_clock: bool = False, settle_seconds: float = 2.0
) -> dict:
    """Clock work over ``seconds`` with ``listeners``, once they have had ``settle_seconds``
    after their burst."""
    settings = StreamSettings(
        prompts=PromptBlend.single("warm analog synths"), seed_loop="house_117",
        transition=Transition(seconds=0),
    )
    config = StreamConfig(settings=settings)
    config = dataclasses.replace(config, planner=dataclasses.replace(config.planner, endless=False))
    engine = build_engine(config, StandInFrameMaker(0.2))
    server = StreamServer(
        ServerConfig(port=0, max_connections=listeners + 10), EngineControl(engine, frozenset())
    )
    max_blocks = int((seconds + 60) / config.engine.block_seconds)
    clock = TimedClock(engine, max_blocks, server if sinks_on_clock else None)
    with ServerThread(server):
        if not sinks_on_clock:
            engine.add_sink(server)
        engine.start()
        try:
            if not engine.wait_until_playing(60):
                raise RuntimeError("the first frame never came")
            clock.thread.start()
            time.sleep(server.config.burst_seconds + 0.5)  # every listener joins with a full burst
            share, extra = divmod(listeners, fanout.LISTENER_PROCESSES)
            counts = [share + (i < extra) for i in range(fanout.LISTENER_PROCESSES)]
            clients = [
                fanout.spawn(["--role", "listeners", "--count", str(n), "--port", str(server.port)])
                for n in counts
                if n
            ]
            for client in clients:
                if client.stdout.readline().strip() != "CONNECTED":
                    raise RuntimeError("a listener process failed to connect")
            window_start = time.monotonic() + settle_seconds
            for client in clients:
                client.stdin.write(f"{window_start} {window_start + seconds}\n")
                client.stdin.flush()
            time.sleep(max(0.0, window_start - time.monotonic()))
            first = clock.blocks
            time.sleep(seconds)
            last = clock.blocks
            results = [json.loads(client.stdout.readline()) for client in clients]
            for client in clients:
                client.wait()
        finally:
            clock.stop.set()
            clock.thread.join()
            engine.stop()
    durations_us = clock.durations_ns[first:last] / 1000.0
    cpu_us = clock.cpu_ns[first:last] / 1000.0
    rates = [entry["rate"] for result in results for entry in result["listeners"]]
    stalls = sum(entry["stalls"] for result in results for entry in result["listeners"])
    return {
        "clock": "copy + sinks" if sinks_on_clock else "copy",
        "listeners": listeners,
        "blocks": last - first,
        "cpu_median_us": statistics.median(cpu_us),
        "cpu_p99_us": float(np.percentile(cpu_us, 99)),
        "median_us": statistics.median(durations_us),
        "p99_us": float(np.percentile(durations_us, 99)),
        "max_us": float(durations_us.max()),
        "underrun_samples": engine.metrics.underrun_samples,
        "listener_rate_min": min(rates) if rates else float("nan"),
        "listener_stalls": stalls,
    }


COLUMNS = [
    ("clock", "{:>12}"),
    ("listeners", "{:>9}"),
    ("blocks", "{:>6}"),
    ("cpu_median_us", "{:>13.1f}"),
    ("cpu_p99_us", "{:>10.1f}"),
    ("median_us", "{:>9.1f}"),
    ("p99_us", "{:>7.1f}"),
    ("max_us", "{:>7.0f}"),
    ("underrun_samples", "{:>16}"),
    ("listener_rate_min", "{:>17.4f}"),
    ("listener_stalls", "{:>15}"),
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="0 and 300 listeners, 8 s each (< 60 s)")
    parser.add_argument(
        "--smoke", action="store_true", help="0 and 2 listeners, 0.5 s each (for the tests)"
    )
    args = parser.parse_args(argv)
    many, seconds = (2, 0.5) if args.smoke else (300, 8.0) if args.quick else (1000, 30.0)
    print(
        f"clock work per 20 ms block on {os.cpu_count()} CPUs "
        f"(load average {os.getloadavg()[0]:.1f} before)"
    )
    print(" | ".join(name.rjust(len(fmt.format(0 if "s}" not in fmt else ""))) for name, fmt in COLUMNS))
    rows = []
    for sinks_on_clock in (False, True):
        for count in (0, many):
            rows.append(measure(count, seconds, sinks_on_clock, 0.2 if args.smoke else 2.0))
            print(" | ".join(fmt.format(rows[-1][name]) for name, fmt in COLUMNS), flush=True)
    none, loaded, old_none, old_loaded = rows
    print(
        f"RESULT clock_work listeners={many} cpu_median_us_0={none['cpu_median_us']:.1f} "
        f"cpu_median_us_{many}={loaded['cpu_median_us']:.1f} "
        f"cpu_ratio={loaded['cpu_median_us'] / none['cpu_median_us']:.2f} "
        f"wall_p99_us_{many}={loaded['p99_us']:.1f} "
        f"sinks_on_clock_cpu_median_us_{many}={old_loaded['cpu_median_us']:.1f} "
        f"underrun_samples={none['underrun_samples'] + loaded['underrun_samples']}"
    )


if __name__ == "__main__":
    main()
