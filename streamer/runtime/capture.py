"""Live audio in (``--input``) and captures of it: the thin shell around ``streamer.audio.capture``.

``AudioInput`` opens a sound-device input (PortAudio through sounddevice: ALSA, CoreAudio, or the
JACK server where one runs, whose input port other clients connect to) at whatever rate the
device gives; its callback copies the chosen channel into a preallocated ``InputRing`` and notes
the time, nothing else. A device that stops (unplugged, its server gone) is logged once, and the
stream plays on; a capture then answers that there is no input.

``Capturer.capture(bars)`` runs on the thread of whichever input asked (the server's loop, the
MIDI/OSC pump): it reads the engine's heard grid and the ring's position, lets the pure core pick
the window and check it (quick: one copy, one level measure), and answers at once; the seed is
made on the capturer's own thread (resampling, stretch and image: a fraction of a second) and
then becomes the seed loop like a performer's ``set_seed_loop`` (quantized by ``--quantize``).
With ``every_bars`` it also captures on its own, once every that many bars.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from streamer.audio.capture import (
    CaptureRefused,
    CaptureWindow,
    InputTimeline,
    Levels,
    capture_window,
    check_audible,
    measure_levels,
    next_auto_capture,
)
from streamer.errors import UserError
from streamer.runtime.captured_seeds import CapturedSeed, CapturedSeeds
from streamer.runtime.clocks import _sounddevice
from streamer.runtime.engine import Engine
from streamer.runtime.ports import InputLevel
from streamer.runtime.ring import InputRing

if TYPE_CHECKING:  # the spectrogram codec loads torch: not for `streamer --help`
    from streamer.spectrogram.params import SpectrogramParams

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class AudioInputConfig:
    """The live input and its captures (``--input`` and the options beside it)."""

    #: Input device: index or a substring of its name (None: the system default).
    device: int | str | None = None
    #: The device channel captured, from 1.
    channel: int = 1
    #: Seconds from a sound to its sample reaching the ring; None: what the device reports.
    latency_seconds: float | None = None
    #: Input the ring holds, in seconds: 8 bars at 60 BPM and some room.
    ring_seconds: float = 40.0
    #: Captures kept in memory.
    kept_captures: int = 8
    #: Folder each capture is also saved to as a make-seed PNG (None: not saved).
    capture_dir: Path | None = None
    #: Capture on its own every this many bars (None: only when asked).
    every_bars: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.channel <= 64:
            raise ValueError(f"--input-channel must be 1..64, got {self.channel}")
        if not 2 <= self.kept_captures <= 64:
            raise ValueError(f"--keep-captures must be 2..64, got {self.kept_captures}")
        if self.latency_seconds is not None and not 0.0 <= self.latency_seconds <= 2.0:
            raise ValueError(f"--input-latency must be 0 to 2 seconds, got {self.latency_seconds}")
        if self.every_bars is not None and not 1 <= self.every_bars <= 64:
            raise ValueError(f"--capture-every must be 1 to 64 bars, got {self.every_bars}")


class AudioInput:
    """A sound-device input whose callback only copies into the ring."""

    def __init__(self, config: AudioInputConfig) -> None:
        self.config = config
        self.sample_rate = 0
        self.latency_seconds = 0.0
        self.ring: InputRing | None = None
        self.overflow_callbacks = 0
        self.stopped_reason: str | None = None  # set when the device stopped by itself
        self._stream: Any = None
        self._channel = config.channel - 1

    def start(self) -> None:
        sd = _sounddevice()
        try:
            info = sd.query_devices(self.config.device, "input")
            if self.config.channel > info["max_input_channels"]:
                raise UserError(
                    f"--input-channel {self.config.channel}: {info['name']} has "
                    f"{info['max_input_channels']} input channels"
                )
            self.sample_rate = round(info["default_samplerate"])
            self.ring = InputRing(round(self.config.ring_seconds * self.sample_rate))
            self._stream = sd.InputStream(
                samplerate=self.sample_rate,
                channels=self.config.channel,
                dtype="float32",
                device=self.config.device,
                callback=self._callback,
                finished_callback=self._finished,
            )
        except (ValueError, sd.PortAudioError) as error:
            raise UserError(
                f"cannot open input device {self.config.device!r}: {error}. "
                "See `streamer play --list-devices`"
            ) from None
        reported = float(self._stream.latency)
        override = self.config.latency_seconds
        self.latency_seconds = reported if override is None else override
        self._stream.start()
        log.info(
            "listening to %s, channel %d, at %d Hz (input latency %.1f ms%s)",
            info["name"],
            self.config.channel,
            self.sample_rate,
            1000 * self.latency_seconds,
            "" if override is None else f", set by --input-latency; the device says {1000 * reported:.1f}",
        )

    def stop(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort()
            stream.close()

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status.input_overflow:
            self.overflow_callbacks += 1
        self.ring.write(indata[:, self._channel : self._channel + 1].T, time.monotonic())

    def _finished(self) -> None:
        if self._stream is not None:  # not our own stop: the device went away
            self.stopped_reason = "the input device stopped (unplugged, or its server went away)"
            log.error("%s; the stream plays on without it", self.stopped_reason)

    def timeline(self) -> InputTimeline:
        """Where the ring stands now; ``CaptureRefused`` when there is no input to read."""
        if self.ring is None or self.stopped_reason is not None:
            raise CaptureRefused(
                "no_input", self.stopped_reason or "there is no live input: start with --input"
            )
        written, arrived_at, held = self.ring.position()
        if written == 0:
            raise CaptureRefused("no_input", "the input has sent nothing yet")
        return InputTimeline(self.sample_rate, written, arrived_at, self.latency_seconds, held)

    def level(self, seconds: float) -> InputLevel | None:
        """The input's levels over its last ``seconds``, for the status (None: no input)."""
        if self.ring is None:
            return None
        written, _, held = self.ring.position()
        samples = self.ring.read(written - min(held, round(seconds * self.sample_rate)), written)
        levels = measure_levels(samples if samples is not None else np.zeros(0, np.float32))
        return InputLevel(
            peak_dbfs=_rounded_dbfs(levels.peak_dbfs),
            rms_dbfs=_rounded_dbfs(levels.rms_dbfs),
            clipped=levels.clipped_samples > 0,
            ok=self.stopped_reason is None,
        )


