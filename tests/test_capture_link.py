"""A capture with ``--link``: the bars are a Link peer's bars. A real second aalink peer in this
process (tests/test_link.py), the engine following the session through ``LinkSession``; the input
is a ring written as a device would have written it, a drummer's loop on the peer's bar lines."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("aalink")

from test_link import JOIN_TIMEOUT, Peer  # noqa: E402

from streamer.audio.capture import InputTimeline, capture_window  # noqa: E402
from streamer.plan.settings import StreamSettings  # noqa: E402
from streamer.runtime.assemble import build_engine  # noqa: E402
from streamer.runtime.follow import LinkConfig  # noqa: E402
from streamer.runtime.link import LinkSession  # noqa: E402
from streamer.runtime.ring import InputRing  # noqa: E402
from streamer.runtime.standin import StandInFrameMaker  # noqa: E402
from streamer.runtime.stream_config import StreamConfig  # noqa: E402

RATE = 48000


@pytest.fixture
def peer():
    peer = Peer(120.0)
    yield peer
    peer.close()


def test_with_link_the_captured_bars_start_on_the_peers_bar_line(peer):
    engine = build_engine(StreamConfig(settings=StreamSettings(seed_loop="house_117")), StandInFrameMaker(0.0))
    config = LinkConfig()
    engine.follow(config)
    session = LinkSession(engine, 117.1875, config)
    session.start()
    try:
        deadline = time.monotonic() + JOIN_TIMEOUT
        while session.peers < 1:
            assert time.monotonic() < deadline, "the peer was not found"
            time.sleep(0.05)
        peer.set_tempo(120.0)
        while (engine.core.followed_session or (None,))[0] is None or engine.heard_grid().tempo_bpm != 120.0:
            assert time.monotonic() < deadline, "the session's tempo did not reach the stream"
            time.sleep(0.02)
        grid = engine.heard_grid()
        theirs = peer.timeline()
    finally:
        session.stop()
    assert grid.beats_per_bar == 4
    # A drummer on the peer's grid for the last 10 s: a click on each of the peer's bar lines.
    now = time.monotonic()
    started = now - 10.0
    clicks = np.zeros(10 * RATE, np.float32)
    first_bar = np.ceil(theirs.beat_at(started) / 4) * 4
    for bar_beat in np.arange(first_bar, theirs.beat_at(now), 4):
        clicks[round((theirs.at + (bar_beat - theirs.beat) * 0.5 - started) * RATE) :][:200] = 0.5
    ring = InputRing(clicks.size)
    ring.write(clicks[None], now)
    written, at, held = ring.position()
    window = capture_window(grid, InputTimeline(RATE, written, at, 0.0, held), 2)
    # Where the peer's beat is at the window's first sample: on a bar line, within 10 ms.
    beat = theirs.beat_at(started + window.first / RATE)
    assert abs(beat - 4 * round(beat / 4)) * 0.5 <= 0.010
    samples = ring.read(window.first, window.last)
    assert np.flatnonzero(samples)[0] <= 0.010 * RATE  # the drummer's click opens the window
