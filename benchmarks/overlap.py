"""Seconds per frame with a staged frame maker's two stages in a row and overlapped.

On a GPU the model's part of a frame (UNet, decode) runs on the accelerator and the rest
(vocoder, picture, levelling) on the CPU; in a row the GPU idles while the CPU works. Overlapped,
the engine's finisher thread finishes one batch while the producer generates the next, so a
frame costs max(generate, finish) instead of their sum (``streamer.runtime.frames
.StagedFrameMaker``).

Measured with the live engine (producer, finisher, renderer, software clock at 20x real time, so
that making frames is the bottleneck) and the stand-in frame maker, whose ``generate`` waits
``--generate`` seconds per frame (the accelerator) and ``finish`` ``--finish`` seconds (the CPU),
on top of the engine's own levelling of each frame: the same maker, overlapping or not.

Usage: python benchmarks/overlap.py [--quick] [--generate 0.4] [--finish 0.25]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamer.plan.settings import PromptBlend, StreamSettings, Transition  # noqa: E402
from streamer.runtime.assemble import build_engine  # noqa: E402
from streamer.runtime.clocks import SoftwareClock  # noqa: E402
from streamer.runtime.core import EngineConfig  # noqa: E402
from streamer.runtime.standin import StandInFrameMaker  # noqa: E402
from streamer.runtime.stream_config import StreamConfig  # noqa: E402

CLOCK_SPEED = 20.0


def seconds_per_frame(generate: float, finish: float, overlaps: bool, frames: int) -> float:
    """Wall seconds per frame over ``frames`` frames, after the first two."""
    maker = StandInFrameMaker(generate, finish_seconds=finish)
    maker.overlaps = overlaps
    settings = StreamSettings(
        prompts=PromptBlend.single("jazz"), seed_loop="house_117", transition=Transition(seconds=0)
    )
    config = StreamConfig(settings=settings, engine=EngineConfig(lookahead_frames=4))
    config = dataclasses.replace(config, planner=dataclasses.replace(config.planner, endless=False))
    engine = build_engine(config, maker)
    clock = SoftwareClock(engine, speed=CLOCK_SPEED)
    engine.start()
    try:
        assert engine.wait_until_playing(60), "no first frame"
        clock.start()
        while engine.metrics.frames_made < 2:
            time.sleep(0.01)
        start_count, started = engine.metrics.frames_made, time.monotonic()
        while engine.metrics.frames_made < start_count + frames:
            time.sleep(0.01)
        elapsed = time.monotonic() - started
    finally:
        clock.stop()
        engine.stop()
    return elapsed / (engine.metrics.frames_made - start_count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 frames per row (seconds)")
    parser.add_argument("--generate", type=float, default=0.4, help="accelerator s per frame")
    parser.add_argument("--finish", type=float, default=0.25, help="CPU s per frame")
    args = parser.parse_args()
    frames = 6 if args.quick else 20
    rows = {
        overlaps: seconds_per_frame(args.generate, args.finish, overlaps, frames)
        for overlaps in (False, True)
    }
    print(f"stand-in: generate {args.generate} s + finish {args.finish} s per frame, "
          f"plus the engine's levelling; {frames} frames per row, clock at {CLOCK_SPEED:g}x")
    print(f"{'stages':12} {'s/frame':>8} {'expected':>9}")
    expected = {False: args.generate + args.finish, True: max(args.generate, args.finish)}
    for overlaps, seconds in rows.items():
        name = "overlapped" if overlaps else "in a row"
        print(f"{name:12} {seconds:8.3f} {expected[overlaps]:8.3f}+")
    speedup = rows[False] / rows[True]
    print(
        f"RESULT in_a_row_s_per_frame={rows[False]:.3f} overlapped_s_per_frame={rows[True]:.3f} "
        f"speedup={speedup:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
