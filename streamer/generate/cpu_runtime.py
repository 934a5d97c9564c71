"""What runs the UNet and the VAE (its decoder, and its encoder for seed images) on a CPU: torch
(eager) or OpenVINO.

The UNet and the decoder are nearly all of a frame's time on a CPU; the encoder runs once per
new seed image, which the song form composes about once a frame. OpenVINO's CPU plugin runs
the same graph with its own fused kernels. Measured side by side (benchmarks/RESULTS.md, "A
faster CPU runtime"), it does a frame's work in less CPU time on every CPU class tried: on
the real AVX2 machine its UNet is 1.7x faster than torch's, on this project's AVX-512 VM a
frame takes 8 % less CPU in fp32 (emulated AVX2) and 17 % less in bf16; frames equal torch's
within 1 pixel level in fp32. Its VAE encoder is 1.9x faster than torch's (channels-last) on
the real AVX2 machine, equal within 2e-5. But on that VM, shared with other work, whole frames in wall time
came out 0.76-1.05x of torch's: so ``auto`` keeps it only where one UNet call is measured no
slower at load than torch's (:func:`keep_faster`), as the compute type is chosen. It is converted once from the loaded torch modules (the same
diffusers weights, LoRA included) and kept in a cache folder keyed by the weights, so only the
first start on a machine pays the conversion (15-20 s for the built-in model); later starts
read and compile it in about 2 s.

:func:`choose_cpu_runtime` is the rule, pure: what was asked for, where the model runs, and
whether OpenVINO is installed come in as values. :func:`cpu_parts` is the shell: it applies the
rule, converts (or reads the cache), times the two, and falls back to torch with a log line if
the conversion fails, so a stream never fails to start for want of the faster runtime.

The parts keep torch's interfaces, so the generator's loop reads the same with either runtime:
the UNet is called as a diffusers UNet (sample, timestep, ``encoder_hidden_states``, and the
guidance-distilled student's ``timestep_cond``) and answers ``.sample``; the decoder takes a
latent and gives pixels, the encoder the reverse (streamer.generate.autoencoder). Tensors go in and come out in the model's compute type; OpenVINO
computes in the same type (its precision hint: f32, or bf16 where the model computes in bf16,
which happens only where bf16 is native).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamer.generate.config import CPU_RUNTIMES

log = logging.getLogger(__name__)

#: The latent side the converter traces with: small, so tracing is quick; a multiple of 8, so
#: every UNet level halves it evenly as at the stream's 64.
_EXAMPLE_LATENT_SIDE = 16

#: OpenVINO's precision hint for each compute type it is asked to run in.
_PRECISION_HINTS = {torch.float32: "f32", torch.bfloat16: "bf16"}


@dataclasses.dataclass(frozen=True)
class RuntimeChoice:
    """The runtime chosen and why, in words for the start-up line."""

    name: str
    reason: str
    #: Seconds the parts took to get ready (conversion or cache read, and compiling), once known.
    load_s: float | None = None

    def announcement(self) -> str:
        line = f"running the UNet and VAE with {self.name}: {self.reason}"
        if self.load_s is not None:
            line += f", ready in {self.load_s:.1f} s"
        if self.name == "openvino":
            line += "; --cpu-runtime torch for torch"
        return line


def choose_cpu_runtime(
    requested: str, device_type: str, compiled: bool, openvino_version: str | None
) -> RuntimeChoice:
    """OpenVINO on a CPU where it is installed (``auto``) or asked for; torch everywhere else.

    ``openvino_version`` is the installed version, None where it is not installed. Asking for
    OpenVINO where it cannot run is an error (the user asked for something specific); ``auto``
    says why it did not take it.
    """
    if requested not in CPU_RUNTIMES:
        raise ValueError(f"cpu runtime must be one of {', '.join(CPU_RUNTIMES)}, got {requested!r}")
    if requested == "torch":
        return RuntimeChoice("torch", "asked for with --cpu-runtime torch")
    obstacle = None
    if device_type != "cpu":
        obstacle = f"the model runs on {device_type}, OpenVINO here runs only on the CPU"
    elif compiled:
        obstacle = "--compile asks for torch.compile"
    elif openvino_version is None:
        obstacle = "OpenVINO is not installed (pip install openvino)"
    if obstacle is None:
        how = "asked for with --cpu-runtime" if requested == "openvino" else "installed"
        return RuntimeChoice("openvino", f"OpenVINO {openvino_version}, {how}")
    if requested == "openvino":
        raise ValueError(f"--cpu-runtime openvino cannot run: {obstacle}")
    return RuntimeChoice("torch", obstacle)


# --- the parts ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UNetOutput:
    """What a diffusers UNet answers, as far as the generator reads it."""

    sample: torch.Tensor


@dataclasses.dataclass(frozen=True)
class CpuParts:
    """The UNet and the autoencoder as the generator calls them, and what runs them.

    ``unet(sample, timestep, encoder_hidden_states=..., timestep_cond=...)`` answers ``.sample``
    as a diffusers UNet does; ``decode(latent)`` gives the decoder's pixels in [-1, 1] (the
    latent already divided by the VAE's scaling factor); ``encode(pixels)`` the latent mean,
    unscaled.
    """

    unet: Callable[..., Any]
    decode: Callable[[torch.Tensor], torch.Tensor]
    encode: Callable[[torch.Tensor], torch.Tensor]
    choice: RuntimeChoice


def torch_parts(
    unet: torch.nn.Module,
    decoder: torch.nn.Module,
    encoder: torch.nn.Module,
    choice: RuntimeChoice,
) -> CpuParts:
    """The torch modules themselves."""
    return CpuParts(unet, decoder, encoder, choice)


class OpenVinoUNet:
    """A UNet compiled by OpenVINO, called as the diffusers UNet it was converted from."""

    def __init__(self, compiled: Any, dtype: torch.dtype) -> None:
        self._request = compiled.create_infer_request()
        self._takes_condition = len(compiled.inputs) == 4
        self._dtype = dtype

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep_cond: torch.Tensor | None = None,
    ) -> UNetOutput:
        rows = sample.shape[0]
        inputs = [
            _array(sample),
            _array(timestep.reshape(-1).expand(rows)),
            _array(encoder_hidden_states),
        ]
        if self._takes_condition:
            if timestep_cond is None:
                raise ValueError("this UNet is guidance-distilled: it needs timestep_cond")
            inputs.append(_array(timestep_cond))
        self._request.infer(inputs)
        return UNetOutput(_tensor(self._request.get_output_tensor(0).data, self._dtype))


class OpenVinoImageModule:
    """A decoder (latent in, pixels out) or an encoder (the reverse) compiled by OpenVINO, in
    the model's type."""

    def __init__(self, compiled: Any, dtype: torch.dtype) -> None:
        self._request = compiled.create_infer_request()
        self._dtype = dtype

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        self._request.infer([_array(tensor)])
        return _tensor(self._request.get_output_tensor(0).data, self._dtype)


