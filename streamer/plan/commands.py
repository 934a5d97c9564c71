"""What a performer can ask of the stream: the engine's commands, whoever sends them.

The WebSocket server parses them from JSON (``streamer.sinks.control``), MIDI and OSC map their
messages onto the same types (``streamer.inputs``), all three by the control schema
(``streamer.plan.controls``); the engine applies them (``streamer.runtime.control``). Values
here are already within the schema's ranges.
"""

from __future__ import annotations

import dataclasses
from typing import Union


@dataclasses.dataclass(frozen=True)
class Prompt:
    text: str
    weight: float


@dataclasses.dataclass(frozen=True)
class SetPrompts:
    """Move towards this weighted mix of prompts over the current transition length."""

    prompts: tuple[Prompt, ...]


@dataclasses.dataclass(frozen=True)
class SetNegativePrompt:
    text: str  # "" clears it


@dataclasses.dataclass(frozen=True)
class SetSeed:
    seed: int


@dataclasses.dataclass(frozen=True)
class SetDenoising:
    denoising: float


@dataclasses.dataclass(frozen=True)
class SetGuidance:
    guidance: float


@dataclasses.dataclass(frozen=True)
class SetSeedLoop:
    name: str


@dataclasses.dataclass(frozen=True)
class SetTransition:
    """Length of the next transitions; exactly one of ``seconds`` and ``bars`` is set."""

    seconds: float | None = None
    bars: float | None = None

    def __post_init__(self) -> None:
        if (self.seconds is None) == (self.bars is None):
            raise ValueError("SetTransition takes exactly one of seconds and bars")


@dataclasses.dataclass(frozen=True)
class RecallScene:
    """Move to a scene of the config file (``streamer.plan.scenes``) in one change."""

    name: str


@dataclasses.dataclass(frozen=True)
class Capture:
    """Make the last ``bars`` whole bars of the live input the seed loop (``--input``)."""

    bars: int


@dataclasses.dataclass(frozen=True)
class Pause:
    pass


@dataclasses.dataclass(frozen=True)
class Resume:
    pass


@dataclasses.dataclass(frozen=True)
class Skip:
    """Leave the current frame for the next one as soon as the stream allows."""


Command = Union[
    SetPrompts,
    SetNegativePrompt,
    SetSeed,
    SetDenoising,
    SetGuidance,
    SetSeedLoop,
    SetTransition,
    RecallScene,
    Capture,
    Pause,
    Resume,
    Skip,
]
