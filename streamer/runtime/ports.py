"""The engine's side of every connection to the outside: what it publishes, what it accepts.

Engine -> sinks (``StreamSink``, implemented by the stream server, tests and benchmarks): called
on the engine's publisher thread, never on the real-time clock; a sink hands over and returns,
never waits for a listener:

- ``publish_audio(block)`` once per ``AudioBlock``, in order (each block's array is its own: a
  sink may keep it);
- ``publish_event(event)`` for ``NowPlaying`` and ``Status`` (their JSON shape is the wire
  protocol's business: ``streamer.sinks.protocol``);
- ``publish_frame(frame)`` for each new frame's spectrogram picture, when it is heard.

Sources -> engine (``StreamControl``, implemented by ``streamer.runtime.control``): ``apply`` takes
a validated command (``streamer.plan.commands``), is thread-safe and quick (it never waits for a
frame), and returns JSON-able details for the acknowledgement or raises ``ControlRejected``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal, Protocol, Union

from streamer.audio.blocks import AudioBlock
from streamer.plan.commands import Command


@dataclasses.dataclass(frozen=True)
class PromptWeight:
    text: str
    weight: float


@dataclasses.dataclass(frozen=True)
class NowPlaying:
    """A frame became audible at ``sample_position`` (the start of its crossfade)."""

    frame_id: int
    sample_position: int
    prompts: tuple[PromptWeight, ...]
    negative_prompt: str
    alpha: float  # progress of the prompt transition, 0..1
    seed: int
    next_seed: int
    noise_alpha: float
    denoising: float
    guidance: float
    seed_loop: str
    bpm: float | None
    paused: bool
    #: The song form's section (intro, groove, break, build, drop, outro), None without one.
    section: str | None = None
    #: The seed loop composed for this frame on ``seed_loop``'s tempo, if any.
    seed_variation: str | None = None


#: ``starting``: the first frame is being made, nothing plays yet; ``ok``; ``behind``: the frame
#: loops because its successor is late; ``error``: the frame maker failed several times in a row
#: and is being retried; ``paused``.
StreamState = Literal["starting", "ok", "behind", "error", "paused"]


@dataclasses.dataclass(frozen=True)
class InputLevel:
    """The live input (``--input``) over the last status interval, for the performer's meter."""

    peak_dbfs: float  # -120: silence
    rms_dbfs: float
    clipped: bool  # a sample reached full scale
    ok: bool  # False once the device stopped


@dataclasses.dataclass(frozen=True)
class Status:
    state: StreamState
    lookahead_seconds: float
    seconds_per_frame: float
    frames_made: int
    underrun_samples: int
    #: How long the frames being made have taken so far (0 when none are): while ``starting``,
    #: how long the listener has been waiting for the first frame.
    making_seconds: float = 0.0
    #: Set while frames take longer to make than to play: what is wrong and how to fix it.
    advice: str | None = None
    #: The live input's levels, when there is one (``--input``).
    input: InputLevel | None = None


StreamEvent = Union[NowPlaying, Status]


@dataclasses.dataclass(frozen=True)
class FramePicture:
    """The spectrogram image of a frame that became audible at ``sample_position``."""

    frame_id: int
    sample_position: int
    png: bytes


class ControlRejected(Exception):
    """The engine refuses a valid command; the client gets ``{"type": "error", "code": code}``.

    ``code`` is a short snake_case word a client can branch on (``unknown_seed_loop``,
    ``not_ready``); ``message`` says what was wrong and what to do next.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class StreamControl(Protocol):
    def apply(self, command: Command) -> Mapping[str, Any]:
        """Apply or schedule ``command``; return details for the ack (may be empty)."""
        ...


class StreamSink(Protocol):
    def publish_audio(self, block: AudioBlock) -> None: ...

    def publish_event(self, event: StreamEvent) -> None: ...

    def publish_frame(self, frame: FramePicture) -> None: ...
