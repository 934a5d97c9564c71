"""The stream options shared by ``serve``, ``play`` and ``render``: flags, an optional TOML file,
and the one place their defaults, units and checks live.

A TOML file uses the long option names without dashes, with ``_`` or ``-`` between words::

    model = "/models/riffusion"
    prompt = ["jazz piano:2", "rain"]
    seed_loop = "house_117"
    transition_seconds = 6

Flags given on the command line win over the file.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tomllib
from pathlib import Path
from typing import Any

from streamer.errors import UserError
from streamer.generate.config import DEFAULT_MODEL, GeneratorConfig
from streamer.audio.stitcher import QUANTIZE_CHOICES
from streamer.generate.presets import PRESETS, SCHEDULER_NAMES
from streamer.plan.settings import PromptBlend, Transition
from streamer.runtime.assemble import StreamConfig


def parse_prompt(text: str) -> tuple[str, float]:
    """``"jazz piano:2"`` -> ``("jazz piano", 2.0)``; text without a numeric suffix weighs 1."""
    head, sep, tail = text.rpartition(":")
    if sep and head.strip():
        try:
            weight = float(tail)
        except ValueError:
            return text.strip(), 1.0
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"the weight after ':' must be a number >= 0, got {tail!r}")
        return head.strip(), weight
    return text.strip(), 1.0


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options that choose and place the checkpoint, as every model command takes them.
    Defaults are None so that a TOML file can fill what the command line leaves out; the real
    defaults are GeneratorConfig's."""
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        help="hub id, local diffusers folder, or one .safetensors/.ckpt file "
        f"(default {DEFAULT_MODEL}; `streamer make-tiny-model DIR` makes a small test model)",
    )
    group.add_argument(
        "--model-config",
        metavar="DIR",
        help="for a single-file checkpoint: a diffusers folder with the configs and tokenizer",
    )
    group.add_argument("--device", help="cuda, cuda:N, mps or cpu (default: the best available)")
    group.add_argument(
        "--dtype", help="fp16, bf16 or fp32 (default: fp16 on CUDA, bf16 on CPU, fp32 on MPS)"
    )
    group.add_argument(
        "--offline", action="store_true", default=None, help="never contact the model hub"
    )
    group.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="sampling preset: default (DPM-Solver++, 20 steps) or lcm (LCM-LoRA, 6 steps)",
    )
    group.add_argument("--scheduler", choices=SCHEDULER_NAMES, help="override the preset's scheduler")
    group.add_argument("--steps", type=int, help="override the preset's schedule length")
    group.add_argument("--lora", metavar="ID|PATH", help="override the preset's LoRA")
    group.add_argument(
        "--compile",
        choices=("none", "default", "reduce-overhead"),
        help="torch.compile the UNet (reduce-overhead adds CUDA graphs); pays off on a GPU only",
    )


def add_stream_options(parser: argparse.ArgumentParser) -> None:
    """The options every streaming command shares. Defaults are None here so that a TOML file
    can fill what the command line leaves out; the real defaults are in the dataclasses."""
    add_model_options(parser)
    music = parser.add_argument_group("music")
    music.add_argument(
        "--prompt",
        action="append",
        metavar="TEXT[:WEIGHT]",
        help="a prompt, optionally with a relative weight; repeat to blend several",
    )
    music.add_argument("--negative-prompt", metavar="TEXT", help="what to steer away from")
    music.add_argument("--seed", type=int, help="the noise seed the walk starts from (default 0)")
    music.add_argument(
        "--seed-loop",
        metavar="NAME",
        help="rhythm seed loop (see `streamer seeds`) or a PNG made by `streamer make-seed`",
    )
    music.add_argument("--denoising", type=float, help="img2img strength, 0.05..1 (default 0.75)")
    music.add_argument("--guidance", type=float, help="classifier-free guidance, 0..30 (default 7)")
    music.add_argument(
        "--transition-seconds", type=float, help="length of a change, in seconds (default 8)"
    )
    music.add_argument("--transition-bars", type=float, help="length of a change, in 4/4 bars")
    music.add_argument(
        "--no-endless",
        dest="endless",
        action="store_false",
        default=None,
        help="stay on the given prompts instead of drifting through a playlist when nobody steers",
    )
    engine = parser.add_argument_group("engine")
    engine.add_argument(
        "--lookahead-frames", type=int, help="finished frames kept ready ahead of playback (default 2)"
    )
    engine.add_argument("--batch-frames", type=int, help="frames per UNet batch (default 1)")
    engine.add_argument(
        "--quantize",
        choices=QUANTIZE_CHOICES,
        help="where a change is heard: the next bar (4 beats of the seed loop), the next beat "
        "(default), or off: as soon as its first frame is ready and the crossfade can run",
    )
    parser.add_argument("--config", metavar="FILE.toml", help="read options from a TOML file")


