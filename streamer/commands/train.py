"""``streamer train`` trains (or fine-tunes) the built-in model on a data set folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(subparsers: argparse._SubParsersAction) -> None:
    from streamer.training.config import TrainConfig

    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "train",
        help="train the built-in model (or fine-tune it) on a data set folder",
        description="Train a small Stable-Diffusion-format model on a data set folder (as "
        "`streamer make-dataset` writes: DATA/train/metadata.jsonl and images). Stage vae "
        "trains the autoencoder on image crops; stage unet trains the UNet and the text encoder "
        "on latents the VAE encodes once. RUN_DIR/checkpoint/ resumes a run exactly "
        "(--resume); RUN_DIR/log.jsonl has the losses; every checkpoint exports RUN_DIR/model/ "
        "(fp16), which `streamer serve --model RUN_DIR/model` plays. To train on your own "
        "music, first turn the audio folder into a data set folder (`streamer prepare-audio`), "
        "then run this command on it with --init builtin --stage unet (fine-tuning). Stage "
        "guidance (with --init builtin or a trained DIR, the teacher) distils classifier-free "
        "guidance into the UNet, so a guided frame costs one UNet row instead of two. Stage "
        "decoder (with --init) distils the VAE's decoder into a light one, which the stream "
        "decodes with on a CPU (2.8x faster).",
    )
    parser.add_argument("data", type=Path, help="data set folder (holds train/ and dataset.json)")
    parser.add_argument("--out", type=Path, required=True, help="run folder (created)")
    parser.add_argument(
        "--stage",
        choices=("vae", "unet", "all", "guidance", "decoder"),
        default="all",
        help="what to train: the VAE, the UNet + text encoder, both in turn, a "
        "guidance-distilled UNet or a light decoder of the --init model (default: all)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        help=f"optimizer steps of the stage, in total over resumes (default: vae "
        f"{defaults.vae_steps}, unet {defaults.unet_steps}, guidance {defaults.guidance_steps}, "
        f"decoder {defaults.decoder_steps}; with --stage all: the unet's)",
    )
    parser.add_argument(
        "--vae-steps",
        type=int,
        default=defaults.vae_steps,
        help="steps of the vae stage with --stage all (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help=f"images (vae: crops) per step (default: vae {defaults.vae_batch_size}, "
        f"unet {defaults.unet_batch_size}, guidance {defaults.guidance_batch_size}, decoder "
        f"{defaults.decoder_batch_size} crops)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        help=f"peak learning rate of AdamW, > 0, about 1e-5..1e-3 (default: vae "
        f"{defaults.vae_learning_rate:g}, unet {defaults.unet_learning_rate:g}, guidance "
        f"{defaults.guidance_learning_rate:g}, decoder {defaults.decoder_learning_rate:g})",
    )
    parser.add_argument("--resume", action="store_true", help="continue RUN_DIR's checkpoint")
    parser.add_argument(
        "--init",
        default="none",
        help="start from none, builtin or DIR: random weights, the shipped model (to fine-tune "
        "it), or an exported model folder (default: none)",
    )
    parser.add_argument(
        "--architecture",
        default=defaults.architecture,
        help="sizes of a model trained from scratch: builtin or tiny (default: %(default)s)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=defaults.checkpoint_every_steps,
        help="steps between checkpoints (and model exports) (default: %(default)s)",
    )
    parser.add_argument(
        "--device", default=defaults.device, help="cpu or cuda (default: %(default)s)"
    )
    parser.add_argument(
        "--precision",
        choices=("bf16", "fp32"),
        default=defaults.precision,
        help="bf16 autocasts the forward pass where bf16 is native (CUDA, a CPU with AVX-512 "
        "BF16 or AMX; elsewhere fp32) (default: %(default)s)",
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads, >= 1 (default: torch's)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the run's random numbers, >= 0 (default: %(default)s)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from streamer.training.config import MODEL_STAGES, TrainConfig
    from streamer.training.train import resolve_init, train

    stages = MODEL_STAGES if args.stage == "all" else (args.stage,)
    overrides = {}
    last = stages[-1]
    if args.steps is not None:
        overrides[f"{last}_steps"] = args.steps
    if args.stage == "all":
        overrides["vae_steps"] = args.vae_steps
    for stage in stages:
        if args.batch_size is not None:
            overrides[f"{stage}_batch_size"] = args.batch_size
        if args.lr is not None:
            overrides[f"{stage}_learning_rate"] = args.lr
    config = TrainConfig(
        stages=stages,
        architecture=args.architecture,
        init=resolve_init(args.init),
        checkpoint_every_steps=args.checkpoint_every,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
        seed=args.seed,
        **overrides,
    )
    try:
        model = train(args.data, args.out, config, resume=args.resume)
    except KeyboardInterrupt:
        print(f"stopped; continue with: streamer train {args.data} --out {args.out} --resume ...")
        return 130
    print(f"done: play it with `streamer serve --model {model}`")
    return 0
