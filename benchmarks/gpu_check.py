"""The checks only a GPU can make, as one prepared run: each step in its own process with its own
time limit, one line per step in ``OUT/results.txt`` (and all figures in ``results.json``).

Steps, in order (limits in seconds; about 8.5 minutes at most in all):

=============  ===== ===========================================================================
step           limit what it checks
=============  ===== ===========================================================================
models            75 builds the tiny model, a LoRA for it, and the SD 1.5 architecture (random
                     weights) as a diffusers folder
versions          20 library versions meet the loader's floors; the GPU's name and memory
load              40 the tiny model loads on CUDA in fp16, UNet channels_last, a LoRA fused
agreement         40 CPU fp32 frames against CUDA fp16 and bf16 (mean pixel levels); a batched
                     frame against the same frame alone; all four samplers finite on a mixed batch
sd15-eager        70 SD 1.5 frames at batch 1 and 4; ``DiffusionFrameMaker.make`` with the vocoder
                     on CUDA; two batches with the maker's stages in a row and overlapped (the
                     engine's finisher thread); peak memory at 16 frames; cancellation latency
compiled         190 torch.compile with CUDA graphs (reduce-overhead): warm-up time, a batch of
                     mixed denoising strengths, recompiles after warm-up (must be 0),
                     cancellation latency under CUDA graphs
vocoder           20 ``benchmarks/vocoder.py --smoke`` with the vocoder on CUDA
latency           60 ``benchmarks/latency.py --quick`` with the SD 1.5 architecture on CUDA
=============  ===== ===========================================================================

``--dry-run`` runs the same steps on the CPU with the tiny model in place of SD 1.5, smaller
batches and the eager compile backend, skipping only what needs CUDA (fp16, channels_last, peak
memory, CUDA graphs) and checking bf16 only where the CPU has it natively
(:func:`dry_run_types`): a test runs it, so the script cannot rot before a GPU is lent.

Steps run in child processes: forked from this one after the libraries are imported (the dry
run: one import instead of nine), spawned on a GPU, where a forked child could not start CUDA.

Usage: python benchmarks/gpu_check.py --out DIR [--dry-run] [--steps load,agreement]
(``benchmarks/gpu_check.sh`` installs what the GPU machine lacks and runs this.)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import multiprocessing
import os
import platform
import runpy
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

# CUDA is asked about through NVML, so that this process never starts CUDA before it forks. OpenMP
# threads sleep while they wait, as the CLI has them (read once, when torch loads: here): spinning
# threads slowed the dry run's vocoder 5x on a shared CPU.
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from streamer.generate.cancellation import FrameCancelled  # noqa: E402
from streamer.generate.config import GeneratorConfig  # noqa: E402
from streamer.generate.generator import FrameGenerator  # noqa: E402
from streamer.generate.loading import load_model  # noqa: E402
from streamer.generate.presets import SCHEDULER_NAMES  # noqa: E402
from streamer.generate.request import FrameRequest, PromptBlend  # noqa: E402

#: Mean difference, in 8-bit pixel levels, allowed between a frame and the same frame made
#: another way (another dtype or device, another batch): rounding, not a different picture.
AGREEMENT_LEVELS = 4.0
SEED_LOOP = "boom_bap_94"


@dataclasses.dataclass(frozen=True)
class Context:
    """Where a step runs and what it works on (passed to each child process)."""

    dry_run: bool
    out: Path
    work: Path

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"

    @property
    def tiny(self) -> Path:
        return self.work / "tiny"

    @property
    def lora(self) -> Path:
        return self.work / "lora" / "pytorch_lora_weights.safetensors"

    @property
    def big(self) -> Path:
        """The SD 1.5 architecture; the tiny model in a dry run."""
        return self.tiny if self.dry_run else self.work / "sd15"

    @property
    def batch(self) -> int:
        """The larger batch measured: 4 frames on a GPU, 2 in a dry run."""
        return 2 if self.dry_run else 4

    @property
    def frames(self) -> int:
        """Frames of the batches checked for agreement: 3 on a GPU, 2 in a dry run (one fewer
        through the frame maker and its vocoder)."""
        return 2 if self.dry_run else 3

    def config(self, model: Path, **fields) -> GeneratorConfig:
        """The default preset on this device; the dry run at 4 steps in fp32 (enough to check),
        with torch running the UNet, as on the GPU (OpenVINO, a CPU runtime, is not what the
        check is for, and converting for it would double the dry run's time)."""
        steps = (
            {"num_inference_steps": 4, "dtype": "fp32", "cpu_runtime": "torch"}
            if self.dry_run else {}
        )
        values = {"model": str(model), "device": self.device, "offline": True, "preset": "default"}
        return GeneratorConfig(**{**values, **steps, **fields})


def seed_images(context: Context) -> dict:
    """The seed loop, full size on a GPU; a 128-column strip (a quarter) in a dry run."""
    from streamer.runtime.diffusion_maker import seed_loop_image

    image = seed_loop_image(SEED_LOOP).convert("RGB")
    return {SEED_LOOP: image.crop((0, 0, 128, 512)) if context.dry_run else image}


def mixed_batch(count: int, first_seed: int = 1) -> list[FrameRequest]:
    """Frames of different denoising strengths, with and without guidance."""
    strengths, guidances = (0.3, 0.9, 0.6, 0.75), (7.0, 1.0, 3.0, 1.0)
    return [
        FrameRequest(
            PromptBlend.single(("jazz trio", "deep house")[k % 2]),
            SEED_LOOP,
            first_seed + k,
            denoising=strengths[k % 4],
            guidance=guidances[k % 4],
        )
        for k in range(count)
    ]


def pixel_levels(a, b) -> float:
    """Mean absolute difference of two frames' images, in 8-bit levels."""
    return float(np.abs(np.asarray(a.image, np.float64) - np.asarray(b.image, np.float64)).mean())


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def seconds_per_frame(generator: FrameGenerator, requests: list[FrameRequest]) -> float:
    started = time.perf_counter()
    generator.generate(requests)
    synchronize(generator.device.type)
    return (time.perf_counter() - started) / len(requests)


def cancellation_latency(generator: FrameGenerator) -> float:
    """Median seconds from a frame turning stale to ``generate`` giving up, over three frames
    (at full denoising: the most steps) made stale a quarter of the way through."""
    [request] = mixed_batch(1)
    requests = [dataclasses.replace(request, denoising=1.0)]
    full = seconds_per_frame(generator, requests)
    latencies = []
    for _ in range(3):
        stale_since: list[float] = []
        timer = threading.Timer(full / 4, lambda: stale_since.append(time.perf_counter()))
        timer.start()
        try:
            generator.generate(requests, lambda: bool(stale_since))
        except FrameCancelled:
            latencies.append(time.perf_counter() - stale_since[0])
        finally:
            timer.cancel()
    if not latencies:
        raise AssertionError("no batch was cancelled: is_stale was never asked after it turned")
    return statistics.median(latencies)


def stages_in_a_row_and_overlapped(maker, planned: list) -> tuple[float, float]:
    """Seconds for two batches made stage after stage, and with the first batch finished (on a
    thread, as the engine's finisher does) while the second is generated."""
    started = time.perf_counter()
    for _ in range(2):
        maker.finish(maker.generate(planned))
    in_a_row = time.perf_counter() - started
    started = time.perf_counter()
    first = maker.generate(planned)
    finisher = threading.Thread(target=maker.finish, args=(first,))
    finisher.start()
    second = maker.generate(planned)
    finisher.join()
    maker.finish(second)
    return in_a_row, time.perf_counter() - started


def compiled_graphs() -> int:
    """Graphs torch.compile has made in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


# --- the steps ----------------------------------------------------------------------------------


def step_models(context: Context) -> dict:
    from streamer.generate.tiny_model import build_tiny_lora, build_tiny_model

    started = time.perf_counter()
    build_tiny_model(context.tiny)
    build_tiny_lora(context.tiny, context.lora.parent)
    figures = {"tiny_s": round(time.perf_counter() - started, 1)}
    if not context.dry_run:
        started = time.perf_counter()
        build_tiny_model(context.big, architecture="sd15")
        figures["sd15_s"] = round(time.perf_counter() - started, 1)
    return figures


def step_versions(context: Context) -> dict:
    import diffusers
    import huggingface_hub
    import transformers

    from streamer.generate.loading import check_library_versions

    check_library_versions()
    figures = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "huggingface_hub": huggingface_hub.__version__,
    }
    if context.device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        figures |= {
            "cuda": torch.version.cuda,
            "gpu": properties.name.replace(" ", "_"),
            "gpu_memory_gib": round(properties.total_memory / 2**30, 1),
            "bf16": torch.cuda.is_bf16_supported(),
        }
    return figures


def step_load(context: Context) -> dict:
    dtype = "fp32" if context.dry_run else "fp16"
    started = time.perf_counter()
    config = context.config(context.tiny, dtype=dtype, lora=str(context.lora))
    generator = FrameGenerator.load(config, seed_images(context))
    load_s = time.perf_counter() - started
    unet = generator.model.unet
    assert unet.dtype == {"fp16": torch.float16, "fp32": torch.float32}[dtype], unet.dtype
    assert unet.device.type == context.device, unet.device
    plain = load_model(dataclasses.replace(config, lora=None)).unet
    projection = "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    fused = not torch.equal(
        unet.get_parameter(projection).cpu(), plain.get_parameter(projection).cpu()
    )
    assert fused, "the LoRA left the attention weights unchanged"
    figures = {"dtype": dtype, "load_s": round(load_s, 2), "lora_fused": fused}
    if context.device == "cuda":
        channels_last = unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        assert channels_last, "the UNet is not channels_last on CUDA"
        figures["channels_last"] = channels_last
    [frame] = generator.generate(mixed_batch(1))
    assert np.isfinite(frame.mel).all() and np.asarray(frame.image).std() > 0
    return figures


def step_agreement(context: Context) -> dict:
    images = seed_images(context)
    batch = mixed_batch(context.frames)
    cpu = dataclasses.replace(context.config(context.tiny, dtype="fp32"), device="cpu")
    reference = FrameGenerator.load(cpu, images).generate(batch)
    figures = {}
    for dtype in dry_run_types() if context.dry_run else ("bf16", "fp16"):
        config = context.config(context.tiny, dtype=dtype)
        generator = FrameGenerator(load_model(config), config.resolved_preset(), images)
        made = generator.generate(batch)
        levels = max(pixel_levels(a, b) for a, b in zip(made, reference))
        figures[f"{dtype}_vs_cpu_fp32_levels"] = round(levels, 2)
        assert levels <= AGREEMENT_LEVELS, f"{dtype} frames differ by {levels:.1f} levels"
        alone = [generator.generate([request])[0] for request in batch]
        levels = max(pixel_levels(a, b) for a, b in zip(made, alone))
        figures[f"{dtype}_batched_vs_alone_levels"] = round(levels, 2)
        assert levels <= AGREEMENT_LEVELS, f"batched {dtype} frames differ by {levels:.1f} levels"
    for scheduler in SCHEDULER_NAMES:  # on the last model loaded: fp16, the one that overflows
        preset = dataclasses.replace(config, scheduler=scheduler).resolved_preset()
        for frame in FrameGenerator(generator.model, preset, images).generate(batch):
            assert np.isfinite(frame.mel).all(), f"{scheduler}: a frame is not finite"
            assert np.asarray(frame.image).std() > 0, f"{scheduler}: a blank frame"
    figures["samplers_finite"] = ",".join(SCHEDULER_NAMES)
    return figures


def dry_run_types() -> tuple[str, ...]:
    """The reduced type a dry run checks against fp32: bf16 where this CPU computes it natively,
    else fp32 itself, as the stream's compute-type rule chooses (streamer.generate.compute_type):
    bf16 emulated on an AVX2-only CPU is 70x slower and would make the suite's time depend on
    the CPU's bf16 support. The batched-against-alone check runs either way."""
    from streamer.generate.compute_type import cpu_facts

    return ("bf16",) if cpu_facts().native_bf16 else ("fp32",)


def step_sd15_eager(context: Context) -> dict:
    from streamer.audio.vocoder import Vocoder, VocoderConfig
    from streamer.plan.planner import PlannedFrame
    from streamer.runtime.diffusion_maker import DiffusionFrameMaker
    from streamer.spectrogram.params import SpectrogramParams

    generator = FrameGenerator.load(context.config(context.big), seed_images(context))
    generator.generate(mixed_batch(1))  # kernels chosen, caches warm
    figures = {
        "dtype": str(generator.model.dtype).removeprefix("torch."),
        "batch1_s_per_frame": round(seconds_per_frame(generator, mixed_batch(1)), 3),
        f"batch{context.batch}_s_per_frame": round(
            seconds_per_frame(generator, mixed_batch(context.batch)), 3
        ),
    }
    vocoder = Vocoder(SpectrogramParams(), VocoderConfig(device=context.device))
    maker = DiffusionFrameMaker(generator, vocoder)
    planned = [
        PlannedFrame(k, 0, r.prompts, "", r.seed_a, r.seed_b, 0.0, r.denoising, r.guidance,
                     SEED_LOOP, 1.0)
        for k, r in enumerate(mixed_batch(context.frames - 1))
    ]  # fmt: skip
    started = time.perf_counter()
    made = maker.make(planned)
    seconds = (time.perf_counter() - started) / len(made)
    figures["make_with_vocoder_s_per_frame"] = round(seconds, 3)
    assert all(np.isfinite(frame.samples).all() for frame in made)
    figures["vocoder_device"] = str(vocoder.device)
    in_a_row, overlapped = stages_in_a_row_and_overlapped(maker, planned)
    figures["two_batches_in_a_row_s"] = round(in_a_row, 3)
    figures["two_batches_overlapped_s"] = round(overlapped, 3)
    if context.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        generator.generate(mixed_batch(16))
        figures["peak_gib_16_frames"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    figures["cancel_latency_s"] = round(cancellation_latency(generator), 3)
    return figures


def step_compiled(context: Context) -> dict:
    """A batch of two frames of different strengths, without guidance, takes 1 and 2 UNet rows;
    a guided frame 2: warmed up for one-frame batches (1 and 2 rows), nothing compiles again."""
    from torch._dynamo.testing import CompileCounter

    config = context.config(context.big)
    mode, backend = (
        ("default", CompileCounter()) if context.dry_run else ("reduce-overhead", "inductor")
    )
    generator = FrameGenerator(
        load_model(config),
        config.resolved_preset(),
        seed_images(context),
        compile=mode,
        compile_backend=backend,
    )
    warm_up_s = generator.warm_up(1, SEED_LOOP)
    warmed = compiled_graphs()
    unguided = [dataclasses.replace(r, guidance=1.0) for r in mixed_batch(2)]
    mixed_s = seconds_per_frame(generator, unguided)
    guided_s = seconds_per_frame(generator, mixed_batch(1))
    recompiles = compiled_graphs() - warmed
    assert recompiles == 0, f"{recompiles} recompilations after the warm-up"
    return {
        "mode": mode,
        "warm_up_s": round(warm_up_s, 1),
        "graphs": warmed,
        "recompiles_after_warm_up": recompiles,
        "mixed_batch_s_per_frame": round(mixed_s, 3),
        "guided_s_per_frame": round(guided_s, 3),
        "cancel_latency_s": round(cancellation_latency(generator), 3),
    }


def run_benchmark(context: Context, script: str, arguments: list[str]) -> dict:
    """Run ``benchmarks/SCRIPT`` in this process (no second import of the libraries); its output
    goes to ``OUT/SCRIPT.log`` and its RESULT line becomes the figures."""
    output = io.StringIO()
    sys.argv = [script, *arguments]
    with contextlib.redirect_stdout(output):
        try:
            runpy.run_path(str(ROOT / "benchmarks" / script), run_name="__main__")
        except SystemExit as exit:
            if exit.code:
                raise AssertionError(f"{script} exited with {exit.code}") from None
    text = output.getvalue()
    (context.out / script.replace(".py", ".log")).write_text(text)
    results = [line for line in text.splitlines() if line.startswith("RESULT ")]
    assert results, f"{script} printed no RESULT line"
    return dict(field.split("=", 1) for field in results[-1].split()[1:])


def step_vocoder(context: Context) -> dict:
    return run_benchmark(context, "vocoder.py", ["--smoke", "--device", context.device])


def step_latency(context: Context) -> dict:
    arguments = ["--quick", "--model", str(context.big), "--device", context.device]
    if context.dry_run:
        arguments += ["--changes", "1", "--speeds", "0.1", "--num-inference-steps", "4"]
    return run_benchmark(context, "latency.py", arguments)


#: Each step and its time limit in seconds on a GPU; a dry run allows ``DRY_RUN_SLOWER`` times
#: as long (a loaded 2-core CPU makes the tiny model slower than a GPU makes SD 1.5).
STEPS: dict[str, tuple[Callable[[Context], dict], float]] = {
    "models": (step_models, 75),
    "versions": (step_versions, 20),
    "load": (step_load, 40),
    "agreement": (step_agreement, 40),
    "sd15-eager": (step_sd15_eager, 70),
    "compiled": (step_compiled, 190),  # inductor compiles SD 1.5's UNet twice: minutes
    "vocoder": (step_vocoder, 20),
    "latency": (step_latency, 60),
}
DRY_RUN_SLOWER = 3


# --- running them -------------------------------------------------------------------------------


def _child(name: str, context: Context, connection) -> None:
    try:
        connection.send(("ok", STEPS[name][0](context)))
    except BaseException as error:  # a failed check or a crash: either way the step failed
        traceback.print_exc()
        connection.send(("FAILED", f"{type(error).__name__}: {error}".splitlines()[0][:300]))


def run_step(name: str, context: Context, start_method: str) -> dict:
    """One step in a child process, killed at its time limit."""
    processes = multiprocessing.get_context(start_method)
    receiving, sending = processes.Pipe(duplex=False)
    child = processes.Process(target=_child, args=(name, context, sending), daemon=True)
    started = time.perf_counter()
    child.start()
    limit = STEPS[name][1] * (DRY_RUN_SLOWER if context.dry_run else 1)
    if receiving.poll(limit):
        status, detail = receiving.recv()
    else:
        status, detail = "TIMEOUT", f"no answer within {limit:.0f} s"
    child.join(timeout=5)
    if child.is_alive():
        child.kill()
        child.join()
    elif status == "TIMEOUT" and child.exitcode:
        status, detail = "FAILED", f"the step's process died (exit code {child.exitcode})"
    seconds = round(time.perf_counter() - started, 1)
    return {"step": name, "status": status, "seconds": seconds,
            "figures" if status == "ok" else "error": detail}  # fmt: skip


def result_line(result: dict) -> str:
    detail = result.get("figures") or result.get("error")
    if isinstance(detail, dict):
        detail = " ".join(f"{key}={value}" for key, value in detail.items())
    return f"{result['step']:11} {result['status']:8} {result['seconds']:6.1f} s  {detail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for results and logs")
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, tiny model only")
    parser.add_argument("--steps", help=f"comma list (default all): {', '.join(STEPS)}")
    parser.add_argument("--work", type=Path, help="folder for the models (default OUT/models)")
    parser.add_argument(
        "--start-method",
        choices=("fork", "spawn"),
        help="how step processes start (default: fork in a dry run, spawn on a GPU)",
    )
    args = parser.parse_args()
    steps = args.steps.split(",") if args.steps else list(STEPS)
    unknown = [name for name in steps if name not in STEPS]
    if unknown:
        parser.error(f"unknown steps {', '.join(unknown)}: choose from {', '.join(STEPS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    work = (args.work or args.out / "models").resolve()
    context = Context(args.dry_run, args.out.resolve(), work)
    start_method = args.start_method or ("fork" if args.dry_run else "spawn")
    print(f"# gpu check ({'dry run, CPU' if args.dry_run else 'CUDA'}): {', '.join(steps)}")
    results = []
    with open(args.out / "results.txt", "a") as lines:
        kind = "dry run" if args.dry_run else "CUDA"
        lines.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {kind}\n")
        for name in steps:
            result = run_step(name, context, start_method)
            results.append(result)
            print(result_line(result), flush=True)
            lines.write(result_line(result) + "\n")
            lines.flush()
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    failed = [r["step"] for r in results if r["status"] != "ok"]
    print(f"RESULT steps={len(results)} failed={len(failed)} failed_steps={','.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
