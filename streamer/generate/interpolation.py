"""Interpolation maths for frames between keyframes: deterministic tensor functions, no models.

Text embeddings mix linearly (weighted sums), but Gaussian noise must mix spherically: a linear
mix of two independent noises has a smaller norm than either (at alpha 0.5, about 0.71 times),
and the model reads a low-norm latent as a quieter, blurrier image. Slerp keeps the norm, so
every frame of a transition is grown from noise of the right scale.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

#: Above this cosine the two noises are treated as parallel and mixed linearly (slerp's formula
#: divides by sin(angle), which vanishes).
PARALLEL_COSINE = 0.9995


def slerp(alpha: float, start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation from ``start`` (alpha 0) to ``end`` (alpha 1), computed in float64.

    Exact at the ends: alpha 0 returns ``start`` and alpha 1 returns ``end`` unchanged.
    """
    if alpha == 0.0:
        return start.clone()
    if alpha == 1.0:
        return end.clone()
    a, b = start.double(), end.double()
    cosine = float((a * b).sum() / (a.norm() * b.norm()))
    if abs(cosine) > PARALLEL_COSINE:
        mixed = (1.0 - alpha) * a + alpha * b
    else:
        angle = torch.arccos(torch.tensor(cosine, dtype=torch.float64))
        mixed = (torch.sin((1.0 - alpha) * angle) * a + torch.sin(alpha * angle) * b) / torch.sin(
            angle
        )
    return mixed.to(start.dtype)


def blend_embeddings(
    weights: Mapping[str, float], embeddings: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """The weighted sum of the prompts' embeddings, in float32 (weights sum to 1, see request)."""
    if not weights:
        raise ValueError("a blend needs at least one prompt")
    total = None
    for prompt, weight in weights.items():
        term = embeddings[prompt].float() * weight
        total = term if total is None else total + term
    return total
