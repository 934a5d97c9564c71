"""OSC messages -> engine commands: the address space of docs/OSC.md, pure.

Each address mirrors a WebSocket control message (docs/PROTOCOL.md): both are read from the
control schema (``streamer.plan.controls``) and go through its checks, so a value the browser
may not send, OSC may not either.
Every problem is a ``ControlError`` with the protocol's error codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    ErrorCode,
    default_value,
)

PREFIX = "/streamer/"
WEIGHT_PREFIX = PREFIX + "weight/"


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


#: The prompts' addresses; every other address is a control of the schema's.
_PROMPT_ADDRESSES = {"prompt": _prompt, "prompts": _prompts}


def _control(control: Control, args: Sequence[Any], desk: PromptDesk) -> Routed | None:
    """A control's message: its one value, checked (or none: its default, where it has one), or
    a button (no argument, or a button's one: pressed (1, true) acts, released (0, false) does
    not)."""
    address = PREFIX + control.osc
    if isinstance(control.value, Button):
        if not args:
            return Routed(control.key, control.command())
        pressed = _one(address, args, "button value (or none)")
        if not isinstance(pressed, (bool, int, float)):
            raise ControlError(
                ErrorCode.INVALID_VALUE, f"{address} takes no argument or a button's number"
            )
        return Routed(control.key, control.command()) if pressed else None
    if not args and default_value(control) is not None:
        return Routed(control.key, control.command(default_value(control)))
    value = control.check(control.osc, _one(address, args, control.value.kind), desk.limits)
    return Routed(control.key, desk.follow(control.command(value)))


def addresses(schema: ControlSchema = CONTROLS) -> tuple[str, ...]:
    """Every address the OSC input answers (``<n>``: a prompt's number, from 1)."""
    names = [*_PROMPT_ADDRESSES, *(control.osc for control in schema.controls)]
    return tuple(PREFIX + name for name in names) + (WEIGHT_PREFIX + "<n>",)


ADDRESSES = addresses()


def _decimal(value: Any) -> Any:
    """OSC's ``f`` is 32 bits: 0.4 arrives as 0.4000000059604645. Seven significant digits give
    back what the sender typed (and keep a double's value to well below any audible step)."""
    return float(f"{value:.7g}") if isinstance(value, float) else value


def osc_command(
    address: str, args: Sequence[Any], desk: PromptDesk, schema: ControlSchema = CONTROLS
) -> Routed | None:
    """The command for one OSC message (None: a button's release, nothing to do); raises
    ``ControlError`` for anything else. The controls are those of ``schema`` (every control of
    the stream unless told)."""
    args = [_decimal(arg) for arg in args]
    if address.startswith(WEIGHT_PREFIX):
        number = address[len(WEIGHT_PREFIX) :]
        if not (number.isascii() and number.isdigit() and len(number) <= 3):
            raise ControlError(
                ErrorCode.UNKNOWN_TYPE, f"{WEIGHT_PREFIX}<n> needs a prompt number from 1"
            )
        weight = WEIGHT.check("weight", _one(address[:40], args, "number"), desk.limits)
        return Routed(PROMPTS_KEY, desk.set_weight(int(number), weight))
    name = address[len(PREFIX) :] if address.startswith(PREFIX) else None
    if name in _PROMPT_ADDRESSES:
        return _PROMPT_ADDRESSES[name](args, desk)
    if name not in schema.by_osc:
        raise ControlError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown address {address[:80]!r}; use one of {', '.join(addresses(schema))}",
        )
    return _control(schema.by_osc[name], args, desk)
