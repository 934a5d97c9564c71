"""The stream server: one port, ``GET /`` for the browser client, ``/ws`` for everything else.

A thin shell: the wire format, the control checks, the per-connection rules and the pacing of
listeners are pure modules; this one moves bytes between them and the sockets.

Run it inside an asyncio program::

    async with StreamServer(config, control) as server:
        print("open", server.url)
        await asyncio.Event().wait()

or beside a threaded engine, whose publisher thread calls its ``StreamSink`` methods::

    with ServerThread(StreamServer(config, EngineControl(engine, seed_loops))) as server:
        engine.add_sink(server)
"""

from __future__ import annotations

import asyncio
import http
import logging
import secrets
import socket
import threading
import urllib.parse
from pathlib import Path

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from streamer.audio.blocks import AudioBlock
from streamer.errors import UserError
from streamer.plan.controls import ErrorCode
from streamer.runtime.ports import ControlRejected, FramePicture, StreamControl, StreamEvent
from streamer.sinks.broadcast import Broadcaster, BroadcastStats, write_now
from streamer.sinks.client_files import content_type, find_client_dir, resolve_client_file
from streamer.sinks.config import ServerConfig
from streamer.sinks.opus import OpusEncoding
from streamer.sinks.protocol import CODECS, ack_text, error_text, hello_text
from streamer.sinks.session import Apply, ControlSession, Disconnect, Reply, StartListening

logger = logging.getLogger(__name__)

WEBSOCKET_PATH = "/ws"
#: WebSocket close code "try again later" (RFC 6455 registry).
CLOSE_TRY_AGAIN_LATER = 1013
#: A message this many times over ``max_message_bytes`` closes the connection unread.
HARD_SIZE_FACTOR = 4
#: How long a closing handshake may wait for the client's answer; a stalled listener's answer
#: never comes, and ``stop`` waits this long for the slowest.
CLOSE_TIMEOUT_SECONDS = 2.0


def requested_codec(path: str) -> str | None:
    """The codec a listener asks for in the WebSocket URL (``/ws?codec=opus``; PCM without the
    parameter), or ``None`` for one this server does not speak."""
    values = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("codec", [CODECS[0]])
    return values[-1] if values[-1] in CODECS else None


