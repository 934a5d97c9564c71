"""The server's shell: the client files over HTTP, control over /ws, and the security limits."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from test_broadcast import (  # noqa: F401 (serve is a fixture)
    FakeControl,
    Recording,
    kind_of,
    open_listener,
    receive_for,
    serve,
)

from streamer.errors import UserError
from streamer.sinks.client_files import find_client_dir
from streamer.sinks.config import ServerConfig
from streamer.plan.commands import Command, Prompt, SetPrompts, SetSeed
from streamer.runtime.ports import FramePicture
from engine_events import status
from streamer.sinks.protocol import audio_messages_contiguous
from streamer.sinks.server import ServerThread, StreamServer

# ---- HTTP: the browser client ------------------------------------------------------------


def http_get(port: int, target: str) -> tuple[int, dict[str, str], bytes]:
    """A GET with the target sent verbatim (no client-side normalisation of '..')."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode("latin-1"))
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    fields = (line.split(":", 1) for line in header_lines)
    headers = {name.lower(): value.strip() for name, value in fields}
    return int(status_line.split()[1]), headers, body


@pytest.fixture
def client_server(tmp_path: Path) -> Any:
    client = tmp_path / "client"
    (client / "sub").mkdir(parents=True)
    (client / "index.html").write_text("<!doctype html><title>player</title>")
    (client / "app.js").write_text("console.log('play')")
    (client / "style.css").write_text("body{}")
    (client / "icon.png").write_bytes(b"\x89PNG\r\n")
    (client / "logo.svg").write_text("<svg/>")
    (client / "sub" / "page.html").write_text("sub page")
    (client / ".secret.js").write_text("hidden")
    (client / "tool.exe").write_bytes(b"MZ")
    (tmp_path / "outside.html").write_text("not for you")
    os.symlink(tmp_path / "outside.html", client / "link.html")
    server = StreamServer(ServerConfig(port=0), FakeControl(), client_dir=client)
    server_thread = ServerThread(server)
    yield server_thread.start()
    server_thread.stop()


@pytest.mark.parametrize(
    ("target", "content_type", "body"),
    [
        ("/", "text/html; charset=utf-8", b"<!doctype html><title>player</title>"),
        ("/?v=2", "text/html; charset=utf-8", b"<!doctype html><title>player</title>"),
        ("/index.html", "text/html; charset=utf-8", b"<!doctype html><title>player</title>"),
        ("/app.js", "text/javascript; charset=utf-8", b"console.log('play')"),
        ("/style.css", "text/css; charset=utf-8", b"body{}"),
        ("/icon.png", "image/png", b"\x89PNG\r\n"),
        ("/logo.svg", "image/svg+xml", b"<svg/>"),
        ("/sub/page.html", "text/html; charset=utf-8", b"sub page"),
        ("/sub/%70age.html", "text/html; charset=utf-8", b"sub page"),
    ],
)
def test_get_serves_the_client_files_with_their_content_type(
    client_server: StreamServer, target: str, content_type: str, body: bytes
) -> None:
    status, headers, received = http_get(client_server.port, target)
    assert (status, headers["content-type"], received) == (200, content_type, body)
    assert headers["content-length"] == str(len(body))
    assert headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "target",
    [
        "/missing.js",
        "/../outside.html",
        "/sub/../../outside.html",
        "/%2e%2e/outside.html",
        "/sub/..%2f..%2foutside.html",
        "/sub%2f..%2f..%2foutside.html",
        "/..%5coutside.html",
        "/link.html",  # a symlink out of the client folder
        "/.secret.js",
        "/tool.exe",  # not a type the client uses
        "/sub",
        "/index.html%00.js",
        "/%ff%fe.html",
        "/" + "a" * 5000 + ".html",
        "//outside.html",
        "outside.html",
    ],
)
def test_nothing_outside_the_client_files_is_served(
    client_server: StreamServer, target: str
) -> None:
    status, _, body = http_get(client_server.port, target)
    assert status == 404
    assert b"not for you" not in body


def test_a_websocket_upgrade_anywhere_but_ws_is_refused(client_server: StreamServer) -> None:
    with pytest.raises(InvalidStatus) as error:
        connect(f"ws://127.0.0.1:{client_server.port}/")
    assert error.value.response.status_code == 404


def test_the_repository_client_folder_is_found_in_a_checkout() -> None:
    assert (find_client_dir() / "index.html").is_file()


# ---- control over /ws ---------------------------------------------------------------------


