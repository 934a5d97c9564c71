"""A stream server for the browser tests, and a record of every sample it was given.

``TestStream`` runs the real ``StreamServer`` (serving the real ``client/`` folder) fed by a
*source*: anything with ``control`` (a ``StreamControl``), ``start(sink)`` and ``stop()``. The
default source, ``FakeEngine``, stands in for the audio engine: 20 ms ``AudioBlock`` objects of
synthesised music at the real-time rate, a ``now_playing`` event and the frame's spectrogram PNG
at every frame start (every 5.12 s, as the engine does), a ``status`` event every second, and
performer commands recorded and reflected in the next ``now_playing``. To run the same browser
tests against the real engine with the tiny model, pass a source that builds the engine and adds
the sink it is given (``engine.add_sink(sink)``): everything the tests compare is recorded here,
between the source and the server, whatever the source.

Run it by hand to look at the page: ``.venv/bin/python tests/client_server.py`` (prints the URL
and the performer token).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from streamer.audio.blocks import AudioBlock
from streamer.sinks.config import ServerConfig
from streamer.plan.commands import (
    Capture,
    Command,
    Pause,
    Resume,
    SetDenoising,
    SetGuidance,
    SetNegativePrompt,
    SetPrompts,
    SetSeed,
    SetSeedLoop,
)
from streamer.sinks.protocol import encode_samples
from streamer.sinks.server import ServerThread, StreamServer
from streamer.runtime.ports import (
    ControlRejected,
    FramePicture,
    InputLevel,
    NowPlaying,
    StreamControl,
    StreamEvent,
    StreamSink,
)
from engine_events import now_playing, status

SAMPLE_RATE = 44100  # the engine's; FakeEngine can stream at another rate
BLOCK_SECONDS = 0.02  # the engine clock's
FRAME_SECONDS = 5.12  # one spectrogram image: 512 columns of 10 ms
FRAME_FRAMES = 512 * 441  # a frame at SAMPLE_RATE
PERFORMER_TOKEN = "performer-token-for-the-browser-tests"
SEED_LOOPS = {"og_beat": 117.1875, "house_117": 117.1875, "breaks_140": 140.625}


@functools.cache
def music_loops() -> tuple[tuple[np.ndarray, bytes], ...]:
    """Two stereo frames of synthesised music with their spectrogram images (Riffusion format)."""
    import torch

    from material import groove
    from streamer.spectrogram.codec import mel_from_audio
    from streamer.spectrogram.image import image_from_mel, png_bytes
    from streamer.spectrogram.params import SpectrogramParams

    params = SpectrogramParams(stereo=True)
    loops = []
    for seed, root_hz in ((0, 55.0), (1, 49.0)):
        mono = groove(seed=seed, root_hz=root_hz).samples
        stereo = np.stack([mono, 0.85 * np.roll(mono, 331)]).astype(np.float32)
        mel = mel_from_audio(torch.from_numpy(stereo), params, circular=True)
        loops.append((stereo, png_bytes(image_from_mel(np.asarray(mel), params))))
    return tuple(loops)


class FakeEngine:
    """Stands in for the audio engine: publishes like it, and takes commands like it. At a
    ``sample_rate`` other than the engine's, the same music plays at that rate (pitched
    accordingly): the page must follow the rate in the audio headers."""

    def __init__(self, *, status_every_seconds: float = 1.0, sample_rate: int = SAMPLE_RATE) -> None:
        self.status_every_seconds = status_every_seconds
        self.sample_rate = sample_rate
        self.block_frames = round(BLOCK_SECONDS * sample_rate)
        self.frame_frames = round(FRAME_SECONDS * sample_rate)
        self.control: StreamControl = self
        #: The live input's levels its statuses carry (None: no --input).
        self.input_level: InputLevel | None = None
        self._settings: dict[str, Any] = {
            "prompts": [{"text": "warm analog synths", "weight": 0.7}, {"text": "jazz piano", "weight": 0.3}],
            "negative_prompt": "",
            "seed": 42,
            "seed_loop": "og_beat",
            "denoising": 0.75,
            "guidance": 7.0,
            "paused": False,
        }
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- StreamControl ------------------------------------------------------------------------

    def apply(self, command: Command) -> Mapping[str, Any]:
        with self._lock:
            settings = self._settings
            if isinstance(command, SetPrompts):
                settings["prompts"] = [{"text": p.text, "weight": p.weight} for p in command.prompts]
            elif isinstance(command, SetNegativePrompt):
                settings["negative_prompt"] = command.text
            elif isinstance(command, SetSeed):
                settings["seed"] = command.seed
            elif isinstance(command, SetDenoising):
                settings["denoising"] = command.denoising
            elif isinstance(command, SetGuidance):
                settings["guidance"] = command.guidance
            elif isinstance(command, SetSeedLoop):
                if command.name not in SEED_LOOPS:
                    raise ControlRejected(
                        "unknown_seed_loop", f"there is no seed loop {command.name!r}; try one of {', '.join(SEED_LOOPS)}"
                    )
                settings["seed_loop"] = command.name
            elif isinstance(command, (Pause, Resume)):
                settings["paused"] = isinstance(command, Pause)
            elif isinstance(command, Capture):  # as the engine's capturer answers
                return {"capture": "captured-1", "bars": command.bars, "tempo_bpm": 93.75,
                        "peak_dbfs": -0.0, "rms_dbfs": -12.5, "clipped_samples": 20}
        return {"applies_at_frame": "next"}

    # ---- publishing ---------------------------------------------------------------------------

    def start(self, sink: StreamSink) -> None:
        loops = music_loops()
        self._thread = threading.Thread(target=self._run, args=(sink, loops), name="fake-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, sink: StreamSink, loops: tuple[tuple[np.ndarray, bytes], ...]) -> None:
        start = time.monotonic()
        next_status = 0.0
        sequence = 0
        rate, block_frames = self.sample_rate, self.block_frames
        while not self._stop.is_set():
            position = sequence * block_frames
            delay = start + position / rate - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            frame_id, offset = divmod(position, self.frame_frames)
            samples, png = loops[frame_id % len(loops)]
            if offset < block_frames:  # a frame starts in this block
                frame_start = position - offset
                sink.publish_event(self._now_playing(frame_id, frame_start))
                sink.publish_frame(FramePicture(frame_id, frame_start, png))
            block = np.take(samples, np.arange(offset, offset + block_frames) % samples.shape[1], axis=1)
            sink.publish_audio(AudioBlock(sequence, position, block, rate))
            if position / rate >= next_status:
                sink.publish_event(dataclasses.replace(status("ok", lookahead_seconds=6.4), input=self.input_level))
                next_status += self.status_every_seconds
            sequence += 1

    def _now_playing(self, frame_id: int, sample_position: int) -> NowPlaying:
        with self._lock:
            settings = dict(self._settings)
        return now_playing(
            frame_id,
            sample_position,
            prompts=tuple((p["text"], p["weight"]) for p in settings["prompts"]),
            negative_prompt=settings["negative_prompt"],
            seed=settings["seed"],
            seed_loop=settings["seed_loop"],
            denoising=settings["denoising"],
            guidance=settings["guidance"],
            bpm=SEED_LOOPS[settings["seed_loop"]],
            paused=settings["paused"],
        )


class RecordingControl:
    """Passes commands to the source's control and remembers each one that reached it."""

    def __init__(self, control: StreamControl) -> None:
        self.control = control
        self.commands: list[Command] = []

    def apply(self, command: Command) -> Mapping[str, Any]:
        self.commands.append(command)
        return self.control.apply(command)


