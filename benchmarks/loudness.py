"""Broadcast loudness of a long render: integrated, short-term spread, true peak, clipping, CPU.

Renders the stream offline (the ``streamer render`` path: the engine core driven without a
clock) with the model-free stand-in frame maker, moving through prompts and seed loops (each
loop has its own level, each prompt its own tone and a level 0 to 15 dB down) with a change
every ``CHANGE_SECONDS``.
Renders side by side from the same frames:

* ``off``: ``--loudness off``, frames at the level they are made at (the stream before);
* ``-14``: the default, frames levelled and the mix through the look-ahead limiter;
* ``-14 unlimited``: the levelled frames without the limiter (what the limiter gets);
* ``pedalboard``: the levelled frames through pedalboard's ``Limiter`` (JUCE's) instead, at the
  same -1 dB threshold: the library the issue suggested, measured to show why it is not used.

Figures (ITU-R BS.1770 with pyloudnorm): integrated loudness; short-term loudness (3 s windows)
every 1 s, and the 3 s at the middle of each frame period, as max - min (the spread); true peak
(4x oversampled with scipy's ``resample_poly``); samples at or over full scale (clipped); the
limiter's CPU per second of stream and the levelling's per frame.

Usage::

    .venv/bin/python benchmarks/loudness.py           # 10 min of stream, about 1 min
    .venv/bin/python benchmarks/loudness.py --quick   # 2 min of stream, < 60 s
    .venv/bin/python benchmarks/loudness.py --smoke   # 6 s: that it runs (for the tests)
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import time

import numpy as np
import pedalboard
import scipy.signal

from streamer.audio.loudness import LoudnessConfig, integrated_lufs, mix_limiter
from streamer.generate.cancellation import never_stale
from streamer.plan.settings import PromptBlend, StreamSettings, Transition
from streamer.runtime.assemble import build_core, levelled
from streamer.runtime.stream_config import StreamConfig
from streamer.runtime.render import fill_lookahead
from streamer.runtime.standin import StandInFrameMaker

RATE = 44100
#: Stream time between changes of prompt and seed loop.
CHANGE_SECONDS = 20.0
#: Rendered per call, as the live renderer does (a quarter of its 0.25 s ring).
CHUNK_SECONDS = 0.0625
PROMPTS = ["jazz piano", "techno, dark", "rain on a tin roof", "choir", "808 bass", "flute solo"]
#: Each prompt's frames come out this much quieter, as a model's prompts differ in level (the
#: stand-in's own frames are all near full scale).
PROMPT_GAINS_DB = {prompt: gain for prompt, gain in zip(PROMPTS, [0, -12, -3, -9, -6, -15])}
SEED_LOOPS = ["boom_bap_94", "house_117", "techno_141", "dnb_188", "trap_141", "reggaeton_94"]


def render(
    loudness: LoudnessConfig | None, seconds: float, *, limit: bool = True
) -> tuple[np.ndarray, float]:
    """The stream with ``loudness`` (its frames levelled and, with ``limit``, the mix through
    the limiter); returns the samples and the levelling's CPU seconds per frame."""
    changes = [
        StreamSettings(
            prompts=PromptBlend.single(prompt), seed_loop=loop, transition=Transition(seconds=4.0)
        )
        for prompt, loop in itertools.islice(
            zip(itertools.cycle(PROMPTS), itertools.cycle(SEED_LOOPS)),
            math.ceil(seconds / CHANGE_SECONDS) + 1,
        )
    ]
    config = StreamConfig(settings=changes[0], loudness=loudness)
    config = dataclasses.replace(config, planner=dataclasses.replace(config.planner, endless=False))
    core = build_core(config if limit else dataclasses.replace(config, loudness=None))
    maker = TimedMaker(levelled(config, PromptLevels(StandInFrameMaker(0.0))))
    chunk, total, written, parts = round(CHUNK_SECONDS * RATE), round(seconds * RATE), 0, []
    next_change, change = CHANGE_SECONDS, 1
    while written < total:
        now = written / RATE
        if now >= next_change:
            core.change(changes[change], now)
            next_change, change = next_change + CHANGE_SECONDS, change + 1
        fill_lookahead(core, maker, now)
        rendered = core.render(min(chunk, total - written), now)
        parts.append(rendered.audio.samples)
        written += rendered.audio.samples.shape[1]
    return np.concatenate(parts, axis=1), maker.cpu_per_frame


class PromptLevels:
    """The stand-in's frames at their prompt's level (``PROMPT_GAINS_DB``)."""

    def __init__(self, maker) -> None:
        self.maker = maker

    def make(self, planned, is_stale=never_stale):
        made = []
        for frame in self.maker.make(planned, is_stale):
            gain = sum(w * 10 ** (PROMPT_GAINS_DB[t] / 20) for t, w in frame.planned.prompts.weighted)
            made.append(dataclasses.replace(frame, samples=frame.samples * np.float32(gain)))
        return made


