"""MIDI messages -> engine commands, pure: a default mapping and one read from a TOML file.

Control changes move continuous targets (a prompt's weight, denoising, guidance, transition
length, seed: 0..127 spread over the target's range) or press buttons (pause, resume, skip: a
value of 64 or more presses); notes and program changes recall scenes. A mapping file replaces
the default as a whole (README, "On stage")::

    channel = 1                       # 1..16; leave out to listen on every channel

    [cc]
    20 = { target = "weight", prompt = 1 }              # fader: prompt 1's weight, 0..1
    21 = { target = "weight", prompt = 2, range = [0, 2] }
    28 = { target = "denoising", range = [0.3, 0.9] }
    64 = { target = "skip" }

    [notes]                           # note number -> scene name (pads), or a pad control
    36 = "intro"
    35 = { target = "capture", value = 2 }              # capture the last 2 bars of --input

    [programs]                        # program number (0..127) -> scene name
    0 = "intro"
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from streamer.errors import UserError
from streamer.inputs.desk import PromptDesk
from streamer.inputs.pump import Routed
from streamer.plan.controls import (
    CONTROLS,
    PROMPTS_KEY,
    WEIGHT,
    Button,
    Control,
    ControlError,
    ControlSchema,
    PromptLimits,
    button_controls,
    default_value,
    fader_controls,
    pad_controls,
)
from streamer.plan.settings import MAX_PROMPTS

#: A button is pressed at this value or above (a release sends 0).
PRESSED = 64

#: The default mapping: faders on CC 20..27 (undefined in the MIDI standard, free on most
#: controllers) weigh prompts 1..8, CC 28..31 set denoising, guidance, transition seconds and
#: seed; pads from note 36 (C1, the first pad of most pad controllers) and program changes from 0
#: recall the config file's scenes in the order they are written.
DEFAULT_FIRST_WEIGHT_CC = 20
DEFAULT_FIRST_SCENE_NOTE = 36
#: The pad below the scenes' first captures the live input's last bars (``--input``).
DEFAULT_CAPTURE_NOTE = 35


@dataclasses.dataclass(frozen=True)
class ControlTarget:
    """What one control change moves, over [low, high]: a control of the schema, or (``control``
    None) the weight of the desk's prompt number ``prompt``, from 1."""

    control: Control | None
    prompt: int | None = None
    low: float = 0.0
    high: float = 1.0

    @property
    def target(self) -> str:
        """Its name in a mapping file."""
        return "weight" if self.control is None else self.control.name


@dataclasses.dataclass(frozen=True)
class PadTarget:
    """A control a note presses: a button, or a value (``value``: its default unless told)."""

    control: Control
    value: Any = None


@dataclasses.dataclass(frozen=True)
class MidiMap:
    channel: int | None  # 0..15 as on the wire; None: every channel
    controls: Mapping[int, ControlTarget]
    notes: Mapping[int, str]  # note -> scene
    programs: Mapping[int, str]
    pads: Mapping[int, PadTarget] = dataclasses.field(default_factory=dict)  # note -> control


@dataclasses.dataclass(frozen=True)
class Ignored:
    """A message that maps to nothing; ``reason`` says why (for the monitor and the log)."""

    reason: str
    unmapped: tuple[str, int] | None = None  # ("cc", 99): a control a mapping could take


def default_midi_map(scene_names: Sequence[str]) -> MidiMap:
    controls = {
        DEFAULT_FIRST_WEIGHT_CC + index: ControlTarget(None, index + 1, *_fader_span(WEIGHT))
        for index in range(MAX_PROMPTS)
    }
    for offset, name in enumerate(("denoising", "guidance", "transition_seconds", "seed")):
        control = CONTROLS.by_name[name]
        controls[DEFAULT_FIRST_WEIGHT_CC + MAX_PROMPTS + offset] = ControlTarget(
            control, None, *_fader_span(control.value)
        )
    scenes = list(scene_names)[:128]
    capture = CONTROLS.by_name["capture"]
    return MidiMap(
        channel=None,
        controls=controls,
        notes={
            DEFAULT_FIRST_SCENE_NOTE + i: name
            for i, name in enumerate(scenes)
            if DEFAULT_FIRST_SCENE_NOTE + i < 128
        },
        programs=dict(enumerate(scenes)),
        pads={DEFAULT_CAPTURE_NOTE: PadTarget(capture, default_value(capture))},
    )


