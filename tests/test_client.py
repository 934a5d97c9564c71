"""The browser client in a real browser: headless Chromium (Debian's ``chromium`` package, never a
downloaded one) driven by Playwright, against the real stream server fed by the stand-in engine
of tests/client_server.py (switch ``TestStream(source=...)`` to run them on the real engine).

Audio in headless Chromium on a machine without a sound card: Chromium falls back to a fake
audio sink that still pulls samples in real time, so an AudioContext reaches "running" and its
``currentTime`` advances with no extra flag (checked at 44.1 and 48 kHz). The flags below only
keep the browser quiet and offline; ``--autoplay-policy=no-user-gesture-required`` spares the
gesture, though the tests click Play as a listener does. ``launch()`` starts each browser with a
fresh temporary profile (user-data dir).

The pure parts of the player (jitter buffer, resampler, back-off, protocol parsing) are imported
from the served page into the browser and exercised with simulated networks and clocks.
"""

from __future__ import annotations

import base64
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from client_server import FRAME_FRAMES, PERFORMER_TOKEN, SAMPLE_RATE, FakeEngine, TestStream
from opus_reference import decode_opus
from streamer.plan.commands import Capture, Prompt, SetDenoising, SetPrompts
from streamer.runtime.ports import InputLevel, NowPlaying, PromptWeight, Status
from streamer.sinks.protocol import AudioMessage, FrameMessage, OpusMessage

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OPUS_RATE = 48000
SCREENSHOT = Path(__file__).resolve().parents[1] / "artifacts" / "client.png"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (install.sh installs it)"
)
sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright for Python (the dev extra)")


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stream() -> Iterator[TestStream]:
    with TestStream() as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    playwright = sync_api.sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page; fails the test if the page threw an uncaught error."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(15_000)
    yield page
    context.close()
    assert errors == [], f"the page threw: {errors}"


def start_playing(page: Any, url: str) -> None:
    page.goto(url)
    page.click("#play")
    page.wait_for_function("() => streamer.player.stats()?.state === 'playing'")


def stats(page: Any) -> dict[str, Any]:
    return page.evaluate("() => streamer.player.stats()")


#: The listening tests check *what* is played, so they keep a fixed 1 s buffer: a CI machine once
#: stalled the test's stream for longer than the 0.4 s a player buffers at start (one underrun
#: followed by 0.4 s arriving at once), which says nothing about the player. How little the
#: player buffers, and how it rides out stalls, is tested below against simulated networks.
LISTENING = "buffer=1"


def assert_no_underruns(after: dict[str, Any], quanta: list[dict[str, Any]]) -> None:
    """No underrun since playing started; if there was one, when, and what the player measured."""
    silent = [i for i, quantum in enumerate(quanta) if quantum["silentFrom"] != -1]
    when = "before the tap"
    if silent:
        played = sum(quantum["frames"] for quantum in quanta[: silent[0]])
        when = f"{played / after['contextRate']:.2f} s into playing"
    assert (after["underruns"], after["underrunSeconds"], silent) == (0, 0, []), (
        f"underrun {when}; arrival jitter {after['jitterSeconds']:.3f} s, "
        f"buffered {after['depthSeconds']:.3f} s of {after['targetSeconds']:.3f}"
    )


TAP_JS = """() => {
  const player = streamer.player;
  const encode = (parts) => {
    const joined = new Float32Array(parts.reduce((n, part) => n + part.length, 0));
    let at = 0;
    for (const part of parts) { joined.set(part, at); at += part.length; }
    const bytes = new Uint8Array(joined.buffer);
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(text);
  };
  return { quanta: player.tapQuanta, left: encode(player.tapSamples[0]), right: encode(player.tapSamples[1]) };
}"""


def tapped(page: Any) -> tuple[list[dict[str, Any]], np.ndarray]:
    """What the player node output: per render quantum, where it came from; and the samples."""
    tap = page.evaluate(TAP_JS)
    samples = np.stack([np.frombuffer(base64.b64decode(tap[side]), dtype="<f4") for side in ("left", "right")])
    return tap["quanta"], samples


