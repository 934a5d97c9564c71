"""Engine events for tests that publish into a server without an engine, and the JSON a client
reads of them."""

from __future__ import annotations

import json
from typing import Any

from streamer.runtime.ports import NowPlaying, PromptWeight, Status, StreamEvent
from streamer.sinks.protocol import event_text


def now_playing(
    frame_id: int,
    sample_position: int = 0,
    *,
    prompts: tuple[tuple[str, float], ...] = (("jazz", 1.0),),
    negative_prompt: str = "",
    alpha: float = 1.0,
    seed: int = 0,
    seed_loop: str = "house_117",
    denoising: float = 0.75,
    guidance: float = 7.0,
    bpm: float | None = 117.1875,
    paused: bool = False,
) -> NowPlaying:
    return NowPlaying(
        frame_id=frame_id,
        sample_position=sample_position,
        prompts=tuple(PromptWeight(text, weight) for text, weight in prompts),
        negative_prompt=negative_prompt,
        alpha=alpha,
        seed=seed,
        next_seed=seed + 1,
        noise_alpha=0.0,
        denoising=denoising,
        guidance=guidance,
        seed_loop=seed_loop,
        bpm=bpm,
        paused=paused,
    )


def status(state: str = "ok", lookahead_seconds: float = 6.4) -> Status:
    return Status(
        state=state,  # type: ignore[arg-type]
        lookahead_seconds=lookahead_seconds,
        seconds_per_frame=0.5,
        frames_made=1,
        underrun_samples=0,
    )


def as_message(event: StreamEvent) -> dict[str, Any]:
    """The event as a client receives it."""
    return json.loads(event_text(event))
