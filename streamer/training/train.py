"""Training the built-in model from a data set folder, in two stages, resumable at any step.

Stage ``vae``: the KL autoencoder alone, on random square crops of the spectrogram images (it is
fully convolutional, so a crop teaches it what a whole image does, at a fraction of the cost).
Loss: L1 on pixels plus a small KL term that keeps the latent a near-Gaussian the UNet can model.

Stage ``unet``: the UNet and the text encoder together (from scratch is fine: the captions are
templated plain words), on latents the frozen VAE encoded once and cached in the run folder
(a UNet step then never touches a 512x512 image). Epsilon prediction on SD 1.x's noise schedule,
weighted by min-SNR (gamma 5; Hang et al., 2023: the same quality in about a third of the steps;
the SNR is diffusers' ``compute_snr``), the caption dropped to "" for a tenth of the rows so
classifier-free guidance works (the stream's negative prompt defaults to ""), and an exponential
moving average of the trained weights (diffusers' ``EMAModel``), which is what gets exported.
Before caching, the VAE's ``scaling_factor`` is set to one over the latents' standard deviation,
so the UNet sees unit-variance latents, as SD's 0.18215 does for SD.

Stage ``guidance`` (run apart, on a trained model: ``--stage guidance --init MODEL``): guidance
distillation. A student UNet (streamer.generate.guidance: the teacher's weights plus a guidance
embedding whose projection starts at zero, so it starts as the teacher's conditional
prediction) learns in one row what classifier-free guidance makes of the teacher's two, at a
guidance scale ``w`` drawn uniformly from ``guidance_scale_range`` and told to the student:
on the cached training latents noised to a random timestep, the loss is the mean squared
error between the student's prediction and the teacher's ``eps_u + w (eps_c - eps_u)``
(computed without gradients, with the caption and with the empty caption the student is
distilled against). The text encoder and VAE stay the teacher's; the student's moving average
is exported, as in stage ``unet``. The stream then makes a guided frame in one UNet row.

Stage ``decoder`` (run apart, on a trained model: ``--stage decoder --init MODEL``): the light
decoder (streamer.generate.light_decoder) learns to give the model's VAE decoder's pixels. On
random crops of the training images, as in stage ``vae`` (both decoders are convolutional), the
frozen VAE encodes a crop, a latent is drawn from its posterior (so the student also sees
latents a little off the means, as the UNet's are) and the loss is the L1 distance between the
student's pixels and the VAE decoder's from that latent, plus ``decoder_corner_weight`` times
that distance over the pixels of the crop's bottom-right latent cell alone. That one cell is
unlike every other: the VAE's encoder pads only the right and bottom edges when it halves the
image, so the last cell of a latent holds values found nowhere else, and counted like the
others (one pixel in 4096 of a frame) the student never learnt it: it decoded the frame's last
80 ms of its lowest bins 12-17 levels off, up to full loudness (benchmarks/RESULTS.md). Its moving average is exported to
RUN/model/light_decoder/; the rest of the model folder stays the teacher's.

The run folder::

    RUN/checkpoint/vae.pt, unet.pt,  weights, optimizer, step, RNG states (atomic writes)
        guidance.pt, decoder.pt
    RUN/latents-vae<step>-<clips>.pt the cached latents of the VAE at that step, of those clips
    RUN/log.jsonl                    {"stage", "step", "loss", "lr", "seconds"} per logged step
    RUN/model/                       a diffusers folder in fp16: `streamer serve --model RUN/model`

A checkpoint is written every ``checkpoint_every_steps``, at a stage's end and on Ctrl-C or
SIGTERM; ``resume`` continues from it exactly (same batches, same noise). Every checkpoint also
exports RUN/model/.

User audio is not read here: a folder of audio is first converted into a data set folder (the
same layout as `streamer make-dataset`'s, see streamer/training/dataset.py), then trained on
with ``init`` set to the built-in model: that is fine-tuning.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from streamer.errors import UserError
from streamer.generate.autoencoder import LIGHT_DECODER_FOLDER
from streamer.generate.guidance import (
    classifier_free_guidance,
    guidance_embedding,
    student_from_teacher,
)
from streamer.generate.light_decoder import LightDecoder, light_decoder_for
from streamer.generate.tiny_model import (
    Architecture,
    random_components,
    write_model_folder,
)
from streamer.training.architecture import ARCHITECTURES
from streamer.training.config import STAGES, TrainConfig
from streamer.training.dataset import METADATA_FILE, read_split


def train(
    data: str | Path,
    run_dir: str | Path,
    config: TrainConfig,
    resume: bool = False,
    report: Callable[[str], None] = print,
) -> Path:
    """Train ``config.stages`` in order on the data set at ``data``; returns RUN/model."""
    run = _Run(Path(data), Path(run_dir), config, report)
    if config.threads:
        torch.set_num_threads(config.threads)
    with _stop_requests() as stop:
        run.stop = stop
        trainers = {
            "vae": run.train_vae,
            "unet": run.train_unet,
            "guidance": run.train_guidance,
            "decoder": run.train_decoder,
        }
        for stage in config.stages:
            trainers[stage](resume)
    return run.model_dir


def resolve_init(init: str) -> str | None:
    """The folder ``--init`` names: None for "none", the package's built-in model folder for
    "builtin" (streamer/generate/builtin/), else the given exported model folder."""
    if init == "none":
        return None
    if init == "builtin":
        from streamer.generate.loading import builtin_model_folder

        folder = builtin_model_folder()
    else:
        folder = Path(init).expanduser()
    if not (folder / "model_index.json").is_file():
        raise UserError(
            f"--init {init}: {folder} is not an exported model folder (no model_index.json); "
            "give a run's RUN_DIR/model, builtin, or none"
        )
    return str(folder)


# --- pure pieces -------------------------------------------------------------------------------


def learning_rate(step: int, peak: float, warmup_steps: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup_steps``, then constant.

    Hand-written rather than diffusers' ``get_constant_schedule_with_warmup``: a function of the
    step needs no state in the checkpoint, so every run folder already on disk resumes as it
    was, with the same learning rates.
    """
    return peak * min(1.0, (step + 1) / max(1, warmup_steps))


