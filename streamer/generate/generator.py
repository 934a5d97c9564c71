"""The producer's engine: frame requests in, spectrogram frames out.

``FrameGenerator.generate`` is the whole algorithm, top to bottom: prompt embeddings (cached per
prompt) blended by weight, the negative prompt's embedding for guidance, noise slerped between
two seeds, the seed image's latent (cached per name), an img2img denoising loop with
classifier-free guidance over all frames of the batch at once, then VAE decode to the image and
the image to mel amplitudes. A guidance-distilled UNet (streamer.generate.guidance) makes a
guided frame whose negative prompt is the one it was distilled against in one row instead of
two.

This loop replaces ``StableDiffusionImg2ImgPipeline``, which cannot do the job: it has no
``latents`` argument (extra keyword arguments are silently swallowed), so slerped noise cannot be
passed in; it runs one strength and one guidance scale per call, where a batch of frames of a
transition has one of each per frame; and it draws noise for the whole batch from one generator,
so a frame would change with the batch it happens to be in.

Determinism: each frame's noise is drawn on the CPU from a generator seeded with its own seeds,
and each frame has its own scheduler, so a frame depends only on its request, never on the batch
around it. Only rounding differs with the batch size (kernels may sum in another order): in fp32
on a CPU a batched frame equals the frame made alone to within one 8-bit pixel level (tests);
in fp16 on a GPU expect a few levels. On a CPU, for a fixed batch, dtype and thread count, the
output is bit-for-bit reproducible (tests).

Safety on a GPU: a frame whose latent is not finite after the UNet (an fp16 overflow) is
refused with ``UnplayableFrame`` rather than decoded to a black image, whose audio, levelled to
the stream's loudness, would be loud noise; a decode that overflows is tried once more in fp32.
Frames are decoded one at a time, so the decode needs one frame's memory, not the batch's.
Compiled (``--compile``), the UNet sees only the row counts of ``compiled_row_counts``: each batch
is padded up to the next, and ``warm_up`` compiles them all at load, so a batch that mixes
denoising strengths or guidance never recompiles mid-stream.

A generator is used from one thread (the producer's); its caches are not locked.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import contextmanager
from typing import Generic, TypeVar

import numpy as np
import torch
from PIL import Image

from streamer.generate.autoencoder import VaeDecoder, VaeEncoder, choose_decoder
from streamer.generate.cancellation import IsStale, check, never_stale
from streamer.generate.compute_type import conv_layout
from streamer.generate.config import GeneratorConfig
from streamer.generate.cpu_runtime import cpu_parts
from streamer.generate.guidance import (
    DISTILLED_NEGATIVE_PROMPT,
    classifier_free_guidance,
    guidance_embedding,
    is_guidance_distilled,
)
from streamer.generate.interpolation import blend_embeddings, slerp
from streamer.generate.loading import StableDiffusionModel, apply_lora, load_model
from streamer.generate.presets import GeneratorPreset, evaluations
from streamer.generate.request import FrameRequest
from streamer.generate.schedulers import RENOISING_SCHEDULERS, make_scheduler
from streamer.spectrogram.image import mel_from_image

log = logging.getLogger(__name__)

#: The VAE's downsampling factor in Stable Diffusion 1.x: image sides must be multiples of it.
VAE_SCALE = 8


class UnplayableFrame(RuntimeError):
    """A frame came out of the model not finite (NaN or infinity): it must not be played. The
    engine counts it as a failed batch and tries again; the message says which stage failed."""


SeedImages = Callable[[str], Image.Image] | Mapping[str, Image.Image]


@dataclasses.dataclass(frozen=True)
class BatchTimings:
    """Wall-clock seconds of each stage of one ``generate`` call (shared by its frames)."""

    text_encode_s: float
    vae_encode_s: float
    unet_s: float
    vae_decode_s: float
    to_mel_s: float
    total_s: float
    frames: int
    unet_calls: int

    @property
    def per_frame_s(self) -> float:
        return self.total_s / self.frames


@dataclasses.dataclass(frozen=True)
class GeneratedFrame:
    """A frame: its request, the model's image (for the visualiser) and its mel amplitudes.

    ``mel`` is float32 shaped (1, 512, width) in the codec's units (streamer.spectrogram), decoded
    from ``image`` with the default spectrogram parameters the model was trained on.
    """

    request: FrameRequest
    image: Image.Image
    mel: np.ndarray
    timings: BatchTimings


@dataclasses.dataclass
class _Denoising:
    """One frame's img2img run: its scheduler, the timesteps it still has, its latent."""

    scheduler: object
    timesteps: list[torch.Tensor]
    latent: torch.Tensor
    noises: list[torch.Tensor]  # one per step for samplers that re-noise
    step: int = 0