def _fader_span(value: Any) -> tuple[float, float]:
    """The span a fader moves a value over unless a mapping file says otherwise."""
    assert value.fader is not None
    return value.fader


def read_midi_map(path: str, scene_names: Sequence[str]) -> MidiMap:
    """The mapping in TOML file ``path``; every problem is a UserError naming the key."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--midi-map: no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"--midi-map: cannot read {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise UserError(f"--midi-map: {path} is not valid TOML: {error}") from None
    return midi_map_from_toml(data, scene_names, where=path)


def midi_map_from_toml(
    data: Mapping[str, Any],
    scene_names: Sequence[str],
    where: str,
    schema: ControlSchema = CONTROLS,
) -> MidiMap:
    """The mapping in a parsed TOML file; its targets are the controls of ``schema`` (every
    control of the stream unless told) and ``weight``."""
    unknown = sorted(set(data) - {"channel", "cc", "notes", "programs"})
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}; a MIDI map has channel, cc, notes, programs")
    channel = data.get("channel")
    if channel is not None and (isinstance(channel, bool) or channel not in range(1, 17)):
        raise UserError(f"{where}: channel must be 1..16 (or left out for every channel), got {channel!r}")
    controls = {
        number: _control(f"{where}: cc.{number}", spec, schema)
        for number, spec in _numbered(where, "cc", data.get("cc", {})).items()
    }
    notes_table = _numbered(where, "notes", data.get("notes", {}))
    pads = {
        number: _pad(f"{where}: notes.{number}", spec, schema)
        for number, spec in notes_table.items()
        if isinstance(spec, dict)
    }
    notes, programs = (
        {
            number: _scene(f"{where}: {table}.{number}", name, scene_names)
            for number, name in items.items()
            if number not in pads or table == "programs"
        }
        for table, items in (
            ("notes", notes_table),
            ("programs", _numbered(where, "programs", data.get("programs", {}))),
        )
    )
    return MidiMap(None if channel is None else channel - 1, controls, notes, programs, pads)


def _pad(where: str, spec: Mapping[str, Any], schema: ControlSchema) -> PadTarget:
    """A note's ``{ target = "capture", value = 2 }``: a control it presses."""
    pads = pad_controls(schema)
    unknown = sorted(set(spec) - {"target", "value"})
    if unknown or spec.get("target") not in pads:
        raise UserError(
            f'{where} must be a scene name or a table {{ target = ..., value = ... }} with a target '
            f"among {', '.join(pads)}"
        )
    control = pads[spec["target"]]
    if isinstance(control.value, Button):
        if "value" in spec:
            raise UserError(f"{where}: a {control.name} button takes no value")
        return PadTarget(control)
    try:
        value = control.check("value", spec.get("value", default_value(control)), PromptLimits())
    except ControlError as error:
        raise UserError(f"{where}: {error.message}") from None
    return PadTarget(control, value)


def _numbered(where: str, table: str, value: Any) -> dict[int, Any]:
    if not isinstance(value, dict):
        raise UserError(f"{where}: {table} must be a table of numbers 0..127")
    numbered = {}
    for key, item in value.items():
        if not (key.isascii() and key.isdigit() and int(key) < 128):
            raise UserError(f"{where}: {table}.{key} is not a number 0..127")
        numbered[int(key)] = item
    return numbered