class StreamServer:
    """Serves the stream to listeners and passes performers' commands to ``control``.

    Implements ``StreamSink``: the engine publishes into it from its publisher thread.
    """

    def __init__(
        self,
        config: ServerConfig,
        control: StreamControl,
        *,
        opus: OpusEncoding | None = None,
        client_dir: Path | None = None,
    ) -> None:
        """``opus``: the stream's Opus encoding, shared with its other Opus outputs (an Ogg
        Icecast mount); None: one of the server's own, at the default bitrate."""
        self.config = config
        self.control = control
        #: Generated when the config has none; print it for the performer, it is never logged.
        self.performer_token = config.performer_token or secrets.token_urlsafe(24)
        self.client_dir = client_dir if client_dir is not None else find_client_dir()
        self.broadcaster = Broadcaster(config, opus if opus is not None else OpusEncoding())
        self._connections: set[ServerConnection] = set()
        self._server: Server | None = None

    # ---- StreamSink: any thread -------------------------------------------------------------

    def publish_audio(self, block: AudioBlock) -> None:
        self.broadcaster.publish_audio(block)

    def publish_event(self, event: StreamEvent) -> None:
        self.broadcaster.publish_event(event)

    def publish_frame(self, picture: FramePicture) -> None:
        self.broadcaster.publish_frame(picture)

    # ---- lifecycle: the event loop's thread -------------------------------------------------

    async def start(self) -> None:
        config = self.config
        try:
            self._server = await serve(
                self._handle,
                config.host,
                config.port,
                process_request=self._process_request,
                origins=[*config.allowed_origins, None] if config.allowed_origins else None,
                compression=None,  # deflating PCM costs much CPU per listener and saves little
                max_size=HARD_SIZE_FACTOR * config.max_message_bytes,
                ping_interval=config.ping_interval_seconds,
                ping_timeout=config.ping_timeout_seconds,
                close_timeout=CLOSE_TIMEOUT_SECONDS,
            )
        except OSError as error:
            raise UserError(
                f"cannot listen on {config.host}:{config.port} ({error.strerror or error}); "
                "choose another --port or --host, or stop the program that uses it"
            ) from error
        self.broadcaster.attach(asyncio.get_running_loop())

    async def stop(self) -> None:
        self.broadcaster.detach()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> StreamServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port listened on (the one the system chose when the config says 0)."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """Where a browser on this machine opens the player."""
        host = self.config.host
        if host in ("", "0.0.0.0", "::"):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def stats(self) -> BroadcastStats:
        return self.broadcaster.stats()

    # ---- HTTP -------------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urllib.parse.urlsplit(request.path).path
        if path == WEBSOCKET_PATH:
            if requested_codec(request.path) is None:
                return connection.respond(
                    http.HTTPStatus.BAD_REQUEST,
                    f"Unknown codec; ask for one of {', '.join(CODECS)} (/ws?codec=opus).\n",
                )
            if len(self._connections) >= self.config.max_connections:
                return connection.respond(
                    http.HTTPStatus.SERVICE_UNAVAILABLE, "Too many listeners; try again later.\n"
                )
            return None  # go on with the WebSocket handshake
        if "Upgrade" in request.headers:
            return connection.respond(
                http.HTTPStatus.NOT_FOUND, f"The stream is at {WEBSOCKET_PATH}.\n"
            )
        file = resolve_client_file(self.client_dir, request.path)
        if file is None:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not found.\n")
        body = file.read_bytes()
        headers = Headers(
            [
                ("Content-Type", content_type(file)),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-cache"),
                ("X-Content-Type-Options", "nosniff"),
            ]
        )
        return Response(http.HTTPStatus.OK, "OK", headers, body)

    # ---- one WebSocket connection -----------------------------------------------------------

    async def _handle(self, connection: ServerConnection) -> None:
        if len(self._connections) >= self.config.max_connections:
            await connection.close(CLOSE_TRY_AGAIN_LATER, "too many listeners; try again later")
            return
        self._connections.add(connection)
        sock = connection.transport.get_extra_info("socket")
        if sock is not None:
            send_buffer_bytes = self.config.socket_send_buffer_bytes
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
        try:
            await self._converse(connection)
        except ConnectionClosed:
            pass
        finally:
            self.broadcaster.leave(connection)
            self._connections.discard(connection)

    async def _converse(self, connection: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        session = ControlSession(self.config, self.performer_token)
        assert connection.request is not None
        codec = requested_codec(connection.request.path) or CODECS[0]
        self._reply(connection, self._hello(session, codec))
        if session.listening:
            self.broadcaster.join(connection, codec)
        async for message in connection:
            outcome = session.receive(message, loop.time())
            if isinstance(outcome, Reply):
                self._reply(connection, outcome.text)
            elif isinstance(outcome, StartListening):
                self._reply(connection, outcome.reply)
                self.broadcaster.join(connection, codec)
            elif isinstance(outcome, Apply):
                self._reply(connection, self._apply(outcome))
            elif isinstance(outcome, Disconnect):
                await self._close_while_draining(connection, outcome)
                return

    @staticmethod
    async def _close_while_draining(connection: ServerConnection, outcome: Disconnect) -> None:
        """Close, reading on meanwhile: the client's close frame may sit behind messages it has
        already sent, and unread messages pause reading (the library's flow control)."""
        closing = asyncio.create_task(connection.close(outcome.code, outcome.reason))
        async for _ in connection:
            pass
        await closing

    def _hello(self, session: ControlSession, codec: str) -> str:
        config = self.config
        return hello_text(
            codec=codec,
            role=str(session.role),
            listening_open=config.listen_token is None,
            message_seconds=config.message_seconds,
            burst_seconds=config.burst_seconds,
            limits={
                "max_message_bytes": config.max_message_bytes,
                "max_messages_per_second": config.max_messages_per_second,
                "max_prompt_chars": config.max_prompt_chars,
                "max_prompts": config.max_prompts,
            },
        )

    def _apply(self, outcome: Apply) -> str:
        try:
            details = self.control.apply(outcome.command)
            return ack_text(outcome.of, outcome.request_id, details or {})
        except ControlRejected as rejection:
            return error_text(
                rejection.code, rejection.message, of=outcome.of, request_id=outcome.request_id
            )
        except Exception:
            logger.exception("the engine failed to apply %r", outcome.command)
            return error_text(
                ErrorCode.INTERNAL_ERROR,
                "the stream could not apply this; it plays on (details in the server log)",
                of=outcome.of,
                request_id=outcome.request_id,
            )

    @staticmethod
    def _reply(connection: ServerConnection, text: str) -> None:
        write_now(connection, text.encode("utf-8"), text=True)


class ServerThread:
    """Runs a ``StreamServer`` on its own event loop in a daemon thread.

    ``start`` returns once the port is open (or raises what prevented it, a ``UserError`` for a
    port in use); ``stop`` closes every connection and waits for the thread.
    """

    def __init__(self, server: StreamServer, *, start_timeout_seconds: float = 10.0) -> None:
        self.server = server
        self.start_timeout_seconds = start_timeout_seconds
        self._thread = threading.Thread(target=self._run, name="stream-server", daemon=True)
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def start(self) -> StreamServer:
        self._thread.start()
        if not self._ready.wait(self.start_timeout_seconds):
            raise RuntimeError(
                f"the stream server did not start within {self.start_timeout_seconds} s"
            )
        if self._error is not None:
            raise self._error
        return self.server

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # loop already closed
                pass
        self._thread.join()

    def __enter__(self) -> StreamServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as error:
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.server.stop()
