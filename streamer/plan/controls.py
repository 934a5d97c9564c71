"""The control vocabulary: every value a performer sets, as every input names, checks and sends it.

One entry of ``CONTROLS`` holds a control's names (the WebSocket message and its field, the OSC
address, the MIDI target), its value (range and unit, or text, or a button), the check every
input applies, the pump's coalescing key and the command it makes. The WebSocket parser
(``streamer.sinks.control``), the MIDI map and the OSC map (``streamer.inputs``) build their
tables from it, so a new control is one entry here plus its effect in the engine
(``streamer.runtime.control``); a value the browser may not send, MIDI and OSC may not either.

The prompts are the one compound control (a list of texts and weights; a MIDI fader or an OSC
address moves one weight of the desk's list): their limits and checks live here too, their
parsing in each input. Checks raise ``ControlError`` with an ``ErrorCode`` (docs/PROTOCOL.md);
every input answers with those codes.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Union

from streamer.plan.commands import (
    Capture,
    Command,
    Pause,
    Prompt,
    RecallScene,
    Resume,
    SetDenoising,
    SetGuidance,
    SetNegativePrompt,
    SetPrompts,
    SetSeed,
    SetSeedLoop,
    SetTransition,
    Skip,
)
from streamer.plan.settings import MAX_PROMPT_CHARS, MAX_PROMPTS


class ErrorCode(enum.StrEnum):
    """The ``code`` of an error reply; a client can branch on it, the message is for people."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_FIELD = "unknown_field"
    MISSING_FIELD = "missing_field"
    INVALID_VALUE = "invalid_value"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    UNAUTHORIZED = "unauthorized"
    INTERNAL_ERROR = "internal_error"


