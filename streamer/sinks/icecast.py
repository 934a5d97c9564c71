"""An Icecast source client: the stream, encoded once, sent to an Icecast mount by HTTP PUT.

The engine calls the sink on its publisher thread, which must never wait on the network: blocks
go into a bounded queue (the oldest dropped, and counted, when Icecast stalls), and a sender
thread of the sink's own encodes them and writes them to Icecast. When Icecast goes away (a
restart, a network cut), the sender reconnects with a doubling back-off while the rest of the
stream (the WebSocket listeners, the sound device) goes on; each new connection starts a fresh
encoder, so it begins with the headers a player needs, at the live edge.

Titles: MP3 mounts get each new title through Icecast's admin metadata request. Ogg Opus mounts
carry the title in the stream's comment header, written with a connection's first audio
(Icecast 2.4.4 refuses admin title updates for Ogg mounts). See ``streamer.sinks.icecast_protocol`` for the wire.
"""

from __future__ import annotations

import collections
import http.client
import logging
import socket
import threading

from streamer.audio.blocks import AudioBlock
from streamer.runtime.ports import FramePicture, NowPlaying, StreamEvent
from streamer.sinks.icecast_encoder import StreamEncoder, default_bitrate_kbps
from streamer.sinks.icecast_protocol import (
    Backoff,
    IcecastConfig,
    SourceRefused,
    check_source_response,
    metadata_request,
    parse_target,
    source_request,
    title_of,
)

log = logging.getLogger(__name__)

#: Longest the sender waits for a block before it looks at the stop flag again, in seconds.
POLL_SECONDS = 0.1
#: Longest an answer from Icecast (to the source or the title request) may take, in seconds.
ANSWER_TIMEOUT_SECONDS = 5.0


class IcecastSink:
    """A ``StreamSink`` that feeds one Icecast mount; ``start`` it, and ``stop`` it at the end."""

    def __init__(self, config: IcecastConfig, sample_rate: int, channels: int) -> None:
        self.config = config
        self.target = parse_target(config.url, config.format)
        self.sample_rate = sample_rate
        self.channels = channels
        self.bitrate_kbps = config.bitrate_kbps or default_bitrate_kbps(self.target.format, channels)
        self._max_queued_samples = round(config.queue_seconds * sample_rate)
        self._queue: collections.deque[AudioBlock] = collections.deque()
        self._queued_samples = 0
        self._title = ""
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamer-icecast", daemon=True)
        #: Counters an operator (and the tests) read.
        self.dropped_blocks = 0
        self.connections = 0
        self.bytes_sent = 0

    # -- the engine's side (publisher thread): hand over and return ---------------------------
    def publish_audio(self, block: AudioBlock) -> None:
        with self._changed:
            self._queue.append(block)
            self._queued_samples += block.num_samples
            while self._queued_samples > self._max_queued_samples:
                self._queued_samples -= self._queue.popleft().num_samples
                self.dropped_blocks += 1
            self._changed.notify()

    def publish_event(self, event: StreamEvent) -> None:
        if isinstance(event, NowPlaying):
            with self._changed:
                self._title = title_of(event)
                self._changed.notify()

    def publish_frame(self, frame: FramePicture) -> None:
        """Pictures are not part of an Icecast stream."""

    @property
    def queued_seconds(self) -> float:
        """Stream time waiting to be encoded and sent."""
        with self._changed:
            return self._queued_samples / self.sample_rate

    # -- lifetime ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Send what is queued, end the stream cleanly and close the connection."""
        self._stop.set()
        with self._changed:
            self._changed.notify()
        if self._thread.ident is not None:
            self._thread.join(timeout=ANSWER_TIMEOUT_SECONDS + self.config.send_timeout_seconds)

    # -- sender thread ------------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = Backoff(self.config.reconnect_seconds, self.config.max_reconnect_seconds)
        while not self._stop.is_set():
            encoder = StreamEncoder(
                self.target.format, self.sample_rate, self.channels, self.bitrate_kbps
            )
            try:
                connection = self._connect(encoder)
            except (OSError, SourceRefused) as error:
                delay = backoff.failed()
                log.warning(
                    "cannot send to Icecast at %s (%s); trying again in %.1f s",
                    self.target.listen_url, error, delay,
                )
                self._stop.wait(delay)
                continue
            backoff.connected()
            self.connections += 1
            log.info("sending the stream to Icecast: %s", self.target.listen_url)
            try:
                self._send(connection, encoder)
            except OSError as error:
                log.warning("the connection to Icecast was lost (%s); reconnecting", error)
            finally:
                connection.close()

    def _connect(self, encoder: StreamEncoder) -> socket.socket:
        connection = socket.create_connection(
            (self.target.host, self.target.port), timeout=ANSWER_TIMEOUT_SECONDS
        )
        try:
            connection.sendall(source_request(self.target, self.config, encoder.audio_info))
            check_source_response(_read_head(connection))
        except BaseException:
            connection.close()
            raise
        connection.settimeout(self.config.send_timeout_seconds)
        with self._changed:  # a new connection starts at the live edge
            self.dropped_blocks += len(self._queue)
            self._queue.clear()
            self._queued_samples = 0
        return connection

    def _send(self, connection: socket.socket, encoder: StreamEncoder) -> None:
        """Encode and send until stopped; an OSError means the connection is gone. An MP3
        mount gets the title at once and after each change, ahead of the audio that follows;
        an Ogg stream gets the title of its first audio in its header."""
        sent_title = None
        while True:
            with self._changed:
                if not self._queue and self._title == sent_title and not self._stop.is_set():
                    self._changed.wait(POLL_SECONDS)
                if self._queue and not encoder.started and not self._title:
                    # The first frame's now_playing follows its first block within one pass
                    # of the engine's publisher.
                    self._changed.wait(POLL_SECONDS)
                blocks = list(self._queue)
                self._queue.clear()
                self._queued_samples = 0
                title = self._title
            if blocks and not encoder.started:
                encoder.set_title(title)
            if title and title != sent_title and self.target.format == "mp3":
                self._update_title(title)
            sent_title = title
            for block in blocks:
                self._write(connection, encoder.encode(block.samples))
            if self._stop.is_set():
                self._write(connection, encoder.close())
                return

    def _write(self, connection: socket.socket, data: bytes) -> None:
        if data:
            connection.sendall(data)
            self.bytes_sent += len(data)

    def _update_title(self, title: str) -> None:
        """Set the mount's title; a failure is logged, never fatal to the stream."""
        path, headers = metadata_request(self.target, title)
        connection = http.client.HTTPConnection(
            self.target.host, self.target.port, timeout=ANSWER_TIMEOUT_SECONDS
        )
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                log.warning(
                    "Icecast did not take the title %r: %d %s",
                    title, response.status, response.reason,
                )
        except (OSError, http.client.HTTPException) as error:
            log.warning("cannot send the title to Icecast (%s)", error)
        finally:
            connection.close()


def _read_head(connection: socket.socket) -> bytes:
    """An HTTP response head (up to the blank line), or what came before the peer closed."""
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 16384:
        chunk = connection.recv(4096)
        if not chunk:
            break
        head += chunk
    return head
