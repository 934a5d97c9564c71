"""``streamer seeds`` lists the seed-loop library; ``streamer make-seed`` makes a seed of audio."""

from __future__ import annotations

import argparse
from pathlib import Path

from streamer.errors import UserError


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    listing = subparsers.add_parser(
        "seeds",
        help="list the seed loops (init images that give frames their rhythm)",
        description="List the seed loops shipped with streamer: each is one 5.12 s frame holding "
        "a whole number of beats, so it loops without a jump in the beat grid.",
    )
    listing.set_defaults(run=run_list)

    make = subparsers.add_parser(
        "make-seed",
        help="turn an audio file (WAV, FLAC, OGG) into a seed image",
        description="Make a seed spectrogram from an audio file: mixed to mono, resampled to "
        "44.1 kHz and fitted to one 5.12 s frame. With --bpm the music is time-stretched "
        "(keeping its pitch) to the nearest tempo at which a whole number of beats fills the "
        "frame; without it the loudest 5.12 s are taken.",
    )
    make.add_argument("audio", type=Path, help="audio file: WAV, FLAC or OGG")
    make.add_argument("out", type=Path, help="PNG file to write (EXIF holds the parameters)")
    make.add_argument("--bpm", type=float, help="tempo of the music in beats per minute")
    make.set_defaults(run=run_make)


def run_list(args: argparse.Namespace) -> int:
    from streamer.seeds import list_seed_loops

    loops = list_seed_loops()
    width = max(len(loop.name) for loop in loops)
    print(f"{'name':{width}}  {'BPM':>8}  beats  description")
    for loop in loops:
        print(f"{loop.name:{width}}  {loop.bpm:8.4f}  {loop.beats:5}  {loop.description}")
    return 0


def run_make(args: argparse.Namespace) -> int:
    from streamer.seeds.from_audio import seed_from_audio
    from streamer.spectrogram import SpectrogramParams, save_image

    if args.out.suffix.lower() != ".png":
        raise UserError(f"{args.out}: the seed is written as PNG; give a file name ending in .png")
    if not args.out.parent.is_dir():
        raise UserError(f"{args.out.parent} is not a folder; create it first")
    params = SpectrogramParams()
    seed = seed_from_audio(args.audio, bpm=args.bpm, params=params)
    save_image(seed.image, args.out)
    loop = seed.loop
    seconds = loop.samples.size / params.sample_rate
    tempo = f", stretched to {loop.bpm:.8g} BPM ({loop.beats} beats)" if loop.bpm else ""
    origin = f"{loop.start_seconds:.2f} s into {args.audio}"
    print(f"wrote {args.out}: {seconds:g} s from {origin}{tempo}")
    return 0