def converse(
    port: int, messages: list[str | bytes], *, seconds: float = 0.6, path: str = "/ws"
) -> Recording:
    """Listen, send ``messages`` one after the other, keep listening; return all received."""
    with connect(f"ws://127.0.0.1:{port}{path}") as websocket:
        recording = Recording(connected_at=time.monotonic())
        receive_for(websocket, 0.2, recording)
        for message in messages:
            websocket.send(message)
        receive_for(websocket, seconds, recording)
        assert websocket.state.name == "OPEN"
    return recording


def replies(recording: Recording) -> list[dict[str, Any]]:
    return [event for event in recording.events if event["type"] in ("ack", "error")]


PROMPTS = {
    "type": "set_prompts",
    "prompts": [{"text": "warm analog synths", "weight": 1.0}],
    "id": 7,
}


def test_control_without_the_token_is_refused_and_the_stream_goes_on(serve: Any) -> None:
    server, control = serve(speed=4.0)
    recording = converse(server.port, [json.dumps(PROMPTS)])
    assert replies(recording) == [
        {
            "type": "error",
            "code": "unauthorized",
            "message": (
                'control needs the performer token: send {"type": "auth", "token": ...} first'
            ),
            "of": "set_prompts",
            "id": 7,
        }
    ]
    assert control.commands == []
    error_index = next(i for i, (_, m) in enumerate(recording.messages) if kind_of(m) == "error")
    audio_after = [m for _, m in recording.messages[error_index:] if kind_of(m) == "AudioMessage"]
    assert len(audio_after) >= 5 and audio_messages_contiguous(recording.audio)


def test_a_token_in_the_url_grants_nothing(serve: Any) -> None:
    server, control = serve(speed=4.0)
    path = f"/ws?token={server.performer_token}"
    recording = converse(server.port, [json.dumps(PROMPTS)], path=path)
    assert [reply["code"] for reply in replies(recording)] == ["unauthorized"]
    assert control.commands == []


def test_with_the_token_a_control_message_reaches_the_stream_and_is_acked(serve: Any) -> None:
    server, control = serve(speed=4.0)
    auth = json.dumps({"type": "auth", "token": server.performer_token})
    recording = converse(server.port, [auth, json.dumps(PROMPTS), '{"type":"set_seed","seed":42}'])
    assert replies(recording) == [
        {"type": "ack", "of": "auth", "details": {"role": "performer"}},
        {"type": "ack", "of": "set_prompts", "id": 7, "details": {"applied": "SetPrompts"}},
        {"type": "ack", "of": "set_seed", "details": {"applied": "SetSeed"}},
    ]
    expected: list[Command] = [SetPrompts((Prompt("warm analog synths", 1.0),)), SetSeed(42)]
    assert control.commands == expected
    assert audio_messages_contiguous(recording.audio)


class BrokenControl(FakeControl):
    def apply(self, command: Command) -> dict[str, Any]:
        if isinstance(command, SetSeed):
            raise RuntimeError("engine bug")
        return super().apply(command)