def _control(where: str, spec: Any, schema: ControlSchema) -> ControlTarget:
    if not isinstance(spec, dict) or "target" not in spec:
        raise UserError(f'{where} must be a table with a target, e.g. {{ target = "denoising" }}')
    target = spec["target"]
    unknown = sorted(set(spec) - {"target", "prompt", "range"})
    if unknown:
        raise UserError(f"{where}: unknown key {unknown[0]!r}; use target, prompt, range")
    buttons, faders = button_controls(schema), fader_controls(schema)
    if target in buttons:
        if set(spec) != {"target"}:
            raise UserError(f"{where}: a {target} button takes no prompt or range")
        return ControlTarget(buttons[target])
    if target != "weight" and target not in faders:
        choices = ", ".join(["weight", *faders, *buttons])
        raise UserError(f"{where}: unknown target {target!r}; use one of {choices}")
    control = faders.get(target)
    value = WEIGHT if control is None else control.value
    prompt = spec.get("prompt")
    if control is None:
        if isinstance(prompt, bool) or prompt not in range(1, MAX_PROMPTS + 1):
            raise UserError(f"{where}: a weight needs prompt = 1..{MAX_PROMPTS}, got {prompt!r}")
    elif prompt is not None:
        raise UserError(f"{where}: only a weight takes a prompt")
    span = spec.get("range", list(_fader_span(value)))
    if not _is_range(span) or not all(value.low <= v <= value.high for v in span):
        raise UserError(
            f"{where}: range must be two numbers within [{value.low:g}, {value.high:g}] "
            f"({value.unit}), got {spec.get('range')!r}"
        )
    return ControlTarget(control, prompt, float(span[0]), float(span[1]))


def _is_range(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


def _scene(where: str, name: Any, scene_names: Sequence[str]) -> str:
    if name not in scene_names:
        known = ", ".join(scene_names) or "none are defined (add [scenes.NAME] to --config)"
        raise UserError(f"{where}: there is no scene called {name!r}; scenes: {known}")
    return name


MidiOutcome = Routed | Ignored


def midi_command(message: Any, mapping: MidiMap, desk: PromptDesk) -> MidiOutcome:
    """What ``message`` (a ``mido.Message``) asks of the stream. Raises ``ControlError`` when it
    maps to a value the stream refuses (a weight that would leave every prompt silent, ...)."""
    channel = getattr(message, "channel", None)
    if channel is not None and mapping.channel is not None and channel != mapping.channel:
        return Ignored(f"channel {channel + 1}: the map listens on {mapping.channel + 1} only")
    if message.type == "control_change":
        spec = mapping.controls.get(message.control)
        if spec is None:
            return Ignored(f"CC {message.control} is not mapped", ("cc", message.control))
        return _control_command(spec, message.value, desk)
    if message.type == "note_on" and message.velocity > 0:
        pad = mapping.pads.get(message.note)
        if pad is not None:
            return Routed(pad.control.key, pad.control.command(pad.value))
        return _recall(mapping.notes, message.note, "note", desk)
    if message.type == "program_change":
        return _recall(mapping.programs, message.program, "program", desk)
    return Ignored(f"{message.type} is not mapped")


def _recall(table: Mapping[int, str], number: int, kind: str, desk: PromptDesk) -> MidiOutcome:
    if number not in table:
        return Ignored(f"{kind} {number} recalls no scene", (kind, number))
    return Routed(None, desk.recall(table[number]))


def _control_command(spec: ControlTarget, value: int, desk: PromptDesk) -> MidiOutcome:
    control = spec.control
    if control is not None and isinstance(control.value, Button):
        if value < PRESSED:
            return Ignored(f"{control.name} button released")
        return Routed(control.key, control.command())
    scaled = spec.low + (spec.high - spec.low) * value / 127
    if control is None:
        assert spec.prompt is not None
        return Routed(PROMPTS_KEY, desk.set_weight(spec.prompt, scaled))
    return Routed(control.key, control.command(control.value.from_fader(scaled)))