def openvino_parts(
    unet: torch.nn.Module,
    decoder: torch.nn.Module,
    encoder: torch.nn.Module,
    dtype: torch.dtype,
    choice: RuntimeChoice,
    cache_folder: Path,
    threads: int | None = None,
) -> CpuParts:
    """The UNet, decoder and encoder converted to OpenVINO (or read from ``cache_folder``, where
    a conversion of the same weights is kept) and compiled for this CPU in ``dtype``."""
    import openvino

    started = time.perf_counter()
    cache_folder.mkdir(parents=True, exist_ok=True)  # before a conversion it would lose
    core = openvino.Core()
    settings = {
        "INFERENCE_PRECISION_HINT": _PRECISION_HINTS[dtype],
        "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
    }
    unet32 = _float32_copy(unet)
    decoder32, encoder32 = _float32_copy(decoder), _float32_copy(encoder)
    side = _EXAMPLE_LATENT_SIDE
    latent = torch.zeros(1, unet32.config.in_channels, side, side)
    pixels = torch.zeros(1, 3, 8 * side, 8 * side)  # RGB; SD's VAE: 8 pixels a latent cell
    text = torch.zeros(1, 77, unet32.config.cross_attention_dim)
    unet_inputs = [latent, torch.ones(1), text]
    if unet32.config.time_cond_proj_dim is not None:
        unet_inputs.append(torch.zeros(1, unet32.config.time_cond_proj_dim))
    parts = {
        "unet": (_UNetGraph(unet32), tuple(unet_inputs)),
        "decoder": (decoder32, (latent,)),
        "encoder": (encoder32, (pixels,)),
    }
    compiled = {}
    for name, (module, example) in parts.items():
        path = cache_folder / f"{name}-{_weights_key(module, openvino.__version__)}.xml"
        if not path.exists():
            log.warning(
                "converting the %s for OpenVINO, once for these weights (some seconds; kept "
                "in %s)", name, cache_folder,
            )
            _save_atomically(openvino, _convert(openvino, module, example), path)
        compiled[name] = core.compile_model(core.read_model(path), "CPU", settings)
    load_s = time.perf_counter() - started
    return CpuParts(
        OpenVinoUNet(compiled["unet"], dtype),
        OpenVinoImageModule(compiled["decoder"], dtype),
        OpenVinoImageModule(compiled["encoder"], dtype),
        dataclasses.replace(choice, load_s=load_s),
    )