class RecordingSink:
    """Between the source and the server: keeps what the server was given, as it will send it."""

    def __init__(self, server: StreamServer | None) -> None:
        self.server = server  # None while the server is down: the stream goes on unheard
        self._lock = threading.Lock()
        self._blocks: list[tuple[int, np.ndarray]] = []

    def publish_audio(self, block: AudioBlock) -> None:
        with self._lock:
            self._blocks.append((block.sample_position, block.samples.copy()))
        if (server := self.server) is not None:
            server.publish_audio(block)

    def publish_event(self, event: StreamEvent) -> None:
        if (server := self.server) is not None:
            server.publish_event(event)

    def publish_frame(self, picture: FramePicture) -> None:
        if (server := self.server) is not None:
            server.publish_frame(picture)

    def sent_s16(self, start: int, stop: int) -> np.ndarray:
        """Int16 samples (channels, stop - start) at stream positions [start, stop), exactly as
        the server encodes them (clip, scale by 32767, round)."""
        with self._lock:
            blocks = list(self._blocks)
        parts = [samples for position, samples in blocks if position + samples.shape[1] > start and position < stop]
        first = next(position for position, samples in blocks if position + samples.shape[1] > start)
        joined = np.concatenate(parts, axis=1)[:, start - first : stop - first]
        if joined.shape[1] != stop - start:
            raise ValueError(f"the source has not published positions {start}..{stop} yet")
        channels = joined.shape[0]
        return np.frombuffer(encode_samples(joined, "s16"), dtype="<i2").reshape(-1, channels).T


@dataclasses.dataclass
class TestStream:
    """The server on a free port fed by ``source``; ``sent`` and ``control`` record both ways."""

    __test__ = False  # not a pytest test class

    source: Any = dataclasses.field(default_factory=FakeEngine)
    performer_token: str = PERFORMER_TOKEN
    port: int = 0

    def __post_init__(self) -> None:
        self.control = RecordingControl(self.source.control)
        self.sent = RecordingSink(None)
        self._server_thread: ServerThread | None = None

    def __enter__(self) -> TestStream:
        self.start_server()
        self.source.start(self.sent)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.source.stop()
        self.stop_server()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start_server(self) -> None:
        config = ServerConfig(port=self.port, performer_token=self.performer_token)
        self._server_thread = ServerThread(StreamServer(config, self.control))
        server = self._server_thread.start()
        self.port = server.port
        self.sent.server = server

    def stop_server(self) -> None:
        """Take the server down, closing every connection (the stream goes on unheard)."""
        self.sent.server = None
        if self._server_thread is not None:
            self._server_thread.stop()
            self._server_thread = None


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    stream = TestStream(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8765)
    with stream:
        print(f"open {stream.url}  performer token: {stream.performer_token}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