def playing_run(quanta: list[dict[str, Any]], samples: np.ndarray) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The quanta from the first one that played, and their samples."""
    first = next(i for i, quantum in enumerate(quanta) if quantum["position"] is not None)
    offset = sum(quantum["frames"] for quantum in quanta[:first])
    return quanta[first:], samples[:, offset:]


def assert_played_exactly_as_sent(quanta: list[dict[str, Any]], samples: np.ndarray, stream: TestStream) -> None:
    """Every quantum since the start played data at the stream's rate, without a jump or a hole,
    and the samples are the server's, bit for bit (after int16 quantisation)."""
    odd = [q for q in quanta if q["silentFrom"] != -1 or q["step"] != 1 or q["jumped"]]
    assert odd == [], f"{len(odd)} of {len(quanta)} quanta were not played as sent, e.g. {odd[:3]}"
    positions = [q["position"] for q in quanta]
    assert positions[1:] == [q["position"] + q["frames"] for q in quanta[:-1]]
    heard = np.rint(samples * 32767).astype(np.int16)
    assert np.array_equal(heard, stream.sent.sent_s16(positions[0], positions[0] + heard.shape[1]))


# ---- listening ---------------------------------------------------------------------------------

LISTEN_SECONDS = 4.0


def test_the_page_plays_exactly_the_samples_the_server_sent_without_underruns(page: Any, stream: TestStream) -> None:
    start_playing(page, stream.url + f"?codec=pcm&tap=1&{LISTENING}")
    time.sleep(LISTEN_SECONDS)
    quanta, samples = playing_run(*tapped(page))
    after = stats(page)

    assert after["contextRate"] == SAMPLE_RATE and after["engine"] == "AudioWorklet"
    assert_no_underruns(after, quanta)
    assert_played_exactly_as_sent(quanta, samples, stream)
    assert samples.shape[1] >= (LISTEN_SECONDS - 1.0) * SAMPLE_RATE
    assert page.text_content("#ro-underruns") == "0"
    assert page.text_content("#ro-buffer").isdigit()


def test_where_audio_worklet_is_missing_the_fallback_plays_the_same_samples(page: Any, stream: TestStream) -> None:
    # An insecure origin (http://<laptop-ip>:8765 on a phone) has no AudioWorklet.
    start_playing(page, stream.url + f"?codec=pcm&tap=1&worklet=0&{LISTENING}")
    time.sleep(2.5)
    quanta, samples = playing_run(*tapped(page))
    after = stats(page)
    assert after["engine"] == "ScriptProcessor"
    assert_no_underruns(after, quanta)
    assert_played_exactly_as_sent(quanta, samples, stream)
    assert samples.shape[1] >= 1.5 * SAMPLE_RATE


RECEIVED_PACKETS_JS = """() => streamer.opus.received.map(({ codecPosition, packets }) => ({
  codecPosition,
  packets: packets.map((packet) => btoa(String.fromCharCode.apply(null, packet))),
}))"""

#: Chromium's WebCodecs decoder against libopus through PyAV on the same packets, both in float:
#: at most 1.2e-7 apart here (float rounding, -138 dBFS: the same decoder); the bound leaves room
#: for another build's rounding and still catches any misplaced sample or packet.
OPUS_DECODER_TOLERANCE = 1e-4


def test_where_webcodecs_decodes_opus_the_page_plays_opus_without_underruns_as_libopus_decodes_it(
    page: Any, stream: TestStream
) -> None:
    start_playing(page, stream.url + f"?tap=1&{LISTENING}")
    time.sleep(LISTEN_SECONDS)
    quanta, samples = playing_run(*tapped(page))
    after = stats(page)
    received = page.evaluate(RECEIVED_PACKETS_JS)

    assert page.evaluate("() => streamer.codec") == "opus"
    assert after["contextRate"] == OPUS_RATE and after["engine"] == "AudioWorklet"
    assert_no_underruns(after, quanta)
    odd = [q for q in quanta if q["silentFrom"] != -1 or q["step"] != 1 or q["jumped"]]
    assert odd == [], f"{len(odd)} of {len(quanta)} quanta were not played as decoded, e.g. {odd[:3]}"
    positions = [q["position"] for q in quanta]
    assert positions[1:] == [q["position"] + q["frames"] for q in quanta[:-1]]
    assert samples.shape[1] >= (LISTEN_SECONDS - 1.0) * OPUS_RATE

    # The packets the page received, decoded in Python from the same first packet.
    starts = [r["codecPosition"] for r in received]
    packets = [base64.b64decode(p) for r in received for p in r["packets"]]
    assert starts == [starts[0] + sum(len(r["packets"]) for r in received[:i]) * 960 for i in range(len(received))]
    reference = decode_opus(packets, 2)
    offset = positions[0] - starts[0]
    expected = reference[:, offset : offset + samples.shape[1]]
    assert expected.shape == samples.shape
    difference = float(np.max(np.abs(samples - expected)))
    assert difference <= OPUS_DECODER_TOLERANCE, f"Chromium's decode differs from libopus's by {difference}"
    assert float(np.max(np.abs(samples))) > 0.1  # music, not silence

    print(f"Chromium vs libopus: max difference {difference:.3g}", end=" ")

    # What this listener costs: 96 kbit/s stereo plus framing, against 1411 for PCM.
    audio_bytes = page.evaluate("() => streamer.connection.audioBytes")
    kbit_per_second = audio_bytes * 8 / 1000 / (len(packets) * 960 / OPUS_RATE)
    print(f"{kbit_per_second:.1f} kbit/s")
    assert 96 <= kbit_per_second <= 1411 / 8
    assert re.fullmatch(r"Opus · \d+ kbit/s", page.text_content("#ro-codec"))


