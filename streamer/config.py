"""The stream options shared by ``serve``, ``play`` and ``render``: flags, an optional TOML file,
and the one place their defaults, units and checks live.

A TOML file uses the long option names without dashes, with ``_`` or ``-`` between words::

    model = "/models/riffusion"
    prompt = ["jazz piano:2", "rain"]
    seed_loop = "house_117"
    transition_seconds = 6

Flags given on the command line win over the file.

Scenes, which MIDI notes and program changes and OSC ``/streamer/scene`` recall, are tables of
the same file with the same option names (each sets only what it names)::

    [scenes.intro]
    prompt = ["soft piano:2", "rain"]
    seed_loop = "boom_bap_94"
    transition_bars = 4

    [scenes.drop]
    prompt = "808 bass, hard techno"
    denoising = 0.9
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamer.audio.loudness import LoudnessConfig
from streamer.errors import UserError
from streamer.generate.config import (
    AUTO_MODEL,
    BUILTIN_MODEL,
    CPU_RUNTIMES,
    DECODERS,
    DEFAULT_MODEL,
    MODEL_PRESETS,
    GeneratorConfig,
)
from streamer.audio.stitcher import QUANTIZE_CHOICES
from streamer.generate.presets import PRESETS, SCHEDULER_NAMES
from streamer.plan.arranger import FORMS
from streamer.plan.controls import MAX_NAME_CHARS
from streamer.plan.scenes import Scene
from streamer.plan.settings import PromptBlend, Transition
from streamer.runtime.stream_config import StreamConfig


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
        help=f"{AUTO_MODEL} (default: {DEFAULT_MODEL} on a CUDA or MPS GPU that has it cached or "
        f"can download it, else {BUILTIN_MODEL}), {BUILTIN_MODEL} (the small model shipped with "
        "streamer, no download), a hub id, a local diffusers folder, or one .safetensors/.ckpt "
        "file (`streamer make-tiny-model DIR` makes a random test model)",
    )
    group.add_argument(
        "--model-config",
        metavar="DIR",
        help="for a single-file checkpoint: a diffusers folder with the configs and tokenizer",
    )
    group.add_argument("--device", help="cuda, cuda:N, mps or cpu (default: the best available)")
    group.add_argument(
        "--dtype",
        help="fp16, bf16 or fp32 (default: fp16 on CUDA, fp32 on MPS; on a CPU bf16 where it is "
        "native and measured faster at start-up, else fp32)",
    )
    group.add_argument(
        "--offline", action="store_true", default=None, help="never contact the model hub"
    )
    presets = PRESETS.values()
    group.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="sampling preset: "
        + ", ".join(f"{p.name} ({p.scheduler}, {p.num_inference_steps} steps)" for p in presets)
        + f" (default: the model's own, {MODEL_PRESETS[BUILTIN_MODEL]} for {BUILTIN_MODEL}, "
        "default for others)",
    )
    group.add_argument("--scheduler", choices=SCHEDULER_NAMES, help="override the preset's scheduler")
    group.add_argument(
        "--steps", type=int, help="denoising steps of the full schedule (default: the preset's)"
    )
    group.add_argument(
        "--guidance-until",
        type=int,
        metavar="TIMESTEP",
        help="classifier-free guidance only on steps at or above this timestep (0-1000; 0: every "
        "step); later steps run one UNet row instead of two (default: the preset's)",
    )
    group.add_argument("--lora", metavar="ID|PATH", help="override the preset's LoRA")
    group.add_argument(
        "--compile",
        choices=("none", "default", "reduce-overhead"),
        help="torch.compile the UNet (reduce-overhead adds CUDA graphs); pays off on a GPU only. "
        "It compiles at start for every batch size --batch-frames can use (minutes on a GPU)",
    )
    group.add_argument(
        "--cpu-runtime",
        choices=CPU_RUNTIMES,
        help="what runs the UNet and VAE decoder on a CPU: openvino (converted once, then cached), "
        "torch, or auto (default: openvino where it is installed and one UNet call measures no "
        "slower in it than in torch at start)",
    )
    group.add_argument(
        "--decoder",
        choices=DECODERS,
        help="which decoder turns latents into images: light (the model's distilled decoder, "
        "2.8x faster on a CPU), full (the VAE's own), or auto (default: light on a CPU where "
        "the model has one, as the built-in model does; full elsewhere)",
    )


def add_stream_options(parser: argparse.ArgumentParser) -> None:
    """The options every streaming command shares. Defaults are None here so that a TOML file
    can fill what the command line leaves out; the real defaults are in the dataclasses, and the
    help text reads them from there."""
    add_model_options(parser)
    defaults = StreamConfig()
    settings, engine_defaults = defaults.settings, defaults.engine
    music = parser.add_argument_group("music")
    music.add_argument(
        "--prompt",
        action="append",
        metavar="TEXT[:WEIGHT]",
        help="a prompt, optionally with a relative weight (a number >= 0); repeat to blend several",
    )
    music.add_argument("--negative-prompt", metavar="TEXT", help="what to steer away from (free text)")
    music.add_argument(
        "--seed",
        type=int,
        help=f"the noise seed the walk starts from, a whole number 0..2^32-1 (default {settings.seed})",
    )
    music.add_argument(
        "--seed-loop",
        metavar="NAME",
        help="rhythm seed loop, one of those `streamer seeds` lists, or a PNG made by "
        f"`streamer make-seed` (default {settings.seed_loop})",
    )
    music.add_argument(
        "--denoising", type=float, help="img2img strength, 0.05..1 (default: the preset's)"
    )
    music.add_argument(
        "--guidance", type=float, help="classifier-free guidance, 0..30 (default: the preset's)"
    )
    music.add_argument(
        "--transition-seconds",
        type=float,
        help=f"length of a change, in seconds (default {settings.transition.seconds:g})",
    )
    music.add_argument("--transition-bars", type=float, help="length of a change, in 4/4 bars")
    music.add_argument(
        "--no-endless",
        dest="endless",
        action="store_false",
        default=None,
        help="stay on the given prompts instead of drifting through a playlist when nobody steers",
    )
    music.add_argument(
        "--form",
        choices=FORMS,
        help="in endless mode: song walks songs of sections (intro, groove, break, build, drop, "
        "outro) with seed loops composed on the fly; loop keeps one groove and changes only the "
        f"prompt (default {defaults.planner.form})",
    )
    engine = parser.add_argument_group("engine")
    engine.add_argument(
        "--lookahead-frames",
        type=int,
        help=f"finished frames kept ready ahead of playback (default {engine_defaults.lookahead_frames})",
    )
    engine.add_argument(
        "--batch-frames", type=int, help=f"frames per UNet batch (default {engine_defaults.batch_frames})"
    )
    engine.add_argument(
        "--loudness",
        metavar="LUFS|off",
        help="integrated loudness the stream is held at, in LUFS or off, with a -1 dBTP "
        f"true-peak limiter (default {LoudnessConfig().target_lufs:g}); off keeps each frame's "
        "own level",
    )
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
    "cpu_runtime": ("model", "cpu_runtime"),
    "decoder": ("model", "decoder"),
    "scheduler": ("model", "scheduler"),
    "steps": ("model", "num_inference_steps"),
    "guidance_until": ("model", "guidance_until_timestep"),
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
    "form": ("planner", "form"),
    "lookahead_frames": ("engine", "lookahead_frames"),
    "batch_frames": ("engine", "batch_frames"),
    "quantize": ("stitcher", "quantize"),
}
_OTHER_OPTIONS = {"prompt", "transition_seconds", "transition_bars", "playlist", "scenes", "loudness"}
#: The options a scene may set.
_SCENE_OPTIONS = (
    "prompt", "negative_prompt", "seed", "seed_loop", "denoising", "guidance",
    "transition_seconds", "transition_bars",
)  # fmt: skip
_TYPES: dict[str, type] = {
    "model": str, "model_config": str, "compile": str, "cpu_runtime": str, "decoder": str,
    "scheduler": str,
    "steps": int, "guidance_until": int,
    "lora": str, "device": str, "dtype": str, "offline": bool, "preset": str,
    "negative_prompt": str, "seed": int, "seed_loop": str, "denoising": float, "guidance": float,
    "endless": bool, "form": str, "lookahead_frames": int, "batch_frames": int, "quantize": str,
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
    options = _options(data, path, _OPTION_FIELDS.keys() | _OTHER_OPTIONS, "")
    if "scenes" in options:
        options["scenes"] = _scenes(options["scenes"], path)
    return options


def _options(data: dict[str, Any], path: str, known: Any, prefix: str) -> dict[str, Any]:
    """Keys normalised to option names, each checked for its type; ``prefix`` names the table
    in errors (``scenes.drop.``)."""
    options: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in known:
            raise UserError(
                f"{path}: unknown option {prefix + key!r}; known options: {', '.join(sorted(known))}"
            )
        expected = _TYPES.get(name)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if expected is not None and not isinstance(value, expected):
            raise UserError(f"{path}: option {prefix + key!r} must be {expected.__name__}, got {value!r}")
        if name in ("prompt", "playlist"):
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UserError(f"{path}: option {prefix + key!r} must be a string or a list of strings")
        options[name] = value
    return options


def _scenes(tables: Any, path: str) -> tuple[Scene, ...]:
    """The ``[scenes.NAME]`` tables, in the file's order (the default MIDI map counts them)."""
    if not isinstance(tables, dict) or not all(isinstance(t, dict) for t in tables.values()):
        raise UserError(f"{path}: scenes must be tables: [scenes.NAME] with options such as prompt")
    scenes = []
    for name, table in tables.items():
        where = f"scenes.{name}"
        if not name.strip() or len(name) > MAX_NAME_CHARS:
            raise UserError(f"{path}: {where}: a scene's name is 1 to {MAX_NAME_CHARS} characters")
        options = _options(table, path, set(_SCENE_OPTIONS), where + ".")
        try:
            prompts = options.get("prompt")
            transition = None
            if "transition_seconds" in options or "transition_bars" in options:
                transition = Transition(
                    seconds=options.get("transition_seconds"), bars=options.get("transition_bars")
                )
            scenes.append(
                Scene(
                    name,
                    prompts=PromptBlend(tuple(map(parse_prompt, prompts))) if prompts else None,
                    negative_prompt=options.get("negative_prompt"),
                    seed=options.get("seed"),
                    seed_loop=options.get("seed_loop"),
                    denoising=options.get("denoising"),
                    guidance=options.get("guidance"),
                    transition=transition,
                )
            )
        except ValueError as error:
            raise UserError(f"{path}: {where}: {error}") from None
    return tuple(scenes)


