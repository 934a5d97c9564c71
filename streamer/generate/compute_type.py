"""The compute type a model runs in on this machine's CPU: bf16 only where it is native and
measured faster, fp32 otherwise.

Machines of the same kind differ. On a CPU with native bf16 (AVX-512 BF16 or AMX) the built-in
model's UNet runs 1.4-2x faster in bf16 than in fp32; on an AVX2-only CPU bf16 is emulated and
over 70x slower (no frame after 400 s), so there fp32 is the only sane type
(``../shared/notes/cpu-classes.md``, benchmarks/RESULTS.md "compute type"). Native support is
necessary but not enough (oneDNN may still pick slow kernels for a layer shape), so where bf16
is native one UNet call is timed in each candidate type at load, a fraction of a second for the
built-in model, and the faster is kept.

:func:`choose_cpu_dtype` is the rule, pure: the CPU's facts come in as a value, the timing as a
callable asked only where bf16 is a candidate (an AVX2 machine never runs a bf16 call, which
would take seconds). :func:`cpu_facts` and :func:`unet_call_timer` are the probes.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import statistics
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

import torch

K = TypeVar("K")

#: Timed UNet calls per candidate type (after one warm-up each); the median is compared. Calls
#: alternate between the types, so a load change on a shared CPU hits both alike.
PROBE_CALLS = 3


@dataclasses.dataclass(frozen=True)
class CpuFacts:
    """What decides the CPU's type: the kernels ATen dispatches to (``AVX2``, ``AVX512``, ...;
    ``ATEN_CPU_CAPABILITY`` can lower it), and whether bf16 is native: the CPU has AVX-512 BF16
    or AMX instructions and oneDNN may use them (``ONEDNN_MAX_CPU_ISA`` can forbid it)."""

    capability: str
    native_bf16: bool

    def describe(self) -> str:
        return f"{self.capability}, {'native' if self.native_bf16 else 'no native'} bf16"


@dataclasses.dataclass(frozen=True)
class ComputeType:
    """The type chosen and why, in words for the start-up line."""

    dtype: torch.dtype
    reason: str

    @property
    def name(self) -> str:
        return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(
            self.dtype, str(self.dtype)
        )

    def announcement(self) -> str:
        return f"computing in {self.name}: {self.reason}"


def choose_cpu_dtype(
    facts: CpuFacts, time_calls: Callable[[tuple[torch.dtype, ...]], dict[torch.dtype, float]]
) -> ComputeType:
    """fp32 unless bf16 is native here and a UNet call in bf16 is measured faster than in fp32.

    ``time_calls(types)`` gives the seconds of one UNet call in each type; it is asked only
    where bf16 is native.
    """
    if not facts.native_bf16:
        return ComputeType(
            torch.float32,
            f"this CPU ({facts.describe()}) would emulate bf16 far slower; --dtype sets another",
        )
    seconds = time_calls((torch.float32, torch.bfloat16))
    fp32_s, bf16_s = seconds[torch.float32], seconds[torch.bfloat16]
    timing = f"one UNet call {bf16_s:.3f} s in bf16, {fp32_s:.3f} s in fp32"
    if bf16_s < fp32_s:
        return ComputeType(
            torch.bfloat16,
            f"native on this CPU ({facts.describe()}), {timing}; --dtype fp32 for full precision",
        )
    return ComputeType(
        torch.float32, f"bf16 is native on this CPU ({facts.describe()}) but not faster: {timing}"
    )


# --- the probes -------------------------------------------------------------------------------


def cpu_facts() -> CpuFacts:
    """This CPU's facts, as torch and oneDNN see them (environment overrides included)."""
    capability = torch.backends.cpu.get_cpu_capability()
    flags = any(
        getattr(torch.cpu, probe, lambda: False)()
        for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    )
    onednn = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return CpuFacts(capability, native_bf16=flags and onednn and capability.startswith("AVX512"))


def unet_call_timer(
    unet: torch.nn.Module, latent_size: int, text_width: int
) -> Callable[[tuple[torch.dtype, ...]], dict[torch.dtype, float]]:
    """A timer of one UNet call of one row at the stream's latent size in each of some types,
    each on its own copy of ``unet`` (the caller's is left in its type), by
    :func:`alternating_medians`."""

    def time_calls(dtypes: tuple[torch.dtype, ...]) -> dict[torch.dtype, float]:
        copies = {dtype: cast(copy.deepcopy(unet), dtype) for dtype in dtypes}
        generator = torch.Generator().manual_seed(0)
        latent = torch.randn(1, unet.config.in_channels, latent_size, latent_size,
                             generator=generator)
        text = torch.randn(1, 77, text_width, generator=generator)
        timestep = torch.tensor([500])
        return alternating_medians({
            dtype: functools.partial(
                copies[dtype], latent.to(dtype), timestep, encoder_hidden_states=text.to(dtype)
            )
            for dtype in dtypes
        })

    return time_calls


def alternating_medians(calls: Mapping[K, Callable[[], object]]) -> dict[K, float]:
    """The median seconds of each of ``calls``: one warm-up call each first (it builds the
    kernels), then ``PROBE_CALLS`` rounds in which they take turns, so a load change on a shared
    CPU hits them alike. Runs under ``torch.inference_mode``."""

    def seconds(call: Callable[[], object]) -> float:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    with torch.inference_mode():
        for call in calls.values():
            call()
        rounds = [{key: seconds(call) for key, call in calls.items()} for _ in range(PROBE_CALLS)]
    return {key: statistics.median(r[key] for r in rounds) for key in calls}


def cast(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """``module.to(dtype)``, without the warning diffusers 0.42 logs on every cast of one of its
    models, even one that keeps no layer in fp32 (as none of SD 1.x's parts does)."""
    from diffusers.utils import logging as diffusers_logging

    keeps_fp32 = getattr(module, "_keep_in_fp32_modules", None)
    if keeps_fp32:
        raise ValueError(f"{type(module).__name__} keeps {keeps_fp32} in fp32: load it in {dtype}")
    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        return module.to(dtype)
    finally:
        diffusers_logging.set_verbosity(verbosity)


def conv_layout(module: torch.nn.Module) -> torch.memory_format:
    """The memory layout of ``module``'s convolutions (its first conv's weight): channels-last
    where loading.py put it there, else contiguous. Inputs given in the same layout keep a
    compiled module's guards steady and spare each call a conversion."""
    weight = next(m.weight for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    if weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format
