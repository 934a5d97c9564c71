"""Putting a stream together from its configuration: the one place that knows every part."""

from __future__ import annotations

import dataclasses

from streamer.audio.stitcher import Stitcher, StitcherConfig
from streamer.audio.vocoder import Vocoder, VocoderConfig
from streamer.plan.planner import Planner
from streamer.generate.config import GeneratorConfig
from streamer.plan.planner import PlannerConfig
from streamer.plan.settings import StreamSettings
from streamer.runtime.core import EngineConfig, EngineCore
from streamer.runtime.engine import Engine
from streamer.runtime.frames import FrameMaker
from streamer.seeds.library import frame_samples, list_seed_loops
from streamer.spectrogram.params import SpectrogramParams


@dataclasses.dataclass(frozen=True)
class StreamConfig:
    """Everything a stream is made from: the model, the music, the walk and the engine."""

    model: GeneratorConfig = GeneratorConfig()
    settings: StreamSettings = StreamSettings()
    planner: PlannerConfig = PlannerConfig()
    engine: EngineConfig = EngineConfig()
    #: Where frames join (``quantize``, the crossfade); the sample rate, channels and pending
    #: limit are set from the spectrogram and the engine by ``build_core``.
    stitcher: StitcherConfig = StitcherConfig()


def frame_seconds(params: SpectrogramParams) -> float:
    """Stream time of one frame: the loop period of a square spectrogram image (5.12 s)."""
    return frame_samples(params) / params.sample_rate


def build_core(config: StreamConfig) -> EngineCore:
    """The engine's pure core for ``config``: planner, stitcher and policy."""
    params = SpectrogramParams()
    loops = list_seed_loops()
    planner_config = dataclasses.replace(config.planner, frame_seconds=frame_seconds(params))
    planner = Planner(config.settings, planner_config, {loop.name: loop.bpm for loop in loops})
    stitcher = Stitcher(
        dataclasses.replace(
            config.stitcher,
            sample_rate=params.sample_rate,
            channels=params.channels,
            max_pending_frames=config.engine.lookahead_frames + config.engine.batch_frames,
        )
    )
    return EngineCore(planner, stitcher, config.engine, {loop.name: loop.beats for loop in loops})


def build_engine(config: StreamConfig, maker: FrameMaker) -> Engine:
    """A live engine for ``config`` that makes its frames with ``maker`` (not started)."""
    core = build_core(config)
    return Engine(
        core,
        maker,
        sample_rate=core.stitcher.config.sample_rate,
        channels=core.stitcher.config.channels,
        config=config.engine,
    )


def load_diffusion_maker(config: StreamConfig) -> FrameMaker:
    """Load the checkpoint and the vocoder on the configured device (slow: seconds to minutes)."""
    from streamer.generate.generator import FrameGenerator
    from streamer.runtime.diffusion_maker import DiffusionFrameMaker, seed_loop_image

    generator = FrameGenerator.load(config.model, seed_loop_image)
    vocoder = Vocoder(SpectrogramParams(), VocoderConfig(device=str(generator.device)))
    return DiffusionFrameMaker(generator, vocoder)
