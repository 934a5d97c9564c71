"""How long a guidance-distillation step of the built-in model takes on this machine.

A guidance-distilled built-in model would make a guided frame in one UNet row instead of two
(``builtin_model_speed.py``'s "1 row" column says what that buys per frame). Before a run is
planned, its cost per step: this runs the trainer's own ``--stage guidance``
(``streamer.training.train``, teacher = the shipped model) for a few steps on a data set of
random images, once per precision, and reads the seconds of each step from the run's log. A
step is the teacher's guided prediction (two rows per image, no gradients) and the student's
one row, forward and backward, plus AdamW and the moving average.

The precisions run one after the other, not interleaved: on a shared CPU read the load
averages printed beside them. bf16 where it is not native trains in fp32 (the trainer's rule),
and the row says so. Every figure names the CPU class.

Usage: python benchmarks/distill_step.py [--quick | --smoke] [--steps N] [--batch-size N]
[--device cuda]
``--quick``: 2 timed steps, fp32 only. ``--smoke`` (seconds, for tests): the tiny model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from PIL import Image

from streamer.generate.compute_type import cpu_facts
from streamer.generate.loading import builtin_model_folder
from streamer.generate.tiny_model import build_tiny_model
from streamer.training.config import TrainConfig
from streamer.training.dataset import ClipRecord, write_info, write_metadata
from streamer.training.train import train

#: Steps run before the timed ones (the first builds kernels and the optimizer's state).
WARM_UP_STEPS = 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 timed steps, fp32 only")
    parser.add_argument("--smoke", action="store_true", help="--quick on the tiny model (tests)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per precision")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma list of fp32, bf16")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    args = parser.parse_args(argv)
    quick = args.quick or args.smoke
    steps = 2 if quick else args.steps
    precisions = ["fp32"] if quick else args.precisions.split(",")
    facts = cpu_facts()
    where = (
        torch.cuda.get_device_name() if args.device == "cuda"
        else f"CPU {facts.describe()}, {args.threads} threads"
    )  # fmt: skip
    native_bf16 = args.device == "cuda" or facts.native_bf16
    print(f"# guidance distillation step: {where}, batch {args.batch_size}, "
          f"{'tiny' if args.smoke else 'built-in'} model")  # fmt: skip

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        side = 64 if args.smoke else 512
        data = _random_dataset(root / "data", args.batch_size, side)
        teacher = build_tiny_model(root / "tiny") if args.smoke else builtin_model_folder()
        for precision in precisions:
            before = os.getloadavg()[0]
            config = TrainConfig(
                stages=("guidance",),
                init=str(teacher),
                guidance_steps=WARM_UP_STEPS + steps,
                guidance_batch_size=args.batch_size,
                checkpoint_every_steps=10**9,
                log_every_steps=1,
                precision=precision,
                threads=args.threads,
                device=args.device,
            )
            run = root / f"run-{precision}"
            train(data, run, config, report=lambda line: None)
            seconds = [json.loads(line)["seconds"] for line in open(run / "log.jsonl")]
            per_step = np.diff(seconds)[WARM_UP_STEPS - 1 :]
            ran = precision if precision == "fp32" or native_bf16 else "fp32 (no native bf16)"
            rows.append((precision, ran, statistics.median(per_step), before, os.getloadavg()[0]))

    print(f"{'asked':>6} {'ran':>22} {'s/step':>8} {'load before':>12} {'load after':>11}")
    for asked, ran, step_s, before, after in rows:
        print(f"{asked:>6} {ran:>22} {step_s:8.2f} {before:12.2f} {after:11.2f}")
    result = {
        "device": args.device,
        "capability": facts.capability,
        "native_bf16": int(facts.native_bf16),
        "batch": args.batch_size,
        "threads": args.threads,
        **{f"{asked}_s_per_step": round(step_s, 3) for asked, _, step_s, _, _ in rows},
        "load1": round(os.getloadavg()[0], 2),
        "quick": int(quick),
    }
    print("RESULT " + " ".join(f"{key}={value}" for key, value in result.items()))
    return 0


def _random_dataset(folder: Path, clips: int, side: int) -> Path:
    """``clips`` grey noise images of ``side`` pixels, captioned: the trainer's input format (the
    content does not change a step's cost)."""
    (folder / "train").mkdir(parents=True)
    rng = np.random.default_rng(0)
    records = []
    for index in range(clips):
        name = f"{index:06d}.png"
        pixels = rng.integers(0, 256, (side, side), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / "train" / name)
        records.append(ClipRecord(name, "house beat, piano chords, minor", {}))
    write_metadata(folder / "train", records)
    write_info(folder, {"clips": clips})
    return folder


if __name__ == "__main__":
    sys.exit(main())
