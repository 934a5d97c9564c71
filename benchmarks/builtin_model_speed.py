"""How fast the built-in model streams on this CPU, and what each speed lever would buy.

Machines differ (../shared/notes/cpu-classes.md): an AVX2-only CPU emulates bf16 70x slower
than fp32, a CPU with AVX-512 BF16 runs it 1.5-2x faster. So every row names the CPU class
(``torch.backends.cpu.get_cpu_capability()``, native bf16 or not) and the compute type, and the
type the stream would choose here (``streamer.generate.compute_type``) is in the RESULT line.
To measure an AVX2 machine on a bf16 one: ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``.

Default: the shipped model (``--model builtin``), side by side in one process, alternating
call by call so a load change on a shared CPU hits every row alike; medians. Per row:

- the parts of a frame: one UNet call of 2 rows (a guided step: prompt and negative prompt),
  one of 1 row (what a guidance-distilled model, or guidance 1, costs), one VAE decode, one
  decode by the model's light decoder where it has one (``streamer.generate.autoencoder``), and
  the vocoder (``streamer.audio.vocoder.Vocoder``, warm-started as in a stream);
- the frame modelled from them for a 12-step and an 8-step schedule at denoising 0.75 (9 and 6
  evaluations), guided on every step and in one row, and for the ``builtin`` preset's own
  schedule (guided down to its ``guidance_until_timestep``, one row below), with the decoder
  the stream takes on a CPU (the light one where the model has one), and the stream's
  real-time factor, 5.12 s / (frame + vocoder);
- levers: ``eager`` (torch as loaded, NCHW), ``channels_last`` (NHWC convolutions, what the
  torch runtime runs), ``compile`` (``torch.compile``, inductor on the CPU: its compile time is
  reported too), ``openvino`` (``streamer.generate.cpu_runtime``: OpenVINO in the row's type,
  f32 or bf16 precision hint; its load is reported twice: converting into an empty cache, as a
  first start, then reading that cache, as every later start).

A frame through the unchanged ``FrameGenerator.generate`` at the preset (and its default
decoder) checks the model against the parts (``measured frame``), once per CPU runtime
measured (torch, and OpenVINO when it is among the levers), alternating frame by frame; the
OpenVINO frames' largest and mean difference from torch's, in 8-bit pixel levels, is printed
and in the RESULT line.

``--candidates small,medium`` instead compares architecture sizes at random weights (how the
built-in model's size was chosen; benchmarks/RESULTS.md).

Usage: python benchmarks/builtin_model_speed.py [--quick] [--dtypes fp32,bf16] [--levers ...]
(the emulated AVX2 machine, OpenVINO included: ONEDNN_MAX_CPU_ISA reaches OpenVINO's own oneDNN,
whose convolutions then run ``brgconv_avx2``)
(``--quick --model DIR`` with the tiny test model is the smoke test tests/test_benchmarks.py runs)
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from transformers import CLIPTokenizer

from streamer.audio.vocoder import Vocoder
from streamer.generate.autoencoder import VaeDecoder, VaeEncoder
from streamer.generate.compute_type import cast, cpu_facts
from streamer.generate.config import BUILTIN_MODEL, GeneratorConfig
from streamer.generate.cpu_runtime import (
    RuntimeChoice,
    default_cache_folder,
    openvino_parts,
    openvino_version,
)
from streamer.generate.generator import FrameGenerator
from streamer.generate.loading import StableDiffusionModel, load_model
from streamer.generate.presets import evaluations, preset_named
from streamer.generate.request import FrameRequest, PromptBlend
from streamer.generate.tiny_model import random_components, sd1_scheduler, write_clip_tokenizer
from streamer.seeds.library import load_seed_loop
from streamer.spectrogram import SpectrogramParams
from streamer.training.architecture import CANDIDATES, parameter_counts

FRAME_SECONDS = 512 * 441 / 44100
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
LEVERS = ("eager", "channels_last", "compile", "openvino")
#: What --quick measures: the levers that load in seconds on the tiny model.
QUICK_LEVERS = ("eager", "openvino")
#: Schedules modelled: steps of the full schedule at the preset's denoising (0.75): the
#: ``builtin`` preset's 12 until 2026-12-07, then its 8 (same quality, benchmarks/RESULTS.md).
SCHEDULES = (12, 8)
#: The schedule the stream plays the built-in model at, with its guidance interval.
PRESET = preset_named("builtin")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A frame's UNet evaluations: guided (2 rows) and one-row."""

    name: str
    guided: int
    one_row: int


