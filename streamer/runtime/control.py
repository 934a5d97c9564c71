"""Performers' commands -> engine changes: the engine's side of ``StreamControl``.

Runs on the thread of whichever source sent the command (the server's event loop, the MIDI and
OSC inputs' pump); each command only updates the settings and hands them to
the engine (a lock held for microseconds), never waits for a frame.
"""

from __future__ import annotations

import dataclasses
import random
import threading
from collections.abc import Mapping
from typing import Any

from streamer.plan import commands
from streamer.plan.scenes import Scene
from streamer.plan.settings import PromptBlend, StreamSettings, Transition
from streamer.runtime.engine import Engine
from streamer.runtime.ports import ControlRejected


class EngineControl:
    """Applies validated commands to an engine. ``seed_loops`` are the names a client may pick
    (library loops only: a client never names a file on the server); ``scenes`` those of the
    config file, by name. Thread-safe: the server, MIDI and OSC call it from their own threads."""

    def __init__(
        self,
        engine: Engine,
        seed_loops: frozenset[str],
        scenes: Mapping[str, Scene] | None = None,
    ) -> None:
        self.engine = engine
        self.seed_loops = seed_loops
        self.scenes = dict(scenes or {})
        self._skip_seeds = random.Random()
        # Each command reads the settings and writes them back: two sources at once must not
        # lose one another's change.
        self._lock = threading.Lock()

    def apply(self, command: commands.Command) -> Mapping[str, Any]:
        with self._lock:
            if isinstance(command, commands.Pause | commands.Resume):
                self.engine.set_paused(isinstance(command, commands.Pause))
                return {"paused": self.engine.paused}
            settings = self._updated(self.engine.settings, command)
            return {"plan_version": self.engine.change(settings)}

    def _updated(self, settings: StreamSettings, command: commands.Command) -> StreamSettings:
        if isinstance(command, commands.RecallScene):
            return self._scene(command.name).applied_to(settings)
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

    def _scene(self, name: str) -> Scene:
        if name not in self.scenes:
            known = ", ".join(self.scenes) or "none are defined (add [scenes.NAME] to --config)"
            raise ControlRejected("unknown_scene", f"there is no scene called {name!r}; scenes: {known}")
        return self.scenes[name]
