"""What ``--model auto`` plays: Riffusion's checkpoint where a GPU can run it and get it, else the
built-in model, announced in one line that also says how to get the other. An install without the
built-in model's weights (they are still being trained: benchmarks/RESULTS.md) plays Riffusion's
checkpoint as before, and says so.

Riffusion's 4 GB checkpoint needs a CUDA or MPS device to stream (a CPU makes 0.1-0.2x real
time), and either the local cache or a reachable hub; the built-in model ships in the package
and streams on a CPU. The rule is :func:`choose_model`, pure: the machine's facts come in as
arguments, the hub's reachability as a callable asked only when it decides (a machine without a
GPU never touches the network). :func:`resolve_model` is the shell that probes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from streamer.generate.config import (
    AUTO_MODEL,
    BUILTIN_MODEL,
    DEFAULT_MODEL,
    GeneratorConfig,
    download_command,
)

#: How long the reachability probe waits for the hub: long enough for a slow link, short enough
#: that a machine without network starts the built-in model promptly.
HUB_PROBE_TIMEOUT_SECONDS = 3.0

_DEVICE_NAMES = {"cuda": "CUDA", "mps": "MPS"}


@dataclasses.dataclass(frozen=True)
class Machine:
    """What decides the choice: the accelerator the run would use (None: the CPU), whether
    Riffusion's checkpoint is complete in the local cache, whether offline mode is on, and
    whether this install has the built-in model's weights."""

    accelerator: str | None
    riffusion_cached: bool
    offline: bool
    builtin_installed: bool = True


@dataclasses.dataclass(frozen=True)
class ModelChoice:
    """The model that plays, and the one line that tells the user so."""

    model: str
    announcement: str


def choose_model(machine: Machine, hub_reachable: Callable[[], bool]) -> ModelChoice:
    """Riffusion's checkpoint when an accelerator is present and the checkpoint is cached or the
    hub answers (asked only then, never offline); otherwise the built-in model."""
    riffusion = f"--model {DEFAULT_MODEL}"
    if not machine.builtin_installed:
        return ModelChoice(
            DEFAULT_MODEL,
            f"playing Riffusion's checkpoint {DEFAULT_MODEL}: this install has no built-in "
            "model yet (see README, Train on your own music); on a CPU it is far slower than "
            "real time",
        )
    if machine.accelerator is None:
        return ModelChoice(
            BUILTIN_MODEL,
            "playing the built-in model (CPU); on a CUDA GPU, "
            f"{riffusion} plays Riffusion's checkpoint (4 GB download)",
        )
    device = _DEVICE_NAMES.get(machine.accelerator, machine.accelerator)
    if machine.riffusion_cached:
        return ModelChoice(
            DEFAULT_MODEL,
            f"playing Riffusion's checkpoint {DEFAULT_MODEL} ({device}, cached); "
            "--model builtin plays the small built-in model",
        )
    if machine.offline:
        why = "offline mode is on and Riffusion's checkpoint is not in the cache"
    elif hub_reachable():
        return ModelChoice(
            DEFAULT_MODEL,
            f"playing Riffusion's checkpoint {DEFAULT_MODEL} ({device}; 4 GB download the "
            "first time); --model builtin plays the small built-in model now",
        )
    else:
        why = "the hub is unreachable and Riffusion's checkpoint is not in the cache"
    return ModelChoice(
        BUILTIN_MODEL,
        f"playing the built-in model ({device}): {why}; `{download_command(DEFAULT_MODEL)}` "
        f"(4 GB) where the hub is reachable, then {riffusion}, plays Riffusion's checkpoint",
    )


def resolve_model(config: GeneratorConfig) -> tuple[GeneratorConfig, str | None]:
    """``config`` with ``auto`` replaced by the model that plays here, and the line announcing it
    (None when the model was chosen explicitly: nothing to announce). Probes the device, the
    cache and, only when the choice depends on it, the hub."""
    if config.model != AUTO_MODEL:
        return config, None
    from streamer.generate.loading import (
        builtin_installed,
        hub_problem,
        model_in_cache,
        offline_mode,
        select_device,
    )

    device = select_device(config.device)
    machine = Machine(
        accelerator=None if device.type == "cpu" else device.type,
        riffusion_cached=model_in_cache(DEFAULT_MODEL, config.cache_dir),
        offline=offline_mode(config),
        builtin_installed=builtin_installed(),
    )
    choice = choose_model(
        machine, lambda: hub_problem(DEFAULT_MODEL, HUB_PROBE_TIMEOUT_SECONDS) is None
    )
    return dataclasses.replace(config, model=choice.model), choice.announcement
