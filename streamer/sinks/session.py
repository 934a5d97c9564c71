"""What one connection may do: its role, its message budget, the fate of each message it sends.

Pure: the server passes each received message and the time, and acts on the returned outcome
(send a reply, apply a command, start the audio, close). Tokens are compared in constant time;
a token is only ever accepted inside a message, never from the URL, so it stays out of logs and
browser history.
"""

from __future__ import annotations

import dataclasses
import enum
import hmac

from streamer.sinks.config import ServerConfig
from streamer.plan.commands import Command
from streamer.plan.controls import ControlError, ErrorCode
from streamer.sinks.control import Auth, ClientRequest, parse_client_message
from streamer.sinks.protocol import ack_text, error_text


class Role(enum.StrEnum):
    NONE = "none"  # listening needs a token and none was presented yet
    LISTENER = "listener"
    PERFORMER = "performer"


class Admission(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    DISCONNECT = "disconnect"


class MessageRate:
    """Token bucket: ``per_second`` messages a second, in bursts of up to one second's worth.

    Messages over the budget are answered with ``rate_limited``; a client that keeps sending at
    more than twice the budget gets no more answers but a closed connection, so a flood can
    neither cost unbounded replies nor starve the others.
    """

    def __init__(self, per_second: float) -> None:
        self.per_second = per_second
        self.capacity = max(1.0, per_second)
        self._accepted = self.capacity
        self._rejected = self.capacity
        self._last: float | None = None

    def admit(self, now: float) -> Admission:
        if self._last is not None:
            refill = max(0.0, now - self._last) * self.per_second
            self._accepted = min(self.capacity, self._accepted + refill)
            self._rejected = min(self.capacity, self._rejected + refill)
        self._last = now
        if self._accepted >= 1.0:
            self._accepted -= 1.0
            return Admission.ACCEPT
        if self._rejected >= 1.0:
            self._rejected -= 1.0
            return Admission.REJECT
        return Admission.DISCONNECT


@dataclasses.dataclass(frozen=True)
class Reply:
    text: str


@dataclasses.dataclass(frozen=True)
class Apply:
    """A performer's command for the engine; the server answers with ``ack`` or ``error``."""

    command: Command
    of: str
    request_id: str | int | None


@dataclasses.dataclass(frozen=True)
class StartListening:
    """The connection has just been allowed to listen; send the reply, then join the stream."""

    reply: str


@dataclasses.dataclass(frozen=True)
class Disconnect:
    code: int
    reason: str


Outcome = Reply | Apply | StartListening | Disconnect

#: WebSocket close code for a policy violation (RFC 6455).
CLOSE_POLICY_VIOLATION = 1008


def _same_token(presented: bytes, expected: str | None) -> bool:
    if expected is None:
        return False
    return hmac.compare_digest(presented, expected.encode("utf-8"))


class ControlSession:
    def __init__(self, config: ServerConfig, performer_token: str) -> None:
        self.config = config
        self.performer_token = performer_token
        self.role = Role.LISTENER if config.listen_token is None else Role.NONE
        self.rate = MessageRate(config.max_messages_per_second)

    @property
    def listening(self) -> bool:
        return self.role is not Role.NONE

    def receive(self, message: str | bytes, now: float) -> Outcome:
        admission = self.rate.admit(now)
        if admission is Admission.DISCONNECT:
            return Disconnect(CLOSE_POLICY_VIOLATION, "message rate far over the limit")
        if admission is Admission.REJECT:
            per_second = self.config.max_messages_per_second
            return Reply(
                error_text(
                    ErrorCode.RATE_LIMITED,
                    f"more than {per_second:g} messages a second; this one was ignored, slow down",
                )
            )
        if isinstance(message, bytes):
            return Reply(
                error_text(ErrorCode.BAD_MESSAGE, "send control messages as JSON text, not binary")
            )
        if len(message.encode("utf-8", "surrogatepass")) > self.config.max_message_bytes:
            return Reply(
                error_text(
                    ErrorCode.TOO_LARGE, f"message over {self.config.max_message_bytes} bytes"
                )
            )
        try:
            request = parse_client_message(message, self.config)
        except ControlError as error:
            return Reply(
                error_text(error.code, error.message, of=error.of, request_id=error.request_id)
            )
        if isinstance(request.body, Auth):
            return self._authenticate(request)
        if self.role is not Role.PERFORMER:
            return Reply(
                error_text(
                    ErrorCode.UNAUTHORIZED,
                    'control needs the performer token: send {"type": "auth", "token": ...} first',
                    of=request.type,
                    request_id=request.request_id,
                )
            )
        assert not isinstance(request.body, Auth)
        return Apply(request.body, request.type, request.request_id)

    def _authenticate(self, request: ClientRequest) -> Outcome:
        assert isinstance(request.body, Auth)
        presented = request.body.token.encode("utf-8")
        # Both comparisons always run, so timing does not tell which token was close.
        is_performer = _same_token(presented, self.performer_token)
        is_listener = _same_token(presented, self.config.listen_token)
        if not (is_performer or is_listener):
            return Reply(
                error_text(
                    ErrorCode.UNAUTHORIZED, "wrong token", of="auth", request_id=request.request_id
                )
            )
        was_listening = self.listening
        if is_performer:
            self.role = Role.PERFORMER
        elif self.role is Role.NONE:
            self.role = Role.LISTENER
        reply = ack_text("auth", request.request_id, {"role": str(self.role)})
        return Reply(reply) if was_listening else StartListening(reply)
