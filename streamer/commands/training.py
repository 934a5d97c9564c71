"""``streamer make-dataset``: render the built-in model's training data set."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    make = subparsers.add_parser(
        "make-dataset",
        help="render the built-in model's training data (spectrograms of composed loops)",
        description=(
            "Compose --clips loops (12 styles, over 50 General MIDI instruments, drums on or off, "
            "major or minor, sparse or busy), render each with FluidSynth to one 5.12 s frame "
            "that loops seamlessly, and write them as Riffusion images with captions into DIR "
            "(imagefolder layout: train/ and the held-out test/, each with metadata.jsonl). "
            "Deterministic from --seed; an interrupted run continues where it stopped. Needs "
            "the Debian packages fluidsynth and fluid-soundfont-gm."
        ),
    )
    make.add_argument("directory", metavar="DIR", type=Path, help="folder to write (created)")
    make.add_argument("--clips", type=int, default=6000, help="clips in all, >= 1 (default 6000)")
    make.add_argument("--seed", type=int, default=0, help="seed of the compositions, >= 0 (default 0)")
    make.add_argument(
        "--held-out-fraction",
        type=float,
        default=0.1,
        help="share of clips in the test split, which no training step reads (default 0.1)",
    )
    make.add_argument(
        "--jobs", type=int, default=None, help="processes rendering at once, >= 1 (default: all cores)"
    )
    make.set_defaults(run=run_make_dataset)


def run_make_dataset(args: argparse.Namespace) -> int:
    from streamer.training.make_dataset import make_dataset

    summary = make_dataset(
        args.directory,
        clips=args.clips,
        seed=args.seed,
        held_out_fraction=args.held_out_fraction,
        jobs=args.jobs,
    )
    splits = summary["splits"]
    print(f"wrote {args.directory}: {splits['train']} training clips, {splits['test']} held out")
    failed = summary["failed_clips"]
    for index, error in failed.items():
        print(f"streamer make-dataset: clip {index} left out: {error}", file=sys.stderr)
    if failed:
        print(f"streamer make-dataset: {len(failed)} clips could not be rendered and are left "
              "out of the metadata (listed in dataset.json as failed_clips)", file=sys.stderr)
    return 1 if failed else 0
