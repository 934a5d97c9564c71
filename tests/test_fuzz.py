"""Property-based fuzzing of every way in: control messages over /ws, HTTP requests, command-line
values and config files. Whatever arrives, the answer is a typed error (or a success), never a
crash; the connection stays open and the stream plays on without a gap.

The control and HTTP fuzzing runs against a live server fed by the real engine (stand-in
generator, real-time clock), so commands that pass the parser really reach the engine.

Long mode: ``STREAMER_LONG_TESTS=1`` generates 10,000 examples per property (a few hundred by
default). test_protocol.py fuzzes the pure parser alone; these go through the sockets and the
engine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import string
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect

from streamer.cli import build_parser
from streamer.config import stream_config_from_args
from streamer.runtime.stream_config import StreamConfig
from streamer.errors import UserError
from streamer.plan.settings import PromptBlend, StreamSettings, Transition
from streamer.runtime.assemble import build_engine
from streamer.runtime.control import EngineControl
from streamer.runtime.clocks import SoftwareClock
from streamer.runtime.standin import StandInFrameMaker
from streamer.audio.capture import REFUSAL_CODES as CAPTURE_REFUSALS
from streamer.plan.controls import ErrorCode
from streamer.seeds.library import list_seed_loops
from streamer.sinks.config import ServerConfig
from streamer.sinks.control import CLIENT_MESSAGE_TYPES
from streamer.sinks.protocol import AudioMessage, decode_binary
from streamer.sinks.server import ServerThread, StreamServer

LONG = os.environ.get("STREAMER_LONG_TESTS") == "1"
EXAMPLES = 10_000 if LONG else 300
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_MESSAGE_BYTES = 32 * 1024
#: Replies of each type over the run: some commands must have reached the engine.
ANSWERS = {"ack": 0, "error": 0}
#: The protocol's codes, and the engine's refusals of a capture (this stream has no --input).
ERROR_CODES = {str(code) for code in ErrorCode} - {"internal_error"} | set(CAPTURE_REFUSALS)


class Listener:
    """A healthy listener on its own thread: counts audio messages and gaps between them."""

    def __init__(self, port: int) -> None:
        self.websocket = connect(f"ws://127.0.0.1:{port}/ws").__enter__()
        self.messages = 0
        self.gaps = 0
        self._next: tuple[int, int] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for data in self.websocket:
            audio = decode_binary(data) if isinstance(data, bytes) else None
            if isinstance(audio, AudioMessage):
                if self._next is not None and (audio.sequence, audio.sample_position) != self._next:
                    self.gaps += 1
                self._next = (audio.sequence + 1, audio.sample_position + audio.num_frames)
                self.messages += 1

    def close(self) -> None:
        self.websocket.close()
        self._thread.join(5)


@pytest.fixture(scope="module")
def live() -> Any:
    """A server fed by the real engine, a healthy listener, and an authenticated performer."""
    loops = list_seed_loops()
    settings_ = StreamSettings(
        prompts=PromptBlend.single("jazz"), seed_loop="house_117", transition=Transition(seconds=0)
    )
    engine = build_engine(StreamConfig(settings=settings_), StandInFrameMaker(0.01))
    config = ServerConfig(
        port=0,
        max_message_bytes=MAX_MESSAGE_BYTES,
        max_messages_per_second=1e6,  # the fuzzer sends as fast as it can
        drop_lagging_after_seconds=3600.0,  # and reads audio only between its messages
    )
    server = StreamServer(config, EngineControl(engine, frozenset(l.name for l in loops)))
    with ServerThread(server):
        engine.add_sink(server)
        engine.start()
        assert engine.wait_until_playing(60)
        clock = SoftwareClock(engine)
        clock.start()
        listener = Listener(server.port)
        performer = connect(
            f"ws://127.0.0.1:{server.port}/ws", max_size=None, max_queue=None  # read all: a
        ).__enter__()  # full queue would hold the closing handshake up
        performer.send(json.dumps({"type": "auth", "token": server.performer_token}))
        assert next_reply(performer)["type"] == "ack"
        try:
            yield server, engine, listener, performer
        finally:
            performer.close()
            listener.close()
            clock.stop()
            engine.stop()
    assert listener.gaps == 0, "the healthy listener missed audio"
    assert listener.messages > 0
    assert ANSWERS["ack"] > 0 and ANSWERS["error"] > 0, ANSWERS
    assert engine.metrics.underrun_samples == 0


def next_reply(websocket: Any) -> dict[str, Any]:
    """The next ``ack`` or ``error`` (audio, status, images in between are passed over)."""
    while True:
        data = websocket.recv(timeout=10)
        if isinstance(data, str):
            event = json.loads(data)
            if event["type"] in ("ack", "error"):
                return event


# ---- control messages ---------------------------------------------------------------------

FIELDS = ["type", "id", "prompts", "text", "weight", "seed", "denoising", "guidance", "name",
          "seconds", "bars", "token"]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=400, max_size=2000),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=10)), children, max_size=5),
    ),
    max_leaves=20,
)
#: Messages shaped like the protocol's, with any values: they reach past the JSON checks.
protocol_like = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(CLIENT_MESSAGE_TYPES), st.text(max_size=20))},
    optional={name: json_values for name in FIELDS[1:]},
)
prompt_lists = st.fixed_dictionaries(
    {
        "type": st.just("set_prompts"),
        "prompts": st.lists(
            st.fixed_dictionaries(
                {"text": st.text(max_size=600), "weight": st.floats(allow_nan=True)}
            ),
            max_size=10,
        ),
    }
)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


messages = st.one_of(
    st.builds(json.dumps, st.one_of(protocol_like, prompt_lists, json_values)),
    st.text(),  # anything at all
    st.binary(max_size=2000),  # binary where text is expected
    st.builds(nested, st.integers(1, 15_000)),  # deep nesting, under the size limit
    st.builds(lambda n: json.dumps({"type": "set_negative_prompt", "text": "x" * n}),
              st.integers(MAX_MESSAGE_BYTES - 100, 3 * MAX_MESSAGE_BYTES)),  # oversized
    st.builds(lambda n: '{"type":"set_seed","seed":1' + "0" * n + "}", st.integers(1, 20_000)),
)  # fmt: skip


@FUZZ
@given(message=messages)
def test_every_control_message_gets_a_typed_answer_and_the_stream_plays_on(
    live: Any, message: str | bytes
) -> None:
    server, engine, listener, performer = live
    performer.send(message)
    reply = next_reply(performer)
    assert reply["type"] in ("ack", "error")
    if reply["type"] == "error":
        assert reply["code"] in ERROR_CODES, reply
    assert performer.state.name == "OPEN"
    ANSWERS[reply["type"]] += 1
    if reply["type"] == "ack" and reply.get("of") == "pause":
        performer.send('{"type":"resume"}')  # a paused stream would make nothing new
        assert next_reply(performer)["type"] == "ack"


# ---- HTTP ---------------------------------------------------------------------------------

tokens = st.text(alphabet=string.ascii_letters + string.digits + "-_.~%/?#[]@!$&'()*+,;=:",
                 max_size=200)  # fmt: skip
http_requests = st.one_of(
    st.builds(
        lambda method, target, version, headers: (
            f"{method} {target} {version}\r\n".encode("utf-8", "surrogatepass")
            + b"".join(name + b": " + value + b"\r\n" for name, value in headers)
            + b"\r\n"
        ),
        st.one_of(st.sampled_from(["GET", "POST", "HEAD", "PUT", "OPTIONS", "get", ""]), st.text(max_size=10)),
        st.one_of(tokens.map(lambda t: "/" + t), st.just("/ws"), st.text(max_size=300)),
        st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "", "HTTP/1.1 extra"]),
        st.lists(
            st.tuples(
                st.one_of(st.sampled_from([b"Host", b"Upgrade", b"Connection", b"Sec-WebSocket-Key",
                                           b"Sec-WebSocket-Version", b"Content-Length", b"Origin"]),
                          st.binary(max_size=20)),
                st.one_of(st.sampled_from([b"websocket", b"Upgrade", b"13", b"-1", b"99999999999"]),
                          st.binary(max_size=100)),
            ),
            max_size=8,
        ),
    ),
    st.binary(max_size=3000),
)  # fmt: skip


def http_exchange(port: int, request: bytes) -> bytes:
    """Send ``request``, half-close, and read until the server closes. A server that neither
    answers nor closes for 30 s (a guard against a hung test, not a speed limit) fails the test."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server may answer and close before all was sent
            pass
        response = b""
        try:
            while chunk := sock.recv(65536):
                response += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            pytest.fail(f"the server let a bad request hang (neither answered nor closed): {request[:80]!r}")
    return response


