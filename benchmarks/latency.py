"""Control-to-audible latency and sustained real-time factor of the live engine.

A control change discards the frames waiting to be heard and re-plans, and the first frame of
the new plan enters at the next switch point (the next beat). So the latency from a control
message to the first changed sample heard is

    latency ~= (one step of the stale batch) + t_make + wait for the next beat + render-ahead

where t_make is the time to generate and vocode one batch: the batch in flight when the change
comes is stale and stops at its next UNet step (the stand-in makes a frame in 10 simulated
steps). On average that is about t_make + beat / 2 + render-ahead, at worst 1.1 x t_make +
beat (a bar with --quantize bar) + render-ahead, where render-ahead is what the renderer keeps
ahead of the clock while a change waits (``change_render_ahead_seconds``, 0.1 s). The
lookahead (frames kept ready) does not add to it, because those frames are discarded; it only
buys safety against a slow frame. Sustained real-time factor = frame period (5.12 s) / t_make.

Runs the real engine (producer, renderer, software clock) with a stand-in frame maker of chosen
speeds and with the tiny model (or ``--model PATH``), changes the prompt at random moments and
reads the engine's own measurement (control message -> its first frame reaching the clock).

    python benchmarks/latency.py            # stand-ins + tiny model, about 3 minutes
    python benchmarks/latency.py --quick    # fewer changes, under a minute
    python benchmarks/latency.py --speeds 0.25 --changes 40 --no-model   # the 20x tail alone
    python benchmarks/latency.py --model PATH --device cuda   # the real checkpoint on a GPU
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamer.audio.stitcher import QUANTIZE_CHOICES, StitcherConfig  # noqa: E402
from streamer.runtime.stream_config import StreamConfig  # noqa: E402
from streamer.runtime.core import EngineConfig  # noqa: E402
from streamer.generate.config import GeneratorConfig  # noqa: E402
from streamer.plan.settings import PromptBlend, StreamSettings, Transition  # noqa: E402
from streamer.runtime.assemble import build_engine, load_diffusion_maker  # noqa: E402
from streamer.runtime.clocks import SoftwareClock  # noqa: E402
from streamer.runtime.standin import StandInFrameMaker  # noqa: E402

PROMPTS = ["deep house", "jazz trio", "ambient drone", "funk bass", "techno", "dub reggae"]


#: Seconds between the changes of a fader sweep (``--sweep``).
SWEEP_STEP_SECONDS = 0.1


def measure(
    name: str, config: StreamConfig, maker, changes: int, seed: int, sweep: int = 1
) -> dict:
    engine = build_engine(config, maker)
    clock = SoftwareClock(engine)
    rng = random.Random(seed)
    engine.start()
    try:
        assert engine.wait_until_playing(600), f"{name}: no first frame"
        clock.start()
        time.sleep(1.0)
        for k in range(changes):
            heard = len(engine.metrics.control_latencies_seconds)
            for step in range(sweep):  # the last change of a sweep is the one measured
                if step:
                    time.sleep(SWEEP_STEP_SECONDS)
                text = PROMPTS[(k * sweep + step) % len(PROMPTS)]
                engine.change(dataclasses.replace(engine.settings, prompts=PromptBlend.single(text)))
            deadline = time.monotonic() + 120
            while len(engine.metrics.control_latencies_seconds) == heard:
                assert time.monotonic() < deadline, f"{name}: a change was never heard"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.3, 1.5))  # land the next change anywhere in a beat
    finally:
        clock.stop()
        engine.stop()
    latencies = sorted(engine.metrics.control_latencies_seconds)
    return {
        "name": name,
        "t_make": engine.metrics.seconds_per_frame,
        "rtf": config.planner.frame_seconds / engine.metrics.seconds_per_frame,
        "median": statistics.median(latencies),
        "p90": latencies[min(len(latencies) - 1, int(0.9 * len(latencies)))],
        "max": latencies[-1],
        "underruns": engine.metrics.underrun_samples,
        "changes": len(latencies),
        "cancelled": engine.metrics.batches_cancelled,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer changes (under a minute)")
    parser.add_argument("--model", help="model folder (default: a tiny model built in a temp dir)")
    parser.add_argument("--device", default="cpu", help="device for the model (default cpu)")
    parser.add_argument("--changes", type=int, help="control changes per row")
    parser.add_argument(
        "--speeds", help="stand-in seconds per frame, comma-separated (default 0.1,0.25,1.0)"
    )
    parser.add_argument("--no-model", action="store_true", help="stand-ins only, no model row")
    parser.add_argument(
        "--num-inference-steps", type=int, help="the model's schedule (default: its preset's)"
    )
    parser.add_argument(
        "--sweep",
        type=int,
        default=1,
        help="changes per measured change, 0.1 s apart, like a fader moved (default 1): the "
        "last one finds a batch in flight",
    )
    parser.add_argument(
        "--quantize", choices=QUANTIZE_CHOICES, default="beat", help="as the stream option"
    )
    args = parser.parse_args()
    changes = args.changes or (3 if args.quick else 8)
    base = StreamConfig(
        settings=StreamSettings(seed_loop="house_117", transition=Transition(seconds=0)),
        engine=EngineConfig(lookahead_frames=2),
        stitcher=StitcherConfig(quantize=args.quantize),
    )
    base = dataclasses.replace(base, planner=dataclasses.replace(base.planner, endless=False))
    rows = []
    speeds = (0.25,) if args.quick else (0.1, 0.25, 1.0)
    if args.speeds:
        speeds = tuple(float(text) for text in args.speeds.split(","))
    for seconds in speeds:
        rows.append(measure(f"stand-in {seconds:.2f} s/frame", base, StandInFrameMaker(seconds), changes, 1, args.sweep))
    if not args.no_model:
        with tempfile.TemporaryDirectory() as scratch:
            model = args.model
            if model is None:
                from streamer.generate.tiny_model import build_tiny_model

                model = str(build_tiny_model(Path(scratch) / "tiny"))
            generator = GeneratorConfig(
                model=model, device=args.device, num_inference_steps=args.num_inference_steps
            )
            config = dataclasses.replace(base, model=generator)
            label = "tiny model" if args.model is None else f"{Path(model).name}"
            rows.append(measure(f"{label} ({args.device})", config, load_diffusion_maker(config), changes, 2, args.sweep))
    report(rows)
    figures = [
        f"{_key(row['name'])}_latency_{name}_s={row[name]:.3f}"
        for row in rows
        for name in ("median", "p90")
    ]
    print("RESULT " + " ".join(figures + [f"{_key(rows[-1]['name'])}_rtf={rows[-1]['rtf']:.2f}"]))
    return 0


def _key(name: str) -> str:
    """A row's name as a RESULT key: "stand-in 0.25 s/frame" -> "standin_0.25"."""
    if name.startswith("stand-in"):
        return "standin_" + name.split()[1]
    return "model"


def report(rows: list[dict]) -> None:
    print(
        f"{'maker':28} {'t_make s':>9} {'RTF':>6} {'median s':>9} {'p90 s':>7} {'max s':>7} "
        f"{'underruns':>9} {'cancelled':>9}"
    )
    for row in rows:
        print(
            f"{row['name']:28} {row['t_make']:9.3f} {row['rtf']:6.2f} {row['median']:9.3f} "
            f"{row['p90']:7.3f} {row['max']:7.3f} {row['underruns']:9d} {row['cancelled']:9d}"
        )
    ahead = EngineConfig().change_render_ahead_seconds
    print(
        f"formula: latency ~= t_make + beat / 2 + render-ahead ({ahead:g} s); beat = 0.512 s here"
    )


if __name__ == "__main__":
    raise SystemExit(main())