class FrameGenerator:
    """Makes spectrogram frames from ``FrameRequest``s with a Stable Diffusion 1.x checkpoint."""

    def __init__(
        self,
        model: StableDiffusionModel,
        preset: GeneratorPreset,
        seed_images: SeedImages,
        compile: str = "none",
        max_cached_prompts: int = 256,
        max_cached_seed_images: int = 64,
        compile_backend: str | Callable = "inductor",
        cpu_runtime: str = "torch",
        decoder: str = "auto",
    ) -> None:
        """``compile`` is a torch.compile mode (``none``: eager); ``compile_backend`` is
        torch.compile's backend (``eager`` or a counting backend in tests); ``cpu_runtime``
        what runs the UNet and decoder on a CPU (streamer.generate.cpu_runtime); ``decoder``
        which decoder makes the images (streamer.generate.autoencoder)."""
        self.model = model
        self.preset = preset
        self._seed_images = seed_images
        self._embeddings: _Cache[str, torch.Tensor] = _Cache(max_cached_prompts)
        self._seed_latents: _Cache[str, torch.Tensor] = _Cache(max_cached_seed_images)
        #: Which decoder makes the images, and why, for the start-up line.
        self.decoder_choice = choose_decoder(
            decoder, model.device.type, model.light_decoder is not None
        )
        #: The module from latent to pixels that choice names (in torch, whatever runs it).
        self.decoder = model.light_decoder if self.decoder_choice.light else VaeDecoder(model.vae)
        parts = cpu_parts(
            model.unet,
            self.decoder,
            VaeEncoder(model.vae),
            model.dtype,
            model.device,
            cpu_runtime,
            compile != "none",
        )
        #: What runs the UNet and the autoencoder, and why, for the start-up line.
        self.runtime = parts.choice
        self._unet, self._decode_latent, self._encode_pixels = (
            parts.unet, parts.decode, parts.encode
        )
        #: Latents go in in the UNet's layout: a compiled UNet then sees one layout only (the
        #: scheduler's arithmetic keeps whichever layout it was given).
        self._latent_layout = conv_layout(model.unet)
        #: Width of the UNet's guidance embedding; None unless it is guidance-distilled.
        self._guidance_dim = (
            model.unet.config.time_cond_proj_dim if is_guidance_distilled(model.unet) else None
        )
        self._uses_cuda_graphs = compile == "reduce-overhead"
        self.compiled = compile != "none"
        if self.compiled:
            mode = compile if compile_backend == "inductor" else None  # modes are inductor's
            self._unet = torch.compile(
                model.unet, backend=compile_backend, mode=mode, fullgraph=True, dynamic=False
            )

    @classmethod
    def load(cls, config: GeneratorConfig, seed_images: SeedImages) -> FrameGenerator:
        """Load the checkpoint (and the preset's LoRA) that ``config`` names."""
        preset = config.resolved_preset()
        model = load_model(config)
        if preset.lora:
            apply_lora(model, preset.lora, preset.lora_scale, config)
        return cls(
            model,
            preset,
            seed_images,
            compile=config.compile,
            max_cached_prompts=config.max_cached_prompts,
            max_cached_seed_images=config.max_cached_seed_images,
            cpu_runtime=config.cpu_runtime,
            decoder=config.decoder,
        )

    @property
    def device(self) -> torch.device:
        return self.model.device

    def generate(
        self, requests: Sequence[FrameRequest], is_stale: IsStale = never_stale
    ) -> list[GeneratedFrame]:
        """Frames for ``requests``, denoised together as one batch. Raises ``FrameCancelled``
        before a UNet step or the decode once ``is_stale()`` is true."""
        if not requests:
            return []
        dtype = self.model.dtype
        clock = _StageClock(self.device)
        with torch.inference_mode():
            # 1. Text: each prompt is encoded once and cached; a frame's embedding is the weighted
            #    blend of its prompts, its unconditional embedding that of its negative prompt
            #    (only for frames that guide with a second row: see stage 4).
            with clock("text_encode"):
                embeddings = self._prompt_embeddings({text for r in requests for text in r.texts()})
                conditional = torch.stack(
                    [blend_embeddings(dict(r.prompts.weighted), embeddings) for r in requests]
                ).to(dtype)
                negative = {
                    k: embeddings[r.negative_prompt]
                    for k, r in enumerate(requests)
                    if r.uses_guidance and not self._guides_in_one_row(r)
                }

            # 2. Seed images: the VAE latent of each init image, cached by name.
            with clock("vae_encode"):
                clean = [self._seed_latent(r.seed_image) for r in requests]
                if len({latent.shape for latent in clean}) > 1:
                    raise ValueError("all seed images of one batch must have the same size")

            # 3. Noise and schedules: img2img starts each frame part-way down the schedule, at
            #    its own denoising strength, from noise slerped between its two seeds.
            frames = [self._start_denoising(r, latent) for r, latent in zip(requests, clean)]

            # 4. Denoise all frames in one UNet batch per step. Frames may run different numbers
            #    of steps; they all end together, the longer ones starting earlier. Frames with
            #    guidance > 1 add a row for the negative prompt (classifier-free guidance),
            #    except on a guidance-distilled UNet for the negative prompt it was distilled
            #    against: there the frame's one row is told its guidance scale, and predicts the
            #    guided result itself. Every other row of such a UNet is told scale 1, where it
            #    predicts as its teacher did, so the two kinds of frames share one batch.
            one_row_scale = {
                k: r.guidance for k, r in enumerate(requests) if self._guides_in_one_row(r)
            }
            with clock("unet"):
                unet_calls = max(len(f.timesteps) for f in frames)
                for call in range(unet_calls):
                    self._check_stale(is_stale)  # a control change stops a stale batch
                    active = [
                        k for k, f in enumerate(frames) if call >= unet_calls - len(f.timesteps)
                    ]
                    guided = [
                        k for k in active
                        if k in negative and self.preset.guides_at(int(_now(frames[k])))
                    ]
                    rows = guided + active
                    inputs = {
                        k: frames[k].scheduler.scale_model_input(frames[k].latent, _now(frames[k]))
                        for k in active
                    }
                    prediction = self._evaluate_unet(
                        torch.cat([inputs[k] for k in rows]),
                        torch.stack([_now(frames[k]) for k in rows]),
                        torch.cat([*(negative[k][None] for k in guided), conditional[active]]),
                        self._guidance_condition(
                            [1.0] * len(guided) + [one_row_scale.get(k, 1.0) for k in active]
                        ),
                    )
                    unconditional = dict(zip(guided, prediction[: len(guided)].split(1)))
                    for k, noise_prediction in zip(active, prediction[len(guided) :].split(1)):
                        if k in unconditional:
                            noise_prediction = classifier_free_guidance(
                                unconditional[k], noise_prediction, requests[k].guidance
                            )
                        self._step(frames[k], noise_prediction)

            # 5. Refuse a frame the UNet made non-finite; decode the rest one at a time, then
            #    each image to mel amplitudes.
            _refuse_non_finite(frames)
            self._check_stale(is_stale)
            with clock("vae_decode"):
                images = [self._decode(k, frame.latent) for k, frame in enumerate(frames)]
        with clock("to_mel"):
            mels = [mel_from_image(image)[0] for image in images]
        timings = BatchTimings(
            **clock.seconds(), total_s=clock.total(), frames=len(requests), unet_calls=unet_calls
        )
        return [
            GeneratedFrame(r, image, mel, timings) for r, image, mel in zip(requests, images, mels)
        ]

    # --- the steps of generate, in order -----------------------------------------------------

    def _prompt_embeddings(self, prompts: set[str]) -> dict[str, torch.Tensor]:
        """CLIP's last hidden state for each prompt, (77, width), from the cache or encoded now."""
        found = {prompt: self._embeddings.get(prompt) for prompt in prompts}
        missing = sorted(prompt for prompt, embedding in found.items() if embedding is None)
        if missing:
            tokenizer = self.model.tokenizer
            tokens = tokenizer(
                missing,
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids.to(self.device)
            for prompt, embedding in zip(missing, self.model.text_encoder(tokens)[0]):
                self._embeddings.put(prompt, embedding)
                found[prompt] = embedding
        return found

    def _seed_latent(self, name: str) -> torch.Tensor:
        """The scaled VAE latent of a seed image, (1, 4, H/8, W/8): the distribution's mean.

        The mean rather than a sample (diffusers' default), so the latent is a function of the
        image alone and can be cached; the VAE's posterior is narrow, the difference is tiny.
        """
        latent = self._seed_latents.get(name)
        if latent is None:
            image = (
                self._seed_images[name]
                if isinstance(self._seed_images, Mapping)
                else self._seed_images(name)
            )
            pixels = _to_pixels(image).to(self.device, self.model.dtype)
            latent = self._encode_pixels(pixels) * self.model.vae.config.scaling_factor
            self._seed_latents.put(name, latent)
        return latent

    def _start_denoising(self, request: FrameRequest, clean: torch.Tensor) -> _Denoising:
        """Set up a frame's img2img run: its timesteps and its noised seed latent.

        Of ``num_inference_steps`` steps the frame runs the last ``int(steps * denoising)``
        (diffusers' img2img convention), from the seed latent noised to the first of them.
        """
        preset = self.preset
        scheduler = make_scheduler(preset.scheduler, self.model.noise_schedule)
        scheduler.set_timesteps(preset.num_inference_steps, device=self.device)
        count = evaluations(preset.num_inference_steps, request.denoising)
        begin = len(scheduler.timesteps) - count
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(begin)
        timesteps = list(scheduler.timesteps[begin:])
        draws = count if preset.scheduler in RENOISING_SCHEDULERS else 1
        noises = self._noise(request, tuple(clean.shape), draws)
        latent = scheduler.add_noise(clean, noises[0], timesteps[0].reshape(1))
        return _Denoising(scheduler, timesteps, latent, noises)

    def _noise(
        self, request: FrameRequest, shape: tuple[int, ...], draws: int
    ) -> list[torch.Tensor]:
        """``draws`` Gaussian noises for the frame, each slerped between its two seeds' noises.

        Drawn on the CPU from generators seeded by the seeds alone, so a seed means the same
        noise on every device and in every batch.
        """

        def seed_noise(seed: int) -> list[torch.Tensor]:
            generator = torch.Generator("cpu").manual_seed(seed)
            return [torch.randn(shape, generator=generator) for _ in range(draws)]

        start, end = seed_noise(request.seed_a), seed_noise(request.seed_b)
        return [
            slerp(request.noise_alpha, a, b).to(self.device, self.model.dtype)
            for a, b in zip(start, end)
        ]

    def _guides_in_one_row(self, request: FrameRequest) -> bool:
        """Whether the frame's guidance is the UNet's own: a guidance-distilled UNet, a frame
        with guidance, and the negative prompt the UNet was distilled against."""
        return (
            self._guidance_dim is not None
            and request.uses_guidance
            and request.negative_prompt == DISTILLED_NEGATIVE_PROMPT
        )

    def _guidance_condition(self, scales: list[float]) -> torch.Tensor | None:
        """A guidance-distilled UNet's ``timestep_cond`` for rows of these guidance scales; None
        for any other UNet."""
        if self._guidance_dim is None:
            return None
        embedding = guidance_embedding(torch.tensor(scales), self._guidance_dim)
        return embedding.to(self.device, self.model.dtype)

    def _predict_noise(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        text: torch.Tensor,
        guidance: torch.Tensor | None,
    ) -> torch.Tensor:
        """One UNet evaluation of a batch of rows (``guidance``: their guidance embeddings, for
        a guidance-distilled UNet)."""
        if self._uses_cuda_graphs:
            # Tell CUDA graph trees that the previous call's output is consumed, so each call
            # replays the same graph instead of recording a new one beside the live output.
            torch.compiler.cudagraph_mark_step_begin()
        latents = latents.contiguous(memory_format=self._latent_layout)  # the UNet's layout
        return self._unet(
            latents, timesteps.to(self.device), encoder_hidden_states=text, timestep_cond=guidance
        ).sample

    def _evaluate_unet(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        text: torch.Tensor,
        guidance: torch.Tensor | None,
    ) -> torch.Tensor:
        """``_predict_noise`` of the rows, padded when compiled to the next of
        ``compiled_row_counts`` (repeating the last row of every input; its prediction is
        dropped), so the compiled UNet meets only shapes it was warmed up with."""
        rows = latents.shape[0]
        if not self.compiled:
            return self._predict_noise(latents, timesteps, text, guidance)
        padding = compiled_row_counts(rows)[-1] - rows
        if padding:
            latents, timesteps, text, guidance = (
                None
                if tensor is None
                else torch.cat([tensor, tensor[-1:].expand(padding, *tensor.shape[1:])])
                for tensor in (latents, timesteps, text, guidance)
            )
        return self._predict_noise(latents, timesteps, text, guidance)[:rows]

    def _check_stale(self, is_stale: IsStale) -> None:
        """``check(is_stale)`` once the device has done the work queued so far. With CUDA graphs
        a whole step is one launch, so without waiting the loop would queue every step before
        the first ran and ask ``is_stale`` long before a change could cancel anything."""
        if self._uses_cuda_graphs:
            torch.cuda.synchronize(self.device)
        check(is_stale)

    def _decode(self, index: int, latent: torch.Tensor) -> Image.Image:
        """One frame's latent decoded to an image: in fp32 if the model's type overflows (the SD
        VAE's known fp16 failure), refused if it overflows even there."""
        latent = latent / self.model.vae.config.scaling_factor
        pixels = self._decode_latent(latent)
        dtype = self.model.dtype
        if not torch.isfinite(pixels).all() and dtype != torch.float32:
            log.warning("frame %d decoded to NaN in %s; decoding it in fp32", index, dtype)
            try:
                self.decoder.to(torch.float32)
                pixels = self.decoder(latent.float())
            finally:
                self.decoder.to(dtype)
        if not torch.isfinite(pixels).all():
            raise UnplayableFrame(f"frame {index} of the batch decoded to NaN or infinity")
        return _to_images(pixels)[0]

    def warm_up(self, max_frames: int, seed_image: str) -> float:
        """Compile the UNet for every row count a batch of up to ``max_frames`` frames can use
        (at the seed image's size); returns the seconds it took (0 when not compiled). With CUDA
        graphs each count runs twice: graph trees record a graph on its second run."""
        if not self.compiled:
            return 0.0
        started = time.perf_counter()
        scheduler = make_scheduler(self.preset.scheduler, self.model.noise_schedule)
        scheduler.set_timesteps(self.preset.num_inference_steps, device=self.device)
        counts = compiled_row_counts(2 * max_frames)
        with torch.inference_mode():
            latent = self._seed_latent(seed_image)
            embedding = self._prompt_embeddings({""})[""].to(self.model.dtype)
            for rows in counts * 2 if self._uses_cuda_graphs else counts:
                self._predict_noise(
                    latent.expand(rows, *latent.shape[1:]).contiguous(),
                    scheduler.timesteps[:1].repeat(rows),
                    embedding.expand(rows, *embedding.shape).contiguous(),
                    self._guidance_condition([1.0] * rows),
                )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - started

    def _step(self, frame: _Denoising, noise_prediction: torch.Tensor) -> None:
        """One scheduler step of one frame. LCM re-noises its clean estimate between steps: with
        the frame's own slerped noise rather than the scheduler's random draw."""
        output = frame.scheduler.step(noise_prediction, _now(frame), frame.latent)
        frame.step += 1
        if self.preset.scheduler in RENOISING_SCHEDULERS:
            if frame.step == len(frame.timesteps):
                frame.latent = output.denoised
            else:
                frame.latent = frame.scheduler.add_noise(
                    output.denoised, frame.noises[frame.step], _now(frame).reshape(1)
                )
        else:
            frame.latent = output.prev_sample


# --- small helpers -----------------------------------------------------------------------------


def compiled_row_counts(rows: int) -> list[int]:
    """The UNet batch sizes a compiled UNet is built for, up to the first that holds ``rows``:
    powers of two, so padding wastes less than half a batch and a batch of up to 16 frames
    with guidance (32 rows) needs six compilations."""
    counts = [1]
    while counts[-1] < rows:
        counts.append(2 * counts[-1])
    return counts


def _refuse_non_finite(frames: Sequence[_Denoising]) -> None:
    """Raise ``UnplayableFrame`` if a frame's latent is not finite: decoded, it would be a black
    image, whose audio is finite and would be levelled up to a burst of noise."""
    for index, frame in enumerate(frames):
        if not torch.isfinite(frame.latent).all():
            raise UnplayableFrame(
                f"frame {index} of the batch came out of the UNet as NaN or infinity (an "
                "overflow of its number type: try --dtype fp32, or bf16 on a GPU that has it)"
            )


def _now(frame: _Denoising) -> torch.Tensor:
    """The frame's current timestep."""
    return frame.timesteps[frame.step]


def _to_pixels(image: Image.Image) -> torch.Tensor:
    """A PIL image as a (1, 3, H, W) float tensor in [-1, 1], the VAE's input range."""
    if image.width % VAE_SCALE or image.height % VAE_SCALE:
        raise ValueError(f"seed image sides must be multiples of {VAE_SCALE}, got {image.size}")
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1)[None]


