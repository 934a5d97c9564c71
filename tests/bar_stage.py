"""A live engine that the test itself plays, to hear where a performer's change lands.

The MIDI and OSC tests send a change down its real path (a JACK MIDI port or UDP, the pump,
``EngineControl``) into a real engine quantized to the bar, and check what the clock played.
Nothing here waits on wall time to decide anything:

- the test is the clock: it takes each block from the engine's ring exactly as a sound device's
  callback does (``Engine.play_into``), so the stream moves only when the test plays it;
- the frame maker is ``BlendTones``: a frame is its prompt blend made audible, one sine per
  prompt at that prompt's pitch and as loud as its weight, so the blend can be read back from
  the audio;
- the stitcher's ``push`` is watched, so the test knows the stream position at which the
  change's first frame was ready (the position the stitcher had rendered to when it came);
- a sink keeps the "now playing" events, to check that what a client is told matches what
  is heard.

Nothing here is a test; ``test_osc.py`` and ``test_midi.py`` use it.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Mapping, Sequence

import numpy as np

from streamer.audio.blocks import AudioBlock
from streamer.audio.stitcher import AudioFrame, StitcherConfig
from streamer.generate.cancellation import IsStale, check, never_stale
from streamer.inputs.config import InputConfig
from streamer.inputs.pump import CommandPump
from streamer.plan.planner import PlannedFrame
from streamer.plan.settings import PromptBlend, Transition
from streamer.runtime.assemble import build_engine
from streamer.runtime.control import EngineControl
from streamer.runtime.frames import MadeFrame
from streamer.runtime.ports import FramePicture, NowPlaying, StreamEvent
from streamer.runtime.stream_config import StreamConfig
from streamer.seeds.library import frame_samples, list_seed_loops
from streamer.spectrogram.params import SpectrogramParams

RATE = SpectrogramParams().sample_rate
PERIOD = frame_samples(SpectrogramParams())
#: The pitch of each prompt the tests' desks hold (jazz, then rain on fader 2): 2048 and 3072
#: whole cycles of a 5.12 s loop.
PITCHES_HZ = {"jazz": 400.0, "rain": 600.0}
#: Longest wait for something that must come; only a failing test waits this long.
TIMEOUT_SECONDS = 30


class BlendTones:
    """A frame maker whose audio is the frame's prompt blend: a sine per prompt, at the pitch
    ``pitches_hz`` gives it and with the blend's weight as its amplitude. Every pitch is a
    whole number of cycles per loop, so each frame is a seamless loop."""

    def __init__(self, pitches_hz: Mapping[str, float]) -> None:
        self.pitches_hz = dict(pitches_hz)

    def samples(self, blend: PromptBlend) -> np.ndarray:
        t = np.arange(PERIOD) / PERIOD
        tone = np.zeros(PERIOD)
        for text, weight in blend.weighted:
            cycles = self.pitches_hz[text] * PERIOD / RATE
            assert cycles == round(cycles), f"{text}: not a whole number of cycles per loop"
            tone += 0.5 * weight * np.sin(2 * np.pi * cycles * t)
        return tone[None].astype(np.float32)

    def make(
        self, planned: Sequence[PlannedFrame], is_stale: IsStale = never_stale
    ) -> list[MadeFrame]:
        made = []
        for frame in planned:
            check(is_stale)
            # No picture: these engines have no sinks to show one.
            made.append(MadeFrame(frame, self.samples(frame.prompts), b"", seconds_to_make=0.0))
        return made


def amplitude(audio: np.ndarray, pitch_hz: float) -> float:
    """Amplitude of the sine at ``pitch_hz`` in ``audio`` (a window holding whole cycles of
    every pitch measured, so the tones do not leak into one another)."""
    n = np.arange(audio.size)
    return float(2 / audio.size * abs(np.sum(audio * np.exp(-2j * np.pi * pitch_hz * n / RATE))))


class Announcements:
    """A sink that keeps the "now playing" events the engine publishes."""

    def __init__(self) -> None:
        self.playing: list[NowPlaying] = []
        self._changed = threading.Condition()

    def publish_audio(self, block: AudioBlock) -> None:
        pass

    def publish_event(self, event: StreamEvent) -> None:
        if isinstance(event, NowPlaying):
            with self._changed:
                self.playing.append(event)
                self._changed.notify_all()

    def publish_frame(self, frame: FramePicture) -> None:
        pass

    def of_frame(self, frame_id: int) -> NowPlaying:
        """The announcement of frame ``frame_id``, once the publisher has made it."""
        with self._changed:
            assert self._changed.wait_for(
                lambda: any(p.frame_id == frame_id for p in self.playing), TIMEOUT_SECONDS
            ), f"frame {frame_id} was never announced"
            return next(p for p in self.playing if p.frame_id == frame_id)


@dataclasses.dataclass(frozen=True)
class Pushed:
    """A frame handed to the stitcher, and the stream position the stitcher had rendered to."""

    frame: AudioFrame
    interrupt: bool
    ready_at: int


class Stage:
    """An engine at ``--quantize bar`` starting on jazz alone, played by the test."""

    def __init__(self, seed_loop: str) -> None:
        config = StreamConfig()
        settings = dataclasses.replace(
            config.settings,
            prompts=PromptBlend.single("jazz"),
            seed_loop=seed_loop,
            transition=Transition(seconds=0),  # the change's first frame is the whole blend
        )
        config = dataclasses.replace(
            config,
            settings=settings,
            planner=dataclasses.replace(config.planner, endless=False),
            stitcher=StitcherConfig(quantize="bar"),
        )
        self.engine = build_engine(config, BlendTones(PITCHES_HZ))
        self.announcements = Announcements()
        self.engine.add_sink(self.announcements)
        self.seed_loop = seed_loop
        self.pushes: list[Pushed] = []
        self._pushed = threading.Condition()
        stitcher = self.engine.core.stitcher
        push = stitcher.push

        def watched_push(frame: AudioFrame, *, interrupt: bool = False) -> None:
            # Called on the producer thread under the engine's lock: the position is exact.
            push(frame, interrupt=interrupt)
            with self._pushed:
                self.pushes.append(Pushed(frame, interrupt, stitcher.position))
                self._pushed.notify_all()

        stitcher.push = watched_push  # type: ignore[method-assign]
        self._block = np.zeros((1, self.engine.block_samples), dtype=np.float32)
        self._heard: list[np.ndarray] = []

    def pump(self) -> CommandPump:
        """The local inputs' way into this engine, thinning a fader's stream as ``serve`` does."""
        control = EngineControl(self.engine, frozenset({self.seed_loop}))
        return CommandPump(control, InputConfig().coalesce_seconds)

    def start(self) -> None:
        self.engine.start()
        assert self.engine.wait_until_playing(TIMEOUT_SECONDS), "the first frame never came"

    def stop(self) -> None:
        self.engine.stop()

    @property
    def played(self) -> int:
        """Samples the test has played so far."""
        return sum(block.size for block in self._heard)

    def play_until(self, position: int) -> None:
        """Play blocks as a sound device's callback would, until ``position`` has been heard."""
        while self.played < position:
            assert self.engine.ring.wait_for_samples(self._block.shape[1], TIMEOUT_SECONDS)
            self.engine.play_into(self._block)
            self._heard.append(self._block[0].copy())
        assert self.engine.tap.missing_samples == 0, "the ring ran dry: not what a listener hears"

    def heard(self) -> np.ndarray:
        return np.concatenate(self._heard)

    def wait_for_the_change(self) -> Pushed:
        """The first frame of a control change (the only frame pushed to interrupt), once the
        stitcher has it."""
        with self._pushed:
            assert self._pushed.wait_for(
                lambda: any(p.interrupt for p in self.pushes), TIMEOUT_SECONDS
            ), "the change's first frame never came"
            return next(p for p in self.pushes if p.interrupt)

    @property
    def samples_per_bar(self) -> float:
        """Four beats of the seed loop's tempo."""
        (loop,) = [loop for loop in list_seed_loops() if loop.name == self.seed_loop]
        return 4 * 60 / loop.bpm * RATE