class ControlError(Exception):
    """A value an input refuses; becomes an error reply, the stream plays on."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        of: str | None = None,
        request_id: str | int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.of = of
        self.request_id = request_id


@dataclasses.dataclass(frozen=True)
class PromptLimits:
    """How many prompts a blend may have and how long each may be (the server's settings
    ``max_prompts`` and ``max_prompt_chars`` narrow them for its clients)."""

    max_prompt_chars: int = MAX_PROMPT_CHARS
    max_prompts: int = MAX_PROMPTS


# --- values and their checks -----------------------------------------------------------------


def _unprintable(character: str) -> bool:
    code = ord(character)
    return code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code <= 0xDFFF


def printable(text: str) -> bool:
    """True when ``text`` holds no control character and no unpaired surrogate."""
    return not any(map(_unprintable, text))


def check_number(name: str, value: Any, bounds: tuple[float, float]) -> float:
    """``value`` as a float if it is a finite number (not a bool) within ``bounds``."""
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ControlError(ErrorCode.INVALID_VALUE, f"{name} must be a number")
    number = float(value)
    if not (math.isfinite(number) and low <= number <= high):
        raise ControlError(ErrorCode.INVALID_VALUE, f"{name} must be in [{low:g}, {high:g}]")
    return number


def check_text(name: str, value: Any, max_chars: int, *, allow_empty: bool) -> str:
    """``value`` if it is printable text of at most ``max_chars`` characters."""
    if not isinstance(value, str):
        raise ControlError(ErrorCode.INVALID_VALUE, f"{name} must be a string")
    if len(value) > max_chars:
        raise ControlError(
            ErrorCode.TOO_LARGE, f"{name} has {len(value)} characters; at most {max_chars}"
        )
    if not allow_empty and not value.strip():
        raise ControlError(ErrorCode.INVALID_VALUE, f"{name} must not be empty")
    if not printable(value):
        raise ControlError(
            ErrorCode.INVALID_VALUE,
            f"{name} holds a control character or an unpaired surrogate; send plain text",
        )
    return value


@dataclasses.dataclass(frozen=True)
class Number:
    """A real number in [low, high]; a MIDI fader spans ``fader`` unless its map says more."""

    low: float
    high: float
    unit: str
    fader: tuple[float, float] | None = None

    #: What the OSC type tags and the error messages call it.
    kind = "number"

    def check(self, name: str, value: Any, limits: PromptLimits) -> float:
        return check_number(name, value, (self.low, self.high))

    def from_fader(self, value: float) -> float:
        return value


@dataclasses.dataclass(frozen=True)
class Integer:
    """A whole number in [low, high]; a fader's position is rounded to one. With a ``default``,
    a message may leave it out (a capture's bars: the OSC address alone, a MIDI pad)."""

    low: int
    high: int
    unit: str
    fader: tuple[float, float] | None = None
    default: int | None = None

    kind = "integer"

    def check(self, name: str, value: Any, limits: PromptLimits) -> int:
        whole = isinstance(value, int) and not isinstance(value, bool)
        if not (whole and self.low <= value <= self.high):
            raise ControlError(
                ErrorCode.INVALID_VALUE,
                f"{name} must be an integer in [{self.low}, {self.high}]",
            )
        return value

    def from_fader(self, value: float) -> int:
        return round(value)


@dataclasses.dataclass(frozen=True)
class Text:
    """Printable text of at most ``max_chars`` characters (None: as long as a prompt may be)."""

    max_chars: int | None
    allow_empty: bool

    kind = "string"
    fader = None

    def check(self, name: str, value: Any, limits: PromptLimits) -> str:
        max_chars = limits.max_prompt_chars if self.max_chars is None else self.max_chars
        return check_text(name, value, max_chars, allow_empty=self.allow_empty)


@dataclasses.dataclass(frozen=True)
class Button:
    """No value: pressing it is the command (a MIDI button or an OSC button's release does
    nothing)."""

    fader = None


Value = Union[Number, Integer, Text, Button]


@dataclasses.dataclass(frozen=True)
class Control:
    """One thing a performer sets.

    ``name`` is the MIDI map's target; ``osc`` the address after ``/streamer/``; ``message`` the
    WebSocket message type and ``field`` its value's field (None for a button). Controls that
    share a ``message`` are alternatives: the message carries exactly one of their fields.
    ``key``: the pump keeps only the latest of the values with one key while they wait (None:
    every value goes, in order). ``make`` turns the checked value into the engine's command.
    """

    name: str
    value: Value
    make: Callable[[Any], Command]
    key: str | None
    message: str
    field: str | None
    osc: str

    def check(self, name: str, value: Any, limits: PromptLimits) -> Any:
        """The value as the command takes it; ``ControlError`` naming it ``name`` otherwise."""
        assert not isinstance(self.value, Button), f"{self.name} is a button: it has no value"
        return self.value.check(name, value, limits)

    def command(self, value: Any = None) -> Command:
        """The command for an already checked ``value`` (a button: no value)."""
        return self.make(value)


class ControlSchema:
    """The controls, looked up by each input's name for them."""

    def __init__(self, controls: Iterable[Control]) -> None:
        self.controls = tuple(controls)
        self.by_name = _unique("a name", {c.name: c for c in self.controls}, self.controls)
        self.by_osc = _unique("an OSC address", {c.osc: c for c in self.controls}, self.controls)
        by_message: dict[str, list[Control]] = {}
        for control in self.controls:
            by_message.setdefault(control.message, []).append(control)
        for message, controls in by_message.items():
            if len(controls) > 1 and any(c.field is None for c in controls):
                raise ValueError(f"{message}: controls that share a message each need a field")
        self.by_message = {message: tuple(controls) for message, controls in by_message.items()}


def _unique(
    what: str, table: dict[str, Control], controls: Sequence[Control]
) -> dict[str, Control]:
    if len(table) != len(controls):
        raise ValueError(f"two controls share {what}")
    return table


# --- the prompts: limits and checks shared by every input --------------------------------------

#: A prompt's weight in a blend (relative: the engine normalises the blend).
WEIGHT = Number(0.0, 100.0, "relative weight", fader=(0.0, 1.0))
#: Coalescing key of every change of the prompts (a whole blend replaces the one before).
PROMPTS_KEY = "prompts"


def check_prompts(pairs: Sequence[tuple[Any, Any]], limits: PromptLimits) -> SetPrompts:
    """(text, weight) pairs, as a client sent them, -> ``SetPrompts``; error names say
    ``prompts[i]``, counting from 0."""
    if not pairs:
        raise ControlError(ErrorCode.INVALID_VALUE, "prompts must be a non-empty list")
    if len(pairs) > limits.max_prompts:
        raise ControlError(ErrorCode.TOO_LARGE, f"at most {limits.max_prompts} prompts at once")
    prompts = []
    for index, (text, weight) in enumerate(pairs):
        name = f"prompts[{index}].text"
        text = check_text(name, text, limits.max_prompt_chars, allow_empty=False)
        prompts.append(Prompt(text, WEIGHT.check(f"prompts[{index}].weight", weight, limits)))
    if sum(prompt.weight for prompt in prompts) <= 0:
        raise ControlError(ErrorCode.INVALID_VALUE, "at least one prompt needs a weight above 0")
    return SetPrompts(tuple(prompts))


# --- the controls ------------------------------------------------------------------------------

MAX_SEED = 2**32 - 1
#: Bars of live input a capture takes.
MIN_CAPTURE_BARS, MAX_CAPTURE_BARS, DEFAULT_CAPTURE_BARS = 1, 8, 2
#: Longest seed loop and scene name (the names a config file may hold are at most this long).
MAX_NAME_CHARS = 64

CONTROLS = ControlSchema(
    (
        Control(
            "negative_prompt",
            Text(None, allow_empty=True),  # "" clears it
            SetNegativePrompt,
            key=None,
            message="set_negative_prompt",
            field="text",
            osc="negative_prompt",
        ),
        Control(
            "seed",
            Integer(0, MAX_SEED, "noise seed", fader=(0.0, 127.0)),
            SetSeed,
            key="seed",
            message="set_seed",
            field="seed",
            osc="seed",
        ),
        Control(
            "denoising",
            # The engine takes 0.05 at least (StreamSettings) and refuses lower with its reason.
            Number(0.0, 1.0, "img2img strength", fader=(0.05, 1.0)),
            SetDenoising,
            key="denoising",
            message="set_denoising",
            field="denoising",
            osc="denoising",
        ),
        Control(
            "guidance",
            Number(0.0, 30.0, "classifier-free guidance scale", fader=(0.0, 15.0)),
            SetGuidance,
            key="guidance",
            message="set_guidance",
            field="guidance",
            osc="guidance",
        ),
        Control(
            "seed_loop",
            Text(MAX_NAME_CHARS, allow_empty=False),
            SetSeedLoop,
            key=None,
            message="set_seed_loop",
            field="name",
            osc="seed_loop",
        ),
        Control(
            "transition_seconds",
            Number(0.0, 600.0, "seconds", fader=(0.0, 32.0)),
            lambda seconds: SetTransition(seconds=seconds),
            key="transition",
            message="set_transition",
            field="seconds",
            osc="transition",
        ),
        Control(
            "transition_bars",
            Number(0.0, 256.0, "bars", fader=(0.0, 16.0)),
            lambda bars: SetTransition(bars=bars),
            key="transition",
            message="set_transition",
            field="bars",
            osc="transition_bars",
        ),
        Control(
            "scene",
            Text(MAX_NAME_CHARS, allow_empty=False),
            RecallScene,
            key=None,
            message="recall_scene",
            field="name",
            osc="scene",
        ),
        Control(
            "capture",
            Integer(MIN_CAPTURE_BARS, MAX_CAPTURE_BARS, "bars", default=DEFAULT_CAPTURE_BARS),
            Capture,
            key=None,
            message="capture",
            field="bars",
            osc="capture",
        ),
        Control("pause", Button(), lambda _: Pause(), None, "pause", None, "pause"),
        Control("resume", Button(), lambda _: Resume(), None, "resume", None, "resume"),
        Control("skip", Button(), lambda _: Skip(), None, "skip", None, "skip"),
    )
)


def fader_controls(schema: ControlSchema) -> Mapping[str, Control]:
    """The controls a MIDI fader can move (a number or an integer with a fader range)."""
    return {c.name: c for c in schema.controls if c.value.fader is not None}


def button_controls(schema: ControlSchema) -> Mapping[str, Control]:
    return {c.name: c for c in schema.controls if isinstance(c.value, Button)}


def default_value(control: Control) -> Any:
    """The value a message that leaves ``control``'s value out takes; None: it must be given."""
    return getattr(control.value, "default", None)


def pad_controls(schema: ControlSchema) -> Mapping[str, Control]:
    """The controls a pad (a MIDI note) can press: buttons, and values with a default."""
    return {
        c.name: c
        for c in schema.controls
        if isinstance(c.value, Button) or default_value(c) is not None
    }
