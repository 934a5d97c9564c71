"""Scenes: named states of the stream a performer recalls in one move (a pad, a program change,
an OSC message), defined in the stream's config file.

A scene names only what it changes; the rest of the stream's settings stay as they are, so a
scene that sets only a seed loop keeps the prompts playing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from streamer.plan.settings import PromptBlend, StreamSettings, Transition


@dataclasses.dataclass(frozen=True)
class Scene:
    name: str
    prompts: PromptBlend | None = None
    negative_prompt: str | None = None
    seed: int | None = None
    seed_loop: str | None = None
    denoising: float | None = None
    guidance: float | None = None
    transition: Transition | None = None

    def __post_init__(self) -> None:
        # Checked now, with the same words as the settings, so a bad scene fails at start and
        # not on stage; StreamSettings checks every value it holds.
        self.applied_to(StreamSettings())

    def applied_to(self, settings: StreamSettings) -> StreamSettings:
        """``settings`` with what this scene sets, in one change (one transition)."""
        change: dict[str, Any] = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)
            if field.name != "name" and getattr(self, field.name) is not None
        }
        return dataclasses.replace(settings, **change)