def first_bar_line_from(position: int, samples_per_bar: float) -> int:
    """The stream position of the first bar line at or after ``position``; bar one starts
    where the stream starts. (The tests' bar lines lie mid-loop, clear of the seed loop's wrap.)"""
    bar = math.ceil(position / samples_per_bar)
    while round(bar * samples_per_bar) < position:
        bar += 1
    return round(bar * samples_per_bar)


@dataclasses.dataclass(frozen=True)
class Heard:
    """Where a change was heard, in stream samples."""

    ready_at: int  # the stitcher had rendered this far when the change's first frame came
    bar_line: int  # the first bar line a crossfade ending there could reach
    first_changed_sample: int  # the first heard sample that the first frame does not explain
    rain_before: float  # amplitude of the new prompt's tone in the 0.1 s before the crossfade
    rain_after: float  # ... and in the 0.1 s after the bar line
    jazz_after: float
    announced: NowPlaying  # what clients are told


def heard_at_the_bar(stage: Stage, change: Pushed) -> Heard:
    """Play past the first bar line after the change's first frame was ready and check what
    was heard: the first frame's loop until the crossfade into that bar line, the change's
    frame from the bar line on. Returns the figures."""
    fade = stage.engine.core.stitcher.config.crossfade_samples
    bar_line = first_bar_line_from(change.ready_at + fade, stage.samples_per_bar)
    stage.play_until(bar_line + RATE // 2)
    heard = stage.heard()
    positions = np.arange(heard.size)

    def loop(frame: AudioFrame) -> np.ndarray:
        return frame.samples[0, positions % PERIOD]  # the stream's loop position 0 is its start

    before = loop(stage.pushes[0].frame)
    differs = np.flatnonzero(np.abs(heard[fade:] - before[fade:]) > 1e-5)  # after the fade-in
    assert differs.size, "the change was never heard"
    first_changed = fade + int(differs[0])
    assert bar_line - fade <= first_changed < bar_line, (
        f"the change is heard from sample {first_changed}, not in the crossfade into the bar "
        f"line at {bar_line} (its first frame was ready at {change.ready_at})"
    )
    after = loop(change.frame)
    assert np.allclose(heard[bar_line:], after[bar_line:], atol=1e-5), "not the change's frame"
    announced = stage.announcements.of_frame(change.frame.frame_id)
    assert announced.sample_position == bar_line - fade, "announced where it is not heard"

    window = RATE // 10  # whole cycles of both pitches
    rain, jazz = PITCHES_HZ["rain"], PITCHES_HZ["jazz"]
    return Heard(
        ready_at=change.ready_at,
        bar_line=bar_line,
        first_changed_sample=first_changed,
        rain_before=amplitude(heard[bar_line - fade - window : bar_line - fade], rain),
        rain_after=amplitude(heard[bar_line : bar_line + window], rain),
        jazz_after=amplitude(heard[bar_line : bar_line + window], jazz),
        announced=announced,
    )