def cpu_parts(
    unet: torch.nn.Module,
    decoder: torch.nn.Module,
    encoder: torch.nn.Module,
    dtype: torch.dtype,
    device: torch.device,
    requested: str,
    compiled: bool,
    cache_folder: Path | None = None,
) -> CpuParts:
    """The parts the rule picks; torch, with a log line saying why, if OpenVINO fails.
    ``decoder`` and ``encoder`` are modules from latent to pixels and back
    (streamer.generate.autoencoder)."""
    choice = choose_cpu_runtime(requested, device.type, compiled, openvino_version())
    if choice.name == "torch":
        return torch_parts(unet, decoder, encoder, choice)
    try:
        parts = openvino_parts(unet, decoder, encoder, dtype, choice, cache_folder or default_cache_folder())
    except Exception as error:  # any failure of a third-party converter: torch still plays
        log.warning("OpenVINO could not run this model (%s); using torch", error)
        failed = RuntimeChoice("torch", f"OpenVINO failed: {error}")
        return torch_parts(unet, decoder, encoder, failed)
    if requested != "auto":
        return parts
    kept = keep_faster(parts.choice, _time_unet_calls({"torch": unet, "openvino": parts.unet}, unet))
    if kept.name == "openvino":
        return dataclasses.replace(parts, choice=kept)
    return torch_parts(unet, decoder, encoder, kept)


def keep_faster(choice: RuntimeChoice, seconds: dict[str, float]) -> RuntimeChoice:
    """OpenVINO (``choice``) if one UNet call was measured no slower in it than in torch, else
    torch; either way the timing is in the reason. ``seconds`` has both runtimes' call.

    Measured, not assumed: OpenVINO's UNet was 1.7x faster than torch's on a real AVX2 machine,
    but on this project's AVX-512 machine, shared with other work, whole frames came out
    between 0.76x and 1.05x of torch's (benchmarks/RESULTS.md).
    """
    timing = f"one UNet call {seconds['openvino']:.3f} s, torch {seconds['torch']:.3f} s"
    if seconds["openvino"] <= seconds["torch"]:
        return dataclasses.replace(choice, reason=f"{choice.reason}; {timing}")
    return RuntimeChoice("torch", f"OpenVINO measured slower here ({timing})")


