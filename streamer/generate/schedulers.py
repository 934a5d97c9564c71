"""Scheduler construction: a name from presets.SCHEDULER_NAMES on the checkpoint's noise schedule.

The checkpoint's scheduler config carries the training noise schedule (betas, timestep count,
offset); every sampler below is built on it, so switching sampler never changes the model's
notion of noise. A frame gets its own scheduler instance, because multistep samplers keep the
previous model outputs as state and frames in one batch may start at different timesteps.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

#: Settings each sampler gets on top of the checkpoint's schedule. DPM-Solver++ 2M is the
#: deterministic multistep solver; "eta" 0 DDIM and non-ancestral Euler are deterministic too,
#: so a frame depends only on its request. LCM adds fresh noise between steps; the generator
#: supplies that noise itself (see generator.py) so it stays a function of the request.
_SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "dpm++": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "ddim": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": False}),
    "euler": ("EulerDiscreteScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}

#: Samplers whose step adds new noise (their ``step`` returns ``denoised``, the clean estimate).
RENOISING_SCHEDULERS = frozenset({"lcm"})


def make_scheduler(name: str, noise_schedule: Mapping[str, Any]):
    """A fresh scheduler ``name`` on the checkpoint's ``noise_schedule`` (its scheduler config)."""
    import diffusers

    try:
        class_name, settings = _SAMPLERS[name]
    except KeyError:
        raise ValueError(
            f"unknown scheduler {name!r}: choose one of {', '.join(_SAMPLERS)}"
        ) from None
    scheduler_class = getattr(diffusers, class_name)
    # Keep only what this sampler understands: the checkpoint's config may be PNDM's or
    # DPM-Solver's, and their private switches mean nothing to the others.
    accepted = inspect.signature(scheduler_class.__init__).parameters
    base = {k: v for k, v in noise_schedule.items() if k in accepted}
    return scheduler_class.from_config({**base, **settings})
