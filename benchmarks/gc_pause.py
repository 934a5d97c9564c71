"""GC pause: how long a full garbage collection stops every Python thread in a serving process,
with the objects made at startup left to the collector and frozen (``runtime/heap.py``).

The process is set up as ``streamer serve`` has it when its clock starts: the model loaded
through ``load_diffusion_maker`` with its preset, the engine started, the first frame made; the
producer goes on making frames throughout. Then, side by side in this one process, each
``--repeats`` times:

* a full collection (``gc.collect()``) with the startup objects tracked (as before the freeze),
  then the same with them frozen (``freeze_startup_objects``, then ``gc.unfreeze`` to go back):
  its duration, and the longest a 2 ms ticker thread was late meanwhile. The ticker stands in
  for a sound device's callback, which needs the GIL for every buffer it fills;
* the ticker alone for as long, no collection: the lateness that the other threads cause anyway.

Usage: python benchmarks/gc_pause.py [--quick] [--model builtin|FOLDER]
(--quick: 2 repeats instead of 7; either way well under a minute after the model has loaded).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from soak import model_maker  # noqa: E402

from streamer.plan.settings import PromptBlend, StreamSettings  # noqa: E402
from streamer.runtime.assemble import build_engine  # noqa: E402
from streamer.runtime.heap import freeze_startup_objects  # noqa: E402
from streamer.runtime.stream_config import StreamConfig  # noqa: E402

#: The ticker's period: about a sound card's callback period at low latency.
TICK_SECONDS = 0.002


def worst_lateness(work: Callable[[], None]) -> tuple[float, float]:
    """Seconds ``work`` took on this thread, and the most a ticker thread woke late meanwhile."""
    done = threading.Event()
    worst = [0.0]

    def tick() -> None:
        while not done.is_set():
            asked = time.perf_counter()
            time.sleep(TICK_SECONDS)
            worst[0] = max(worst[0], time.perf_counter() - asked - TICK_SECONDS)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    time.sleep(0.05)  # the ticker is running before the work starts
    started = time.perf_counter()
    work()
    took = time.perf_counter() - started
    time.sleep(0.05)
    done.set()
    ticker.join()
    return took, worst[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats (< 60 s)")
    parser.add_argument("--model", default="builtin", help="builtin (default) or a model folder")
    parser.add_argument("--repeats", type=int, help="collections measured per row (default 7)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 7)
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    started = time.perf_counter()
    maker, preset = model_maker(args.model)
    settings = StreamSettings(
        prompts=PromptBlend.single("house beat, rhodes chords, major, sparse"),
        denoising=preset.denoising,
        guidance=preset.guidance,
    )
    engine = build_engine(StreamConfig(settings=settings), maker)
    engine.start()
    try:
        if not engine.wait_until_playing(300):
            raise RuntimeError("the first frame never came")
        print(f"# model {args.model} loaded and first frame made in "
              f"{time.perf_counter() - started:.1f} s; {repeats} repeats", flush=True)  # fmt: skip
        rows: dict[str, list[tuple[float, float]]] = {"tracked": [], "frozen": [], "none": []}
        tracked = left = 0
        for _ in range(repeats):
            tracked = len(gc.get_objects())
            rows["tracked"].append(worst_lateness(gc.collect))
            freeze_startup_objects()
            left = len(gc.get_objects())  # the frozen ones are not listed
            rows["frozen"].append(worst_lateness(gc.collect))
            gc.unfreeze()
            pause = statistics.median(took for took, _ in rows["tracked"])
            rows["none"].append(worst_lateness(lambda: time.sleep(pause)))
    finally:
        engine.stop()

    objects = {"tracked": tracked, "frozen": left, "none": 0}
    print(f"\n{'full collection':<16} {'objects':>8} {'median ms':>10} {'max ms':>8} "
          f"{'ticker late, median ms':>23} {'max ms':>8}")  # fmt: skip
    for name, measured in rows.items():
        took = [1000 * t for t, _ in measured]
        late = [1000 * w for _, w in measured]
        label = {"tracked": "startup tracked", "frozen": "startup frozen", "none": "no collection"}
        print(
            f"{label[name]:<16} {objects[name]:8d} "
            f"{statistics.median(took) if name != 'none' else 0:10.1f} "
            f"{max(took) if name != 'none' else 0:8.1f} {statistics.median(late):23.1f} "
            f"{max(late):8.1f}"
        )
    tracked_ms = 1000 * statistics.median(t for t, _ in rows["tracked"])
    frozen_ms = 1000 * statistics.median(t for t, _ in rows["frozen"])
    late_tracked = 1000 * max(w for _, w in rows["tracked"])
    late_frozen = 1000 * max(w for _, w in rows["frozen"])
    print(
        f"RESULT gc_objects={tracked} gc_full_tracked_ms={tracked_ms:.1f} "
        f"gc_full_frozen_ms={frozen_ms:.1f} ratio={tracked_ms / max(frozen_ms, 0.1):.0f} "
        f"ticker_late_tracked_max_ms={late_tracked:.1f} ticker_late_frozen_max_ms={late_frozen:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