def _time_unet_calls(unets: dict[str, Callable[..., Any]], unet: torch.nn.Module) -> dict[str, float]:
    """The median seconds of one UNet call of one row at the stream's latent size in each
    runtime, taking turns as the compute-type probe does (``alternating_medians``)."""
    from streamer.generate.compute_type import alternating_medians, conv_layout

    generator = torch.Generator().manual_seed(0)
    dtype = next(unet.parameters()).dtype
    size = unet.config.sample_size
    sample = torch.randn(1, unet.config.in_channels, size, size, generator=generator)
    inputs = {
        "sample": sample.to(dtype).contiguous(memory_format=conv_layout(unet)),
        "timestep": torch.tensor([500]),
        "encoder_hidden_states": torch.randn(
            1, 77, unet.config.cross_attention_dim, generator=generator
        ).to(dtype),
    }
    if unet.config.time_cond_proj_dim is not None:
        inputs["timestep_cond"] = torch.zeros(1, unet.config.time_cond_proj_dim, dtype=dtype)
    return alternating_medians(
        {name: functools.partial(call, **inputs) for name, call in unets.items()}
    )


def openvino_version() -> str | None:
    """The installed OpenVINO's version, None where it is not installed."""
    try:
        return metadata.version("openvino")
    except metadata.PackageNotFoundError:
        return None


def default_cache_folder() -> Path:
    """Where converted models are kept: ``$STREAMER_CACHE`` or ``~/.cache/streamer``, then
    ``openvino``."""
    root = os.environ.get("STREAMER_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "streamer"
    )
    return Path(root) / "openvino"


# --- conversion ---------------------------------------------------------------------------------


class _UNetGraph(torch.nn.Module):
    """The UNet with plain tensor inputs and output, as OpenVINO's converter traces it."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, encoder_hidden_states, timestep_cond=None):
        return self.unet(
            sample,
            timestep,
            encoder_hidden_states=encoder_hidden_states,
            timestep_cond=timestep_cond,
            return_dict=False,
        )[0]


def _float32_copy(module: torch.nn.Module) -> torch.nn.Module:
    """A contiguous fp32 copy to convert from (exact for a bf16 model: bf16 widens to fp32
    without rounding, and OpenVINO's bf16 hint rounds it back)."""
    from streamer.generate.compute_type import cast

    duplicate = cast(copy.deepcopy(module), torch.float32)
    return duplicate.to(memory_format=torch.contiguous_format).eval()


def _weights_key(module: torch.nn.Module, version: str) -> str:
    """A name for the conversion of these weights by this OpenVINO version."""
    digest = hashlib.sha256(version.encode())
    digest.update(type(module).__name__.encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


def _convert(openvino: Any, module: torch.nn.Module, example: tuple[torch.Tensor, ...]) -> Any:
    """The module as an OpenVINO model whose inputs take any batch and image size.

    Traced here rather than by the converter, without torch's trace check (which runs the
    module twice more): that halves the conversion (the built-in model's 44 s to about 15 s).
    The example is small for the same reason; the traced graph reads sizes from its inputs,
    and tests/test_cpu_runtime.py checks frames at the stream's size against torch's.
    """
    with torch.no_grad():
        traced = torch.jit.trace(module, example, check_trace=False, strict=False)
        return openvino.convert_model(traced, example_input=example)


def _save_atomically(openvino: Any, model: Any, path: Path) -> None:
    """Save in full precision (no fp16 weight compression, which would change the frames),
    then move into place, so a start killed mid-save never leaves a half-written model."""
    with tempfile.TemporaryDirectory(dir=path.parent) as folder:
        staged = Path(folder) / path.name
        openvino.save_model(model, staged, compress_to_fp16=False)
        shutil.move(staged.with_suffix(".bin"), path.with_suffix(".bin"))
        shutil.move(staged, path)


def _array(tensor: torch.Tensor) -> np.ndarray:
    """A tensor as the contiguous fp32 array OpenVINO's inputs take."""
    return tensor.detach().to(torch.float32).contiguous().numpy()


def _tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """An output copied out of OpenVINO's buffer (reused by the next call), in ``dtype``."""
    return torch.from_numpy(np.array(array, dtype=np.float32)).to(dtype)
