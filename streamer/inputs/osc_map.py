"""OSC messages -> engine commands: the address space of docs/OSC.md, pure.

Each address mirrors a WebSocket control message (docs/PROTOCOL.md) and goes through the same
checks (``streamer.sinks.control``), so a value the browser may not send, OSC may not either.
Every problem is a ``ControlError`` with the protocol's error codes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from streamer.inputs.desk import PromptDesk
from streamer.inputs.pump import Routed
from streamer.plan.commands import (
    Pause,
    Resume,
    SetDenoising,
    SetGuidance,
    SetNegativePrompt,
    SetSeed,
    SetSeedLoop,
    SetTransition,
    Skip,
)
from streamer.sinks.control import (
    DENOISING_RANGE,
    GUIDANCE_RANGE,
    MAX_SCENE_CHARS,
    MAX_SEED_LOOP_CHARS,
    TRANSITION_BARS_RANGE,
    TRANSITION_SECONDS_RANGE,
    WEIGHT_RANGE,
    ControlError,
    check_number,
    check_seed,
    check_text,
)
from streamer.sinks.protocol import ErrorCode

PREFIX = "/streamer/"
WEIGHT_PREFIX = PREFIX + "weight/"

Handler = Callable[[Sequence[Any], PromptDesk], Routed | None]


def _one(address: str, args: Sequence[Any], kind: str) -> Any:
    if len(args) != 1:
        raise ControlError(
            ErrorCode.BAD_MESSAGE, f"{address} takes one {kind}, got {len(args)} arguments"
        )
    return args[0]


def _prompt(args: Sequence[Any], desk: PromptDesk) -> Routed:
    return Routed(None, desk.set_prompts([(_one(PREFIX + "prompt", args, "string"), 1.0)]))


def _prompts(args: Sequence[Any], desk: PromptDesk) -> Routed:
    if not args or len(args) % 2:
        raise ControlError(
            ErrorCode.BAD_MESSAGE,
            f"{PREFIX}prompts takes pairs of text and weight (s f s f ...), got {len(args)} arguments",
        )
    return Routed(None, desk.set_prompts(list(zip(args[0::2], args[1::2]))))


def _number(name: str, bounds: tuple[float, float], make: Callable[[float], Any], key: str) -> Handler:
    def handle(args: Sequence[Any], desk: PromptDesk) -> Routed:
        return Routed(key, make(check_number(name, _one(PREFIX + name, args, "number"), bounds)))

    return handle


def _seed(args: Sequence[Any], desk: PromptDesk) -> Routed:
    return Routed("seed", SetSeed(check_seed(_one(PREFIX + "seed", args, "integer"))))


def _text(name: str, max_chars: int | None, make: Callable[[str], Any], *, allow_empty: bool) -> Handler:
    """``max_chars`` None: as long as a prompt may be."""

    def handle(args: Sequence[Any], desk: PromptDesk) -> Routed:
        limit = desk.limits.max_prompt_chars if max_chars is None else max_chars
        text = check_text(name, _one(PREFIX + name, args, "string"), limit, allow_empty=allow_empty)
        return Routed(None, make(text))

    return handle


def _bare(name: str, command: Any) -> Handler:
    """No argument, or a button's one: pressed (1, true) acts, released (0, false) does not."""

    def handle(args: Sequence[Any], desk: PromptDesk) -> Routed | None:
        if not args:
            return Routed(None, command)
        pressed = _one(PREFIX + name, args, "button value (or none)")
        if not isinstance(pressed, (bool, int, float)):
            raise ControlError(
                ErrorCode.INVALID_VALUE, f"{PREFIX}{name} takes no argument or a button's number"
            )
        return Routed(None, command) if pressed else None

    return handle


def _scene(args: Sequence[Any], desk: PromptDesk) -> Routed:
    name = check_text("scene", _one(PREFIX + "scene", args, "string"), MAX_SCENE_CHARS, allow_empty=False)
    return Routed(None, desk.recall(name))


_HANDLERS: dict[str, Handler] = {
    "prompt": _prompt,
    "prompts": _prompts,
    "negative_prompt": _text("negative_prompt", None, SetNegativePrompt, allow_empty=True),
    "denoising": _number("denoising", DENOISING_RANGE, SetDenoising, "denoising"),
    "guidance": _number("guidance", GUIDANCE_RANGE, SetGuidance, "guidance"),
    "seed": _seed,
    "seed_loop": _text("seed_loop", MAX_SEED_LOOP_CHARS, SetSeedLoop, allow_empty=False),
    "scene": _scene,
    "transition": _number(
        "transition", TRANSITION_SECONDS_RANGE, lambda s: SetTransition(seconds=s), "transition"
    ),
    "transition_bars": _number(
        "transition_bars", TRANSITION_BARS_RANGE, lambda b: SetTransition(bars=b), "transition"
    ),
    "pause": _bare("pause", Pause()),
    "resume": _bare("resume", Resume()),
    "skip": _bare("skip", Skip()),
}


#: Every address the OSC input answers (``<n>``: a prompt's number, from 1).
ADDRESSES = tuple(PREFIX + name for name in _HANDLERS) + (WEIGHT_PREFIX + "<n>",)


def _decimal(value: Any) -> Any:
    """OSC's ``f`` is 32 bits: 0.4 arrives as 0.4000000059604645. Seven significant digits give
    back what the sender typed (and keep a double's value to well below any audible step)."""
    return float(f"{value:.7g}") if isinstance(value, float) else value


def osc_command(address: str, args: Sequence[Any], desk: PromptDesk) -> Routed | None:
    """The command for one OSC message (None: a button's release, nothing to do); raises
    ``ControlError`` for anything else."""
    args = [_decimal(arg) for arg in args]
    if address.startswith(WEIGHT_PREFIX):
        number = address[len(WEIGHT_PREFIX) :]
        if not (number.isascii() and number.isdigit() and len(number) <= 3):
            raise ControlError(
                ErrorCode.UNKNOWN_TYPE, f"{WEIGHT_PREFIX}<n> needs a prompt number from 1"
            )
        weight = check_number("weight", _one(address[:40], args, "number"), WEIGHT_RANGE)
        return Routed("prompts", desk.set_weight(int(number), weight))
    handler = _HANDLERS.get(address[len(PREFIX) :]) if address.startswith(PREFIX) else None
    if handler is None:
        raise ControlError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown address {address[:80]!r}; use one of {', '.join(ADDRESSES)}",
        )
    return handler(args, desk)