def _to_images(pixels: torch.Tensor) -> list[Image.Image]:
    """VAE output in [-1, 1], (N, 3, H, W), as 8-bit RGB PIL images."""
    array = ((pixels.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    array = array.permute(0, 2, 3, 1).cpu().numpy()
    return [Image.fromarray(frame, mode="RGB") for frame in array]


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Cache(Generic[K, V]):
    """A least-recently-used cache: a stream left running for hours meets many prompts."""

    def __init__(self, capacity: int) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._capacity = max(1, capacity)

    def get(self, key: K) -> V | None:
        if key not in self._items:
            return None
        self._items.move_to_end(key)
        return self._items[key]

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)


class _StageClock:
    """Wall-clock seconds per named stage; waits for the GPU at each stage's end, so the times
    are real."""

    def __init__(self, device: torch.device) -> None:
        self._device = device
        self._seconds: dict[str, float] = {}
        self._started = time.perf_counter()

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        yield
        if self._device.type == "cuda":
            torch.cuda.synchronize(self._device)
        self._seconds[stage] = self._seconds.get(stage, 0.0) + time.perf_counter() - start

    def seconds(self) -> dict[str, float]:
        stages = ("text_encode", "vae_encode", "unet", "vae_decode", "to_mel")
        return {f"{stage}_s": self._seconds.get(stage, 0.0) for stage in stages}

    def total(self) -> float:
        return time.perf_counter() - self._started
