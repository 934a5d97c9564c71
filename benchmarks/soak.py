"""Soak: hours of stream compressed into minutes, with memory sampled.

Runs the live engine (producer, renderer, software clock, a sink that checks every block) faster
than real time (``SoftwareClock(speed=...)``) and samples the process's RSS every few seconds.
A leak of a few bytes per block or per frame shows as RSS growth after the warm-up; a renderer
that cannot keep up shows as underruns; a lost or repeated block shows as a gap in the sequence.

Two runs, side by side:

* ``standin``: one hour of stream with the model-free stand-in generator, at 15x (the tiny
  model cannot go that fast: it makes a 5.12 s frame in about 2 s on an idle CPU, so an hour of
  it would take an hour here);
* ``tiny``: the tiny random-weight diffusion model (``build_tiny_model``) through the real
  generator and vocoder, at real time, for a shorter stretch.

Usage::

    .venv/bin/python benchmarks/soak.py            # 1 h stand-in + 2 min tiny model, ~7 min
    .venv/bin/python benchmarks/soak.py --quick    # 8 min stand-in + 15 s tiny model, < 60 s
    .venv/bin/python benchmarks/soak.py --smoke    # 20 s stand-in + 2 s tiny model: that it runs
    .venv/bin/python benchmarks/soak.py --model builtin   # 10 min of a model at real time, alone

``--model`` (``builtin``, or a model folder such as a training run's RUN/model) plays that model
at real time with its preset, as ``streamer serve`` would, and nothing else: the check that a
model streams without falling behind for ``--model-seconds`` (default 600).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

import psutil

from streamer.runtime.stream_config import StreamConfig
from streamer.runtime.core import EngineConfig
from streamer.generate.config import GeneratorConfig
from streamer.generate.presets import GeneratorPreset
from streamer.plan.settings import PromptBlend, StreamSettings, Transition
from streamer.runtime.assemble import build_engine
from streamer.runtime.clocks import SoftwareClock
from streamer.runtime.frames import FrameMaker

#: The engine's default clock block (EngineConfig.block_seconds).
BLOCK_SECONDS = EngineConfig().block_seconds
#: Share of the run (at its start) that counts as warm-up: caches, allocator pools, first frames.
WARM_UP_SHARE = 0.2


class CheckingSink:
    """Counts blocks and gaps in sequence and position as they pass; keeps nothing."""

    def __init__(self) -> None:
        self.blocks = 0
        self.gaps = 0
        self.frames = 0
        self._next: tuple[int, int] | None = None

    def publish_audio(self, block) -> None:
        if self._next is not None and (block.sequence, block.sample_position) != self._next:
            self.gaps += 1
        self._next = (block.sequence + 1, block.sample_position + block.num_samples)
        self.blocks += 1

    def publish_event(self, event) -> None:
        pass

    def publish_frame(self, picture) -> None:
        self.frames += 1


@dataclasses.dataclass
class SoakResult:
    stream_seconds: float
    wall_seconds: float
    blocks: int
    gaps: int
    underrun_samples: int
    behind_episodes: int
    frames_made: int
    frames_failed: int
    rss_samples_mb: list[tuple[float, float]]  # (stream seconds, RSS MB)
    rss_growth: float  # highest RSS after warm-up over RSS at the end of warm-up, minus 1


def soak(
    maker: FrameMaker,
    *,
    stream_seconds: float,
    speed: float,
    sample_seconds: float = 5.0,
    preset: GeneratorPreset | None = None,
) -> SoakResult:
    """Play ``stream_seconds`` of stream at ``speed`` x real time; sample RSS every
    ``sample_seconds`` of wall time. ``preset`` sets the frames' denoising and guidance."""
    settings = StreamSettings(
        prompts=PromptBlend.single("warm analog synths"),
        seed_loop="house_117",
        transition=Transition(seconds=8),
    )
    if preset is not None:
        settings = dataclasses.replace(
            settings, denoising=preset.denoising, guidance=preset.guidance
        )
    # Faster than real time the renderer keeps up to 5 s of stream ahead (a third of a second of
    # wall time at 15x); at real time the engine's own default, as a user's stream runs. (5 s at
    # real time had the first frame's period rendered before the second frame could be made: a
    # cold-start behind episode of the benchmark's own making.)
    engine_config = EngineConfig(render_ahead_seconds=5.0) if speed > 1.0 else EngineConfig()
    config = StreamConfig(settings=settings, engine=engine_config)
    engine = build_engine(config, maker)
    sink = CheckingSink()
    engine.add_sink(sink)
    process = psutil.Process()
    samples: list[tuple[float, float]] = []
    engine.start()
    clock = SoftwareClock(engine, speed=speed)
    started = time.monotonic()
    try:
        if not engine.wait_until_playing(300):
            raise RuntimeError("the first frame never came")
        started = time.monotonic()
        clock.start()
        while True:
            position = clock.sample_position / engine.sample_rate
            samples.append((position, process.memory_info().rss / 2**20))
            if position >= stream_seconds:
                break
            time.sleep(sample_seconds)
    finally:
        clock.stop()
        engine.stop()
    wall = time.monotonic() - started
    warm = [rss for t, rss in samples if t >= WARM_UP_SHARE * stream_seconds]
    growth = max(warm) / warm[0] - 1 if warm else float("nan")
    return SoakResult(
        stream_seconds=clock.sample_position / engine.sample_rate,
        wall_seconds=wall,
        blocks=sink.blocks,
        gaps=sink.gaps,
        underrun_samples=engine.metrics.underrun_samples,
        behind_episodes=engine.metrics.behind_episodes,
        frames_made=engine.metrics.frames_made,
        frames_failed=engine.metrics.frames_failed,
        rss_samples_mb=samples,
        rss_growth=growth,
    )


