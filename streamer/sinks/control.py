"""Client control messages -> typed commands, with every check a hostile client could need.

Parsing is pure: text in, a ``ClientRequest`` or a ``ControlError`` out, never another exception,
whatever the bytes (deep nesting, huge numbers, NaN, lone surrogates, duplicate keys). The engine
receives only commands whose values are in range.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

from streamer.plan.commands import (
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
from streamer.sinks.config import ServerConfig
from streamer.sinks.protocol import ErrorCode

# Protocol ranges (docs/PROTOCOL.md). The engine may refuse more with ``ControlRejected``.
MAX_SEED = 2**32 - 1
DENOISING_RANGE = (0.0, 1.0)
GUIDANCE_RANGE = (0.0, 30.0)
WEIGHT_RANGE = (0.0, 100.0)
TRANSITION_SECONDS_RANGE = (0.0, 600.0)
TRANSITION_BARS_RANGE = (0.0, 256.0)
MAX_SEED_LOOP_CHARS = 64
MAX_SCENE_CHARS = 64
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


class ControlError(Exception):
    """A message the server refuses; becomes an error reply, the connection stays open."""

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
    if any(_unprintable(character) for character in value):
        raise ControlError(
            ErrorCode.INVALID_VALUE,
            f"{name} holds a control character or an unpaired surrogate; send plain text",
        )
    return value


def check_seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise ControlError(ErrorCode.INVALID_VALUE, f"seed must be an integer in [0, {MAX_SEED}]")
    return value


def check_prompts(pairs: Sequence[tuple[Any, Any]], config: ServerConfig) -> SetPrompts:
    """(text, weight) pairs, as a client sent them, -> ``SetPrompts``; error names say
    ``prompts[i]``, counting from 0."""
    if not pairs:
        raise ControlError(ErrorCode.INVALID_VALUE, "prompts must be a non-empty list")
    if len(pairs) > config.max_prompts:
        raise ControlError(ErrorCode.TOO_LARGE, f"at most {config.max_prompts} prompts at once")
    prompts = []
    for index, (text, weight) in enumerate(pairs):
        text = check_text(f"prompts[{index}].text", text, config.max_prompt_chars, allow_empty=False)
        prompts.append(Prompt(text, check_number(f"prompts[{index}].weight", weight, WEIGHT_RANGE)))
    if sum(prompt.weight for prompt in prompts) <= 0:
        raise ControlError(ErrorCode.INVALID_VALUE, "at least one prompt needs a weight above 0")
    return SetPrompts(tuple(prompts))


class _Fields:
    """One message's fields; a missing one is a ``ControlError``."""

    def __init__(self, message: Mapping[str, Any], of: str):
        self.message = message
        self.of = of

    def require(self, name: str) -> Any:
        if name not in self.message:
            raise ControlError(ErrorCode.MISSING_FIELD, f"{self.of} needs the field {name!r}")
        return self.message[name]


def _unprintable(character: str) -> bool:
    code = ord(character)
    return code < 0x20 or 0x7F <= code < 0xA0 or 0xD800 <= code <= 0xDFFF


def _set_prompts(fields: _Fields, config: ServerConfig) -> SetPrompts:
    items = fields.require("prompts")
    if not isinstance(items, list) or not items:
        raise ControlError(ErrorCode.INVALID_VALUE, "prompts must be a non-empty list")
    if len(items) > config.max_prompts:
        raise ControlError(ErrorCode.TOO_LARGE, f"at most {config.max_prompts} prompts at once")
    for index, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"text", "weight"}:
            raise ControlError(
                ErrorCode.INVALID_VALUE,
                f"prompts[{index}] must be an object with exactly 'text' and 'weight'",
            )
    return check_prompts([(item["text"], item["weight"]) for item in items], config)


def _set_seed(fields: _Fields, config: ServerConfig) -> SetSeed:
    return SetSeed(check_seed(fields.require("seed")))


def _set_transition(fields: _Fields, config: ServerConfig) -> SetTransition:
    present = [name for name in ("seconds", "bars") if name in fields.message]
    if len(present) != 1:
        raise ControlError(
            ErrorCode.INVALID_VALUE, "set_transition takes exactly one of 'seconds' and 'bars'"
        )
    if present == ["seconds"]:
        seconds = check_number("seconds", fields.message["seconds"], TRANSITION_SECONDS_RANGE)
        return SetTransition(seconds=seconds)
    return SetTransition(bars=check_number("bars", fields.message["bars"], TRANSITION_BARS_RANGE))


