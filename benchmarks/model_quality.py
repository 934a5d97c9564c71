"""How good a music model is, on the held-out split of its data set: listen-free figures beside a
ceiling (the held-out renders themselves) and a floor (the random-weight tiny model).

- **Prompt adherence**: a small classifier of style and of lead instrument family, trained on the
  training split only (``quality_classifier.py``, cached per data set), labels frames generated
  from held-out captions: top-1 accuracy per style and overall, against chance (1 / classes;
  the held-out split has as many clips of each style). Goal for the built-in model: style
  accuracy at least 4x chance.
- **Distance to real renders**: the Fréchet distance between the classifier's penultimate-layer
  embeddings of generated frames and of the held-out renders (those whose captions were not
  prompts). It is biased upwards by small samples, so the ceiling is measured at the same
  sample size: the prompts' own renders against the same reference.
- **VAE round trip**: the prompts' own renders encoded and decoded by the model's VAE, scored
  like the frames: the best the model could do through its VAE, which tells what the VAE loses
  from what the UNet gets wrong.
- **Interpolation**: transitions between two styles made as the stream makes them
  (``streamer.generate.request.transition``: prompt blend, noise slerp between the keyframes'
  seeds), frames at evenly spaced alphas; the classifier's probability of the target style
  should rise with alpha: Spearman's rank correlation per transition (a flat score counts 0),
  the mean over the pairs.
- **Speed**: seconds per frame at the model's preset (the median over the frames generated here,
  one per batch as the stream makes them, warm caches), the vocoder's seconds per frame (warm
  starts, as in a stream) and the stream's real-time factor, 5.12 s / (frame + vocoder).
  ``builtin_model_speed.py`` compares architecture sizes at random weights; this is the model
  under test.

Frames are made the way ``streamer serve --model builtin`` makes them: the model loaded by
``FrameGenerator.load`` on the CPU in its default type, img2img from the stream's default seed
loop at the preset's denoising and guidance, fixed seeds: deterministic for a thread count. The
same seed loop for every prompt, so a style the classifier finds came from the prompt.

A few A -> B transitions are also written to ``artifacts/model_quality/`` (WAV, joined by the
stream's stitcher, and the frames' spectrograms side by side as PNG): listen to them.

``--quick`` is a smoke test of the machinery, not a quality figure: 1 frame per style and 2
transitions, a judge trained on 1200 clips. With the judge cached it took 53 s on idle cores and
69-79 s on 2 cores shared with a training run (load 3.5-4), four fifths of it making frames; a
cold judge adds about 20 s. The full run: 363 s under that load with the judge cached,
about 500 s cold (benchmarks/RESULTS.md).

``--smoke`` (seconds) runs every line of it on whatever small data set and model it is given
(the tests: a few synthetic clips, the tiny model): 1 frame per style, 1 transition of 2
frames, a judge trained for one epoch.

Usage: python benchmarks/model_quality.py [--quick | --smoke] [--data DIR] [--model builtin|FOLDER]
       [--steps N] [--denoising D] [--guidance G] [--decoder auto|full|light]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np
import quality_classifier
import soundfile
import torch
from PIL import Image
from scipy import linalg, stats

from streamer.audio.loudness import LoudnessConfig, mix_limiter, normalised_frame
from streamer.audio.stitcher import AudioFrame, Stitcher
from streamer.audio.vocoder import Vocoder
from streamer.errors import UserError
from streamer.generate.config import BUILTIN_MODEL, DECODERS, GeneratorConfig
from streamer.generate.generator import FrameGenerator, GeneratedFrame
from streamer.generate.request import FrameRequest, Keyframe, PromptBlend, transition
from streamer.generate.tiny_model import build_tiny_model
from streamer.plan.settings import StreamSettings
from streamer.runtime.assemble import frame_seconds
from streamer.runtime.diffusion_maker import seed_loop_image
from streamer.seeds.library import load_seed_loop
from streamer.spectrogram import SpectrogramParams
from streamer.training.dataset import ClipRecord, read_split

#: The data set unless ``--data`` names another: where ``MAKE_DATASET`` (run from the repository
#: root) puts it.
DEFAULT_DATA = REPO / "data" / "builtin-v1"
MAKE_DATASET = "streamer make-dataset data/builtin-v1 --clips 6000 --seed 0"
#: Transitions go from style k to style k + this (mod the styles): coprime with 12, so 12
#: transitions visit every style once as a start and once as an end, each pair different.
PAIR_STRIDE = 5


@dataclasses.dataclass(frozen=True)
class Size:
    """How many frames a run generates per model."""

    frames_per_style: int
    pairs: int
    alphas: int
    renders: int
    judge: quality_classifier.ClassifierConfig


FULL = Size(4, 12, 5, 3, quality_classifier.ClassifierConfig())
QUICK = Size(1, 2, 3, 1, quality_classifier.ClassifierConfig(epochs=4, clips=1200))
SMOKE = Size(1, 1, 2, 1, quality_classifier.ClassifierConfig(epochs=1))


@dataclasses.dataclass
class Made:
    """What one model made: adherence frames, then the transitions' frames (pair by pair)."""

    adherence: list[GeneratedFrame]
    transitions: list[list[GeneratedFrame]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke test: few frames (< 60 s)")
    parser.add_argument(
        "--smoke", action="store_true", help="the least of everything: that it runs (tests)"
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA,
        help=f"the data set folder (default: {DEFAULT_DATA.relative_to(REPO)} in the repository)",
    )
    parser.add_argument(
        "--model", default=BUILTIN_MODEL,
        help="the model under test: builtin (the shipped one) or a diffusers folder (RUN/model)",
    )
    parser.add_argument("--preset", default="builtin", help="sampling preset (default builtin)")
    parser.add_argument(
        "--denoising", type=float, help="the frames' denoising, 0..1 (default: the preset's)"
    )
    parser.add_argument(
        "--guidance", type=float, help="the frames' guidance scale (default: the preset's)"
    )
    parser.add_argument(
        "--steps", type=int, help="the schedule's steps (default: the preset's; the frames run "
        "the last denoising x steps of them)"
    )
    parser.add_argument(
        "--guidance-until", type=int, metavar="TIMESTEP",
        help="guidance only on steps at or above this timestep (default: the preset's)",
    )
    parser.add_argument(
        "--decoder", choices=DECODERS, default="auto",
        help="the decoder the frames are decoded with (default auto: as serve on a CPU)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument(
        "--artifacts", type=Path, default=REPO / "artifacts" / "model_quality",
        help="folder for the transition renders (WAV + PNG)",
    )
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    size = SMOKE if args.smoke else QUICK if args.quick else FULL
    torch.set_num_threads(args.threads)
    if not (args.data / "dataset.json").is_file():
        raise UserError(
            f"no data set at {args.data}: make it with `{MAKE_DATASET}` (about 35 minutes on "
            "2 cores) from the repository root, or pass --data DIR"
        )
    started = time.perf_counter()
    print(
        f"# model quality: model {args.model}, preset {args.preset} (steps "
        f"{_or_preset(args.steps)}, denoising {_or_preset(args.denoising)}, guidance "
        f"{_or_preset(args.guidance)} until timestep {_or_preset(args.guidance_until)}), "
        f"decoder {args.decoder}, data {args.data}, "
        f"threads {args.threads}, load average at start {_load()}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as folder:  # models first: a missing one fails at once
        models = {"model": args.model, "floor": str(build_tiny_model(Path(folder) / "tiny"))}
        generators = {
            name: load(
                model, args.preset, args.steps, args.guidance_until,
                args.decoder if name == "model" else "auto",  # the floor has no light decoder
            )
            for name, model in models.items()
        }
    judge, summary = quality_classifier.load_or_train(args.data, size.judge)
    print(f"# judge: {'cached' if summary['cached'] else 'trained'} on {summary['clips']} "
          f"clips in {summary['seconds']} s, final loss {summary['final_loss']}", flush=True)
    test = read_split(args.data, "test")
    ceiling = judge.score(quality_classifier.split_pictures(test))
    styles = judge.labels.styles
    prompts = adherence_clips(test.records, styles, size.frames_per_style)
    # Fréchet distances are to the held-out renders other than the prompts' own clips, so that
    # the prompts' renders (the ceiling) and their VAE round trips are measured like the frames.
    prompted = np.array([record in prompts for record in test.records])
    reference = ceiling.embeddings[~prompted]
    pairs = [(styles[k], styles[(k + PAIR_STRIDE) % len(styles)]) for k in range(size.pairs)]
    captions = {style: first_ensemble_caption(test.records, style) for style in styles}
    alphas = np.linspace(0.0, 1.0, size.alphas)

    made = {
        name: make_frames(
            name, generator, prompts, pairs, captions, size.alphas, args.denoising, args.guidance
        )
        for name, generator in generators.items()
    }
    round_trips = vae_round_trips(generators["model"], [test.image_path(r) for r in prompts])

    def classes(records: list[ClipRecord] | tuple[ClipRecord, ...]) -> tuple[np.ndarray, ...]:
        return (
            np.array([styles.index(r.labels["style"]) for r in records]),
            np.array([judge.labels.families.index(r.labels["lead_family"]) for r in records]),
        )

    def row(scores: quality_classifier.Scores, truth: tuple[np.ndarray, ...]) -> dict:
        return {
            "style": scores.style_probabilities.argmax(1) == truth[0],
            "styles_true": truth[0],
            "family": scores.family_probabilities.argmax(1) == truth[1],
            "fid": frechet_distance(scores.embeddings, reference),
            "predicted": np.bincount(scores.style_probabilities.argmax(1), minlength=len(styles)),
        }

    rows = {"ceiling": row(ceiling, classes(test.records))}
    rows["ceiling"]["fid"] = frechet_distance(ceiling.embeddings[prompted], reference)
    rows["vae"] = row(judge.score(np.stack([quality_classifier.picture(i) for i in round_trips])),
                      classes(prompts))
    for name, frames in made.items():
        pictures = np.stack([quality_classifier.picture(f.image) for f in frames.adherence])
        rows[name] = {
            **row(judge.score(pictures), classes(prompts)),
            **interpolation(judge, frames.transitions, pairs, alphas),
        }
    vocoded = write_renders(made["model"].transitions[: size.renders], pairs, args.artifacts)
    speed = {
        name: statistics.median(f.timings.total_s for f in frames.adherence)
        for name, frames in made.items()
    }
    vocoder_s = statistics.median(vocoded)
    report(rows, styles, len(judge.labels.families), speed, vocoder_s, len(pairs), size)
    print(f"# renders in {args.artifacts}; wall time {time.perf_counter() - started:.0f} s, "
          f"load average at end {_load()}")
    chance = 1 / len(styles)
    model = rows["model"]
    rtf = frame_seconds(SpectrogramParams()) / (speed["model"] + vocoder_s)
    print(
        "RESULT model_quality "
        f"style_acc={model['style'].mean():.3f} style_x_chance={model['style'].mean() / chance:.2f} "
        f"family_acc={model['family'].mean():.3f} fid={model['fid']:.2f} "
        f"interp_spearman={model['spearman']:.3f} s_per_frame={speed['model']:.2f} "
        f"stream_rtf={rtf:.2f} ceiling_style_acc={rows['ceiling']['style'].mean():.3f} "
        f"ceiling_fid={rows['ceiling']['fid']:.2f} floor_style_acc={rows['floor']['style'].mean():.3f} "
        f"floor_fid={rows['floor']['fid']:.2f} floor_interp_spearman={rows['floor']['spearman']:.3f} "
        f"vae_style_acc={rows['vae']['style'].mean():.3f} vae_fid={rows['vae']['fid']:.2f}"
    )
    return 0


# --- what is generated -------------------------------------------------------------------------


def adherence_clips(
    records: tuple[ClipRecord, ...], styles: tuple[str, ...], per_style: int
) -> list[ClipRecord]:
    """The first ``per_style`` clips of each style, in file order: the same prompts every run."""
    chosen = []
    for style in styles:
        chosen += [r for r in records if r.labels["style"] == style][:per_style]
    return chosen


def first_ensemble_caption(records: tuple[ClipRecord, ...], style: str) -> str:
    """A full caption of a style (band, lead, mode, feel): a transition's keyframe prompt."""
    return next(
        r.caption for r in records if r.labels["style"] == style and r.labels["kind"] == "ensemble"
    )


def _or_preset(value: float | int | None) -> str:
    return "the preset's" if value is None else f"{value:g}"


def load(
    model: str,
    preset: str,
    steps: int | None = None,
    guidance_until: int | None = None,
    decoder: str = "auto",
) -> FrameGenerator:
    """A model as ``serve`` loads it, on the CPU in its default type (no network); ``steps``,
    ``guidance_until`` and ``decoder`` override the preset's and the default decoder, as
    ``--steps``, ``--guidance-until`` and ``--decoder`` do for ``serve``."""
    config = GeneratorConfig(
        model=model, device="cpu", preset=preset, num_inference_steps=steps,
        guidance_until_timestep=guidance_until, offline=True, decoder=decoder,
    )
    return FrameGenerator.load(config, seed_loop_image)


def make_frames(
    name: str,
    generator: FrameGenerator,
    prompts: list[ClipRecord],
    pairs: list[tuple[str, str]],
    captions: dict[str, str],
    alphas: int,
    denoising: float | None,
    guidance: float | None,
) -> Made:
    """Adherence frames (a held-out caption each) and transitions, one frame per batch, at the
    preset's denoising and guidance unless the command line gives them."""
    seed_loop = StreamSettings().seed_loop
    denoising = generator.preset.denoising if denoising is None else denoising
    guidance = generator.preset.guidance if guidance is None else guidance
    requests = [
        FrameRequest(
            PromptBlend.single(record.caption),
            seed_loop,
            seed_a=1000 + k,
            denoising=denoising,
            guidance=guidance,
        )
        for k, record in enumerate(prompts)
    ]
    transitions = [
        transition(
            Keyframe.of(captions[start], 2000 + k, denoising, guidance),
            Keyframe.of(captions[end], 3000 + k, denoising, guidance),
            alphas,
            seed_loop,
        )
        for k, (start, end) in enumerate(pairs)
    ]
    started = time.perf_counter()
    total = len(requests) + sum(len(t) for t in transitions)
    done = 0

    def one_by_one(batch: list[FrameRequest]) -> list[GeneratedFrame]:
        nonlocal done
        frames = []
        for request in batch:
            frames += generator.generate([request])
            done += 1
        print(f"# {name}: {done}/{total} frames, {time.perf_counter() - started:.0f} s",
              flush=True)
        return frames

    return Made(one_by_one(requests), [one_by_one(t) for t in transitions])


def vae_round_trips(generator: FrameGenerator, renders: list[Path]) -> list[Image.Image]:
    """Renders encoded by the model's VAE and decoded by the decoder the frames use: what the
    model could at best make of them. Scored beside the frames, it tells what the VAE (and the
    light decoder, where it decodes) loses from what the UNet gets wrong."""
    vae, trips = generator.model.vae, []
    with torch.inference_mode():
        for path in renders:
            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"), dtype=np.float32)
            pixels = torch.from_numpy(array / 127.5 - 1.0)
            pixels = pixels.permute(2, 0, 1)[None].to(generator.model.dtype)
            decoded = generator.decoder(vae.encode(pixels).latent_dist.mode())[0].float()
            array = ((decoded.permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).round()
            trips.append(Image.fromarray(array.to(torch.uint8).numpy(), mode="RGB"))
    return trips


# --- the measures (pure) -----------------------------------------------------------------------


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of embeddings (rows)."""
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # fewer frames than dimensions: a singular product
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
    if np.iscomplexobj(root):
        root = root.real  # rounding leaves tiny imaginary parts on a near-singular product
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def rank_correlation(alphas: np.ndarray, scores: np.ndarray) -> float:
    """Spearman's rho of scores against alpha; scores that do not change at all count 0."""
    if np.ptp(scores) == 0:
        return 0.0
    return float(stats.spearmanr(alphas, scores).statistic)


def interpolation(
    judge: quality_classifier.Judge,
    transitions: list[list[GeneratedFrame]],
    pairs: list[tuple[str, str]],
    alphas: np.ndarray,
) -> dict:
    """Per transition: the target style's probability at each alpha and its rank correlation."""
    target_probability = []
    for frames, (_, end) in zip(transitions, pairs):
        scores = judge.score(np.stack([quality_classifier.picture(f.image) for f in frames]))
        target_probability.append(scores.style_probabilities[:, judge.labels.styles.index(end)])
    rhos = [rank_correlation(alphas, p) for p in target_probability]
    return {
        "spearman": float(np.mean(rhos)),
        "rhos": rhos,
        "target_at_ends": (
            float(np.mean([p[0] for p in target_probability])),
            float(np.mean([p[-1] for p in target_probability])),
        ),
    }


# --- output ------------------------------------------------------------------------------------


def write_renders(
    transitions: list[list[GeneratedFrame]], pairs: list[tuple[str, str]], folder: Path
) -> list[float]:
    """Each transition as the stream plays it (vocoded with warm starts, each frame levelled to
    the stream's loudness, joined by the stitcher, every frame heard once, the stream's limiter
    on the mix) to WAV, and its frames side by side to PNG. Returns the vocoder's seconds per
    frame."""
    folder.mkdir(parents=True, exist_ok=True)
    params = SpectrogramParams()
    vocoder = Vocoder(params)
    loudness = LoudnessConfig()
    beats = load_seed_loop(StreamSettings().seed_loop).beats
    seconds = []
    for number, (frames, (start, end)) in enumerate(zip(transitions, pairs), 1):
        stitcher = Stitcher()
        previous = None
        for frame_id, frame in enumerate(frames):
            began = time.perf_counter()
            previous = vocoder.vocode(frame.mel, previous)
            seconds.append(time.perf_counter() - began)
            levelled = normalised_frame(previous.samples, params.sample_rate, loudness)
            stitcher.push(AudioFrame(frame_id, levelled, beats))
        audio = stitcher.render(len(frames) * previous.samples.shape[1]).samples
        limiter = mix_limiter(loudness, params.sample_rate, audio.shape[0])
        delay = limiter.latency_samples  # flushed through, then cut: the WAV starts on time
        audio = limiter.process(np.pad(audio, ((0, 0), (0, delay))))[:, delay:]
        stem = folder / f"transition-{number:02d}-{start}-to-{end}"
        soundfile.write(stem.with_suffix(".wav"), audio.T, params.sample_rate, subtype="PCM_16")
        strip = Image.new("RGB", (sum(f.image.width for f in frames), frames[0].image.height))
        for k, frame in enumerate(frames):
            strip.paste(frame.image, (k * frame.image.width, 0))
        strip.save(stem.with_suffix(".png"))
    return seconds


def report(
    rows: dict, styles: tuple[str, ...], families: int, speed: dict, vocoder_s: float,
    pairs: int, size: Size,
) -> None:
    chance = 1 / len(styles)
    names = ("ceiling", "vae", "model", "floor")
    print(f"\nstyle top-1 accuracy per style (ceiling: all held-out renders, 50 a style; VAE "
          f"round trip, model and floor: {size.frames_per_style} a style, the held-out clips "
          "whose captions prompt the model)\n")
    print("| style | ceiling | VAE round trip | model | floor | model's frames called this style |")
    print("|---|---:|---:|---:|---:|---:|")
    for k, style in enumerate(styles):
        cells = [rows[n]["style"][rows[n]["styles_true"] == k].mean() for n in names]
        print(f"| {style} | " + " | ".join(f"{c:.2f}" for c in cells)
              + f" | {rows['model']['predicted'][k]} |")
    print("\n| measure | ceiling (held-out renders) | VAE round trip | model | "
          "floor (random tiny model) | chance |")
    print("|---|---:|---:|---:|---:|---:|")
    style = {n: rows[n]["style"].mean() for n in names}
    print("| style top-1 | " + " | ".join(f"{style[n]:.3f}" for n in names) + f" | {chance:.3f} |")
    print("| style, x chance (goal >= 4) | "
          + " | ".join(f"{style[n] / chance:.1f}x" for n in names) + " | 1x |")
    print("| lead family top-1 | " + " | ".join(f"{rows[n]['family'].mean():.3f}" for n in names)
          + f" | {1 / families:.3f} |")
    print("| Fréchet distance to held-out renders | "
          + " | ".join(f"{rows[n]['fid']:.2f}" for n in names) + " | |")
    print(f"| interpolation: Spearman rho, mean of {pairs} transitions | | | "
          + " | ".join(f"{rows[n]['spearman']:.3f}" for n in ("model", "floor")) + " | 0 |")
    print("| p(target style) at alpha 0 -> 1 | | | "
          + " | ".join("{:.2f} -> {:.2f}".format(*rows[n]["target_at_ends"])
                       for n in ("model", "floor")) + f" | {chance:.2f} |")
    print("| seconds per frame (batch 1, warm) | | | "
          + " | ".join(f"{speed[n]:.2f}" for n in ("model", "floor")) + " | |")
    rtf = frame_seconds(SpectrogramParams()) / (speed["model"] + vocoder_s)
    print(f"| stream real-time factor (+ vocoder {vocoder_s:.2f} s) | | | {rtf:.2f}x | | |")
    print("\nper-transition rho (model): "
          + ", ".join(f"{r:+.2f}" for r in rows["model"]["rhos"]))


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