def schedules(model: StableDiffusionModel) -> list[Schedule]:
    """The schedules modelled: each of ``SCHEDULES`` guided on every step and in one row, then
    the preset's own (its steps, guided down to its ``guidance_until_timestep``)."""
    from streamer.generate.schedulers import make_scheduler

    rows = []
    for steps in SCHEDULES:
        count = evaluations(steps, PRESET.denoising)
        rows += [Schedule(f"{steps} steps ({count}x2)", count, 0),
                 Schedule(f"{steps} steps, 1 row", 0, count)]
    scheduler = make_scheduler(PRESET.scheduler, model.noise_schedule)
    scheduler.set_timesteps(PRESET.num_inference_steps)
    run = scheduler.timesteps[-PRESET.unet_evaluations():]
    guided = sum(PRESET.guides_at(int(t)) for t in run)
    rows.append(Schedule(
        f"preset: {PRESET.num_inference_steps} steps ({guided}x2 + {len(run) - guided}x1)",
        guided, len(run) - guided,
    ))
    return rows


@dataclasses.dataclass
class Row:
    """One compute type with one lever: the callables timed, and their seconds."""

    dtype: str
    lever: str
    unet_2: Callable[[], object]
    unet_1: Callable[[], object]
    decode: Callable[[], object]
    #: The light decoder's decode, None where the model has no light decoder.
    decode_light: Callable[[], object] | None
    seconds: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    #: Seconds to get ready: compiling (``compile``, at warm-up) or converting into an empty
    #: cache and compiling (``openvino``); ``cached_load_s``: OpenVINO again from its cache.
    load_s: float = 0.0
    cached_load_s: float = 0.0

    def median(self, part: str) -> float:
        return statistics.median(self.seconds[part])

    def parts(self) -> list[str]:
        return ["unet_2", "unet_1", "decode"] + (["decode_light"] if self.decode_light else [])

    def stream_decode(self) -> float:
        """The decode the stream runs on a CPU: the light decoder's where there is one."""
        return self.median("decode_light" if self.decode_light else "decode")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="eager and openvino in the model's type, 2 calls a part (< 60 s)"
    )
    parser.add_argument("--calls", type=int, default=5, help="timed calls per part and row")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument(
        "--dtypes", help="comma list of fp32,bf16 (default: fp32, and bf16 where it is native)"
    )
    parser.add_argument("--levers", help="comma list of " + ",".join(LEVERS) + " (default: all)")
    parser.add_argument("--model", default=BUILTIN_MODEL, help="the model (default: builtin)")
    parser.add_argument("--candidates", help="compare these architectures at random weights instead")
    parser.add_argument("--frames", type=int, default=3, help="--candidates: timed frames each")
    parser.add_argument("--steps", default="12", help="--candidates: comma list of schedules")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.candidates:
        compare_candidates(args)
        return
    facts = cpu_facts()
    levers = args.levers.split(",") if args.levers else list(QUICK_LEVERS if args.quick else LEVERS)
    if "openvino" in levers and openvino_version() is None:
        print("# openvino is not installed: its lever is left out (pip install openvino)")
        levers.remove("openvino")
    calls = 2 if args.quick else args.calls
    print(f"# built-in model speed: {facts.describe()}, {args.threads} threads, torch "
          f"{torch.__version__}, load average {os.getloadavg()[0]:.1f}", flush=True)
    model = load_model(GeneratorConfig(model=args.model, device="cpu"))
    print(f"# {model.compute_announcement()}", flush=True)
    # --quick: the model's own type only, so OpenVINO converts once for rows and frames alike.
    every_type = "fp32,bf16" if facts.native_bf16 else "fp32"
    names = (args.dtypes or (dtype_name(model.dtype) if args.quick else every_type)).split(",")
    # An empty cache, so the openvino rows time a first start's conversion; the generator's
    # frames below then read it, as every later start does.
    os.environ["STREAMER_CACHE"] = tempfile.mkdtemp(prefix="streamer-cache-")
    cache = default_cache_folder()
    rows = [row for name in names for row in make_rows(model, name, levers, cache)]
    for row in rows:  # warm-up (and compile) first, then time the rows in turns
        start = time.perf_counter()
        for part in row.parts():
            getattr(row, part)()
        if row.lever == "compile":
            row.load_s = time.perf_counter() - start
    for _ in range(calls):
        for row in rows:
            for part in row.parts():
                started = time.perf_counter()
                getattr(row, part)()
                row.seconds.setdefault(part, []).append(time.perf_counter() - started)
    runtimes = ["torch"] + (["openvino"] if "openvino" in levers else [])
    vocode_s, measured, difference = measure_frames(model, calls, runtimes)
    measured_s = measured["torch"]
    modelled = schedules(model)
    preset = modelled[-1]
    print_table(rows, vocode_s, modelled)
    torch_lever = "channels_last" if "channels_last" in levers else levers[0]
    base = next(
        (r for r in rows if r.lever == torch_lever and DTYPES[r.dtype] == model.dtype), rows[0]
    )
    frame = modelled_frame(base, preset)
    print(f"\nmeasured frame (FrameGenerator, {model.compute_announcement().split(':')[0]}, "
          f"builtin preset): {measured_s:.2f} s with torch; modelled {frame:.2f} s "
          f"({base.dtype}/{base.lever}); vocoder {vocode_s:.3f} s")
    openvino = ""
    if "openvino" in measured:
        print(f"measured frame with OpenVINO: {measured['openvino']:.2f} s "
              f"({measured_s / measured['openvino']:.2f}x torch's); frames differ from torch's "
              f"by at most {difference[0]} pixel levels, {difference[1]:.2f} on average")
        openvino = (f"openvino_frame_s={measured['openvino']:.3f} "
                    f"openvino_rtf={FRAME_SECONDS / (measured['openvino'] + vocode_s):.2f} "
                    f"openvino_max_levels={difference[0]} openvino_mean_levels={difference[1]:.3f} ")
    best = min(rows, key=lambda r: modelled_frame(r, preset))
    print(
        f"RESULT builtin_model_speed capability={facts.capability} "
        f"native_bf16={int(facts.native_bf16)} dtype={dtype_name(model.dtype)} "
        f"frame_s={measured_s:.3f} vocoder_s={vocode_s:.3f} "
        f"stream_rtf={FRAME_SECONDS / (measured_s + vocode_s):.2f} "
        f"unet2_s={base.median('unet_2'):.3f} unet1_s={base.median('unet_1'):.3f} "
        f"decode_s={base.median('decode'):.3f} stream_decode_s={base.stream_decode():.3f} "
        f"decoder={'light' if base.decode_light else 'full'} best_lever={best.dtype}/{best.lever} "
        f"best_rtf={rtf(modelled_frame(best, preset), vocode_s):.2f} {openvino}"
        f"quick={int(args.quick)}"
    )