def test_engine_refusals_and_failures_become_typed_errors_and_the_connection_stays(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = serve(speed=4.0)
    server.control = BrokenControl()
    auth = json.dumps({"type": "auth", "token": server.performer_token})
    recording = converse(
        server.port,
        [
            auth,
            '{"type":"set_seed_loop","name":"polka"}',
            '{"type":"set_seed","seed":1}',
            '{"type":"skip"}',
        ],
    )
    assert [(reply["type"], reply.get("code")) for reply in replies(recording)] == [
        ("ack", None),
        ("error", "unknown_seed_loop"),
        ("error", "internal_error"),
        ("ack", None),
    ]
    assert "engine bug" in caplog.text
    assert audio_messages_contiguous(recording.audio)


def test_malformed_messages_get_errors_and_never_close_or_disturb_the_stream(serve: Any) -> None:
    server, control = serve(speed=4.0, max_message_bytes=4000)
    auth = json.dumps({"type": "auth", "token": server.performer_token})
    barrage: list[str | bytes] = [
        auth,
        "{not json",
        b"\x01\x02binary",
        "[" * 1900 + "]" * 1900,  # deep nesting, under the size limit
        json.dumps({"type": "set_negative_prompt", "text": "x" * 5000}),  # over it, under 4x
        '{"type":"set_denoising","denoising":NaN}',
        '{"type":"set_prompts","prompts":[{"text":"\\ud83c","weight":1}]}',
        '{"type":"skip","please":true}',
    ]
    recording = converse(server.port, barrage)
    codes = [reply.get("code") for reply in replies(recording)]
    assert codes == [
        None,
        "bad_json",
        "bad_message",
        "bad_json",
        "too_large",
        "bad_json",
        "invalid_value",
        "unknown_field",
    ]
    assert control.commands == []
    assert audio_messages_contiguous(recording.audio)


def test_a_message_far_over_the_size_limit_closes_the_connection(serve: Any) -> None:
    server, _ = serve(speed=4.0, max_message_bytes=1000)
    with connect(f"ws://127.0.0.1:{server.port}/ws") as websocket:
        websocket.send("x" * 5000)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                websocket.recv(timeout=2)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


def test_a_flood_is_answered_rate_limited_then_disconnected(serve: Any) -> None:
    server, _ = serve(speed=4.0, max_messages_per_second=5)
    with connect(f"ws://127.0.0.1:{server.port}/ws") as websocket:
        for _ in range(40):
            try:
                websocket.send('{"type":"skip"}')
            except ConnectionClosed:
                break
        codes = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                message = websocket.recv(timeout=2)
                if isinstance(message, str) and json.loads(message)["type"] == "error":
                    codes.append(json.loads(message)["code"])
    assert codes == ["unauthorized"] * 5 + ["rate_limited"] * 5
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


def test_connections_over_the_limit_are_refused(serve: Any) -> None:
    server, _ = serve(speed=4.0, max_connections=2)
    with open_listener(server.port), open_listener(server.port):
        with pytest.raises(InvalidStatus) as error:
            open_listener(server.port)
        assert error.value.response.status_code == 503
    time.sleep(0.2)
    with open_listener(server.port) as websocket:  # a place is free again
        assert json.loads(websocket.recv(timeout=2))["type"] == "hello"


def test_only_allowed_origins_may_open_the_websocket(serve: Any) -> None:
    server, _ = serve(speed=4.0, allowed_origins=("https://stage.example",))
    url = f"ws://127.0.0.1:{server.port}/ws"
    with pytest.raises(InvalidStatus) as error:
        connect(url, origin="https://evil.example")
    assert error.value.response.status_code == 403
    for origin in ("https://stage.example", None):  # no Origin: not a browser
        with connect(url, origin=origin) as websocket:
            assert json.loads(websocket.recv(timeout=2))["type"] == "hello"


def test_private_listening_sends_no_audio_before_the_listen_token(serve: Any) -> None:
    server, _ = serve(speed=4.0, listen_token="listen-secret-1")
    before = converse(server.port, [], seconds=0.4)
    assert before.audio == []
    assert before.events[0]["listening"] == "token" and before.events[0]["role"] == "none"
    after = converse(server.port, ['{"type":"auth","token":"listen-secret-1"}'], seconds=0.6)
    assert replies(after)[0]["details"] == {"role": "listener"}
    assert len(after.audio) >= 5 and audio_messages_contiguous(after.audio)


# ---- lifecycle ---------------------------------------------------------------------------


def test_a_busy_port_is_a_user_error_that_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("x")
    first = ServerThread(StreamServer(ServerConfig(port=0), FakeControl(), client_dir=tmp_path))
    server = first.start()
    try:
        same_port = ServerConfig(port=server.port)
        second = ServerThread(StreamServer(same_port, FakeControl(), client_dir=tmp_path))
        with pytest.raises(UserError, match="--port"):
            second.start()
        second.stop()
    finally:
        first.stop()


def test_a_generated_token_is_long_and_new_each_start(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("x")
    servers = [StreamServer(ServerConfig(), FakeControl(), client_dir=tmp_path) for _ in range(3)]
    tokens = {server.performer_token for server in servers}
    assert len(tokens) == 3 and all(len(token) >= 32 for token in tokens)
    config = ServerConfig(performer_token="my-own-token")
    given = StreamServer(config, FakeControl(), client_dir=tmp_path)
    assert given.performer_token == "my-own-token"


def test_publishing_when_the_server_is_not_running_is_harmless(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("x")
    server = StreamServer(ServerConfig(port=0), FakeControl(), client_dir=tmp_path)
    server.publish_event(status())
    server_thread = ServerThread(server)
    server_thread.start()
    assert server.url == f"http://127.0.0.1:{server.port}/"
    server_thread.stop()
    server.publish_frame(FramePicture(1, 0, b"png"))
    with pytest.raises(ValueError, match="not an engine event"):
        server.publish_event({"type": "unknown"})  # type: ignore[arg-type]
