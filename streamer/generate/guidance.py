"""Classifier-free guidance, and the contract of a guidance-distilled UNet (a *student*).

Guidance mixes two UNet predictions of a frame, with its prompt (``conditional``) and with its
negative prompt (``unconditional``): ``unconditional + w (conditional - unconditional)``. On a
CPU the second row costs most of a second UNet call (a guided batch of 2 rows takes 2.4x one
row, ../shared/notes/cpu-classes.md), so a frame's UNet time is nearly halved by a student
that predicts the guided result in one row.

A student is a UNet whose config has ``time_cond_proj_dim``, diffusers' hook for the guidance
embedding of latent consistency models: the embedding below, projected and added to the
timestep embedding. It is distilled against one negative prompt, the empty caption (what the
caption dropout of training taught as unconditional, and the stream's default), so only frames
with that negative prompt can take the one-row path. Any frame can still run classic guidance
on it: at ``w = 1`` the student predicts the conditional row, as its teacher does.

The embedding's convention, in this one place: a frame of guidance scale ``w`` is embedded as
``w - 1``, the guidance beyond the conditional prediction (0: none), with LCM's sinusoidal
embedding of ``1000 (w - 1)``. That is what diffusers' LCM pipelines pass, so a published LCM
checkpoint reads the stream's guidance as it was trained to.
"""

from __future__ import annotations

import torch

from streamer.generate.compute_type import conv_layout

#: The negative prompt a student is distilled against: the empty caption.
DISTILLED_NEGATIVE_PROMPT = ""

#: Width of a student's guidance embedding (``time_cond_proj_dim``), as LCM's SD students use.
GUIDANCE_EMBEDDING_DIM = 256


def classifier_free_guidance(
    unconditional: torch.Tensor, conditional: torch.Tensor, scale: float | torch.Tensor
) -> torch.Tensor:
    """The guided noise prediction: ``unconditional + scale (conditional - unconditional)``
    (``scale`` a number, or a tensor that broadcasts over rows)."""
    return unconditional + scale * (conditional - unconditional)


def is_guidance_distilled(unet: torch.nn.Module) -> bool:
    """Whether ``unet`` takes a guidance embedding (``timestep_cond``): a student."""
    return getattr(unet.config, "time_cond_proj_dim", None) is not None


def guidance_embedding(scales: torch.Tensor, dim: int) -> torch.Tensor:
    """(rows, dim) embeddings of guidance scales ``w`` (a 1-d tensor), as a student's
    ``timestep_cond``: LCM's ``get_guidance_scale_embedding(w - 1, dim)``."""
    from diffusers.models.embeddings import get_timestep_embedding

    return get_timestep_embedding(
        (scales.float() - 1.0) * 1000.0, dim, flip_sin_to_cos=False, downscale_freq_shift=1
    )


def student_from_teacher(teacher: torch.nn.Module, dim: int = GUIDANCE_EMBEDDING_DIM):
    """A student UNet: the teacher's config and weights plus a guidance projection of width
    ``dim``, zero, so until trained it predicts exactly the teacher's conditional row at any
    guidance (what the student must still do at ``w = 1``)."""
    from diffusers import UNet2DConditionModel

    if is_guidance_distilled(teacher):
        raise ValueError("the teacher is already guidance-distilled (its UNet has a guidance "
                         "embedding): distil from the model it was distilled from")
    student = UNet2DConditionModel.from_config({**teacher.config, "time_cond_proj_dim": dim})
    # As the teacher: its type and its layout (channels-last on a CPU or GPU, loading.py), so
    # that it computes exactly as the teacher does.
    torch.nn.Module.to(
        student, dtype=next(teacher.parameters()).dtype, memory_format=conv_layout(teacher)
    )
    missing, unexpected = student.load_state_dict(teacher.state_dict(), strict=False)
    if unexpected or missing != ["time_embedding.cond_proj.weight"]:
        raise ValueError(f"the student does not fit its teacher: {missing=}, {unexpected=}")
    torch.nn.init.zeros_(student.time_embedding.cond_proj.weight)
    return student
