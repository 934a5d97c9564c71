"""The numbered prompts that MIDI faders and OSC ``/streamer/weight/<n>`` move.

A fader sets one prompt's weight, but the engine takes whole blends (``SetPrompts``): the desk
remembers every prompt's text and weight, so one fader's move becomes the full blend. Its prompts
are the stream's starting prompts (``--prompt``, in order), then those of the last scene recalled
or the last prompts sent by OSC. A change from the browser does not move the desk's faders.

Shared by the MIDI and OSC inputs, which call it from their own threads: every method holds a
lock for the few microseconds it takes.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from streamer.plan.commands import Command, Prompt, RecallScene, SetPrompts
from streamer.plan.controls import ControlError, ErrorCode, PromptLimits, check_prompts
from streamer.plan.scenes import Scene


class PromptDesk:
    def __init__(
        self,
        prompts: Sequence[tuple[str, float]],
        scenes: Mapping[str, Scene],
        limits: PromptLimits = PromptLimits(),
    ) -> None:
        """``limits``: the longest prompt and most prompts (as the WebSocket server's, unless
        its settings narrow them)."""
        self.scenes = dict(scenes)
        self.limits = limits
        self._prompts = [Prompt(text, weight) for text, weight in prompts]
        self._lock = threading.Lock()

    @property
    def prompts(self) -> tuple[Prompt, ...]:
        with self._lock:
            return tuple(self._prompts)

    def set_prompts(self, pairs: Sequence[tuple[object, object]]) -> SetPrompts:
        """A new set of prompts (checked as the WebSocket's ``set_prompts``); the faders now
        address them in this order."""
        command = check_prompts(pairs, self.limits)
        with self._lock:
            self._prompts = list(command.prompts)
        return command

    def set_weight(self, number: int, weight: float) -> SetPrompts:
        """Prompt ``number`` (from 1) now weighs ``weight``: the whole blend, for the engine."""
        with self._lock:
            if not 1 <= number <= len(self._prompts):
                raise ControlError(
                    ErrorCode.INVALID_VALUE,
                    f"there is no prompt {number}: the desk holds {len(self._prompts)} "
                    "(the stream's --prompt list, a scene's or the last /streamer/prompts)",
                )
            self._prompts[number - 1] = Prompt(self._prompts[number - 1].text, weight)
            live = tuple(prompt for prompt in self._prompts if prompt.weight > 0)
        if not live:
            raise ControlError(
                ErrorCode.INVALID_VALUE,
                "every prompt weight is 0: the stream keeps its last blend until one is raised",
            )
        return SetPrompts(live)

    def follow(self, command: Command) -> Command:
        """``command``, once the desk has taken note of it: a scene recalled moves its prompts
        onto the faders (and an unknown scene is refused here)."""
        if isinstance(command, RecallScene):
            return self.recall(command.name)
        return command

    def recall(self, name: str) -> RecallScene:
        """Scene ``name``; its prompts become the desk's."""
        scene = self.scenes.get(name)
        if scene is None:
            known = ", ".join(self.scenes) or "none are defined (add [scenes.NAME] to --config)"
            raise ControlError(
                ErrorCode.INVALID_VALUE, f"there is no scene called {name[:64]!r}; scenes: {known}"
            )
        if scene.prompts is not None:
            with self._lock:
                self._prompts = [Prompt(text, weight) for text, weight in scene.prompts.weighted]
        return RecallScene(name)