def tiny_model_maker(directory: str) -> FrameMaker:
    from streamer.generate.tiny_model import build_tiny_model
    from streamer.runtime.assemble import load_diffusion_maker

    model = build_tiny_model(directory)
    config = StreamConfig(model=GeneratorConfig(model=str(model), device="cpu", offline=True))
    return load_diffusion_maker(config)


def model_maker(model: str) -> tuple[FrameMaker, GeneratorPreset]:
    """``model`` (builtin, or a model folder) loaded as ``serve`` would, at the built-in model's
    preset: a folder is taken to be a training run of it."""
    from streamer.runtime.assemble import load_diffusion_maker

    generator = GeneratorConfig(model=model, device="cpu", offline=True, preset="builtin")
    return load_diffusion_maker(StreamConfig(model=generator)), generator.resolved_preset()


def print_rss(name: str, result: SoakResult, rows: int = 8) -> None:
    step = max(1, len(result.rss_samples_mb) // rows)
    picked = result.rss_samples_mb[::step]
    if picked[-1] is not result.rss_samples_mb[-1]:
        picked.append(result.rss_samples_mb[-1])
    print(f"\nRSS of the {name} run")
    print(f"{'stream s':>9} {'RSS MB':>8}")
    for seconds, rss in picked:
        print(f"{seconds:9.0f} {rss:8.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (< 60 s)")
    parser.add_argument(
        "--smoke", action="store_true", help="the shortest run, seconds (for the tests)"
    )
    parser.add_argument("--model", help="builtin or a model folder: play it alone at real time")
    parser.add_argument(
        "--model-seconds", type=float, default=600.0, help="stream seconds of --model (default 600)"
    )
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    from streamer.runtime.standin import StandInFrameMaker

    runs: dict[str, SoakResult] = {}
    if args.model:
        maker, preset = model_maker(args.model)
        print(f"{args.model}: {args.model_seconds:.0f} s of stream at 1x ...", flush=True)
        runs["model"] = soak(
            maker, stream_seconds=args.model_seconds, speed=1.0, sample_seconds=5.0, preset=preset
        )
    else:
        standin_seconds, tiny_seconds = (
            (20.0, 2.0) if args.smoke else (480.0, 15.0) if args.quick else (3600.0, 120.0)
        )
        standin_speed = 40.0 if args.quick or args.smoke else 15.0
        print(f"stand-in: {standin_seconds:.0f} s of stream at {standin_speed:g}x ...", flush=True)
        runs["standin"] = soak(
            StandInFrameMaker(0.05), stream_seconds=standin_seconds, speed=standin_speed,
            sample_seconds=1.0 if args.quick or args.smoke else 5.0,
        )  # fmt: skip
        print(f"tiny model: {tiny_seconds:.0f} s of stream at 1x ...", flush=True)
        with tempfile.TemporaryDirectory() as directory:
            runs["tiny"] = soak(
                tiny_model_maker(directory), stream_seconds=tiny_seconds, speed=1.0,
                sample_seconds=0.5 if args.smoke else 2.0,
            )  # fmt: skip

    print(
        f"\n{'run':<8} {'stream s':>9} {'wall s':>7} {'speed':>6} {'blocks':>7} {'gaps':>5} "
        f"{'underrun':>8} {'behind':>6} {'frames':>6} {'failed':>6} {'RSS MB':>13} {'growth':>7}"
    )
    for name, r in runs.items():
        rss = f"{r.rss_samples_mb[0][1]:.0f}->{r.rss_samples_mb[-1][1]:.0f}"
        print(
            f"{name:<8} {r.stream_seconds:9.0f} {r.wall_seconds:7.1f} "
            f"{r.stream_seconds / r.wall_seconds:6.1f} {r.blocks:7d} {r.gaps:5d} "
            f"{r.underrun_samples:8d} {r.behind_episodes:6d} {r.frames_made:6d} "
            f"{r.frames_failed:6d} {rss:>13} {r.rss_growth:7.2%}"
        )
    for name, r in runs.items():
        print_rss(name, r)
    print("RESULT " + " ".join(
        f"{name}_stream_s={r.stream_seconds:.0f} {name}_rss_growth_pct={100 * r.rss_growth:.2f} "
        f"{name}_underrun_samples={r.underrun_samples} {name}_gaps={r.gaps} "
        f"{name}_behind_episodes={r.behind_episodes}"
        for name, r in runs.items()
    ))  # fmt: skip
    ok = all(r.gaps == 0 and r.underrun_samples == 0 and r.rss_growth < 0.05 for r in runs.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