@FUZZ
@given(request=http_requests)
def test_any_http_request_is_answered_with_a_status_or_closed_and_the_stream_plays_on(
    live: Any, request: bytes
) -> None:
    server, engine, listener, performer = live
    response = http_exchange(server.port, request)
    if response:
        status_line = response.split(b"\r\n", 1)[0]
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        status = int(status_line.split()[1])
        assert status in (101, 200, 400, 403, 404, 405, 426, 500, 503) and status != 500, status
    assert listener.websocket.state.name == "OPEN"


# ---- command line and config files --------------------------------------------------------

VALUE_OPTIONS = ["--model", "--device", "--dtype", "--preset", "--prompt", "--negative-prompt",
                 "--seed", "--seed-loop", "--denoising", "--guidance", "--transition-seconds",
                 "--transition-bars", "--lookahead-frames", "--batch-frames"]  # fmt: skip
option_values = st.one_of(
    st.text(max_size=30),
    st.integers().map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "-inf", "1e308", "-0", "0x10", "1_000", "", " ", "\x00", "٣"]),
)


def named(error_text: str, names: list[str]) -> bool:
    text = error_text.replace("_", "-")
    return any(name.lstrip("-").replace("_", "-") in text for name in names)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(VALUE_OPTIONS), option_values), max_size=4))