def check_scene_seed_loops(config: StreamConfig) -> None:
    """A scene's seed loop must be one the stream can load: a library loop or the stream's own."""
    from streamer.seeds.library import list_seed_loops  # loads torch: not for --help

    known = {loop.name for loop in list_seed_loops()} | {config.settings.seed_loop}
    for scene in config.scenes:
        if scene.seed_loop is not None and scene.seed_loop not in known:
            raise UserError(
                f"scenes.{scene.name}.seed_loop: no seed loop called {scene.seed_loop!r}; "
                f"choose one of {', '.join(sorted(known))} (see `streamer seeds`)"
            )


def stream_config_from_args(
    args: argparse.Namespace,
    choose_model: Callable[[GeneratorConfig], GeneratorConfig] | None = None,
) -> StreamConfig:
    """Merge the TOML file (if any) and the flags into a checked StreamConfig.

    ``choose_model`` turns ``--model auto`` into the model that plays (the commands pass
    :func:`chosen_model`); once the model is known, denoising and guidance not given default to
    its preset's. Every problem becomes a UserError that names the option and says what is
    allowed.
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
    loudness = _loudness_config(options["loudness"]) if "loudness" in options else defaults.loudness
    built: dict[str, Any] = {
        section: _section(defaults, section, fields) for section, fields in sections.items()
    }
    if choose_model is not None:  # after the checks: a mistyped option fails without probing
        built["model"] = choose_model(built["model"])
    if built["model"].model != AUTO_MODEL:
        preset = built["model"].resolved_preset()
        given = sections["settings"]
        preset_defaults: dict[str, Any] = {
            "denoising": preset.denoising,
            "guidance": preset.guidance,
        }
        if preset.prompts:
            preset_defaults["prompts"] = PromptBlend.single(preset.prompts[0])
            if "playlist" not in sections["planner"]:
                built["planner"] = _section(
                    defaults, "planner", {**sections["planner"], "playlist": preset.prompts}
                )
        built["settings"] = _section(defaults, "settings", {**preset_defaults, **given})
    config = StreamConfig(**built, scenes=options.get("scenes", ()), loudness=loudness)
    check_scene_seed_loops(config)
    # A seed loop given, or a Link session's tempo to follow: every song keeps that tempo.
    style_tempi = "seed_loop" not in options and not getattr(args, "link", False)
    return with_song_loops(config, style_tempi)


def with_song_loops(config: StreamConfig, style_tempi: bool = True) -> StreamConfig:
    """In the song form, the composer styles of the playlist's prompts, so that seed loops are
    composed for it, and with ``style_tempi`` the tempi those styles were trained at, which
    their songs play at; none (and a log line) when FluidSynth is missing."""
    if not config.planner.song_form or config.planner.loop_styles:
        return config
    from streamer.runtime.composed_loops import song_loop_styles, style_beats  # loads torch

    styles = song_loop_styles((config.settings.prompts.dominant, *config.planner.playlist))
    planner = dataclasses.replace(
        config.planner, loop_styles=styles, style_beats=style_beats(styles) if style_tempi else ()
    )
    return dataclasses.replace(config, planner=planner)


def _section(defaults: StreamConfig, section: str, fields: dict[str, Any]):
    try:
        return dataclasses.replace(getattr(defaults, section), **fields)
    except ValueError as error:
        flags = ", ".join("--" + _flag_of(section, f) for f in fields) or section
        raise UserError(f"{flags}: {error}") from None


def chosen_model(model: GeneratorConfig) -> GeneratorConfig:
    """``--model auto`` resolved on this machine, and one line on stderr saying which model
    plays (it loads once the other options have been checked)."""
    from streamer.generate.model_choice import resolve_model

    resolved, announcement = resolve_model(model)
    print(announcement or f"playing {resolved.model}", file=sys.stderr, flush=True)
    return resolved


def _loudness_config(value: Any) -> LoudnessConfig | None:
    """``--loudness``: a target in LUFS (a number, or its text) or ``off``."""
    if isinstance(value, str) and value.strip().lower() == "off":
        return None
    try:
        target = float(value)
    except (TypeError, ValueError):
        raise UserError(f"--loudness must be a number of LUFS such as -14, or off; got {value!r}") from None
    try:
        return LoudnessConfig(target_lufs=target)
    except ValueError as error:
        raise UserError(f"--loudness: {error}") from None


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