def min_snr_weights(noise_schedule, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-row loss weights min(SNR, gamma) / SNR for epsilon prediction (Hang et al., 2023)."""
    from diffusers.training_utils import compute_snr

    snr = compute_snr(noise_schedule, timesteps)
    return torch.clamp(snr, max=gamma) / snr


def random_crops(images: list[np.ndarray], side: int, rng: np.random.Generator) -> np.ndarray:
    """A ``side`` x ``side`` crop at a random position of each (H, W) image, stacked.

    Every pixel is in a crop equally often, the image's edges included: a crop's corner is drawn
    from ``side - 1`` pixels before the image to its last pixel, then moved inside. Drawn only
    among the positions inside, a 128-pixel crop of a 512-pixel image would hold its last row
    (the spectrogram's lowest mel bin) 18x less often than a middle row: a light decoder trained
    so put loud sub-bass in the last columns' lowest bins, which the image edge holds.
    """
    crops = []
    for image in images:
        top, left = (
            int(np.clip(rng.integers(1 - side, length), 0, length - side))
            for length in image.shape[:2]
        )
        crops.append(image[top : top + side, left : left + side])
    return np.stack(crops)


def to_pixels(gray: np.ndarray) -> torch.Tensor:
    """(N, H, W) uint8 spectrogram images as (N, 3, H, W) floats in [-1, 1], the VAE's input
    (the images are grey: R = G = B, as the generator's seed images are)."""
    pixels = torch.from_numpy(gray.astype(np.float32) / 127.5 - 1.0)
    return pixels[:, None].expand(-1, 3, -1, -1).contiguous()


#: Pixels of a latent cell of SD's VAE (three halvings).
_CELL = 8


# --- the run -------------------------------------------------------------------------------------


class _Average:
    """The exponential moving average of trained parts (diffusers' ``EMAModel``), held in copies
    of the parts: what the model folder gets.

    Its checkpoint is the copies' weights and the step, nothing more: the average of step ``n``
    is exactly the copies' weights after step ``n``, and the EMA's decay follows from the step,
    so a resumed run averages as an uninterrupted one does.
    """

    def __init__(self, parts: dict[str, torch.nn.Module], decay: float) -> None:
        from diffusers.training_utils import EMAModel

        self.copies = {
            name: copy.deepcopy(part).requires_grad_(False) for name, part in parts.items()
        }
        # Only what is trained is averaged (a frozen parameter's copy is already its value).
        pairs = [
            (live, averaged)
            for name, part in parts.items()
            for live, averaged in zip(part.parameters(), self.copies[name].parameters())
            if live.requires_grad
        ]
        self._trained = [live for live, _ in pairs]
        self._averaged = [averaged for _, averaged in pairs]
        self._ema = EMAModel(self._averaged, decay=decay)

    def update(self) -> None:
        """Move the average towards the parts' weights after an optimizer step."""
        self._ema.step(self._trained)

    def state(self) -> dict[str, dict]:
        """The averaged weights by part, written into the copies first."""
        self._ema.copy_to(self._averaged)
        return {name: part.state_dict() for name, part in self.copies.items()}

    def resume(self, state: dict[str, dict], step: int) -> None:
        """Continue from the averaged weights ``state`` (by part) of step ``step``."""
        for name, part in self.copies.items():
            part.load_state_dict(state[name])
        averaged = [parameter.detach() for parameter in self._averaged]
        self._ema.load_state_dict(
            {**self._ema.state_dict(), "optimization_step": step, "shadow_params": averaged}
        )


@dataclasses.dataclass
class _Stage:
    """One training stage as the shared loop runs, checkpoints and resumes it.

    ``parts`` are trained in place by ``optimizer``; ``loss(step)`` draws the next batch from
    ``rng`` (and torch's generator) and returns its loss; ``average``, when there is one, is what
    the model folder gets instead of the parts themselves.
    """

    name: str
    steps: int
    peak_learning_rate: float
    parts: dict[str, torch.nn.Module]
    optimizer: torch.optim.Optimizer
    rng: np.random.Generator
    loss: Callable[[int], torch.Tensor]
    average: _Average | None = None
    step: int = 0

    def exported(self) -> dict[str, dict]:
        """The weights the model folder gets, by part."""
        if self.average is not None:
            return self.average.state()
        return {name: part.state_dict() for name, part in self.parts.items()}


class _Run:
    """One training run's state on disk and in memory: the shell around the pure pieces."""

    def __init__(self, data: Path, run_dir: Path, config: TrainConfig, report) -> None:
        self.data, self.dir, self.config, self.report = data, run_dir, config, report
        self.dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_dir = self.dir / "checkpoint"
        self.model_dir = self.dir / "model"
        self.device = torch.device(config.device)
        self.stop = _StopRequest()
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda was asked for but torch sees no CUDA device")
        self.bf16 = config.precision == "bf16" and self._bf16_is_native()
        self.unet, self.vae, self.text_encoder = self._initial_parts()
        self.light_decoder = self._initial_light_decoder()

    def _bf16_is_native(self) -> bool:
        """Whether bf16 autocast pays here: on CUDA, or on a CPU with native bf16. Elsewhere it
        is emulated, far slower than fp32 (streamer.generate.compute_type), so fp32 it is."""
        if self.device.type == "cuda":
            return True
        from streamer.generate.compute_type import cpu_facts

        facts = cpu_facts()
        if not facts.native_bf16:
            self.report(f"bf16 is not native on this CPU ({facts.describe()}): training in fp32")
        return facts.native_bf16

    # --- parts, checkpoints and exports ----------------------------------------------------

    def _initial_parts(self):
        """Parts from ``init`` (an exported folder), else random; each stage's checkpoint, if
        any, then overrides its parts, so later stages build on earlier ones."""
        if self.config.init:
            unet, vae, text_encoder = _load_folder_parts(self.config.init)
        else:
            architecture: Architecture = ARCHITECTURES[self.config.architecture]
            unet, vae, text_encoder = random_components(architecture, seed=self.config.seed)
        for stage, parts in (
            ("vae", {"vae": vae}),
            ("unet", {"unet": unet, "text_encoder": text_encoder}),
        ):
            path = self.checkpoint_dir / f"{stage}.pt"
            if path.is_file():
                state = torch.load(path, map_location="cpu", weights_only=False)
                for name, part in parts.items():
                    part.load_state_dict(state["export"][name])
        return unet.float(), vae.float(), text_encoder.float()

    def _initial_light_decoder(self) -> LightDecoder | None:
        """This run's light decoder (its ``decoder`` checkpoint), else ``init``'s, else none:
        an export keeps the model's light decoder whichever stage wrote it."""
        path = self.checkpoint_dir / "decoder.pt"
        if path.is_file():
            state = torch.load(path, map_location="cpu", weights_only=False)
            decoder = LightDecoder.from_config(state["light_decoder_config"])
            decoder.load_state_dict(state["export"]["light_decoder"])
            return decoder.float()
        folder = Path(self.config.init) / LIGHT_DECODER_FOLDER if self.config.init else None
        if folder is not None and folder.is_dir():
            return LightDecoder.from_pretrained(folder).float()
        return None

    def _save(self, stage: str, state: dict) -> None:
        """Write a stage's checkpoint atomically, then export the model folder."""
        self.checkpoint_dir.mkdir(exist_ok=True)
        path = self.checkpoint_dir / f"{stage}.pt"
        temporary = path.with_suffix(".pt.tmp")
        torch.save(state, temporary)
        os.replace(temporary, path)
        self._export()

    def _export(self) -> None:
        """RUN/model/ in fp16, written aside then swapped in by renames: a reader never finds a
        half-written folder (at worst, for an instant, none)."""
        parts = [copy.deepcopy(part).cpu() for part in (self.unet, self.vae, self.text_encoder)]
        staging = self.dir / "model.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        write_model_folder(staging, *parts, dtype=torch.float16)
        if self.light_decoder is not None:
            light = copy.deepcopy(self.light_decoder).cpu()
            torch.nn.Module.to(light, dtype=torch.float16)  # diffusers' override warns here
            light.save_pretrained(staging / LIGHT_DECODER_FOLDER, safe_serialization=True)
        old = self.dir / "model.old"
        shutil.rmtree(old, ignore_errors=True)
        if self.model_dir.exists():
            os.replace(self.model_dir, old)
        os.replace(staging, self.model_dir)
        shutil.rmtree(old, ignore_errors=True)

    def _log(
        self, stage: str, step: int, total: int, loss: float, lr: float, started: float
    ) -> None:
        seconds = time.monotonic() - started
        entry = {
            "stage": stage,
            "step": step,
            "loss": round(loss, 6),
            "lr": lr,
            "seconds": round(seconds, 1),
        }
        with open(self.dir / "log.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps(entry) + "\n")
        self.report(f"{stage} step {step}/{total}  loss {loss:.4f}  lr {lr:.2e}  {seconds:.0f} s")

    def _autocast(self):
        if not self.bf16:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # --- stage 1: the VAE --------------------------------------------------------------------

    def train_vae(self, resume: bool) -> None:
        config = self.config
        vae = self.vae.to(self.device).train().requires_grad_(True)
        optimizer = torch.optim.AdamW(
            vae.parameters(), lr=config.vae_learning_rate, weight_decay=0.0
        )
        rng = np.random.default_rng([config.seed, 1])
        pool = _ImagePool(self.data)

        def loss(step: int) -> torch.Tensor:
            pixels = pool.crops(config.vae_batch_size, config.vae_crop_pixels, rng, step)
            pixels = pixels.to(self.device)
            with self._autocast():
                posterior = vae.encode(pixels).latent_dist
                reconstruction = vae.decode(posterior.sample()).sample
            l1 = (reconstruction.float() - pixels).abs().mean()
            kl = posterior.kl().mean() / pixels[0].numel()
            return l1 + config.vae_kl_weight * kl

        stage = _Stage(
            "vae", config.vae_steps, config.vae_learning_rate, {"vae": vae}, optimizer, rng, loss
        )
        self._resume(stage, resume)
        self._loop(stage)
        self.vae = vae.eval().requires_grad_(False)

    # --- stage 2: UNet and text encoder --------------------------------------------------------

    def train_unet(self, resume: bool) -> None:
        from diffusers import DDPMScheduler

        from streamer.generate.tiny_model import sd1_scheduler

        config = self.config
        latents, tokens, empty = self._latents_and_tokens()
        unet = self.unet.to(self.device).train().requires_grad_(True)
        text_encoder = self.text_encoder.to(self.device).train().requires_grad_(True)
        # CLIP's token table (49408 rows, most of the encoder) stays as initialised: captions use
        # a few hundred tokens, a fixed random code per token serves as well, and Adam and the
        # EMA then skip 12.6M parameters that would barely move.
        text_encoder.get_input_embeddings().requires_grad_(False)
        trained = {"unet": unet, "text_encoder": text_encoder}
        parameters = [p for part in trained.values() for p in part.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=config.unet_learning_rate, weight_decay=0.0)
        rng = np.random.default_rng([config.seed, 2])
        noise_schedule = DDPMScheduler.from_config(sd1_scheduler().config)
        steps_total = noise_schedule.config.num_train_timesteps
        tokens, empty = tokens.to(self.device), empty.to(self.device)

        def loss(step: int) -> torch.Tensor:
            rows = rng.integers(0, len(latents), config.unet_batch_size)
            clean = latents[torch.from_numpy(rows)].to(self.device, torch.float32)
            text = tokens[torch.from_numpy(rows).to(self.device)].clone()
            dropped = torch.from_numpy(rng.random(len(rows)) < config.caption_drop_fraction)
            text[dropped.to(self.device)] = empty
            noise = torch.randn_like(clean)
            timesteps = torch.randint(0, steps_total, (len(rows),), device=self.device)
            noisy = noise_schedule.add_noise(clean, noise, timesteps)
            with self._autocast():
                hidden = text_encoder(text)[0]
                prediction = unet(noisy, timesteps, encoder_hidden_states=hidden).sample
            errors = ((prediction.float() - noise) ** 2).mean(dim=(1, 2, 3))
            weights = min_snr_weights(noise_schedule, timesteps, config.min_snr_gamma)
            return (errors * weights).mean()

        average = _Average(trained, config.ema_decay)
        stage = _Stage(
            "unet", config.unet_steps, config.unet_learning_rate, trained, optimizer, rng, loss,
            average,
        )
        self._resume(stage, resume)
        self.unet, self.text_encoder = average.copies["unet"], average.copies["text_encoder"]
        self._loop(stage)

    # --- stage 3: guidance distillation ---------------------------------------------------------

    def train_guidance(self, resume: bool) -> None:
        from diffusers import DDPMScheduler

        from streamer.generate.tiny_model import sd1_scheduler

        config = self.config
        if not config.init and not (self.checkpoint_dir / "unet.pt").is_file():
            raise UserError(
                "the guidance stage distils a trained model: give it with --init builtin or "
                "--init DIR, or train stage unet in this run folder first"
            )
        latents, tokens, empty = self._latents_and_tokens()
        teacher = self.unet.to(self.device).eval().requires_grad_(False)
        text_encoder = self.text_encoder.to(self.device).eval().requires_grad_(False)
        try:
            student = student_from_teacher(teacher)
        except ValueError as error:
            raise UserError(f"stage guidance: {error}") from None
        student = student.to(self.device).train().requires_grad_(True)
        optimizer = torch.optim.AdamW(
            student.parameters(), lr=config.guidance_learning_rate, weight_decay=0.0
        )
        rng = np.random.default_rng([config.seed, 3])
        noise_schedule = DDPMScheduler.from_config(sd1_scheduler().config)
        steps_total = noise_schedule.config.num_train_timesteps
        low, high = config.guidance_scale_range
        dim = student.config.time_cond_proj_dim
        tokens = tokens.to(self.device)
        with torch.no_grad(), self._autocast():
            unconditional = text_encoder(empty[None].to(self.device))[0]

        def loss(step: int) -> torch.Tensor:
            rows = torch.from_numpy(rng.integers(0, len(latents), config.guidance_batch_size))
            scales = torch.from_numpy(rng.uniform(low, high, len(rows))).float().to(self.device)
            clean = latents[rows].to(self.device, torch.float32)
            noise = torch.randn_like(clean)
            timesteps = torch.randint(0, steps_total, (len(rows),), device=self.device)
            noisy = noise_schedule.add_noise(clean, noise, timesteps)
            with torch.no_grad(), self._autocast():
                conditional = text_encoder(tokens[rows.to(self.device)])[0]
                both = teacher(
                    torch.cat([noisy, noisy]),
                    torch.cat([timesteps, timesteps]),
                    encoder_hidden_states=torch.cat(
                        [unconditional.expand_as(conditional), conditional]
                    ),
                ).sample.float()
            eps_u, eps_c = both.chunk(2)
            target = classifier_free_guidance(eps_u, eps_c, scales[:, None, None, None])
            with self._autocast():
                prediction = student(
                    noisy,
                    timesteps,
                    encoder_hidden_states=conditional,
                    timestep_cond=guidance_embedding(scales, dim).to(self.device),
                ).sample
            return ((prediction.float() - target) ** 2).mean()

        average = _Average({"unet": student}, config.ema_decay)
        stage = _Stage(
            "guidance", config.guidance_steps, config.guidance_learning_rate,
            {"unet": student}, optimizer, rng, loss, average,
        )
        self._resume(stage, resume)
        self.unet = average.copies["unet"]
        self._loop(stage)

    # --- stage 4: the light decoder -------------------------------------------------------------

    def train_decoder(self, resume: bool) -> None:
        config = self.config
        if not config.init and not (self.checkpoint_dir / "vae.pt").is_file():
            raise UserError(
                "the decoder stage distils a trained model's VAE decoder: give it with --init "
                "builtin or --init DIR, or train stage vae in this run folder first"
            )
        teacher = self.vae.to(self.device).eval().requires_grad_(False)
        with torch.random.fork_rng():  # the student's start depends on the seed alone
            torch.manual_seed(config.seed)
            student = light_decoder_for(teacher.config)
        student = student.to(self.device).train().requires_grad_(True)
        optimizer = torch.optim.AdamW(
            student.parameters(), lr=config.decoder_learning_rate, weight_decay=0.0
        )
        rng = np.random.default_rng([config.seed, 4])
        pool = _ImagePool(self.data)

        def loss(step: int) -> torch.Tensor:
            pixels = pool.crops(config.decoder_batch_size, config.decoder_crop_pixels, rng, step)
            pixels = pixels.to(self.device)
            with torch.no_grad(), self._autocast():
                latent = teacher.encode(pixels).latent_dist.sample()
                target = teacher.decode(latent).sample.float()
            with self._autocast():
                prediction = student(latent)
            error = (prediction.float() - target).abs()
            corner = error[..., -_CELL:, -_CELL:].mean()
            return error.mean() + config.decoder_corner_weight * corner

        average = _Average({"light_decoder": student}, config.ema_decay)
        stage = _Stage(
            "decoder", config.decoder_steps, config.decoder_learning_rate,
            {"light_decoder": student}, optimizer, rng, loss, average,
        )
        self._resume(stage, resume)
        self.light_decoder = average.copies["light_decoder"]
        self._loop(stage)

    # --- the training data ---------------------------------------------------------------------

    def _latents_and_tokens(self):
        """The training split's VAE latents (cached per VAE step) and caption tokens."""
        from transformers import CLIPTokenizer

        from streamer.generate.tiny_model import write_clip_tokenizer

        split = read_split(self.data, "train")
        if not len(split):
            raise UserError(f"{self.data}/train has no clips to train on")
        vae_step = _checkpoint_step(self.checkpoint_dir / "vae.pt")
        # Named by the VAE's step and the clips: a data set that grew, or a VAE trained further,
        # gets its latents encoded again; old caches are removed.
        clips = hashlib.sha1("\n".join(r.file_name for r in split).encode()).hexdigest()[:10]
        cache = self.dir / f"latents-vae{vae_step}-{clips}.pt"
        for stale in self.dir.glob("latents-*.pt"):
            if stale != cache:
                stale.unlink()
        if cache.is_file():
            stored = torch.load(cache, weights_only=False)
            latents, scaling = stored["latents"], stored["scaling_factor"]
        else:
            latents, scaling = self._encode(split)
            torch.save({"latents": latents, "scaling_factor": scaling}, cache)
        if vae_step == 0 and self.config.init:
            # Fine-tuning on an unchanged VAE: the UNet learnt its latents at the init's scale.
            scaling = float(self.vae.config.scaling_factor)
        self.vae.register_to_config(scaling_factor=scaling)
        tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(self.dir / "tokenizer"))

        def tokenize(texts: list[str]) -> torch.Tensor:
            return tokenizer(
                texts,
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids

        tokens = tokenize([record.caption for record in split])
        return latents * scaling, tokens, tokenize([""])[0]

    def _encode(self, split) -> tuple[torch.Tensor, float]:
        """Latent means of every training image (fp16, unscaled) and the scaling factor that
        gives them unit variance."""
        vae = self.vae.to(self.device).eval()
        means = []
        started = time.monotonic()
        with torch.no_grad():
            for index, record in enumerate(split):
                gray = _read_gray(split.image_path(record))
                with self._autocast():
                    mean = vae.encode(to_pixels(gray[None]).to(self.device)).latent_dist.mean
                means.append(mean.float().cpu().half())
                if (index + 1) % 250 == 0 or index + 1 == len(split):
                    elapsed = time.monotonic() - started
                    self.report(f"encoding latents {index + 1}/{len(split)}  {elapsed:.0f} s")
        latents = torch.cat(means)
        return latents, float(1.0 / latents.float().std())

    # --- the shared loop -----------------------------------------------------------------------

    def _resume(self, stage: _Stage, resume: bool) -> None:
        """Start ``stage`` afresh, or continue it from its checkpoint exactly: weights,
        average, optimizer and both random generators as they were after its step."""
        path = self.checkpoint_dir / f"{stage.name}.pt"
        if not resume or not path.is_file():
            if path.is_file() and not resume:
                raise UserError(
                    f"{path} exists: pass --resume to continue that run, or choose a new --out"
                )
            # Each stage's randomness starts from the seed alone, so a stage resumed in a later
            # process draws what it would have drawn had the run never stopped.
            torch.manual_seed(self.config.seed * len(STAGES) + STAGES.index(stage.name))
            return
        state = torch.load(path, map_location="cpu", weights_only=False)
        stage.step = state["step"]
        for name, part in stage.parts.items():
            part.load_state_dict(state["live"][name])
        if stage.average is not None:
            stage.average.resume(state["export"], stage.step)
        stage.optimizer.load_state_dict(state["optimizer"])
        stage.rng.bit_generator.state = state["numpy_rng"]
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"])
        self.report(f"{stage.name}: resumed at step {stage.step} from {path}")

    def _checkpoint(self, stage: _Stage) -> None:
        self._save(
            stage.name,
            {
                "step": stage.step,
                "live": {name: part.state_dict() for name, part in stage.parts.items()},
                "export": stage.exported(),
                "optimizer": stage.optimizer.state_dict(),
                "numpy_rng": stage.rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state() if self.device.type == "cuda" else None,
                "config": dataclasses.asdict(self.config),
                **self._part_configs(stage),
            },
        )

    def _part_configs(self, stage: _Stage) -> dict[str, dict]:
        """The light decoder's own config beside its weights: its sizes are its own, not the
        model folder's, so a resumed run or a later export rebuilds it from the checkpoint."""
        if "light_decoder" not in stage.parts:
            return {}
        config = stage.parts["light_decoder"].config
        # Every value, defaults included (diffusers marks defaults to be left out of from_config).
        return {"light_decoder_config": {k: v for k, v in config.items() if not k.startswith("_")}}

    def _loop(self, stage: _Stage) -> None:
        """Step ``stage`` to its last step: warm-up, loss, optimizer, average, log, and a
        checkpoint every ``checkpoint_every_steps``, at the end and when asked to stop."""
        config = self.config
        started = time.monotonic()
        losses: list[float] = []
        while stage.step < stage.steps:
            lr = learning_rate(stage.step, stage.peak_learning_rate, config.warmup_steps)
            for group in stage.optimizer.param_groups:
                group["lr"] = lr
            loss = stage.loss(stage.step)
            stage.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            stage.optimizer.step()
            stage.step += 1
            if stage.average is not None:
                stage.average.update()
            losses.append(float(loss.detach()))
            if stage.step % config.log_every_steps == 0 or stage.step == stage.steps:
                self._log(stage.name, stage.step, stage.steps, float(np.mean(losses)), lr, started)
                losses.clear()
            if self.stop.requested:
                self.report(f"{stage.name}: stopped at step {stage.step}; saving a checkpoint")
                self._checkpoint(stage)
                raise KeyboardInterrupt
            if stage.step % config.checkpoint_every_steps == 0 and stage.step < stage.steps:
                self._checkpoint(stage)
        self._checkpoint(stage)


class _ImagePool:
    """The training split's images for the VAE stage, decoded once and kept (grey, uint8).

    While the data set is still being rendered it has no metadata yet: then every PNG already
    in DIR/train/ is used, and the folder is listed again now and then, so new renders join.
    """

    RESCAN_STEPS = 100

    def __init__(self, data: Path) -> None:
        self.data = data
        self._cache: dict[Path, np.ndarray] = {}
        self._paths: list[Path] | None = None

    def paths(self) -> list[Path]:
        folder = self.data / "train"
        if (folder / METADATA_FILE).is_file():
            split = read_split(self.data, "train")
            return [split.image_path(record) for record in split]
        paths = sorted(folder.glob("*.png"))
        if not paths:
            raise UserError(
                f"{self.data} has no training images ({folder}/*.png): make a data set with "
                "`streamer make-dataset DIR`"
            )
        return paths

    def sample(self, size: int, rng: np.random.Generator, step: int) -> list[np.ndarray]:
        """``size`` images drawn at random (with replacement: a batch depends only on the random
        state, so a resumed run draws what an uninterrupted one would). The folder is listed
        again every ``RESCAN_STEPS`` steps."""
        if step % self.RESCAN_STEPS == 0 or self._paths is None:
            self._paths = self.paths()
        batch = []
        while len(batch) < size:
            image = self._image(self._paths[int(rng.integers(len(self._paths)))])
            if image is not None:
                batch.append(image)
        return batch

    def crops(
        self, size: int, side: int, rng: np.random.Generator, step: int
    ) -> torch.Tensor:
        """``size`` random ``side``-pixel crops of images drawn as :meth:`sample` draws them, as
        the VAE's pixels (the batch of the stages that train on crops)."""
        return to_pixels(random_crops(self.sample(size, rng, step), side, rng))

    def _image(self, path: Path) -> np.ndarray | None:
        if path not in self._cache:
            try:
                self._cache[path] = _read_gray(path)
            except (OSError, ValueError):
                return None  # being written right now: it joins at a later pass
        return self._cache[path]


def _read_gray(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.uint8)


def _checkpoint_step(path: Path) -> int:
    if not path.is_file():
        return 0
    return int(torch.load(path, map_location="cpu", weights_only=False)["step"])


def _load_folder_parts(folder: str):
    """UNet, VAE and text encoder of an exported model folder, in fp32 for training."""
    from streamer.generate.config import GeneratorConfig
    from streamer.generate.loading import load_model

    model = load_model(GeneratorConfig(model=folder, device="cpu", dtype="fp32", offline=True))
    return model.unet, model.vae, model.text_encoder


class _StopRequest:
    """Set by Ctrl-C or SIGTERM (a session ending, `kill`); the loop stops between two steps,
    so the checkpoint it then writes resumes exactly."""

    requested = False


@contextmanager
def _stop_requests():
    stop = _StopRequest()

    def request(signum, frame):
        stop.requested = True

    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals reach only the main thread; a caller elsewhere stops it its own way
        return
    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
