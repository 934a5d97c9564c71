"""Ableton Link: join the session on the network and tell the engine its tempo and beat.

A thin shell around ``aalink`` (GPL-3, the optional ``link`` extra, imported only here and only
when ``--link`` is given). aalink needs a running asyncio loop, so the session lives on its own
thread with its own loop; every ``LinkConfig.poll_seconds`` it reads the session's tempo and
beat with the monotonic time of the reading and hands them to ``Engine.session``. All decisions
(phase, tempo range, refusals) are the core's (``streamer.runtime.follow``); nothing here runs on
the clock's thread.

Link's clock is the system's monotonic clock, the engine's too, so a reading's time needs no
conversion.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Protocol

from streamer.errors import UserError
from streamer.runtime.follow import LinkConfig, SessionTimeline

log = logging.getLogger(__name__)


class SessionListener(Protocol):
    def session(self, timeline: SessionTimeline) -> None: ...


class LinkSession:
    """Joins a Link session at ``start`` (at ``tempo_bpm`` if it is the first peer) and reports
    it to ``listener`` until ``stop``."""

    def __init__(
        self, listener: SessionListener, tempo_bpm: float, config: LinkConfig
    ) -> None:
        try:
            import aalink
        except ImportError:
            raise UserError(
                "--link needs the optional Ableton Link support: pip install 'streamer[link]' "
                "(aalink, GPL-3)"
            ) from None
        self._aalink = aalink
        self.listener = listener
        self.tempo_bpm = tempo_bpm
        self.config = config
        self.peers = 0
        self._joined = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="streamer-link", daemon=True
        )

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._joined.wait(timeout):
            raise UserError("--link: could not start Ableton Link (see the log)")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            asyncio.run(self._follow())
        except Exception:
            log.exception("Ableton Link stopped; the stream keeps its last tempo")

    async def _follow(self) -> None:
        link = self._aalink.Link(self.tempo_bpm)
        link.quantum = self.config.quantum_beats
        link.enabled = True
        self._joined.set()
        log.info(
            "joined Ableton Link at %.2f BPM (quantum %d)", link.tempo, link.quantum
        )
        try:
            while not self._stop.is_set():
                at = time.monotonic()
                reading = SessionTimeline(
                    tempo_bpm=float(link.tempo), beat=float(link.beat), at=at
                )
                if link.num_peers != self.peers:
                    self.peers = link.num_peers
                    log.info(
                        "Ableton Link: %d other peer(s), %.2f BPM",
                        self.peers,
                        link.tempo,
                    )
                self.listener.session(reading)
                await asyncio.sleep(self.config.poll_seconds)
        finally:
            link.enabled = False
