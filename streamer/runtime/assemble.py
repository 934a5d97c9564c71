"""Putting a stream together from its configuration: the one place that knows every part."""

from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING

from streamer.audio.stitcher import Stitcher
from streamer.plan.planner import Planner
from streamer.runtime.core import EngineCore
from streamer.runtime.engine import Engine
from streamer.runtime.frames import FrameMaker
from streamer.runtime.stream_config import StreamConfig
from streamer.runtime.levelled import LevelledFrameMaker
from streamer.seeds.library import frame_samples, list_seed_loops
from streamer.spectrogram.params import SpectrogramParams

if TYPE_CHECKING:  # torch loads with the model, not with the engine
    from streamer.generate.generator import SeedImages


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
    beats = {loop.name: loop.beats for loop in loops}
    return EngineCore(planner, stitcher, config.engine, beats, config.loudness)


def levelled(config: StreamConfig, maker: FrameMaker) -> FrameMaker:
    """``maker`` with its frames brought to the stream's loudness (itself when that is off)."""
    if config.loudness is None:
        return maker
    return LevelledFrameMaker(maker, config.loudness, SpectrogramParams().sample_rate)


def build_engine(config: StreamConfig, maker: FrameMaker) -> Engine:
    """A live engine for ``config`` that makes its frames with ``maker`` (not started)."""
    core = build_core(config)
    return Engine(
        core,
        levelled(config, maker),
        sample_rate=core.stitcher.config.sample_rate,
        channels=core.stitcher.config.channels,
        config=config.engine,
    )


def song_seed_images(config: StreamConfig, base_images: SeedImages) -> SeedImages:
    """Seed images by name for the frame maker: ``base_images``, and the loops the song form
    composes when it has a composer (``planner.loop_styles``)."""
    if not (config.planner.song_form and config.planner.loop_styles):
        return base_images
    from streamer.runtime.composed_loops import ComposedLoops

    return ComposedLoops({loop.name: loop.beats for loop in list_seed_loops()}, base_images)


def load_diffusion_maker(config: StreamConfig, seed_images: SeedImages | None = None) -> FrameMaker:
    """Load the checkpoint and the vocoder on the configured device (slow: seconds to minutes),
    and say on stderr which compute type it runs in and why (it follows the machine).
    ``seed_images`` finds seed images by name (default: the library's, or a PNG by path;
    ``CapturedSeeds.image`` adds the live input's captures)."""
    from streamer.audio.vocoder import Vocoder, VocoderConfig
    from streamer.generate.generator import FrameGenerator
    from streamer.runtime.diffusion_maker import DiffusionFrameMaker, seed_loop_image

    generator = FrameGenerator.load(
        config.model, song_seed_images(config, seed_images or seed_loop_image)
    )
    print(generator.model.compute_announcement(), file=sys.stderr, flush=True)
    print(generator.runtime.announcement(), file=sys.stderr, flush=True)
    print(generator.decoder_choice.announcement(), file=sys.stderr, flush=True)
    if generator.compiled:  # every batch shape now, rather than a minute's pause mid-stream
        frames = config.engine.batch_frames
        print(f"compiling the UNet for batches of up to {frames} frames...", file=sys.stderr)
        seconds = generator.warm_up(frames, config.settings.seed_loop)
        print(f"compiled the UNet in {seconds:.0f} s", file=sys.stderr, flush=True)
    vocoder = Vocoder(SpectrogramParams(), VocoderConfig(device=str(generator.device)))
    return DiffusionFrameMaker(generator, vocoder)