def _auth(fields: _Fields, config: ServerConfig) -> Auth:
    return Auth(check_text("token", fields.require("token"), MAX_TOKEN_CHARS, allow_empty=False))


def _set_negative_prompt(fields: _Fields, config: ServerConfig) -> SetNegativePrompt:
    text = check_text("text", fields.require("text"), config.max_prompt_chars, allow_empty=True)
    return SetNegativePrompt(text)


def _set_denoising(fields: _Fields, config: ServerConfig) -> SetDenoising:
    return SetDenoising(check_number("denoising", fields.require("denoising"), DENOISING_RANGE))


def _set_guidance(fields: _Fields, config: ServerConfig) -> SetGuidance:
    return SetGuidance(check_number("guidance", fields.require("guidance"), GUIDANCE_RANGE))


def _set_seed_loop(fields: _Fields, config: ServerConfig) -> SetSeedLoop:
    name = check_text("name", fields.require("name"), MAX_SEED_LOOP_CHARS, allow_empty=False)
    return SetSeedLoop(name)


def _recall_scene(fields: _Fields, config: ServerConfig) -> RecallScene:
    return RecallScene(check_text("name", fields.require("name"), MAX_SCENE_CHARS, allow_empty=False))


Parser = Callable[[_Fields, ServerConfig], Union[Command, Auth]]

# type -> (fields it may carry besides "type" and "id", parser)
_PARSERS: dict[str, tuple[frozenset[str], Parser]] = {
    "auth": (frozenset({"token"}), _auth),
    "set_prompts": (frozenset({"prompts"}), _set_prompts),
    "set_negative_prompt": (frozenset({"text"}), _set_negative_prompt),
    "set_seed": (frozenset({"seed"}), _set_seed),
    "set_denoising": (frozenset({"denoising"}), _set_denoising),
    "set_guidance": (frozenset({"guidance"}), _set_guidance),
    "set_seed_loop": (frozenset({"name"}), _set_seed_loop),
    "set_transition": (frozenset({"seconds", "bars"}), _set_transition),
    "recall_scene": (frozenset({"name"}), _recall_scene),
    "pause": (frozenset(), lambda fields, config: Pause()),
    "resume": (frozenset(), lambda fields, config: Resume()),
    "skip": (frozenset(), lambda fields, config: Skip()),
}

#: Every message type a client may send.
CLIENT_MESSAGE_TYPES = tuple(_PARSERS)


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
        if len(request_id) <= MAX_ID_CHARS and not any(map(_unprintable, request_id)):
            return request_id
    elif isinstance(request_id, int) and not isinstance(request_id, bool):
        if abs(request_id) <= MAX_SAFE_INTEGER:
            return request_id
    raise ControlError(
        ErrorCode.INVALID_VALUE,
        f"id must be a string of at most {MAX_ID_CHARS} characters or an integer",
    )


def parse_client_message(text: str, config: ServerConfig) -> ClientRequest:
    """Read one text message from a client; raises ``ControlError`` for anything else."""
    message = _load_json(text)
    if not isinstance(message, dict):
        raise ControlError(ErrorCode.BAD_MESSAGE, 'a message must be a JSON object with a "type"')
    request_id = _request_id(message)
    message_type = message.get("type")
    if not isinstance(message_type, str):
        raise ControlError(
            ErrorCode.BAD_MESSAGE, 'a message needs a string "type"', request_id=request_id
        )
    if message_type not in _PARSERS:
        raise ControlError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type; use one of {', '.join(CLIENT_MESSAGE_TYPES)}",
            request_id=request_id,
        )
    allowed, parse = _PARSERS[message_type]
    unknown = sorted(set(message) - allowed - {"type", "id"})
    if unknown:
        raise ControlError(
            ErrorCode.UNKNOWN_FIELD,
            f"{message_type} has no field {unknown[0][:40]!r}",
            of=message_type,
            request_id=request_id,
        )
    try:
        body = parse(_Fields(message, message_type), config)
    except ControlError as error:
        raise ControlError(error.code, error.message, of=message_type, request_id=request_id) from None
    return ClientRequest(message_type, request_id, body)