def _rounded_dbfs(value: float) -> float:
    """dBFS for JSON: one decimal, silence as -120 (JSON has no infinity)."""
    return max(-120.0, round(value, 1))


@dataclasses.dataclass(frozen=True)
class Captured:
    """A capture accepted: its window and levels; the seed called ``name`` is on its way."""

    name: str
    window: CaptureWindow
    levels: Levels

    def reply(self) -> Mapping[str, Any]:
        return {
            "capture": self.name,
            "bars": self.window.bars,
            "tempo_bpm": round(self.window.tempo_bpm, 4),
            "peak_dbfs": _rounded_dbfs(self.levels.peak_dbfs),
            "rms_dbfs": _rounded_dbfs(self.levels.rms_dbfs),
            "clipped_samples": self.levels.clipped_samples,
        }


class Capturer:
    """Captures of ``audio_input`` on ``engine``'s heard grid; each seed, once made, is handed to
    ``use_seed_loop`` (the control's: it becomes the seed loop like a performer's change)."""

    def __init__(
        self,
        engine: Engine,
        audio_input: AudioInput,
        seeds: CapturedSeeds,
        use_seed_loop: Callable[[str], None],
        every_bars: int | None = None,
        params: SpectrogramParams | None = None,
    ) -> None:
        self.engine = engine
        self.audio_input = audio_input
        self.seeds = seeds
        self.use_seed_loop = use_seed_loop
        self.every_bars = every_bars
        self.params = params
        self.captures: list[Captured] = []  # accepted, in order (the window of each)
        self.made: list[CapturedSeed] = []  # seeds made, in order
        self._work: queue.Queue = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._make_seeds, name="streamer-capture", daemon=True)]
        if every_bars is not None:
            self._threads.append(threading.Thread(target=self._every, name="streamer-capture-every", daemon=True))

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def capture(self, bars: int) -> Captured:
        """Take the last ``bars`` bars now (see the module docstring); ``CaptureRefused`` says why
        not, and the seed loop stays."""
        grid = self.engine.heard_grid()
        if grid is None:
            raise CaptureRefused("not_playing", "the stream is not playing yet: capture once it plays")
        window = capture_window(grid, self.audio_input.timeline(), bars)
        samples = self.audio_input.ring.read(window.first, window.last)
        if samples is None:
            raise CaptureRefused("not_enough_input", "the input ring no longer holds those bars")
        levels = measure_levels(samples)
        check_audible(levels)
        captured = Captured(self.seeds.next_name(), window, levels)
        try:
            self._work.put_nowait((captured, samples, grid.beats_per_bar))
        except queue.Full:
            raise CaptureRefused("busy", "two captures are being made already: try again in a moment") from None
        self.captures.append(captured)
        clipped = f", {levels.clipped_samples} samples clipped (levelled)" if levels.clipped_samples else ""
        log.info(
            "capturing %d bars from beat %.0f as %s (%.1f dBFS peak%s)",
            bars, window.start_beat, captured.name, levels.peak_dbfs, clipped,
        )
        return captured

    def _make_seeds(self) -> None:
        from streamer.seeds.capture import captured_seed
        from streamer.spectrogram.params import SpectrogramParams

        params = self.params or SpectrogramParams()

        while not self._stop.is_set():
            try:
                captured, samples, beats_per_bar = self._work.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                made = captured_seed(
                    samples, self.audio_input.sample_rate, captured.window, params, beats_per_bar
                )
                seed = CapturedSeed(captured.name, made.image, made.loop.bpm, made.loop.beats)
                saved = self.seeds.add(seed)
                self.engine.add_seed_loop(seed.name, seed.beats)
                self.use_seed_loop(seed.name)
                self.made.append(seed)
                log.info(
                    "%s is the seed loop: %d beats at %.2f BPM%s",
                    seed.name, seed.beats, seed.bpm, f", saved as {saved}" if saved else "",
                )
            except CaptureRefused as refusal:
                log.warning("%s was not made: %s", captured.name, refusal.message)
            except Exception:
                log.exception("%s could not be made; the seed loop stays", captured.name)

    def _every(self) -> None:
        """Capture the last ``every_bars`` bars (at most a capture's limit) on every
        ``every_bars``-th bar line, a moment after it (its sound must have arrived)."""
        from streamer.plan.controls import MAX_CAPTURE_BARS

        bars = min(self.every_bars, MAX_CAPTURE_BARS)
        last_refusal = None
        while not self._stop.wait(0.05):
            grid = self.engine.heard_grid()
            if grid is None:
                continue
            due = next_auto_capture(grid, time.monotonic(), self.every_bars, self.audio_input.latency_seconds)
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            try:
                self.capture(bars)
                last_refusal = None
            except CaptureRefused as refusal:
                if refusal.code != last_refusal:  # said once, not every few bars
                    log.info("--capture-every: %s", refusal.message)
                last_refusal = refusal.code
