"""Client control messages -> typed commands, with every check a hostile client could need.

Parsing is pure: text in, a ``ClientRequest`` or a ``ControlError`` out, never another exception,
whatever the bytes (deep nesting, huge numbers, NaN, lone surrogates, duplicate keys). The engine
receives only commands whose values are in range.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any, Union

from streamer.plan.commands import Command
from streamer.plan.controls import (
    CONTROLS,
    Control,
    ControlError,
    ControlSchema,
    ErrorCode,
    PromptLimits,
    check_prompts,
    check_text,
    default_value,
    printable,
)
from streamer.sinks.config import ServerConfig

# Protocol limits of the envelope (docs/PROTOCOL.md); the controls' ranges are in
# ``streamer.plan.controls``. The engine may refuse more with ``ControlRejected``.
MAX_ID_CHARS = 64
MAX_TOKEN_CHARS = 256
#: Integers a browser holds exactly (Number.MAX_SAFE_INTEGER).
MAX_SAFE_INTEGER = 2**53 - 1


@dataclasses.dataclass(frozen=True)
class Auth:
    """Presents a token; handled by the connection's session, never by the engine."""

    token: str


@dataclasses.dataclass(frozen=True)
class ClientRequest:
    type: str
    request_id: str | int | None
    body: Command | Auth


class _Fields:
    """One message's fields; a missing one is a ``ControlError``."""

    def __init__(self, message: Mapping[str, Any], of: str):
        self.message = message
        self.of = of

    def require(self, name: str) -> Any:
        if name not in self.message:
            raise ControlError(ErrorCode.MISSING_FIELD, f"{self.of} needs the field {name!r}")
        return self.message[name]


Parser = Callable[[_Fields, PromptLimits], Union[Command, Auth]]


def _set_prompts(fields: _Fields, limits: PromptLimits) -> Command:
    items = fields.require("prompts")
    if not isinstance(items, list) or not items:
        raise ControlError(ErrorCode.INVALID_VALUE, "prompts must be a non-empty list")
    if len(items) > limits.max_prompts:
        raise ControlError(ErrorCode.TOO_LARGE, f"at most {limits.max_prompts} prompts at once")
    for index, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"text", "weight"}:
            raise ControlError(
                ErrorCode.INVALID_VALUE,
                f"prompts[{index}] must be an object with exactly 'text' and 'weight'",
            )
    return check_prompts([(item["text"], item["weight"]) for item in items], limits)


def _auth(fields: _Fields, limits: PromptLimits) -> Auth:
    return Auth(check_text("token", fields.require("token"), MAX_TOKEN_CHARS, allow_empty=False))


def _control_message(controls: tuple[Control, ...]) -> Parser:
    """The parser of a message of the control schema: a button's takes no field, one control's
    its field, alternatives' exactly one of their fields."""
    by_field = {control.field: control for control in controls}

    def parse(fields: _Fields, limits: PromptLimits) -> Command:
        if None in by_field:
            return by_field[None].command()
        if len(by_field) == 1:
            (field, control), = by_field.items()
            if field not in fields.message and default_value(control) is not None:
                return control.command(default_value(control))
            return control.command(control.check(field, fields.require(field), limits))
        present = [field for field in by_field if field in fields.message]
        if len(present) != 1:
            names = " and ".join(repr(field) for field in by_field)
            raise ControlError(ErrorCode.INVALID_VALUE, f"{fields.of} takes exactly one of {names}")
        control = by_field[present[0]]
        return control.command(control.check(present[0], fields.message[present[0]], limits))

    return parse


@functools.cache
def _parsers(schema: ControlSchema) -> dict[str, tuple[frozenset[str], Parser]]:
    """Message type -> (the fields it may carry besides "type" and "id", its parser)."""
    parsers: dict[str, tuple[frozenset[str], Parser]] = {
        "auth": (frozenset({"token"}), _auth),
        "set_prompts": (frozenset({"prompts"}), _set_prompts),
    }
    for message, controls in schema.by_message.items():
        fields = frozenset(control.field for control in controls if control.field is not None)
        parsers[message] = (fields, _control_message(controls))
    return parsers


#: Every message type a client may send.
CLIENT_MESSAGE_TYPES = tuple(_parsers(CONTROLS))


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("an object repeats a key")
    return dict(pairs)


def _load_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise ControlError(ErrorCode.BAD_JSON, "message nests too deeply") from None
    except ValueError as error:  # JSONDecodeError, int digit limit, our hooks
        raise ControlError(ErrorCode.BAD_JSON, f"message is not valid JSON: {error}") from None


def _request_id(message: Mapping[str, Any]) -> str | int | None:
    request_id = message.get("id")
    if request_id is None:
        return None
    if isinstance(request_id, str):
        if len(request_id) <= MAX_ID_CHARS and printable(request_id):
            return request_id
    elif isinstance(request_id, int) and not isinstance(request_id, bool):
        if abs(request_id) <= MAX_SAFE_INTEGER:
            return request_id
    raise ControlError(
        ErrorCode.INVALID_VALUE,
        f"id must be a string of at most {MAX_ID_CHARS} characters or an integer",
    )


def parse_client_message(
    text: str, config: ServerConfig, schema: ControlSchema = CONTROLS
) -> ClientRequest:
    """Read one text message from a client; raises ``ControlError`` for anything else. The
    controls are those of ``schema`` (every control of the stream unless told)."""
    parsers = _parsers(schema)
    message = _load_json(text)
    if not isinstance(message, dict):
        raise ControlError(ErrorCode.BAD_MESSAGE, 'a message must be a JSON object with a "type"')
    request_id = _request_id(message)
    message_type = message.get("type")
    if not isinstance(message_type, str):
        raise ControlError(
            ErrorCode.BAD_MESSAGE, 'a message needs a string "type"', request_id=request_id
        )
    if message_type not in parsers:
        raise ControlError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type; use one of {', '.join(parsers)}",
            request_id=request_id,
        )
    allowed, parse = parsers[message_type]
    unknown = sorted(set(message) - allowed - {"type", "id"})
    if unknown:
        raise ControlError(
            ErrorCode.UNKNOWN_FIELD,
            f"{message_type} has no field {unknown[0][:40]!r}",
            of=message_type,
            request_id=request_id,
        )
    try:
        body = parse(_Fields(message, message_type), config.prompt_limits)
    except ControlError as error:
        raise ControlError(error.code, error.message, of=message_type, request_id=request_id) from None
    return ClientRequest(message_type, request_id, body)