def test_a_browser_without_webcodecs_listens_in_pcm(page: Any, stream: TestStream) -> None:
    page.add_init_script("delete globalThis.AudioDecoder")
    start_playing(page, stream.url)
    assert page.evaluate("() => streamer.codec") == "pcm"
    assert stats(page)["contextRate"] == SAMPLE_RATE
    page.wait_for_function("() => /^PCM · \\d+ kbit\\/s$/.test(document.querySelector('#ro-codec').textContent)")


def test_the_page_loads_everything_from_the_server_it_came_from(page: Any, stream: TestStream) -> None:
    # No CDN, no build step: on a stage with no internet, the laptop's server is all there is.
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    start_playing(page, stream.url)
    page.wait_for_function("() => streamer.waterfall.frames.length > 0")
    origin = stream.url.rstrip("/")
    outside = [url for url in requested if not url.startswith((origin, "ws://127.0.0.1", "data:", "blob:"))]
    assert outside == []
    assert {url.rsplit("/", 1)[1] for url in requested} >= {"app.js", "player.js", "jitter.js", "style.css"}


def test_the_waterfall_shows_the_column_being_heard_not_the_newest_received(page: Any, stream: TestStream) -> None:
    start_playing(page, stream.url)
    time.sleep(1.0)
    page.wait_for_function("() => streamer.waterfall.lastDrawn?.frameId != null")
    drawn, received = page.evaluate(
        "() => [streamer.waterfall.lastDrawn, streamer.player.stats().receivedPosition]"
    )
    heard = drawn["heardPosition"]
    behind_seconds = (received - heard) / SAMPLE_RATE
    assert 0.2 < behind_seconds < 1.5  # the jitter buffer plus the output, not the network's edge
    assert drawn["frameId"] == int(heard // FRAME_FRAMES)
    assert drawn["column"] == int((heard - drawn["frameId"] * FRAME_FRAMES) // 441)


def test_a_48_khz_context_is_fed_resampled_audio_without_underruns(page: Any, stream: TestStream) -> None:
    start_playing(page, stream.url + f"?codec=pcm&tap=1&rate=48000&{LISTENING}")
    time.sleep(1.5)
    quanta, samples = playing_run(*tapped(page))
    after = stats(page)
    assert after["contextRate"] == 48000
    assert_no_underruns(after, quanta)

    # Compare half a second with a long (128-tap) windowed-sinc interpolation of what the server
    # sent, below 16 kHz: above, the two filters' transition bands differ (Riffusion makes nothing
    # above 10 kHz; the test music has hi-hats up to 22 kHz).
    where = np.concatenate([q["position"] + q["step"] * np.arange(q["frames"]) for q in quanta])[: 48000 // 2]
    first = int(where[0]) - 80
    sent = stream.sent.sent_s16(first, int(where[-1]) + 80).astype(np.float64) / 32767
    reference = sinc_interpolate(sent, where - first)
    window = np.hanning(where.size)
    error_spectrum = np.abs(np.fft.rfft((samples[:, : where.size] - reference) * window)) ** 2
    reference_spectrum = np.abs(np.fft.rfft(reference * window)) ** 2
    band = np.fft.rfftfreq(where.size, 1 / 48000) < 16000
    error_db = 10 * math.log10(error_spectrum[:, band].sum() / reference_spectrum[:, band].sum())
    assert error_db < -70, f"resampled audio differs from a reference resampler below 16 kHz: {error_db:.1f} dB"


def sinc_interpolate(signal: np.ndarray, at: np.ndarray, half_taps: int = 64, cutoff: float = 0.94) -> np.ndarray:
    """Band-limited values of ``signal`` (channels, n) at fractional sample indices ``at``: a
    Kaiser-windowed sinc four times longer than the player's."""
    base = np.floor(at).astype(np.int64)
    offsets = np.arange(-half_taps + 1, half_taps + 1)
    x = offsets[None, :] - (at - base)[:, None]
    window = np.i0(10.0 * np.sqrt(np.clip(1 - (x / half_taps) ** 2, 0, 1))) / np.i0(10.0)
    kernel = cutoff * np.sinc(cutoff * x) * window
    kernel /= kernel.sum(axis=1, keepdims=True)
    return np.stack([(channel[base[:, None] + offsets[None, :]] * kernel).sum(axis=1) for channel in signal])


def test_the_player_reconnects_after_the_stream_is_lost_and_plays_on(page: Any, stream: TestStream) -> None:
    start_playing(page, stream.url + "?codec=pcm")
    before = stats(page)["receivedPosition"]
    stream.stop_server()
    page.wait_for_function("() => streamer.connection.state === 'waiting'")
    assert "reconnecting" in page.text_content("#connection")
    time.sleep(1.0)
    stream.start_server()
    page.wait_for_function(
        f"() => streamer.connection.state === 'open' && streamer.player.stats().state === 'playing'"
        f" && streamer.player.stats().position > {before + 2 * SAMPLE_RATE}"
    )
    assert page.text_content("#connection") == "live"
    assert int(page.text_content("#ro-reconnects")) >= 1


def test_a_stream_at_another_rate_is_played_at_that_rate_exactly_as_sent(page: Any) -> None:
    # The rate is in every audio header: the page asks its context for it and plays the samples
    # untouched, where a page assuming 44.1 kHz would resample (or play at the wrong speed).
    with TestStream(source=FakeEngine(sample_rate=48000)) as stream_48k:
        start_playing(page, stream_48k.url + f"?tap=1&codec=pcm&{LISTENING}")
        time.sleep(2.5)
        quanta, samples = playing_run(*tapped(page))
        after = stats(page)
        assert (after["streamRate"], after["contextRate"]) == (48000, 48000)
        assert_no_underruns(after, quanta)
        assert_played_exactly_as_sent(quanta, samples, stream_48k)
        assert samples.shape[1] >= 1.5 * 48000
        assert page.text_content("#ro-output") == "48.0 kHz"
        assert page.evaluate("() => streamer.waterfall.sampleRate") == 48000


def test_reconnecting_to_a_stream_at_another_rate_resamples_to_the_running_context(page: Any) -> None:
    with TestStream() as stream_44k:
        start_playing(page, stream_44k.url + f"?codec=pcm&{LISTENING}")
        port = stream_44k.port
        stream_44k.stop_server()
        page.wait_for_function("() => streamer.connection.state === 'waiting'")
        with TestStream(source=FakeEngine(sample_rate=48000), port=port):
            page.wait_for_function(
                "() => streamer.player.stats().streamRate === 48000 && streamer.player.stats().state === 'playing'"
                " && streamer.player.stats().position > 48000"
            )
            after = stats(page)
            page.wait_for_function("() => document.querySelector('#ro-output').textContent.includes('resampled')")
    assert after["contextRate"] == SAMPLE_RATE, "a running context keeps its rate"
    assert after["underruns"] == 0
    assert after["sourceFramesPerSecond"] == pytest.approx(48000, rel=0.003), "plays at the stream's rate"
    assert page.evaluate("() => streamer.waterfall.sampleRate") == 48000


def test_an_opus_listener_reconnects_to_a_restarted_server_with_a_fresh_encoder_and_plays_on(
    page: Any, stream: TestStream
) -> None:
    start_playing(page, stream.url)
    assert page.evaluate("() => streamer.codec") == "opus"
    before = stats(page)["receivedPosition"]
    stream.stop_server()
    page.wait_for_function("() => streamer.connection.state === 'waiting'")
    stream.start_server()
    # Heard positions are on the stream's clock again, past the loss, from the new encoder's packets.
    page.wait_for_function(
        f"() => streamer.connection.state === 'open' && streamer.player.stats().state === 'playing'"
        f" && streamer.player.heardPosition() > {before + 1 * SAMPLE_RATE}"
    )
    heard, received = page.evaluate("() => [streamer.player.heardPosition(), streamer.player.stats().receivedPosition]")
    assert 0 < (received - heard) / SAMPLE_RATE < 1.5


# ---- steering ----------------------------------------------------------------------------------

STEERING_CONTROLS = "#steer input, #steer button, #steer select"


def test_while_the_first_frame_is_made_the_page_says_so_for_how_long_and_what_is_slow(
    page: Any,
) -> None:
    advice = "this machine takes 12.0 s to make a frame (the first one, so far), longer than ..."

    class FirstFrameNotMade(FakeEngine):
        """A stream whose first frame is still being made: nothing plays, no event comes."""

        def start(self, sink: Any) -> None:
            pass

        def stop(self) -> None:
            pass

    with TestStream(FirstFrameNotMade()) as stream:
        page.goto(stream.url)
        page.wait_for_function("() => streamer.connection.hello !== null")
        stream.sent.server.publish_event(
            Status("starting", 0.0, 0.0, 0, 0, making_seconds=12.4, advice=advice)
        )
        page.wait_for_function(
            "() => document.getElementById('status').textContent === 'making the first frame · 12 s'"
        )
        assert page.text_content("#np-waiting") == "the first frame is being made (12 s so far)…"
        assert page.is_visible("#advice") and page.text_content("#advice") == advice
        stream.sent.server.publish_event(Status("ok", 5.12, 1.4, 1, 0))
        page.wait_for_function("() => document.getElementById('status').textContent === 'ok · 5.1 s ahead'")
        assert not page.is_visible("#advice")


def test_the_performer_sees_the_input_level_and_captures_its_last_bars(page: Any, stream: TestStream) -> None:
    page.goto(stream.url)
    page.wait_for_function("() => streamer.connection.hello !== null")
    page.wait_for_function("() => document.getElementById('input-level').value === 'no live input (serve --input)'")
    stream.source.input_level = InputLevel(peak_dbfs=-0.0, rms_dbfs=-12.5, clipped=True, ok=True)
    try:
        page.wait_for_function("() => document.getElementById('input-level').value.includes('CLIPPING')")
        assert page.text_content("#input-level") == "peak 0.0 dBFS · RMS -12.5 dBFS · CLIPPING"
        assert page.eval_on_selector("#input-meter", "meter => meter.value") == 0
        assert page.is_disabled("#capture")  # a listener cannot capture
        page.fill("#token", PERFORMER_TOKEN)
        page.click("#unlock")
        page.wait_for_selector("#steer:not([disabled])")
        page.select_option("#capture-bars", "4")
        page.click("#capture")
        page.wait_for_function("() => document.getElementById('capture-reply').classList.contains('ok')")
        assert page.text_content("#capture-reply") == "captured-1: 4 bars at 93.75 BPM, clipped (levelled)"
        assert Capture(4) in stream.control.commands
        stream.source.input_level = InputLevel(peak_dbfs=-120.0, rms_dbfs=-120.0, clipped=False, ok=False)
        page.wait_for_function("() => document.getElementById('input-level').value === 'input stopped: the stream plays on'")
    finally:
        stream.source.input_level = None


def test_the_page_names_the_songs_section_being_heard(page: Any) -> None:
    class Silent(FakeEngine):
        """Events only: what the page shows is what the test publishes."""

        def start(self, sink: Any) -> None:
            pass

        def stop(self) -> None:
            pass

    def playing(frame_id: int, section: str | None, variation: str | None) -> NowPlaying:
        prompt = (PromptWeight("house track, deep synth bass, minor, busy", 1.0),)
        return NowPlaying(frame_id, frame_id * FRAME_FRAMES, prompt, "", 1.0, 0, 1, 0.5, 0.8, 4.0,
                          "boom_bap_94", 93.75, False, section, variation)

    with TestStream(Silent()) as stream:
        page.goto(stream.url)
        page.wait_for_function("() => streamer.connection.hello !== null")
        variation = "boom_bap_94~house.s1.g4.busy.c2.fill"
        stream.sent.server.publish_event(playing(1, "drop", variation))
        page.wait_for_function("() => document.getElementById('np-section').textContent === 'drop'")
        assert page.text_content("#np-seed-loop") == "boom_bap_94"
        assert variation in page.get_attribute("#np-seed-loop", "title")
        stream.sent.server.publish_event(playing(2, None, None))  # --form loop: no section
        page.wait_for_function("() => document.getElementById('np-section').textContent === '—'")


def test_without_a_token_the_steering_controls_are_disabled(page: Any, stream: TestStream) -> None:
    page.goto(stream.url)
    page.wait_for_function("() => streamer.connection.hello !== null")
    controls = page.locator(STEERING_CONTROLS)
    assert controls.count() >= 12
    assert all(controls.nth(i).is_disabled() for i in range(controls.count()))
    # The prompts of the stream are shown, read-only.
    page.wait_for_function(
        "() => document.querySelector('#prompt-rows li:first-child input[type=text]').value === 'warm analog synths'"
    )

    commands_before = len(stream.control.commands)
    page.fill("#token", "not-the-performer-token")
    page.click("#unlock")
    page.wait_for_function("() => document.getElementById('auth-reply').classList.contains('error')")
    assert "unauthorized" in page.text_content("#auth-reply")
    assert all(controls.nth(i).is_disabled() for i in range(controls.count()))
    # The server, not only the page, refuses control without the token.
    code = page.evaluate("() => streamer.connection.request({type: 'skip'}).then(() => 'ack', (error) => error.code)")
    assert code == "unauthorized"
    assert len(stream.control.commands) == commands_before


def test_a_performer_change_made_in_the_page_reaches_the_stream_and_is_acknowledged(
    page: Any, stream: TestStream
) -> None:
    start_playing(page, stream.url)
    page.fill("#token", PERFORMER_TOKEN)
    page.click("#unlock")
    page.wait_for_selector("#steer:not([disabled])")
    assert "steering" in page.text_content("#auth-reply")

    page.fill("#prompt-rows li:nth-child(1) input[type=text]", "deep house with rhodes")
    set_range(page, "#prompt-rows li:nth-child(1) input[type=range]", "0.8")
    page.fill("#prompt-rows li:nth-child(2) input[type=text]", "rain on a tin roof")
    page.click("#send-prompts")
    page.wait_for_function("() => document.getElementById('prompts-reply').value === 'applied'")
    expected = SetPrompts((Prompt("deep house with rhodes", 0.8), Prompt("rain on a tin roof", 0.3)))
    assert expected in stream.control.commands

    set_range(page, "#denoising", "0.5", commit=True)
    page.wait_for_function("() => document.getElementById('denoising-reply').value === 'applied'")
    assert SetDenoising(0.5) in stream.control.commands
    assert page.text_content("#denoising-value") == "0.50"

    # A refusal by the engine is shown beside the control, with its code.
    page.fill("#seed-loop", "polka")
    page.dispatch_event("#seed-loop", "change")
    page.wait_for_function("() => document.getElementById('seed-loop-reply').classList.contains('error')")
    assert "unknown_seed_loop" in page.text_content("#seed-loop-reply")

    # The now-playing panel follows what is heard: the new prompts once their frame plays.
    page.wait_for_function(
        "() => document.getElementById('np-prompts').textContent.includes('deep house with rhodes')",
        timeout=int(FRAME_FRAMES / SAMPLE_RATE * 1000) + 5000,
    )
    page.evaluate("() => { document.activeElement.blur(); window.scrollTo(0, 0); }")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    print(f"screenshot of the page: {SCREENSHOT}")


def set_range(page: Any, selector: str, value: str, *, commit: bool = False) -> None:
    """Move a slider as a user does: input events while dragging, change on release."""
    page.eval_on_selector(
        selector,
        """(input, [value, commit]) => {
          input.value = value;
          input.dispatchEvent(new Event('input', {bubbles: true}));
          if (commit) input.dispatchEvent(new Event('change', {bubbles: true}));
        }""",
        [value, commit],
    )


# ---- the player's core, in the browser with simulated networks and clocks ------------------------

SIMULATE_JS = """async ({ seconds, jitterSeconds = 0, stalls = [], outputStalls = [], drift = 0,
                          outputRate = 44100, pullFrames = 128, settings = {}, seed = 1 }) => {
  const { JitterBuffer } = await import("/jitter.js");
  let state = seed >>> 0;
  const random = () => {  // mulberry32: the same network every run
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const sourceRate = 44100, messageSeconds = 0.1, messageFrames = 4410;
  const buffer = new JitterBuffer({ sourceRate, outputRate, channels: 2, settings });
  // The server sends a message every 0.1 s of its clock; each arrives after 20 ms plus jitter,
  // or at the end of a network stall. The output clock runs (1 + drift) times as fast.
  const arrivals = [];
  for (let k = 0; (k + 1) * messageSeconds <= seconds + 1; k++) {
    const sent = (k + 1) * messageSeconds;
    let arrival = sent + 0.02 + random() * jitterSeconds;
    for (const [at, length] of stalls) if (sent >= at && sent < at + length) arrival = Math.max(arrival, at + length + 0.02);
    arrivals.push({ at: arrival, k });
  }
  arrivals.sort((a, b) => a.at - b.at);
  const out = [new Float32Array(pullFrames), new Float32Array(pullFrames)];
  const pullSeconds = pullFrames / outputRate / (1 + drift);
  const latency = [];  // mean depth of each second
  let next = 0, sum = 0, count = 0;
  for (let t = 0; t < seconds; t += pullSeconds) {
    while (next < arrivals.length && arrivals[next].at <= t) {
      const { k } = arrivals[next++];
      buffer.push(k * messageFrames, [new Float32Array(messageFrames), new Float32Array(messageFrames)], t, true);
    }
    if (outputStalls.some(([at, length]) => t >= at && t < at + length)) continue;
    buffer.pull(out, pullFrames, t);
    sum += buffer.depthFrames / sourceRate; count++;
    if (Math.floor(t) !== Math.floor(t + pullSeconds)) { latency.push(sum / count); sum = 0; count = 0; }
  }
  return { ...buffer.stats(), latency };
}"""


@pytest.fixture(scope="module")
def core_page(browser: Any, stream: TestStream) -> Iterator[Any]:
    """A page of the served client, for importing its modules (no audio)."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(stream.url)
    yield page
    context.close()


def simulate(page: Any, **network: Any) -> dict[str, Any]:
    return page.evaluate(SIMULATE_JS, network)


def test_the_jitter_buffer_rides_out_heavy_network_jitter(core_page: Any) -> None:
    result = simulate(core_page, seconds=120, jitterSeconds=0.25)
    assert result["underruns"] == 0
    assert result["jitterSeconds"] == pytest.approx(0.25, abs=0.02)
    assert max(result["latency"][20:]) < 0.6  # no more buffer than the jitter needs


def test_on_a_clean_network_the_latency_comes_down_to_the_minimum(core_page: Any) -> None:
    result = simulate(core_page, seconds=240, pullFrames=512)
    assert result["underruns"] == 0
    assert result["latency"][5] > 0.3  # a cautious start ...
    assert max(result["latency"][-20:]) < 0.15  # ... then about half a message plus the margin


def test_a_recurring_stall_cuts_the_sound_once_where_a_fixed_buffer_drops_out_every_time(core_page: Any) -> None:
    stalls = [[at, 0.8] for at in (20, 60, 100, 140)]  # a Wi-Fi hiccup of 0.8 s every 40 s
    assert simulate(core_page, seconds=170, jitterSeconds=0.03, stalls=stalls)["underruns"] == 1
    assert simulate(core_page, seconds=170, jitterSeconds=0.03, stalls=stalls, settings={"adaptive": False})["underruns"] == 4


@pytest.mark.parametrize("drift", [1.5e-3, -1.5e-3])
def test_clock_drift_between_server_and_sound_card_is_absorbed(core_page: Any, drift: float) -> None:
    # 1500 ppm (over ten times a typical pair of crystals) for 300 s drifts 0.45 s: more than the
    # whole start buffer, or 0.45 s more latency, if nothing corrected it.
    result = simulate(core_page, seconds=300, drift=drift, pullFrames=2048)
    assert result["underruns"] == 0
    assert result["droppedSeconds"] < 0.2
    assert 0.1 < min(result["latency"][20:]) and max(result["latency"][20:]) < 0.4


def test_a_stalled_output_skips_to_the_target_instead_of_keeping_the_delay(core_page: Any) -> None:
    # The audio thread stops for 6 s (a suspended tab) while the network keeps delivering.
    result = simulate(core_page, seconds=40, outputStalls=[[20, 6]])
    assert result["underruns"] == 0
    assert result["droppedSeconds"] > 4
    assert max(result["latency"][30:]) < 0.6


RESAMPLE_JS = """async ({ frequency, outputRate }) => {
  const { JitterBuffer } = await import("/jitter.js");
  const buffer = new JitterBuffer({ sourceRate: 44100, outputRate, settings: { adaptive: false, startSeconds: 0.9 } });
  const tone = new Float32Array(44100);
  for (let i = 0; i < tone.length; i++) tone[i] = 0.5 * Math.sin(2 * Math.PI * frequency * i / 44100);
  for (let at = 0; at < tone.length; at += 4410) buffer.push(at, [tone.subarray(at, at + 4410)], at / 44100, true);
  const out = [new Float32Array(128), new Float32Array(128)];
  let error = 0, power = 0;
  for (let q = 0; q < 200; q++) {
    const info = buffer.pull(out, 128, 1 + q * 128 / outputRate);
    for (let i = 0; i < 128; i++) {
      const ideal = 0.5 * Math.sin(2 * Math.PI * frequency * (info.position + i * info.step) / 44100);
      error += (out[0][i] - ideal) ** 2;
      power += ideal ** 2;
    }
  }
  return 10 * Math.log10(error / power);
}"""


@pytest.mark.parametrize(("frequency", "limit_db"), [(1000, -80), (5000, -75), (9500, -70)])
@pytest.mark.parametrize("output_rate", [48000, 96000])
def test_resampling_to_the_context_rate_keeps_the_spectrogram_band_clean(
    core_page: Any, frequency: int, limit_db: float, output_rate: int
) -> None:
    error_db = core_page.evaluate(RESAMPLE_JS, {"frequency": frequency, "outputRate": output_rate})
    assert error_db < limit_db


BACKOFF_JS = """async ({ draws }) => {
  const { Backoff } = await import("/connection.js");
  const result = {};
  for (const [name, value] of Object.entries(draws)) {
    const backoff = new Backoff({ random: () => value });
    result[name] = Array.from({ length: 8 }, () => backoff.next());
    backoff.reset();
    result[name].push(backoff.next());
  }
  return result;
}"""


def test_reconnection_delays_double_up_to_a_cap_with_jitter_and_reset(core_page: Any) -> None:
    delays = core_page.evaluate(BACKOFF_JS, {"draws": {"longest": 0.999999, "shortest": 0}})
    assert delays["longest"] == pytest.approx([0.5, 1, 2, 4, 8, 10, 10, 10, 0.5], rel=1e-5)
    assert delays["shortest"] == pytest.approx([0.25, 0.5, 1, 2, 4, 5, 5, 5, 0.25])


PARSE_JS = """async (encoded) => {
  const { parseBinary } = await import("/protocol.js");
  const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
  const message = parseBinary(bytes.buffer);
  if (message.planar) message.planar = message.planar.map((channel) => Array.from(channel));
  if (message.png) message.png = Array.from(new Uint8Array(message.png));
  if (message.packets) message.packets = message.packets.map((packet) => Array.from(packet));
  return message;
}"""


def parse_in_page(page: Any, data: bytes) -> dict[str, Any]:
    return page.evaluate(PARSE_JS, base64.b64encode(data).decode())


@pytest.mark.parametrize("sample_format", ["s16", "f32"])
def test_the_page_reads_audio_messages_as_the_server_writes_them(core_page: Any, sample_format: str) -> None:
    samples = np.array([[0.5, -1.0, 0.25], [1.0, 0.0, -0.125]], dtype=np.float32)
    from streamer.sinks.protocol import encode_samples

    position = 2**40 + 12345  # hours beyond 2^32 samples
    message = AudioMessage(7, position, SAMPLE_RATE, 2, sample_format, encode_samples(samples, sample_format))
    parsed = parse_in_page(core_page, message.encode())
    assert parsed["kind"] == "audio"
    assert (parsed["sequence"], parsed["samplePosition"], parsed["sampleRate"]) == (7, position, SAMPLE_RATE)
    assert (parsed["channels"], parsed["sampleFormat"], parsed["frames"]) == (2, sample_format, 3)
    np.testing.assert_allclose(parsed["planar"], samples, atol=0.5 / 32767)


def test_the_page_reads_opus_messages_as_the_server_writes_them(core_page: Any) -> None:
    packets = (bytes([0xFC, 1, 2]), b"", bytes(range(200)))
    message = OpusMessage(2**32 - 1, -287, -312, 48000, 2, packets)
    parsed = parse_in_page(core_page, message.encode())
    assert (parsed["kind"], parsed["sequence"], parsed["samplePosition"], parsed["codecPosition"]) == (
        "opus", 2**32 - 1, -287, -312
    )
    assert (parsed["sampleRate"], parsed["channels"], parsed["frames"]) == (48000, 2, 3 * 960)
    assert [bytes(packet) for packet in parsed["packets"]] == list(packets)
    later = OpusMessage(7, 2**40 + 5, 2**40 + 9, 48000, 1, packets[:1])
    parsed = parse_in_page(core_page, later.encode())
    assert (parsed["samplePosition"], parsed["codecPosition"]) == (2**40 + 5, 2**40 + 9)


def test_the_page_skips_header_fields_a_later_server_adds(core_page: Any) -> None:
    png = b"\x89PNG\r\n\x1a\nnot really"
    data = bytearray(FrameMessage(3, 441000, png).encode())
    grown = data[:2] + (20).to_bytes(2, "little") + data[4:16] + b"\xff" * 4 + data[16:]
    parsed = parse_in_page(core_page, bytes(grown))
    assert (parsed["kind"], parsed["frameId"], parsed["samplePosition"]) == ("frame", 3, 441000)
    assert bytes(parsed["png"]) == png
