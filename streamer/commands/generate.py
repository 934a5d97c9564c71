"""``streamer generate`` (frames for a prompt, as PNGs) and ``streamer make-tiny-model``.

Both are smoke tests as much as tools: ``make-tiny-model DIR`` then ``generate --model DIR``
exercises loading, tokenising, img2img and decoding end to end in seconds, without the 4 GB
checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamer.config import add_model_options, chosen_model, model_config_from_args
from streamer.errors import UserError


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    tiny = subparsers.add_parser(
        "make-tiny-model",
        help="write a tiny random-weight Stable Diffusion model for smoke tests",
        description=(
            "Write a Stable Diffusion 1.x model with random weights into DIR, offline: the real "
            "architecture scaled down (a few MB, a frame in about a second on a CPU) with the real "
            "CLIP tokenizer, plus its single-file export. Use it with --model DIR to check an "
            "install without downloading the real checkpoint. It makes noise, not music."
        ),
    )
    tiny.add_argument("directory", metavar="DIR", help="folder to write (created if missing)")
    tiny.add_argument(
        "--architecture",
        choices=("tiny", "sd15"),
        default="tiny",
        help="tiny (default), or sd15: the full-size SD 1.5 architecture (2 GB) for speed tests",
    )
    tiny.set_defaults(run=run_make_tiny_model)

    generate = subparsers.add_parser(
        "generate",
        help="generate spectrogram frames for a prompt and write them as PNGs",
        description=(
            "Generate one frame, or a transition of --frames frames from the --prompt blend and "
            "--seed to the --to-prompt blend and --to-seed, and write them as PNG spectrogram "
            "images (decode them with any Riffusion-compatible tool)."
        ),
    )
    add_model_options(generate)
    music = generate.add_argument_group("music")
    music.add_argument(
        "--prompt",
        action="append",
        required=True,
        metavar="TEXT[:WEIGHT]",
        help="a prompt, optionally with a relative weight; repeat to blend several",
    )
    music.add_argument(
        "--to-prompt",
        action="append",
        metavar="TEXT[:WEIGHT]",
        help="the blend a transition ends on (default: the --prompt blend)",
    )
    music.add_argument(
        "--negative-prompt", default="", metavar="TEXT", help="what to steer away from"
    )
    music.add_argument(
        "--seed", type=int, default=0, help="noise seed, a whole number 0..2^32-1 (default %(default)s)"
    )
    music.add_argument(
        "--to-seed", type=int, default=None, help="seed a transition ends on, 0..2^32-1 (default: --seed)"
    )
    music.add_argument("--frames", type=int, default=1, help="frames from start to end (default %(default)s)")
    music.add_argument(
        "--seed-loop",
        default="boom_bap_94",
        metavar="NAME|PNG",
        help="img2img seed: a seed loop name (see `streamer seeds`) or a spectrogram PNG",
    )
    music.add_argument("--denoising", type=float, default=None, help="img2img strength, 0..1, 0 excluded (default: the preset's)")
    music.add_argument(
        "--guidance", type=float, default=None, help="classifier-free guidance scale, >= 0 (default: the preset's)"
    )
    generate.add_argument(
        "--batch-frames", type=int, default=4, help="frames per UNet batch (default %(default)s)"
    )
    generate.add_argument(
        "--out", default=".", metavar="DIR", help="folder for the PNGs (default %(default)s)"
    )
    generate.set_defaults(run=run_generate)


def run_make_tiny_model(args: argparse.Namespace) -> int:
    from streamer.generate.tiny_model import build_tiny_model

    directory = build_tiny_model(args.directory, architecture=args.architecture)
    print(
        f"wrote a random-weight {args.architecture} model to {directory}: use --model {directory}"
    )
    return 0


def run_generate(args: argparse.Namespace) -> int:
    from streamer.config import parse_prompt
    from streamer.generate.generator import FrameGenerator
    from streamer.generate.request import Keyframe, PromptBlend, transition

    config = chosen_model(model_config_from_args(args))
    preset = config.resolved_preset()
    denoising = preset.denoising if args.denoising is None else args.denoising
    guidance = preset.guidance if args.guidance is None else args.guidance
    if args.frames < 1 or args.batch_frames < 1:
        raise UserError("--frames and --batch-frames must be at least 1")
    try:
        start_blend = PromptBlend(tuple(parse_prompt(p) for p in args.prompt))
        end_blend = (
            PromptBlend(tuple(parse_prompt(p) for p in args.to_prompt))
            if args.to_prompt
            else start_blend
        )
        start = Keyframe(start_blend, args.seed, denoising, guidance)
        end = Keyframe(
            end_blend, args.seed if args.to_seed is None else args.to_seed, denoising, guidance
        )
        requests = transition(start, end, args.frames, args.seed_loop, args.negative_prompt)
    except ValueError as error:
        raise UserError(str(error)) from None

    seed_image = _seed_image(args.seed_loop)
    generator = FrameGenerator.load(config, {args.seed_loop: seed_image})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(generator.model.compute_announcement(), file=sys.stderr, flush=True)
    print(generator.runtime.announcement(), file=sys.stderr, flush=True)
    print(generator.decoder_choice.announcement(), file=sys.stderr, flush=True)
    print(
        f"{args.frames} frame(s) with {config.model} on {generator.device} "
        f"({generator.model.dtype}), preset {preset.name}: {preset.scheduler}, "
        f"{preset.unet_evaluations(denoising)} UNet steps per frame"
    )
    for first in range(0, len(requests), args.batch_frames):
        frames = generator.generate(requests[first : first + args.batch_frames])
        for offset, frame in enumerate(frames):
            path = out / f"frame_{first + offset:03d}.png"
            frame.image.save(path)
            print(
                f"{path}  alpha {frame.request.noise_alpha:.3f}  "
                f"{frame.timings.per_frame_s:.2f} s/frame"
            )
    return 0


def _seed_image(name_or_path: str):
    """A seed loop of the library by name, or any spectrogram PNG by path."""
    from PIL import Image

    path = Path(name_or_path).expanduser()
    if path.suffix.lower() == ".png" or path.exists():
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except OSError as error:
            raise UserError(f"cannot read the seed image {path}: {error}") from None
    from streamer.seeds import load_seed_loop

    return load_seed_loop(name_or_path).image().convert("RGB")