class TimedMaker:
    """Counts the CPU the (levelling) maker takes per frame."""

    def __init__(self, maker) -> None:
        self.maker = maker
        self.cpu = 0.0
        self.frames = 0

    def make(self, planned, is_stale=never_stale):
        started = time.process_time()
        made = self.maker.make(planned, is_stale)
        self.cpu += time.process_time() - started
        self.frames += len(made)
        return made

    @property
    def cpu_per_frame(self) -> float:
        return self.cpu / max(1, self.frames)


def short_term(samples: np.ndarray, starts: list[int]) -> np.ndarray:
    """BS.1770 loudness of 3 s windows starting at ``starts`` (ungated, as EBU's short-term)."""
    window = 3 * RATE
    return np.array([integrated_lufs(samples[:, s : s + window], RATE) for s in starts])


def measure(samples: np.ndarray) -> dict[str, float]:
    every_second = list(range(0, samples.shape[1] - 3 * RATE, RATE))
    period = 225792  # one frame
    frame_middles = list(range(period // 2 - 3 * RATE // 2, samples.shape[1] - 3 * RATE, period))
    seconds = short_term(samples, every_second)
    frames = short_term(samples, frame_middles)
    seconds, frames = seconds[np.isfinite(seconds)], frames[np.isfinite(frames)]
    upsampled = scipy.signal.resample_poly(samples, 4, 1, axis=1)
    return {
        "integrated_lufs": round(integrated_lufs(samples, RATE), 2),
        "short_term_spread_lu": round(float(seconds.max() - seconds.min()), 2),
        "short_term_p5_p95_lu": round(float(np.percentile(seconds, 95) - np.percentile(seconds, 5)), 2),
        "frame_spread_lu": round(float(frames.max() - frames.min()), 2),
        "true_peak_dbtp": round(20 * math.log10(float(np.abs(upsampled).max())), 2),
        "sample_peak_dbfs": round(20 * math.log10(float(np.abs(samples).max())), 2),
        "clipped_samples": int((np.abs(samples) >= 1.0).sum()),
    }


def limiter_cpu_per_second(samples: np.ndarray, config: LoudnessConfig) -> float:
    """The limiter alone on the stream, in the renderer's chunks: CPU s per stream s."""
    limiter = mix_limiter(config, RATE, samples.shape[0])
    chunk = round(CHUNK_SECONDS * RATE)
    started = time.process_time()
    for start in range(0, samples.shape[1], chunk):
        limiter.process(samples[:, start : start + chunk])
    return (time.process_time() - started) / (samples.shape[1] / RATE)


def pedalboard_limited(samples: np.ndarray) -> tuple[np.ndarray, float]:
    """pedalboard's Limiter at -1 dB, streamed in the same chunks (its state kept)."""
    limiter = pedalboard.Limiter(threshold_db=-1.0, release_ms=150.0)
    chunk = round(CHUNK_SECONDS * RATE)
    parts = []
    started = time.process_time()
    for start in range(0, samples.shape[1], chunk):
        parts.append(limiter.process(samples[:, start : start + chunk], RATE, reset=False))
    cpu = (time.process_time() - started) / (samples.shape[1] / RATE)
    return np.concatenate(parts, axis=1), cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 minutes of stream (< 60 s)")
    parser.add_argument(
        "--smoke", action="store_true", help="6 s of stream: that it runs (for the tests)"
    )
    args = parser.parse_args(argv)
    seconds = 6.0 if args.smoke else 120.0 if args.quick else 600.0
    config = LoudnessConfig()
    print(f"load average {os.getloadavg()}; {seconds:.0f} s of stream per render", flush=True)
    rows = {}
    raw, _ = render(None, seconds)
    rows["off"] = measure(raw)
    limited, levelling_cpu = render(config, seconds)
    rows["-14"] = measure(limited)
    unlimited, _ = render(config, seconds, limit=False)
    rows["-14"]["limiter_cpu_per_stream_s"] = round(limiter_cpu_per_second(unlimited, config), 5)
    rows["-14"]["levelling_cpu_per_frame_s"] = round(levelling_cpu, 4)
    rows["-14 unlimited"] = measure(unlimited)
    board, board_cpu = pedalboard_limited(unlimited)
    rows["pedalboard"] = measure(board)
    rows["pedalboard"]["limiter_cpu_per_stream_s"] = round(board_cpu, 5)
    for name, row in rows.items():
        print(f"{name:>11}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
    print("RESULT " + json.dumps({"seconds": seconds, **rows}))


if __name__ == "__main__":
    main()
