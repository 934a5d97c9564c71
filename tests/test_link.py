"""Ableton Link for real: a second aalink peer in this process, on loopback (no network set-up
was needed on this machine: two peers in one process find each other in about half a second).

The session's readings travel the real path (aalink -> ``LinkSession`` thread -> listener); the
stream they steer is then checked in the pure core with those readings, so no test here depends
on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import numpy as np
import pytest

aalink = pytest.importorskip("aalink")

from test_follow import following_core, play, session_beats

from streamer.runtime.assemble import build_engine

from streamer.runtime.stream_config import StreamConfig
from streamer.runtime.follow import LinkConfig, SessionTimeline
from streamer.runtime.link import LinkSession
from streamer.runtime.standin import StandInFrameMaker

#: Longest wait for the peers to find each other and agree (they take about 0.5 s).
JOIN_TIMEOUT = 20.0


class Peer:
    """Another Link peer (a drum machine at 120 BPM), on its own asyncio loop and thread."""

    def __init__(self, tempo_bpm: float) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.link = self.call(lambda: aalink.Link(tempo_bpm))
        self.call(lambda: setattr(self.link, "quantum", 4))
        self.call(lambda: setattr(self.link, "enabled", True))

    def call(self, function):
        async def run():
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(5)

    def set_tempo(self, tempo_bpm: float) -> None:
        self.call(lambda: setattr(self.link, "tempo", tempo_bpm))

    def timeline(self) -> SessionTimeline:
        return self.call(
            lambda: SessionTimeline(
                float(self.link.tempo), float(self.link.beat), time.monotonic()
            )
        )

    def close(self) -> None:
        self.call(lambda: setattr(self.link, "enabled", False))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Readings:
    """A listener that keeps every reading and signals once one matches a condition."""

    def __init__(self) -> None:
        self.readings: list[SessionTimeline] = []
        self.wanted = lambda reading: False
        self.found = threading.Event()

    def session(self, timeline: SessionTimeline) -> None:
        self.readings.append(timeline)
        if self.wanted(timeline):
            self.found.set()

    def wait_for(self, wanted) -> SessionTimeline:
        self.found.clear()
        self.wanted = wanted
        last = self.readings[-1] if self.readings else None
        assert self.found.wait(JOIN_TIMEOUT), f"no such reading came; the last: {last}"
        return self.readings[-1]


def joined(readings: Readings, session: LinkSession, peer: Peer) -> None:
    """Wait until our session has found the peer and both play the peer's 120 BPM (which of
    two sessions a joining peer adopts is Link's choice, so the peer sets its tempo again)."""
    readings.wait_for(lambda r: session.peers >= 1)
    peer.set_tempo(120.0)
    readings.wait_for(lambda r: r.tempo_bpm == 120.0)


@pytest.fixture
def peer():
    peer = Peer(120.0)
    yield peer
    peer.close()


def test_the_stream_joins_the_session_and_follows_its_tempo_and_bar(peer):
    readings = Readings()
    session = LinkSession(readings, 117.1875, LinkConfig())
    session.start()
    try:
        joined(readings, session, peer)
        reading = readings.wait_for(lambda r: True)
        theirs = peer.timeline()
    finally:
        session.stop()
    # Our reading of the beat and the peer's agree (10 ms = 0.02 beats at 120 BPM).
    assert abs(reading.beat_at(theirs.at) - theirs.beat) <= 0.02
    # The stream steered by that reading: its beats on the peer's timeline, within 10 ms.
    core = following_core("house_117", 10)
    samples = play(core, 8.0, reading)
    at = session_beats(samples, theirs)[2:]  # after the first second's jump into phase
    assert np.abs(at - np.round(at)).max() * 500 <= 10.0
    assert np.allclose(np.diff(np.round(at)), 1)


def test_a_session_tempo_of_999_gets_a_clear_log_line_and_the_stream_goes_on(
    peer, caplog
):
    caplog.set_level(logging.WARNING)
    engine = build_engine(StreamConfig(), StandInFrameMaker(0.01))
    engine.follow(LinkConfig())
    readings = Readings()

    class Both:
        def session(self, timeline):
            engine.session(timeline)
            readings.session(timeline)

    session = LinkSession(Both(), 117.1875, LinkConfig())
    session.start()
    try:
        joined(readings, session, peer)
        peer.set_tempo(999.0)
        readings.wait_for(lambda r: r.tempo_bpm == 999.0)
        readings.wait_for(lambda r: True)  # one more reading after it: still running
    finally:
        session.stop()
    assert caplog.text.count("the Link session's tempo 999.00 BPM is outside") == 1
    assert "the stream keeps 120.00 BPM" in caplog.text
    assert engine.core._follower.session.tempo_bpm == 120.0
