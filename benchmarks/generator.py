"""Generator speed with the real Stable Diffusion 1.5 architecture (random weights).

Speed does not depend on weight values, so the UNet (~860M parameters), VAE and CLIP-L text
encoder are built from their configs with random weights: no 4 GB download. Measured, per
device / dtype / compile mode:

- stages: text encode (one prompt), VAE encode (one 512x512 seed image), one UNet evaluation at
  each batch size the presets use (a frame is 1 row, 2 with guidance; several frames batch
  together), VAE decode (one frame), image -> mel;
- frames end to end through ``FrameGenerator.generate`` with warm caches (the steady state of a
  stream: prompts and seed latent cached), for the ``default`` preset (DPM-Solver++, 15 UNet
  evaluations with guidance) and the ``lcm`` few-step preset (4 evaluations, no guidance; the
  LoRA is not loaded: fusing it changes no shapes, so not the speed);
- the real-time factor: 5.12 s of audio per frame / seconds per frame (vocoder not included:
  see benchmarks/vocoder.py and benchmarks/RESULTS.md for the sum).

On a CPU the full run measures the stages in bf16 (all) and fp32 (the per-frame ones), the UNet
in both types alternated call by call (a fair comparison on a shared CPU), and one warm ``lcm``
frame in the default dtype; a ``default`` frame (15 evaluations of a 2-row batch: minutes on 2
cores) is modelled from the measured stages, and the measured ``lcm`` frame checks that model.
On CUDA (default ``--compile none,default,reduce-overhead``): fp16 eager at every batch size and
both presets, 1 and 4 frames per batch, end to end; compiled modes at the default preset's
shapes only (each new batch shape costs a compilation of a minute or more).

``--quick`` (< 60 s on 2 idle CPU cores): the default dtype only, at 256x256 (a 32x32 latent, a
quarter of the work per step), the per-frame stages only (UNet, VAE decode, image -> mel): a
smoke test of the benchmark, not a product figure. ``--smoke`` (seconds): the same with the tiny
test architecture at 64x64, so that a test runs every line of the quick path.

Usage: python benchmarks/generator.py [--quick | --smoke] [--device cuda] [--json PATH]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from diffusers.utils import logging as diffusers_logging
from PIL import Image

from streamer.generate.generator import FrameGenerator
from streamer.generate.compute_type import cpu_facts
from streamer.generate.loading import StableDiffusionModel, select_device, select_dtype
from streamer.generate.presets import PRESETS
from streamer.generate.request import Keyframe, transition
from streamer.generate.tiny_model import (
    SD15,
    TINY,
    Architecture,
    random_components,
    sd1_scheduler,
    write_clip_tokenizer,
)

FRAME_SECONDS = 512 * 441 / 44100  # 5.12 s of audio per 512-column frame
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="256x256, default dtype, stages only")
    parser.add_argument(
        "--smoke", action="store_true", help="--quick on the tiny architecture at 64x64 (tests)"
    )
    parser.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    parser.add_argument(
        "--dtypes", default=None, help="comma list (default: bf16,fp32 on CPU; fp16 on CUDA)"
    )
    parser.add_argument(
        "--compile", default=None, help="comma list of none,default,reduce-overhead"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: all cores)"
    )
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    args.quick = args.quick or args.smoke
    architecture = TINY if args.smoke else SD15

    diffusers_logging.set_verbosity_error()  # casting random models to a dtype is intended here
    device = select_device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads or os.cpu_count() or 1)
        torch.set_flush_denormal(True)
    native_bf16 = device.type == "cpu" and cpu_facts().native_bf16
    chosen = select_dtype(device) or (torch.bfloat16 if native_bf16 else torch.float32)
    default_dtype = {v: k for k, v in DTYPES.items()}[chosen]
    dtypes = (args.dtypes or ("bf16,fp32" if native_bf16 else default_dtype)).split(",")
    if args.quick:
        dtypes = dtypes[:1] if args.dtypes else [default_dtype]
    compiles = (
        args.compile or ("none,default,reduce-overhead" if device.type == "cuda" else "none")
    ).split(",")
    if args.quick:
        compiles = compiles[:1]
    side = 64 if args.smoke else 256 if args.quick else 512
    repeats = 20 if device.type == "cuda" else 1

    started = time.perf_counter()
    print(
        f"# generator benchmark: {'tiny' if args.smoke else 'SD 1.5'} architecture, random "
        f"weights, {side}x{side}, "
        f"device {device} ({_device_name(device)}), torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, load average at start {_load()}",
        flush=True,
    )
    components = _build(device, architecture)
    print(f"# built in {time.perf_counter() - started:.1f} s", flush=True)

    stage_rows, frame_rows = [], []
    for dtype_name in dtypes:
        model = _model(components, device, DTYPES[dtype_name])
        for compile_mode in compiles:
            label = f"{dtype_name}/{compile_mode}"
            eager = compile_mode == "none"
            generator = FrameGenerator(
                model, PRESETS["default"], _seed_images(side), compile=compile_mode
            )
            unet = generator._unet  # the (compiled) UNet the generator calls
            # A compiled UNet is recompiled for every batch shape (a minute each): measure it only
            # at the shapes of default-preset frames, 1 and 4 per batch (2 and 8 rows).
            batches = _unet_batches(device, args.quick) if eager else [2, 8]
            # Text and VAE encoding run once per prompt and per seed image (cached): measured in
            # the default dtype only.
            per_frame_only = args.quick or dtype_name != default_dtype
            stages = _stages(model, unet, side, repeats, batches, per_frame_only)
            for stage, seconds in stages.items():
                stage_rows.append({"config": label, "stage": stage, "median_s": seconds})
                print(f"  {label:>22}  {stage:<16} {seconds * 1000:10.1f} ms", flush=True)
            if eager:
                frame_rows += _modelled_frames(label, stages)
            if not args.quick and (device.type != "cpu" or dtype_name == default_dtype):
                presets = ["default", "lcm"] if device.type != "cpu" and eager else ["default"]
                if device.type == "cpu":
                    presets = ["lcm"]  # a default frame takes minutes here: it is modelled
                frame_rows += _measured_frames(label, generator, device, presets)
            _write_json(args.json, device, side, stage_rows, frame_rows, started)
        del model, generator, unet
    if device.type == "cpu" and len(dtypes) > 1 and not args.quick:
        stage_rows += _interleaved_unet(components[0], dtypes, rounds=3)

    _print_tables(stage_rows, frame_rows)
    result = _headline(stage_rows, frame_rows, device, default_dtype, args.quick)
    _write_json(args.json, device, side, stage_rows, frame_rows, started, result)
    print(f"# total {time.perf_counter() - started:.0f} s, load average at end {_load()}")
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))
    return 0


# --- building ---------------------------------------------------------------------------------


def _build(device: torch.device, architecture: Architecture):
    """SD 1.5's UNet and VAE (or ``architecture``'s) with random normal weights, CLIP with its
    own init; on ``device``.

    The UNet and VAE are allocated without PyTorch's default initialisation (seconds of CPU for
    860M parameters) and filled with N(0, 0.02): any normal numbers run at the same speed.
    """
    from accelerate import init_empty_weights
    from transformers import CLIPTokenizer

    with init_empty_weights(include_buffers=False):
        unet, vae, _ = random_components(architecture, text_encoder=False)
    generator = torch.Generator("cpu").manual_seed(0)
    for module in (unet, vae):
        module.to_empty(device="cpu")
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.normal_(0.0, 0.02, generator=generator)
    _, _, text_encoder = random_components(architecture, unet=False, vae=False)
    tokenizer_dir = Path(tempfile.mkdtemp(prefix="clip-tokenizer-"))
    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tokenizer_dir))
    return unet, vae, text_encoder, tokenizer


def _model(components, device: torch.device, dtype: torch.dtype) -> StableDiffusionModel:
    unet, vae, text_encoder, tokenizer = components
    for module in (unet, vae, text_encoder):
        module.to(device=device, dtype=dtype).eval().requires_grad_(False)
    if device.type == "cuda":
        unet.to(memory_format=torch.channels_last)
    return StableDiffusionModel(
        unet,
        vae,
        text_encoder,
        tokenizer,
        dict(sd1_scheduler().config),
        device,
        dtype,
        "random SD 1.5",
    )


def _seed_images(side: int) -> dict[str, Image.Image]:
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    pixels = np.stack([np.add.outer(ramp, ramp) / 2] * 3, axis=-1).astype(np.uint8)
    return {"ramp": Image.fromarray(pixels, mode="RGB")}


# --- measuring --------------------------------------------------------------------------------


def _unet_batches(device: torch.device, quick: bool) -> list[int]:
    """UNet rows per call: 1 (lcm, one frame), 2 (default, one frame with guidance); on a GPU also
    4 frames per batch: 4 (lcm) and 8 (default)."""
    return [1, 2] if device.type != "cuda" or quick else [1, 2, 4, 8]


def _timed(function, repeats: int, device: torch.device) -> float:
    """Median seconds of ``function`` over ``repeats`` runs after one warm-up run."""
    function()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _stages(
    model: StableDiffusionModel,
    unet,
    side: int,
    repeats: int,
    batches: list[int],
    per_frame_only: bool,
) -> dict[str, float]:
    """Median seconds of each stage. ``per_frame_only`` skips text and VAE encoding, which a
    stream does once per prompt and once per seed image (both are cached)."""
    from streamer.spectrogram.image import mel_from_image

    device, dtype = model.device, model.dtype
    latent_side = side // 8
    results = {}
    with torch.inference_mode():
        if not per_frame_only:
            tokens = model.tokenizer(
                ["lo-fi beat with warm rhodes"],
                padding="max_length",
                max_length=77,
                return_tensors="pt",
            ).input_ids.to(device)
            results["text_encode"] = _timed(lambda: model.text_encoder(tokens), repeats, device)
            image = torch.rand(1, 3, side, side, device=device, dtype=dtype) * 2 - 1
            results["vae_encode"] = _timed(
                lambda: model.vae.encode(image).latent_dist.mode(), repeats, device
            )
        width, channels = unet.config.cross_attention_dim, unet.config.in_channels
        embedding = torch.randn(max(batches), 77, width, device=device, dtype=dtype)
        latents = torch.randn(
            max(batches), channels, latent_side, latent_side, device=device, dtype=dtype
        )
        for batch in batches:
            timesteps = torch.full((batch,), 500, device=device)
            results[f"unet_b{batch}"] = _timed(
                lambda: unet(latents[:batch], timesteps, encoder_hidden_states=embedding[:batch]),
                repeats,
                device,
            )
        results["vae_decode"] = _timed(
            lambda: model.vae.decode(latents[:1]).sample, repeats, device
        )
    picture = Image.fromarray(
        np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    )
    results["to_mel"] = _timed(
        lambda: mel_from_image(picture), max(repeats, 3), torch.device("cpu")
    )
    return results


def _interleaved_unet(unet, dtypes: list[str], rounds: int) -> list[dict]:
    """UNet (batch 1) in each dtype, alternating call by call: on a shared CPU the load moves
    during a run, and alternating exposes every dtype to the same load."""
    copies = {name: copy.deepcopy(unet).to(DTYPES[name]) for name in dtypes}
    times: dict[str, list[float]] = {name: [] for name in dtypes}
    with torch.inference_mode():
        for round_ in range(rounds + 1):  # the first round warms up
            for name, model in copies.items():
                dtype = DTYPES[name]
                latents = torch.randn(1, 4, 64, 64, dtype=dtype)
                text = torch.randn(1, 77, 768, dtype=dtype)
                start = time.perf_counter()
                model(latents, torch.tensor([500]), encoder_hidden_states=text)
                if round_:
                    times[name].append(time.perf_counter() - start)
    rows = []
    for name in dtypes:
        seconds = statistics.median(times[name])
        rows.append({"config": f"{name}/none", "stage": "unet_b1_interleaved", "median_s": seconds})
        print(f"  {name + '/none':>22}  unet_b1 interleaved {seconds * 1000:7.1f} ms", flush=True)
    return rows


def _modelled_frames(label: str, stages: dict[str, float]) -> list[dict]:
    """Seconds per frame, one frame per batch, as the sum of its stages (caches warm)."""
    rows = []
    for name, rows_per_frame in (("default", 2), ("lcm", 1)):
        preset = PRESETS[name]
        seconds = (
            preset.unet_evaluations() * stages[f"unet_b{rows_per_frame}"]
            + stages["vae_decode"]
            + stages["to_mel"]
        )
        rows.append(_frame_row(label, name, 1, seconds, "modelled"))
    return rows


def _measured_frames(label, generator: FrameGenerator, device, presets) -> list[dict]:
    """Warm frames through FrameGenerator.generate: the product's own code path. The generator
    (and its compiled UNet) is reused across presets: a preset only changes the sampling."""
    rows = []
    frames_per_batch = [1, 4] if device.type == "cuda" else [1]
    repeats = 5 if device.type == "cuda" else 1
    for name in presets:
        preset = generator.preset = PRESETS[name]
        start = Keyframe.of("lo-fi beat with warm rhodes", 1, preset.denoising, preset.guidance)
        end = Keyframe.of("jazz trio, brushes", 2, preset.denoising, preset.guidance)
        for count in frames_per_batch:
            requests = transition(start, end, count, "ramp")
            seconds = _timed(lambda: generator.generate(requests), repeats, device) / count
            rows.append(_frame_row(label, name, count, seconds, "measured"))
            print(
                f"  {label:>22}  {name} frame x{count:<3}  {seconds * 1000:10.1f} ms/frame"
                f"  ({FRAME_SECONDS / seconds:.2f}x real time)",
                flush=True,
            )
    return rows


def _frame_row(label: str, preset: str, frames: int, seconds: float, how: str) -> dict:
    return {
        "config": label,
        "preset": preset,
        "frames_per_batch": frames,
        "seconds_per_frame": seconds,
        "real_time_factor": FRAME_SECONDS / seconds,
        "how": how,
    }


# --- reporting --------------------------------------------------------------------------------


def _print_tables(stage_rows: list[dict], frame_rows: list[dict]) -> None:
    print("\n| config | stage | median ms |\n|---|---|---:|")
    for row in stage_rows:
        print(f"| {row['config']} | {row['stage']} | {row['median_s'] * 1000:.1f} |")
    print("\n| config | preset | frames/batch | s/frame | real-time factor | how |")
    print("|---|---|---:|---:|---:|---|")
    for row in frame_rows:
        print(
            f"| {row['config']} | {row['preset']} | {row['frames_per_batch']} | "
            f"{row['seconds_per_frame']:.3f} | {row['real_time_factor']:.2f}x | {row['how']} |"
        )


def _headline(stage_rows, frame_rows, device, default_dtype, quick) -> dict:
    def stage(config, name):
        return next(
            (r["median_s"] for r in stage_rows if r["config"] == config and r["stage"] == name),
            None,
        )

    def best(preset):
        rows = [r for r in frame_rows if r["preset"] == preset]
        measured = [r for r in rows if r["how"] == "measured"] or rows
        return min(measured, key=lambda r: r["seconds_per_frame"]) if measured else None

    result = {"device": device.type, "quick": int(quick)}
    base = f"{default_dtype}/none"
    for name in ("unet_b1", "unet_b2", "vae_decode"):
        value = stage(base, name)
        if value is not None:
            result[f"{name}_{default_dtype}_s"] = f"{value:.4f}"
    if stage("bf16/none", "unet_b1_interleaved") and stage("fp32/none", "unet_b1_interleaved"):
        ratio = stage("fp32/none", "unet_b1_interleaved") / stage(
            "bf16/none", "unet_b1_interleaved"
        )
        result["fp32_over_bf16_unet"] = f"{ratio:.2f}"
    for preset in ("default", "lcm"):
        row = best(preset)
        if row:
            result[f"{preset}_s_per_frame"] = f"{row['seconds_per_frame']:.3f}"
            result[f"{preset}_rtf"] = f"{row['real_time_factor']:.2f}"
            result[f"{preset}_config"] = f"{row['config']}x{row['frames_per_batch']}:{row['how']}"
    return result


def _write_json(path, device, side, stage_rows, frame_rows, started, result=None) -> None:
    """Write the figures so far (after each configuration, so a run cut short keeps them)."""
    if path:
        Path(path).write_text(
            json.dumps(
                {
                    "device": str(device),
                    "device_name": _device_name(device),
                    "side": side,
                    "stages": stage_rows,
                    "frames": frame_rows,
                    "result": result,
                    "load_average": _load(),
                    "seconds": time.perf_counter() - started,
                },
                indent=2,
            )
        )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return os.uname().machine


def _load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


if __name__ == "__main__":
    sys.exit(main())