def make_rows(
    model: StableDiffusionModel, name: str, levers: list[str], cache: Path
) -> list[Row]:
    """A row per lever in type ``name``, each on its own copy of the UNet and decoder
    (OpenVINO's converted into ``cache``)."""
    dtype = DTYPES[name]
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(2, 4, 64, 64, generator=generator).to(dtype)
    text = torch.randn(2, 77, model.unet.config.cross_attention_dim, generator=generator)
    text, timestep = text.to(dtype), torch.tensor([500, 500])
    rows = []
    for lever in levers:
        unet = cast(copy.deepcopy(model.unet), dtype)
        vae = cast(copy.deepcopy(model.vae), dtype)
        decoders, encoder = [VaeDecoder(vae)], VaeEncoder(vae)
        if model.light_decoder is not None:
            decoders.append(cast(copy.deepcopy(model.light_decoder), dtype))
        rows_latent = latent
        if lever == "channels_last":
            for module in (unet, *decoders):
                module.to(memory_format=torch.channels_last)
            rows_latent = latent.contiguous(memory_format=torch.channels_last)
        decodes: list[Callable] = decoders
        load_s = cached_load_s = 0.0
        if lever == "compile":
            unet = torch.compile(unet)
            decodes = [torch.compile(decoder) for decoder in decoders]
        if lever == "openvino":
            choice = RuntimeChoice("openvino", "benchmark")
            started = time.perf_counter()
            openvino_parts(unet, decoders[0], encoder, dtype, choice, cache)
            load_s = time.perf_counter() - started
            started = time.perf_counter()
            parts = openvino_parts(unet, decoders[0], encoder, dtype, choice, cache)
            cached_load_s = time.perf_counter() - started
            decodes = [parts.decode] + [
                openvino_parts(unet, light, encoder, dtype, choice, cache).decode
                for light in decoders[1:]
            ]
            unet = parts.unet
        rows.append(
            Row(
                name,
                lever,
                _inference(lambda u=unet, x=rows_latent: u(x, timestep, encoder_hidden_states=text)),
                _inference(
                    lambda u=unet, x=rows_latent: u(x[:1], timestep[:1], encoder_hidden_states=text[:1])
                ),
                _inference(lambda d=decodes[0], x=rows_latent: d(x[:1])),
                (_inference(lambda d=decodes[-1], x=rows_latent: d(x[:1]))
                 if len(decodes) > 1 else None),
                load_s=load_s,
                cached_load_s=cached_load_s,
            )
        )
    return rows


