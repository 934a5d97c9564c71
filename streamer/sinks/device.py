"""The local sound device as a sink, through sounddevice (PortAudio).

When a device plays, its callback is the stream's clock: each callback pulls exactly the block
the device asks for from the engine's render-ahead ring (a copy, nothing more) and the same block
goes on to the other sinks. PortAudio is imported only here, so machines without it can still
serve and render.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from streamer.errors import UserError

if TYPE_CHECKING:
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


class DevicePlayer:
    """Plays the engine's stream on a sound device; the device callback is the clock."""

    def __init__(self, engine: Engine, config: DeviceConfig) -> None:
        self.engine = engine
        self.config = config
        self.sequence = 0
        self.sample_position = 0
        self.status_flags = 0  # callbacks in which PortAudio reported an xrun
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
        self._stream.start()

    def stop(self) -> None:
        if self._stream is not None:
            self._stream.stop()
            self._stream.close()
            self._stream = None
        if self.status_flags:
            log.warning(
                "the sound device reported under- or overruns in %d callbacks; try a higher "
                "--audio-latency",
                self.status_flags,
            )

    def _callback(self, outdata: np.ndarray, frames: int, time: Any, status: Any) -> None:
        if status:
            self.status_flags += 1
        block = np.empty((self.engine.channels, frames), dtype=np.float32)
        self.engine.pull_block(block, self.sequence, self.sample_position)
        outdata[:] = block.T
        self.sequence += 1
        self.sample_position += frames