#: Option name -> (section, field): where each option lands in StreamConfig.
_OPTION_FIELDS = {
    "model": ("model", "model"),
    "model_config": ("model", "model_config"),
    "compile": ("model", "compile"),
    "scheduler": ("model", "scheduler"),
    "steps": ("model", "num_inference_steps"),
    "lora": ("model", "lora"),
    "device": ("model", "device"),
    "dtype": ("model", "dtype"),
    "offline": ("model", "offline"),
    "preset": ("model", "preset"),
    "negative_prompt": ("settings", "negative_prompt"),
    "seed": ("settings", "seed"),
    "seed_loop": ("settings", "seed_loop"),
    "denoising": ("settings", "denoising"),
    "guidance": ("settings", "guidance"),
    "endless": ("planner", "endless"),
    "lookahead_frames": ("engine", "lookahead_frames"),
    "batch_frames": ("engine", "batch_frames"),
    "quantize": ("stitcher", "quantize"),
}
_OTHER_OPTIONS = {"prompt", "transition_seconds", "transition_bars", "playlist"}
_TYPES: dict[str, type] = {
    "model": str, "model_config": str, "compile": str, "scheduler": str, "steps": int,
    "lora": str, "device": str, "dtype": str, "offline": bool, "preset": str,
    "negative_prompt": str, "seed": int, "seed_loop": str, "denoising": float, "guidance": float,
    "endless": bool, "lookahead_frames": int, "batch_frames": int, "quantize": str,
    "transition_seconds": float, "transition_bars": float,
}  # fmt: skip


def read_config_file(path: str) -> dict[str, Any]:
    """Options from a TOML file, keys normalised to option names; unknown keys are errors."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--config: no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"--config: cannot read {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"--config: {path} is not valid TOML: {error}") from None
    options: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in _OPTION_FIELDS and name not in _OTHER_OPTIONS:
            known = ", ".join(sorted(_OPTION_FIELDS.keys() | _OTHER_OPTIONS))
            raise UserError(f"{path}: unknown option {key!r}; known options: {known}")
        expected = _TYPES.get(name)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is not None and not isinstance(value, expected):
            raise UserError(f"{path}: option {key!r} must be {expected.__name__}, got {value!r}")
        if name in ("prompt", "playlist"):
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UserError(f"{path}: option {key!r} must be a string or a list of strings")
        options[name] = value
    return options


def stream_config_from_args(args: argparse.Namespace) -> StreamConfig:
    """Merge the TOML file (if any) and the flags into a checked StreamConfig.

    Every problem becomes a UserError that names the option and says what is allowed.
    """
    options = read_config_file(args.config) if getattr(args, "config", None) else {}
    for name in (*_OPTION_FIELDS, *_OTHER_OPTIONS):
        value = getattr(args, name, None)
        if value is not None:
            options[name] = value
    sections: dict[str, dict[str, Any]] = {
        "model": {}, "settings": {}, "planner": {}, "engine": {}, "stitcher": {}
    }  # fmt: skip
    for name, value in options.items():
        if name in _OPTION_FIELDS:
            section, field = _OPTION_FIELDS[name]
            sections[section][field] = value
    try:
        if "prompt" in options:
            sections["settings"]["prompts"] = PromptBlend(
                tuple(parse_prompt(text) for text in options["prompt"])
            )
    except ValueError as error:
        raise UserError(f"--prompt: {error}") from None
    if "transition_seconds" in options or "transition_bars" in options:
        try:
            sections["settings"]["transition"] = Transition(
                seconds=options.get("transition_seconds"), bars=options.get("transition_bars")
            )
        except ValueError as error:
            raise UserError(f"--transition-seconds / --transition-bars: {error}") from None
    if "playlist" in options:
        sections["planner"]["playlist"] = tuple(options["playlist"])
    defaults = StreamConfig()
    built = {}
    for section, fields in sections.items():
        try:
            built[section] = dataclasses.replace(getattr(defaults, section), **fields)
        except ValueError as error:
            flags = ", ".join("--" + _flag_of(section, f) for f in fields) or section
            raise UserError(f"{flags}: {error}") from None
    return StreamConfig(**built)


def model_config_from_args(args: argparse.Namespace) -> GeneratorConfig:
    """The model options alone, for commands that take no stream options (``generate``)."""
    fields = {
        field: getattr(args, name)
        for name, (section, field) in _OPTION_FIELDS.items()
        if section == "model" and getattr(args, name, None) is not None
    }
    try:
        return GeneratorConfig(**fields)
    except ValueError as error:
        raise UserError(f"model options: {error}") from None


def _flag_of(section: str, field: str) -> str:
    for name, place in _OPTION_FIELDS.items():
        if place == (section, field):
            return name.replace("_", "-")
    return field.replace("_", "-")
