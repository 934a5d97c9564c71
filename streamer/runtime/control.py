"""Performers' commands -> engine changes: the engine's side of ``StreamControl``.

Runs on the server's event-loop thread; each command only updates the settings and hands them to
the engine (a lock held for microseconds), never waits for a frame.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from typing import Any

from streamer.plan import commands
from streamer.plan.settings import PromptBlend, StreamSettings, Transition
from streamer.runtime.engine import Engine
from streamer.runtime.ports import ControlRejected


class EngineControl:
    """Applies validated commands to an engine. ``seed_loops`` are the names a client may pick
    (library loops only: a client never names a file on the server)."""

    def __init__(self, engine: Engine, seed_loops: frozenset[str]) -> None:
        self.engine = engine
        self.seed_loops = seed_loops
        self._skip_seeds = random.Random()

    def apply(self, command: commands.Command) -> Mapping[str, Any]:
        if isinstance(command, commands.Pause | commands.Resume):
            self.engine.set_paused(isinstance(command, commands.Pause))
            return {"paused": self.engine.paused}
        settings = self._updated(self.engine.settings, command)
        return {"plan_version": self.engine.change(settings)}

    def _updated(self, settings: StreamSettings, command: commands.Command) -> StreamSettings:
        match command:
            case commands.SetPrompts(prompts):
                change: dict[str, Any] = {
                    "prompts": PromptBlend(tuple((p.text, p.weight) for p in prompts))
                }
            case commands.SetNegativePrompt(text):
                change = {"negative_prompt": text}
            case commands.SetSeed(seed):
                change = {"seed": seed}
            case commands.SetDenoising(denoising):
                change = {"denoising": denoising}
            case commands.SetGuidance(guidance):
                change = {"guidance": guidance}
            case commands.SetSeedLoop(name):
                if name not in self.seed_loops:
                    raise ControlRejected(
                        "unknown_seed_loop",
                        f"there is no seed loop called {name!r}; choose one of: "
                        + ", ".join(sorted(self.seed_loops)),
                    )
                change = {"seed_loop": name}
            case commands.SetTransition(seconds, bars):
                change = {"transition": Transition(seconds=seconds, bars=bars)}
            case commands.Skip():
                # Something new at the next beat: the noise walk restarts from a fresh seed.
                change = {"seed": self._skip_seeds.randrange(2**32)}
            case _:
                raise ControlRejected("unsupported", f"{type(command).__name__} is not supported")
        try:
            return dataclasses.replace(settings, **change)
        except ValueError as error:
            raise ControlRejected("invalid_value", str(error)) from None
