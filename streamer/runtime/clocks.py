"""The clocks that pace the stream: a sound device's callback, or a software timer.

Whichever it is, the clock only calls ``Engine.play_into`` with a buffer it already has: two
copies (ring -> buffer -> played tap) and a signal, no allocation, no lock held for long, the
same work at 0 or 1000 listeners. Everything the listeners need is done on the engine's
publisher thread. PortAudio (sounddevice) is imported only when a device plays, so machines
without it can still serve and render.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any

import numpy as np

from streamer.errors import UserError
from streamer.runtime.engine import Engine

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class DeviceConfig:
    #: Output device: index or a substring of its name (None: the system default).
    device: int | str | None = None
    #: Frames per callback (0: let the host choose, which gives the lowest safe latency).
    block_samples: int = 0
    #: Suggested output latency in seconds, or PortAudio's 'low' / 'high'.
    latency: float | str = "high"


def _sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as error:  # PortAudio itself is missing
        raise UserError(
            f"cannot use the sound device: {error}. Install PortAudio "
            "(Debian/Ubuntu: apt-get install libportaudio2) or use `streamer serve` / "
            "`streamer render` instead"
        ) from None
    return sounddevice


def list_devices() -> str:
    """The output devices PortAudio sees, one per line, as `streamer play --list-devices` shows."""
    sd = _sounddevice()
    lines = []
    for index, device in enumerate(sd.query_devices()):
        if device["max_output_channels"] > 0:
            api = sd.query_hostapis(device["hostapi"])["name"]
            lines.append(
                f"{index:3d}  {device['name']}  ({api}, {device['max_output_channels']} out, "
                f"{device['default_samplerate']:.0f} Hz)"
            )
    return "\n".join(lines) if lines else "no output devices found"


class DeviceClock:
    """Plays the engine's stream on a sound device; the device callback is the clock."""

    def __init__(self, engine: Engine, config: DeviceConfig) -> None:
        self.engine = engine
        self.config = config
        self.xrun_callbacks = 0  # callbacks in which PortAudio reported an under- or overrun
        self._stream: Any = None

    def start(self) -> None:
        sd = _sounddevice()
        try:
            self._stream = sd.OutputStream(
                samplerate=self.engine.sample_rate,
                channels=self.engine.channels,
                dtype="float32",
                device=self.config.device,
                blocksize=self.config.block_samples,
                latency=self.config.latency,
                callback=self._callback,
            )
        except (ValueError, sd.PortAudioError) as error:
            raise UserError(
                f"cannot open sound device {self.config.device!r}: {error}. "
                "See `streamer play --list-devices`"
            ) from None
        # When a sample leaves the ring it is still this long from the speaker: what following a
        # Link session's phase must allow for.
        self.engine.output_latency_seconds = float(self._stream.latency)
        self._stream.start()

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None
        if self.xrun_callbacks:
            log.warning(
                "the sound device reported under- or overruns in %d callbacks; try a higher "
                "--audio-latency",
                self.xrun_callbacks,
            )

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        if status.output_underflow or status.output_overflow:  # not priming_output
            self.xrun_callbacks += 1
        self.engine.play_into(outdata.T)  # (frames, channels) seen as (channels, frames)


class SoftwareClock:
    """Plays one block every ``EngineConfig.block_seconds`` of wall time, on its own thread.

    Sleeps to absolute deadlines so the rate never drifts; if the thread was held up it catches
    up (several blocks at once) rather than slowing the stream down. Unlike a sound device it
    can wait a little for the renderer when the machine is busy (listeners' jitter buffers absorb
    it) instead of playing silence. ``speed`` above 1 runs the stream faster than real time, for
    soak tests.
    """

    #: Longest wait for the renderer before a block goes out incomplete (an underrun).
    MAX_WAIT_SECONDS = 0.5

    def __init__(self, engine: Engine, speed: float = 1.0) -> None:
        self.engine = engine
        self.speed = speed
        self.sample_position = 0  # samples played so far
        self._buffer = np.zeros((engine.channels, engine.block_samples), dtype=np.float32)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamer-clock", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        block = self._buffer.shape[1]
        start = time.monotonic()
        while not self._stop.is_set():
            due = start + (self.sample_position + block) / self.engine.sample_rate / self.speed
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
                continue
            self.engine.ring.wait_for_samples(block, self.MAX_WAIT_SECONDS)
            self.engine.play_into(self._buffer)
            self.sample_position += block
