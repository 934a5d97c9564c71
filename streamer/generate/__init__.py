"""Frames from prompts: Stable Diffusion img2img on spectrogram images.

- ``request``: what is asked for (``FrameRequest``, ``Keyframe``, ``transition``), pure data;
- ``presets`` and ``config``: how frames are sampled and which checkpoint runs where;
- ``interpolation``: slerp of noise and weighted blends of embeddings;
- ``loading``: checkpoints from the hub, a folder, one file or the package; device and dtype;
  clear errors;
- ``model_choice``: what ``--model auto`` plays on this machine;
- ``schedulers``: samplers built on the checkpoint's noise schedule;
- ``generator``: ``FrameGenerator.generate(requests) -> frames``, the algorithm in one place;
- ``cancellation``: ``FrameCancelled`` and the ``IsStale`` check that stops a stale batch;
- ``tiny_model``: a random-weight model for tests and smoke runs.

Only the pure modules are imported here, so that planning code and ``streamer --help`` do not
load torch; import ``streamer.generate.generator`` for the engine.
"""

from streamer.generate.config import AUTO_MODEL, BUILTIN_MODEL, DEFAULT_MODEL, GeneratorConfig
from streamer.generate.presets import PRESETS, GeneratorPreset
from streamer.generate.request import FrameRequest, Keyframe, PromptBlend, transition

__all__ = [
    "AUTO_MODEL",
    "BUILTIN_MODEL",
    "DEFAULT_MODEL",
    "PRESETS",
    "FrameRequest",
    "GeneratorConfig",
    "GeneratorPreset",
    "Keyframe",
    "PromptBlend",
    "transition",
]
