"""Which built-in model size streams in real time on 2 CPU cores: candidates side by side.

Speed does not depend on weight values, so each candidate architecture is built with random
weights, in bf16 (the CPU default), and a frame is made through the unchanged
``FrameGenerator.generate`` with warm caches (prompt embeddings and seed latent cached, as in a
running stream), then vocoded cold by ``streamer.audio.vocoder.Vocoder`` (the stream's other
per-frame cost). Candidates alternate frame by frame, so a load change on the shared CPU hits
all of them alike; medians are reported. The stream keeps up at a real-time factor >= 1 and
has headroom at >= 2 (5.12 s of audio per frame / seconds per frame, vocoder included).
Sampling: the ``builtin`` preset (``streamer.generate.presets``) at each ``--steps`` schedule length.

Usage: python benchmarks/builtin_model_speed.py [--frames N] [--threads N] [--steps 8,12]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch
from transformers import CLIPTokenizer

from streamer.audio.vocoder import Vocoder
from streamer.generate.generator import FrameGenerator
from streamer.generate.loading import StableDiffusionModel
from streamer.generate.request import FrameRequest, PromptBlend
from streamer.generate.tiny_model import (
    random_components,
    sd1_scheduler,
    write_clip_tokenizer,
)
from streamer.seeds.library import load_seed_loop
from streamer.spectrogram import SpectrogramParams
from streamer.generate.presets import preset_named  # noqa: E402
from streamer.training.architecture import CANDIDATES, parameter_counts

FRAME_SECONDS = 512 * 441 / 44100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3, help="timed frames per candidate")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--steps", default="12", help="comma-separated num_inference_steps")
    parser.add_argument("--candidates", default=",".join(CANDIDATES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.candidates.split(",")
    steps = [int(s) for s in args.steps.split(",")]
    seed = load_seed_loop("house_117").image()
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(folder))
    generators = {}
    for name in names:
        unet, vae, text = random_components(CANDIDATES[name], seed=0)
        model = StableDiffusionModel(
            *(part.to(torch.bfloat16).eval().requires_grad_(False) for part in (unet, vae, text)),
            tokenizer,
            dict(sd1_scheduler().config),
            torch.device("cpu"),
            torch.bfloat16,
            name,
        )
        for count in steps:
            preset = dataclasses.replace(preset_named("builtin"), num_inference_steps=count)
            generators[(name, count)] = FrameGenerator(model, preset, {"seed": seed})
    vocoder = Vocoder(SpectrogramParams())
    request = FrameRequest(PromptBlend.single("house beat, piano chords"), "seed", seed_a=1)
    for generator in generators.values():  # warm the caches and the allocator
        generator.generate([request])
    frame_s = {key: [] for key in generators}
    unet_s = {key: [] for key in generators}
    decode_s = {key: [] for key in generators}
    vocoder_s = []
    for _ in range(args.frames):
        for key, generator in generators.items():
            (frame,) = generator.generate([request])
            frame_s[key].append(frame.timings.total_s)
            unet_s[key].append(frame.timings.unet_s)
            decode_s[key].append(frame.timings.vae_decode_s)
        start = time.perf_counter()
        vocoder.vocode(frame.mel)
        vocoder_s.append(time.perf_counter() - start)
    vocode = statistics.median(vocoder_s)
    print(f"load average {os.getloadavg()}; threads {args.threads}; vocoder {vocode:.2f} s cold")
    print(
        "| candidate | steps (evals) | params UNet/VAE/text (M) | fp16 MB | UNet s | "
        "decode s | frame s | + vocoder s | stream RTF |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for (name, count), seconds in frame_s.items():
        counts = parameter_counts(CANDIDATES[name])
        total = statistics.median(seconds) + vocode
        evaluations = generators[(name, count)].preset.unet_evaluations()
        print(
            f"| {name} | {count} ({evaluations}x2) | "
            f"{counts['unet'] / 1e6:.1f}/{counts['vae'] / 1e6:.1f}/{counts['text_encoder'] / 1e6:.1f}"
            f" | {sum(counts.values()) * 2 / 1e6:.0f} | {statistics.median(unet_s[(name, count)]):.2f}"
            f" | {statistics.median(decode_s[(name, count)]):.2f}"
            f" | {statistics.median(seconds):.2f} | {total:.2f} | {FRAME_SECONDS / total:.2f}x |"
        )


if __name__ == "__main__":
    main()
