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

from streamer.audio.capture import CaptureRefused
from streamer.plan import commands
from streamer.plan.scenes import Scene
from streamer.plan.settings import PromptBlend, StreamSettings, Transition
from streamer.runtime.capture import Capturer
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
        #: Captures of the live input (``streamer.runtime.capture``), when there is one.
        self.capturer: Capturer | None = None
        self._skip_seeds = random.Random()
        # Each command reads the settings and writes them back: two sources at once must not
        # lose one another's change.
        self._lock = threading.Lock()

    def apply(self, command: commands.Command) -> Mapping[str, Any]:
        if isinstance(command, commands.Capture):
            return self._capture(command.bars)
        with self._lock:
            if isinstance(command, commands.Pause | commands.Resume):
                self.engine.set_paused(isinstance(command, commands.Pause))
                return {"paused": self.engine.paused}
            settings = self._updated(self.engine.settings, command)
            return {"plan_version": self.engine.change(settings)}

    def _capture(self, bars: int) -> Mapping[str, Any]:
        """The last ``bars`` bars of the live input become the seed loop once made (the
        capturer hands them to ``use_seed_loop``)."""
        if self.capturer is None:
            raise ControlRejected("no_input", "there is no live input to capture: start with --input")
        try:
            return self.capturer.capture(bars).reply()
        except CaptureRefused as refusal:
            raise ControlRejected(refusal.code, refusal.message) from None

    def use_seed_loop(self, name: str) -> int:
        """Change to seed loop ``name`` (a capture just made), as a performer's change does."""
        with self._lock:
            settings = dataclasses.replace(self.engine.settings, seed_loop=name)
            return self.engine.change(settings)

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
