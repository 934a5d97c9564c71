"""Everything a stream is made from, in one value: the model, the music, the walk, the engine.

Kept apart from ``assemble`` (which builds the parts) so the command line can read and check a
configuration without loading torch."""

from __future__ import annotations

import dataclasses

from streamer.audio.loudness import LoudnessConfig
from streamer.audio.stitcher import StitcherConfig
from streamer.generate.config import GeneratorConfig
from streamer.plan.planner import PlannerConfig
from streamer.plan.scenes import Scene
from streamer.plan.settings import StreamSettings
from streamer.runtime.core import EngineConfig


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    """Everything a stream is made from: the model, the music, the walk and the engine."""

    model: GeneratorConfig = GeneratorConfig()
    settings: StreamSettings = StreamSettings()
    planner: PlannerConfig = PlannerConfig()
    engine: EngineConfig = EngineConfig()
    #: Named states a performer recalls (MIDI notes and programs, OSC ``/streamer/scene``).
    #: Where frames join (``quantize``, the crossfade); the sample rate, channels and pending
    #: limit are set from the spectrogram and the engine by ``build_core``.
    stitcher: StitcherConfig = StitcherConfig()
    scenes: tuple[Scene, ...] = ()
    #: None: frames keep the level they are made at and nothing limits the mix.
    loudness: LoudnessConfig | None = LoudnessConfig()
