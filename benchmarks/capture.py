"""Capturing the band: how soon a capture is heard, and how much of its rhythm the model keeps.

1. **Capture-to-heard latency**: the real engine (producer, renderer, software clock) with a live
   input fed in real time by a software input (a drum loop at 48 kHz, so every capture is
   resampled), captures of 2 bars asked at random moments through ``EngineControl`` as every
   input asks; the time from the capture to the first frame of its seed loop reaching the clock.
   It is the seed's making (resample, onset search, image: ``make`` in the table) plus a seed-loop
   change's latency (the frame's making, the wait for the next beat, the render-ahead).
   Rows: the stand-in at 20x real time, and the built-in model on this CPU.

2. **Rhythm transfer**: a syncopated drum loop (kicks off the four-on-the-floor grid) captured
   as a seed, then frames of the built-in model at its preset's denoising from that seed and from
   a control seed of the same tempo (house_117, four on the floor), same prompts and noise. The
   measure is the correlation of onset-strength envelopes (``streamer.seeds.tempo``, 5.8 ms hops,
   smoothed over 23 ms) between the captured loop and each frame: how well the frame's attacks
   follow the capture's. The capture's frames should score clearly above the control's.

    python benchmarks/capture.py            # both rows and the rhythm table, a few minutes
    python benchmarks/capture.py --quick    # the stand-in row only, fewer captures, under a minute
    python benchmarks/capture.py --smoke    # seconds: the stand-in, 1 capture, the tiny model
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamer.audio.capture import CaptureWindow  # noqa: E402
from streamer.audio.stitcher import StitcherConfig  # noqa: E402
from streamer.generate.config import GeneratorConfig  # noqa: E402
from streamer.generate.presets import preset_named  # noqa: E402
from streamer.plan.commands import Capture  # noqa: E402
from streamer.plan.settings import PromptBlend, StreamSettings, Transition  # noqa: E402
from streamer.runtime.assemble import build_engine, load_diffusion_maker  # noqa: E402
from streamer.runtime.capture import AudioInput, AudioInputConfig, Capturer  # noqa: E402
from streamer.runtime.captured_seeds import CapturedSeeds  # noqa: E402
from streamer.runtime.clocks import SoftwareClock  # noqa: E402
from streamer.runtime.control import EngineControl  # noqa: E402
from streamer.runtime.core import EngineConfig  # noqa: E402
from streamer.runtime.ports import ControlRejected  # noqa: E402
from streamer.runtime.ring import InputRing  # noqa: E402
from streamer.runtime.standin import StandInFrameMaker  # noqa: E402
from streamer.runtime.stream_config import StreamConfig  # noqa: E402

#: The stream's seed loop and tempo (10 beats fill a 5.12 s frame).
SEED_LOOP, BPM = "house_117", 117.1875
#: The software input's rate: not the spectrogram's, so every capture is resampled.
INPUT_RATE = 48000
INPUT_BLOCK = 512
#: A syncopated bar in sixteenths: kicks off the quarter-note grid, snares on 2 and 4.
KICKS, SNARES, HATS = (0, 3, 6, 10), (4, 12), tuple(range(0, 16, 2))


def drum_bar(bpm: float, rate: int, seed: int = 0) -> np.ndarray:
    """One bar of the syncopated pattern (float32, peak 0.5), seamless when repeated."""
    rng = np.random.default_rng(seed)
    sixteenth = 60.0 / bpm / 4 * rate
    bar = np.zeros(round(16 * sixteenth))
    t_kick = np.arange(int(0.25 * rate)) / rate
    kick = np.sin(2 * np.pi * np.cumsum(45 + 90 * np.exp(-t_kick * 30)) / rate) * np.exp(-t_kick * 12)
    t_snare = np.arange(int(0.18 * rate)) / rate
    snare = 0.5 * rng.standard_normal(t_snare.size) * np.exp(-t_snare * 25) + 0.6 * np.sin(
        2 * np.pi * 190 * t_snare
    ) * np.exp(-t_snare * 30)
    t_hat = np.arange(int(0.05 * rate)) / rate
    hat = 0.2 * np.diff(rng.standard_normal(t_hat.size), prepend=0.0) * np.exp(-t_hat * 80)
    for steps, sound, gain in ((KICKS, kick, 0.9), (SNARES, snare, 0.6), (HATS, hat, 1.0)):
        for step in steps:
            indices = (round(step * sixteenth) + np.arange(sound.size)) % bar.size
            np.add.at(bar, indices, gain * sound)
    return (bar * 0.5 / np.abs(bar).max()).astype(np.float32)


class SoftwareInput(AudioInput):
    """A live input with no device: a thread plays ``loop`` into the ring in real time, one
    block every block's duration (as ``SoftwareClock`` plays the stream out)."""

    def __init__(self, loop: np.ndarray, rate: int) -> None:
        super().__init__(AudioInputConfig(latency_seconds=0.0))
        self.loop, self.sample_rate = loop, rate
        self.ring = InputRing(round(self.config.ring_seconds * rate))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _play(self) -> None:
        started, written = time.monotonic(), 0
        while not self._stop.is_set():
            due = started + (written + INPUT_BLOCK) / self.sample_rate
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            indices = (written + np.arange(INPUT_BLOCK)) % self.loop.size
            self.ring.write(self.loop[None, indices], time.monotonic())
            written += INPUT_BLOCK