def test_bad_command_line_values_are_refused_naming_the_option(
    pairs: list[tuple[str, str]],
) -> None:
    argv = ["render", "--seconds", "1", "--out", "x.wav"]
    for option, value in pairs:
        argv.append(f"{option}={value}")
    parser = build_parser()
    parser.exit_on_error = False
    for action in parser._subparsers._group_actions[0].choices.values():
        action.exit_on_error = False
    try:
        args = parser.parse_args(argv)
    except argparse.ArgumentError as error:
        assert error.argument_name and error.argument_name.startswith("--"), error
        return
    try:
        config = stream_config_from_args(args)
    except UserError as error:
        assert named(str(error), [option for option, _ in pairs]), str(error)
        return
    assert isinstance(config, StreamConfig)


CONFIG_KEYS = ["model", "device", "dtype", "offline", "preset", "prompt", "negative_prompt",
               "seed", "seed-loop", "denoising", "guidance", "transition_seconds",
               "transition-bars", "endless", "lookahead_frames", "batch-frames", "playlist",
               "unknown_option"]  # fmt: skip


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


toml_values = st.recursive(
    st.one_of(
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(),
        st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=30),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)


@FUZZ
@given(
    st.one_of(
        st.dictionaries(st.sampled_from(CONFIG_KEYS), toml_values, max_size=5).map(
            lambda options: "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in options.items())
        ),
        st.text(max_size=200),  # not TOML at all, mostly
    )
)
def test_bad_config_files_are_refused_naming_the_option_or_the_file(text: str) -> None:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"streamer-fuzz-{os.getpid()}.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    args = build_parser().parse_args(["render", "--seconds", "1", "--out", "x.wav", "--config", str(path)])
    try:
        config = stream_config_from_args(args)
    except UserError as error:
        message = str(error)
        assert str(path) in message or named(message, CONFIG_KEYS + ["--prompt", "--transition"]), message
        return
    assert isinstance(config, StreamConfig)
