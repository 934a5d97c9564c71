"""An Icecast source client: the stream sent to an Icecast mount by HTTP PUT.

The engine calls the sink on its publisher thread, which must never wait on the network: what
is to be sent goes into a bounded queue (the oldest dropped, and counted, when Icecast stalls),
and a sender thread of the sink's own writes it to Icecast. An Ogg mount gets the stream's one
Opus encoding (``OpusEncoding``, shared with the WebSocket listeners: the packets are made on
the publisher thread once for all, and the sender muxes them into Ogg pages); an MP3 mount gets
blocks, which the sender encodes. When Icecast goes away (a restart, a network cut), the sender
reconnects with a doubling back-off while the rest of the stream (the WebSocket listeners, the
sound device) goes on; each new connection starts a fresh Ogg stream or MP3 encoder, so it
begins with the headers a player needs, at the live edge.

Titles: MP3 mounts get each new title through Icecast's admin metadata request. Ogg Opus mounts
carry the title in the stream's comment header, written with a connection's first audio
(Icecast 2.4.4 refuses admin title updates for Ogg mounts). See
``streamer.sinks.icecast_protocol`` for the wire.
"""

from __future__ import annotations

import collections
import dataclasses
import http.client
import logging
import socket
import threading

from streamer.audio.blocks import AudioBlock
from streamer.backoff import Backoff
from streamer.runtime.ports import FramePicture, NowPlaying, StreamEvent
from streamer.sinks.icecast_encoder import MP3_KBPS_PER_CHANNEL, Mp3Encoder, OggOpusMuxer
from streamer.sinks.icecast_protocol import (
    IcecastConfig,
    SourceRefused,
    audio_info,
    check_source_response,
    metadata_request,
    source_request,
    target_of,
    title_of,
)
from streamer.sinks.opus import OPUS_RATE, OpusBatch, OpusEncoding

log = logging.getLogger(__name__)

#: Longest the sender waits for a block before it looks at the stop flag again, in seconds.
POLL_SECONDS = 0.1
#: Longest an answer from Icecast (to the source or the title request) may take, in seconds.
ANSWER_TIMEOUT_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class _Queued:
    """A published block as the sender sends it: the block itself (MP3, encoded by the sender)
    or the stream's Opus packets it completed (Ogg)."""

    num_samples: int  # the block's, at the stream's rate
    audio: AudioBlock | OpusBatch


class IcecastSink:
    """A ``StreamSink`` that feeds one Icecast mount; ``start`` it, and ``stop`` it at the end.

    ``opus``: the stream's Opus encoding, which an Ogg mount sends (shared with the WebSocket
    listeners); None: one of the sink's own at the default bitrate. An MP3 mount ignores it.
    """

    def __init__(
        self,
        config: IcecastConfig,
        sample_rate: int,
        channels: int,
        opus: OpusEncoding | None = None,
    ) -> None:
        self.config = config
        self.target = target_of(config)
        self.sample_rate = sample_rate
        self.channels = channels
        if self.target.format == "ogg":
            self._opus: OpusEncoding | None = opus if opus is not None else OpusEncoding()
            self.bitrate_kbps: float = self._opus.kbit_per_second(channels)
            encoded_rate = OPUS_RATE
        else:
            self._opus = None
            self.bitrate_kbps = config.bitrate_kbps or MP3_KBPS_PER_CHANNEL * channels
            encoded_rate = sample_rate
        self.audio_info = audio_info(channels, encoded_rate, self.bitrate_kbps)
        self._max_queued_samples = round(config.queue_seconds * sample_rate)
        self._queue: collections.deque[_Queued] = collections.deque()
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
        audio = block if self._opus is None else self._opus.encode(block)
        with self._changed:
            self._queue.append(_Queued(block.num_samples, audio))
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
            try:
                connection = self._connect()
            except (OSError, SourceRefused) as error:
                delay = backoff.failed()
                log.warning(
                    "cannot send to Icecast at %s (%s); trying again in %.1f s",
                    self.target.listen_url, error, delay,
                )
                self._stop.wait(delay)
                continue
            backoff.succeeded()
            self.connections += 1
            log.info("sending the stream to Icecast: %s", self.target.listen_url)
            try:
                self._send(connection)
            except OSError as error:
                log.warning("the connection to Icecast was lost (%s); reconnecting", error)
            finally:
                connection.close()

    def _connect(self) -> socket.socket:
        connection = socket.create_connection(
            (self.target.host, self.target.port), timeout=ANSWER_TIMEOUT_SECONDS
        )
        try:
            connection.sendall(source_request(self.target, self.config, self.audio_info))
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

    def _send(self, connection: socket.socket) -> None:
        """Send until stopped; an OSError means the connection is gone. The connection's Ogg
        stream or MP3 encoder starts with its first audio: an Ogg stream has the title of that
        moment in its header; an MP3 mount gets the title at once and after each change, ahead
        of the audio that follows."""
        writer: OggOpusMuxer | Mp3Encoder | None = None
        sent_title = None
        while True:
            with self._changed:
                if not self._queue and self._title == sent_title and not self._stop.is_set():
                    self._changed.wait(POLL_SECONDS)
                if self._queue and writer is None and not self._title:
                    # The first frame's now_playing follows its first block within one pass
                    # of the engine's publisher.
                    self._changed.wait(POLL_SECONDS)
                queued = list(self._queue)
                self._queue.clear()
                self._queued_samples = 0
                title = self._title
            if title and title != sent_title and self.target.format == "mp3":
                self._update_title(title)
            sent_title = title
            for item in queued:
                writer = writer or self._writer(title)
                self._write(connection, writer.write(item.audio))
            if self._stop.is_set():
                if writer is not None:
                    self._write(connection, writer.close())
                return

    def _writer(self, title: str) -> OggOpusMuxer | Mp3Encoder:
        """A connection's Ogg stream (titled) or MP3 encoder."""
        if self.target.format == "ogg":
            return OggOpusMuxer(title)
        return Mp3Encoder(self.sample_rate, self.channels, round(self.bitrate_kbps))

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