class Heard:
    """A sink that notes when each seed loop's first frame reaches the clock."""

    def __init__(self) -> None:
        self.first_heard: dict[str, float] = {}

    def publish_audio(self, block) -> None:
        pass

    def publish_frame(self, picture) -> None:
        pass

    def publish_event(self, event) -> None:
        seed_loop = getattr(event, "seed_loop", None)
        if seed_loop is not None:
            self.first_heard.setdefault(seed_loop, time.monotonic())


def stream_config(model: str | None) -> StreamConfig:
    base = StreamConfig(
        settings=StreamSettings(seed_loop=SEED_LOOP, transition=Transition(seconds=0)),
        engine=EngineConfig(lookahead_frames=2),
        stitcher=StitcherConfig(quantize="beat"),
    )
    base = dataclasses.replace(base, planner=dataclasses.replace(base.planner, endless=False))
    if model is None:
        return base
    return dataclasses.replace(base, model=GeneratorConfig(model=model, device="cpu", offline=True))


def measure_latency(name: str, config: StreamConfig, make_maker, captures: int, seed: int) -> dict:
    """Captures of 2 bars at random moments; the seconds from each to its seed heard."""
    seeds = CapturedSeeds(max_kept=max(2, captures))
    engine = build_engine(config, make_maker(seeds))
    heard = Heard()
    engine.add_sink(heard)
    control = EngineControl(engine, frozenset({SEED_LOOP}))
    audio_input = SoftwareInput(np.tile(drum_bar(BPM, INPUT_RATE), 2), INPUT_RATE)
    capturer = Capturer(engine, audio_input, seeds, control.use_seed_loop)
    control.capturer = capturer
    clock = SoftwareClock(engine)
    rng = random.Random(seed)
    latencies, making = [], []
    engine.start()
    audio_input.start()
    capturer.start()
    try:
        assert engine.wait_until_playing(600), f"{name}: no first frame"
        clock.start()
        time.sleep(3 * 4 * 60 / BPM)  # three bars of input: two whole ones wherever the lines fall
        for _ in range(captures):
            asked = time.monotonic()
            try:
                name_made = control.apply(Capture(2))["capture"]
            except ControlRejected as refusal:
                raise SystemExit(f"{name}: the capture was refused: {refusal.message}")
            deadline = asked + 300
            while name_made not in heard.first_heard:
                assert time.monotonic() < deadline, f"{name}: {name_made} was never heard"
                time.sleep(0.005)
            latencies.append(heard.first_heard[name_made] - asked)
            making.append(seed_making_seconds(capturer, name_made))
            time.sleep(rng.uniform(0.3, 1.5))  # the next capture anywhere in a beat
    finally:
        clock.stop()
        capturer.stop()
        audio_input.stop()
        engine.stop()
    latencies.sort()
    return {
        "name": name,
        "captures": len(latencies),
        "make": statistics.median(making),
        "t_frame": engine.metrics.seconds_per_frame,
        "median": statistics.median(latencies),
        "p90": latencies[min(len(latencies) - 1, int(0.9 * len(latencies)))],
        "max": latencies[-1],
        "underruns": engine.metrics.underrun_samples,
    }


def seed_making_seconds(capturer: Capturer, name: str) -> float:
    """How long the seed's making takes, timed again offline on the same bars (the capturer's
    thread is not instrumented)."""
    from streamer.seeds.capture import captured_seed
    from streamer.spectrogram import SpectrogramParams

    captured = next(c for c in capturer.captures if c.name == name)
    samples = capturer.audio_input.ring.read(captured.window.first, captured.window.last)
    if samples is None:
        return float("nan")
    started = time.perf_counter()
    captured_seed(samples, capturer.audio_input.sample_rate, captured.window, SpectrogramParams())
    return time.perf_counter() - started


# ---- rhythm transfer -----------------------------------------------------------------------------


def onset_envelope(samples: np.ndarray) -> np.ndarray:
    from streamer.seeds.tempo import onset_strength

    envelope = onset_strength(samples)
    smoothed = np.convolve(envelope, np.ones(4) / 4, mode="same")
    return (smoothed - smoothed.mean()) / (smoothed.std() + 1e-12)