def measure_frames(
    model: StableDiffusionModel, calls: int, runtimes: list[str]
) -> tuple[float, dict[str, float], tuple[int, float]]:
    """The vocoder's seconds per frame (warm-started), a frame's seconds through the generator
    with each CPU runtime (alternating frame by frame), and how far the last runtime's frames
    are from torch's: the largest and the mean difference in 8-bit pixel levels."""
    seed = load_seed_loop("house_117").image()
    generators = {
        runtime: FrameGenerator(model, preset_named("builtin"), {"seed": seed}, cpu_runtime=runtime)
        for runtime in runtimes
    }
    request = FrameRequest(PromptBlend.single("house track, piano chords"), "seed", seed_a=1)
    vocoder = Vocoder(SpectrogramParams())
    previous, vocode_s = None, []
    frame_s: dict[str, list[float]] = {runtime: [] for runtime in runtimes}
    images: dict[str, np.ndarray] = {}
    for _ in range(1 + max(1, calls // 2)):
        for runtime, generator in generators.items():
            (frame,) = generator.generate([request])
            frame_s[runtime].append(frame.timings.total_s)
            images[runtime] = np.asarray(frame.image, dtype=np.int16)
        started = time.perf_counter()
        previous = vocoder.vocode(frame.mel, previous)
        vocode_s.append(time.perf_counter() - started)
    levels = np.abs(images[runtimes[-1]] - images["torch"])
    return (
        statistics.median(vocode_s[1:]),
        {runtime: statistics.median(seconds[1:]) for runtime, seconds in frame_s.items()},
        (int(levels.max()), float(levels.mean())),
    )


def modelled_frame(row: Row, schedule: Schedule) -> float:
    unet = schedule.guided * row.median("unet_2") + schedule.one_row * row.median("unet_1")
    return unet + row.stream_decode()


def rtf(frame_s: float, vocode_s: float) -> float:
    return FRAME_SECONDS / (frame_s + vocode_s)


def print_table(rows: list[Row], vocode_s: float, modelled: list[Schedule]) -> None:
    head = ("| type | lever | UNet 2 rows s | UNet 1 row s | decode s | light decode s "
            "| load s (cached) |")
    rule = "|---|---|---:|---:|---:|---:|---:|"
    for schedule in modelled:
        head += f" {schedule.name} s / RTF |"
        rule += "---:|"
    print(head + "\n" + rule)
    for row in rows:
        line = (
            f"| {row.dtype} | {row.lever} | {row.median('unet_2'):.3f} | {row.median('unet_1'):.3f}"
            f" | {row.median('decode'):.3f}"
            f" | {row.median('decode_light') if row.decode_light else float('nan'):.3f}"
            f" | {row.load_s:.1f} ({row.cached_load_s:.1f}) |"
        )
        for schedule in modelled:
            frame = modelled_frame(row, schedule)
            line += f" {frame:.2f} / {rtf(frame, vocode_s):.2f}x |"
        print(line)


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in DTYPES.items()}[dtype]


def _inference(call: Callable[[], object]) -> Callable[[], object]:
    def run() -> object:
        with torch.inference_mode():
            return call()

    return run


def compare_candidates(args: argparse.Namespace) -> None:
    """Architecture sizes at random weights, each a frame through the unchanged generator in
    the type this machine would choose, candidates alternating frame by frame."""
    facts = cpu_facts()
    dtype = torch.bfloat16 if facts.native_bf16 else torch.float32
    names = args.candidates.split(",")
    steps = [int(s) for s in args.steps.split(",")]
    seed = load_seed_loop("house_117").image()
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder))
    generators = {}
    for name in names:
        parts = random_components(CANDIDATES[name], seed=0)
        model = StableDiffusionModel(
            *(cast(part, dtype).eval().requires_grad_(False) for part in parts),
            tokenizer,
            dict(sd1_scheduler().config),
            torch.device("cpu"),
            dtype,
            name,
        )
        for count in steps:
            preset = dataclasses.replace(preset_named("builtin"), num_inference_steps=count)
            generators[(name, count)] = FrameGenerator(model, preset, {"seed": seed})
    vocoder = Vocoder(SpectrogramParams())
    request = FrameRequest(PromptBlend.single("house beat, piano chords"), "seed", seed_a=1)
    for generator in generators.values():  # warm the caches and the allocator
        generator.generate([request])
    frame_s: dict = {key: [] for key in generators}
    vocoder_s = []
    for _ in range(args.frames):
        for key, generator in generators.items():
            (frame,) = generator.generate([request])
            frame_s[key].append(frame.timings.total_s)
        started = time.perf_counter()
        vocoder.vocode(frame.mel)
        vocoder_s.append(time.perf_counter() - started)
    vocode = statistics.median(vocoder_s)
    print(f"# {facts.describe()}, {dtype_name(dtype)}, {args.threads} threads, vocoder {vocode:.2f} s")
    print("| candidate | steps | params UNet/VAE/text (M) | frame s | + vocoder s | stream RTF |")
    print("|---|---|---|---:|---:|---:|")
    for (name, count), seconds in frame_s.items():
        counts = parameter_counts(CANDIDATES[name])
        total = statistics.median(seconds) + vocode
        print(
            f"| {name} | {count} | {counts['unet'] / 1e6:.1f}/{counts['vae'] / 1e6:.1f}/"
            f"{counts['text_encoder'] / 1e6:.1f} | {statistics.median(seconds):.2f} | {total:.2f}"
            f" | {FRAME_SECONDS / total:.2f}x |"
        )
    print(f"RESULT builtin_model_speed_candidates capability={facts.capability} "
          f"dtype={dtype_name(dtype)} vocoder_s={vocode:.3f}")


if __name__ == "__main__":
    main()
