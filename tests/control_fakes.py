"""Stand-ins shared by the MIDI and OSC tests: scenes, and a ``StreamControl`` that records."""

from __future__ import annotations

import threading

from streamer.plan.commands import RecallScene, Skip
from streamer.plan.scenes import Scene
from streamer.plan.settings import PromptBlend, Transition
from streamer.runtime.ports import ControlRejected

SCENES = {
    "intro": Scene("intro", prompts=PromptBlend((("soft piano", 2), ("rain", 1))), seed_loop="house_117"),
    "drop": Scene("drop", denoising=0.9, transition=Transition(seconds=None, bars=1)),
}



class RecordingControl:
    """A ``StreamControl`` that keeps what it is asked and refuses unknown scenes."""

    def __init__(self) -> None:
        self.applied: list = []
        self.changed = threading.Condition()

    def apply(self, command):
        with self.changed:
            self.applied.append(command)
            self.changed.notify_all()
        if isinstance(command, RecallScene) and command.name not in SCENES:
            raise ControlRejected("unknown_scene", f"no scene {command.name!r}")
        if command == Skip():
            raise RuntimeError("a bug in the engine")
        return {"plan_version": len(self.applied)}

    def wait_for(self, count: int) -> list:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.applied) >= count, timeout=10)
            return list(self.applied)