def rhythm_transfer(model: str, frames: int) -> dict:
    """Onset correlation of frames from the captured seed and from the control seed."""
    from streamer.audio.vocoder import Vocoder
    from streamer.generate.generator import FrameGenerator
    from streamer.generate.request import FrameRequest
    from streamer.runtime.diffusion_maker import seed_loop_image
    from streamer.seeds.capture import captured_seed
    from streamer.spectrogram import SpectrogramParams, mel_from_image

    params = SpectrogramParams()
    bars = np.tile(drum_bar(BPM, INPUT_RATE), 2)
    window = CaptureWindow(0, bars.size, 2, 0.0, BPM, 0.0)
    capture = captured_seed(bars, INPUT_RATE, window, params)
    images = {"captured": capture.image, "control": seed_loop_image(SEED_LOOP)}
    config = GeneratorConfig(model=model, device="cpu", offline=True)
    generator = FrameGenerator.load(config, images)
    preset = preset_named("builtin" if model == "builtin" else "default")
    prompts = preset.prompts or ("house track, drum kit only",)
    vocoder = Vocoder(params)
    reference = onset_envelope(capture.loop.samples)

    def correlation(audio: np.ndarray) -> float:
        envelope = onset_envelope(audio)
        n = min(envelope.size, reference.size)
        return float(np.mean(envelope[:n] * reference[:n]))

    scores: dict[str, list[float]] = {"captured": [], "control": []}
    for index in range(frames):
        prompt = PromptBlend.single(prompts[index % len(prompts)])
        for seed_image in scores:
            request = FrameRequest(
                prompts=prompt, seed_image=seed_image, seed_a=1000 + index,
                denoising=preset.denoising, guidance=preset.guidance,
            )
            (frame,) = generator.generate([request])
            scores[seed_image].append(correlation(vocoder.vocode(frame.mel).samples[0]))
    return {
        "denoising": preset.denoising,
        "frames": frames,
        "captured": statistics.mean(scores["captured"]),
        "control": statistics.mean(scores["control"]),
        "captured_min": min(scores["captured"]),
        "control_max": max(scores["control"]),
        # The seed itself, vocoded from its image: the most a frame could keep.
        "seed_itself": correlation(vocoder.vocode(mel_from_image(capture.image)[0]).samples[0]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the stand-in row only, fewer captures (under a minute)")
    parser.add_argument("--smoke", action="store_true", help="seconds: 1 capture, the tiny model for the rhythm")
    parser.add_argument("--model", default="builtin", help="model of the model rows (default builtin)")
    parser.add_argument("--captures", type=int, help="captures per latency row")
    args = parser.parse_args(argv)
    captures = args.captures or (1 if args.smoke else 4 if args.quick else 8)
    rows = [
        measure_latency(
            "stand-in 20x", stream_config(None),
            lambda seeds: StandInFrameMaker(5.12 / 20, seed_images=seeds.image), captures, 1,
        )
    ]
    rhythm = None
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model
        if args.smoke:
            from streamer.generate.tiny_model import build_tiny_model

            model = str(build_tiny_model(Path(scratch) / "tiny"))
        if not args.quick:
            if not args.smoke:
                config = stream_config(model)
                rows.append(
                    measure_latency(
                        f"{model} (cpu)", config,
                        lambda seeds: load_diffusion_maker(config, seeds.image), max(3, captures // 2), 2,
                    )
                )
            rhythm = rhythm_transfer(model, 1 if args.smoke else 4)
    print(f"{'maker':22} {'captures':>8} {'make s':>7} {'t_frame s':>9} {'median s':>9} {'p90 s':>7} {'max s':>7} {'underruns':>9}")
    for row in rows:
        print(
            f"{row['name']:22} {row['captures']:8d} {row['make']:7.3f} {row['t_frame']:9.3f} "
            f"{row['median']:9.3f} {row['p90']:7.3f} {row['max']:7.3f} {row['underruns']:9d}"
        )
    figures = [f"standin_latency_median_s={rows[0]['median']:.3f}", f"standin_latency_p90_s={rows[0]['p90']:.3f}"]
    if len(rows) > 1:
        figures += [f"model_latency_median_s={rows[1]['median']:.3f}", f"model_latency_p90_s={rows[1]['p90']:.3f}"]
    if rhythm is not None:
        print(
            f"\nrhythm transfer at denoising {rhythm['denoising']:g}, {rhythm['frames']} frames each "
            "(onset-envelope correlation with the captured loop):"
        )
        print(f"  frames from the captured seed  {rhythm['captured']:.3f} (lowest {rhythm['captured_min']:.3f})")
        print(f"  frames from the control seed   {rhythm['control']:.3f} (highest {rhythm['control_max']:.3f})")
        print(f"  the captured seed itself       {rhythm['seed_itself']:.3f}")
        figures += [f"rhythm_captured={rhythm['captured']:.3f}", f"rhythm_control={rhythm['control']:.3f}"]
    print("RESULT " + " ".join(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
