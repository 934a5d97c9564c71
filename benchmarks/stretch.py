"""Quality of playing a loop at another tempo: the streaming WSOLA stretch against Rubber Band.

A synthetic groove (tests/material.py: kick, snare, hats, bass, chords) is made at the seed
loop's 117.19 BPM and stretched to a target tempo; the same groove rendered natively at the
target tempo (same notes, same seed) is the ideal. Measured against it:

- onset error: for every kick and snare of the ideal, the distance to the nearest detected
  onset of the stretched audio (ms; median and 90th percentile);
- spectral difference: spectral convergence of the STFT magnitudes, ||S - S_ideal|| / ||S_ideal||
  (2048-sample Hann, hop 512, up to 10 kHz; lower is better; 0 = identical);
- speed: seconds of output per second of CPU.

Methods: ``wsola`` (``streamer.audio.stretch``, streaming, what ``--link`` uses),
``rubberband`` (``pedalboard.time_stretch``, offline on the whole buffer; not usable on an endless
stream, shown as the quality bar), and ``resample`` (plain resampling: right timing, wrong pitch;
shows how much the spectral measure punishes a pitch change).

    python benchmarks/stretch.py
    python benchmarks/stretch.py --smoke   # one tempo, one groove: that it runs (for the tests)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from material import groove

from streamer.audio.measures import onset_positions
from streamer.audio.stretch import StreamStretcher

RATE = 44100
SEED_BPM = 117.1875
TARGETS_BPM = (100.0, 120.0, 140.0, 175.0)
LOOPS = 3


def wsola(source: np.ndarray, ratio: float, count: int) -> np.ndarray:
    stretcher, fed = StreamStretcher(1, RATE), 0
    while stretcher.ready < count:
        need = stretcher.source_needed()
        stretcher.feed(source[:, fed : fed + need])
        fed += need
        stretcher.step(ratio)
    return stretcher.take(count)


def rubberband(source: np.ndarray, ratio: float, count: int) -> np.ndarray:
    from pedalboard import time_stretch

    out = time_stretch(source, RATE, stretch_factor=ratio)
    return out[:, :count].astype(np.float32)


def resample(source: np.ndarray, ratio: float, count: int) -> np.ndarray:
    positions = np.arange(count) * ratio
    return np.interp(positions, np.arange(source.shape[1]), source[0])[None].astype(
        np.float32
    )


def magnitudes(samples: np.ndarray) -> np.ndarray:
    window, hop = 2048, 512
    frames = np.lib.stride_tricks.sliding_window_view(samples[0], window)[
        ::hop
    ] * np.hanning(window)
    spectrum = np.abs(np.fft.rfft(frames, axis=1))
    return spectrum[:, : int(10_000 * window / RATE)]


def measure(method, target_bpm: float, seed: int) -> tuple[float, float, float, float]:
    made = groove(bpm=SEED_BPM, seed=seed)
    ideal = groove(bpm=target_bpm, seed=seed)
    source = np.tile(made.samples[None], LOOPS + 1)
    reference = np.tile(ideal.samples[None], LOOPS)
    count = reference.shape[1]
    ratio = target_bpm / SEED_BPM
    started = time.process_time()
    out = method(source, ratio, count)
    cpu = time.process_time() - started
    # Ignore the first loop (start-up) and compare the rest.
    skip = ideal.samples.shape[0]
    hits = sorted(set(ideal.kick_onsets + ideal.snare_onsets))
    expected = np.array([skip * k + h for k in range(1, LOOPS) for h in hits])
    found = onset_positions(out, RATE, refractory_seconds=0.03)
    errors_ms = np.array([np.abs(found - e).min() for e in expected]) / RATE * 1000
    s, r = magnitudes(out[:, skip:]), magnitudes(reference[:, skip:])
    convergence = float(np.linalg.norm(s - r) / np.linalg.norm(r))
    return (
        float(np.median(errors_ms)),
        float(np.percentile(errors_ms, 90)),
        convergence,
        count / RATE / max(cpu, 1e-9),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="140 BPM, one groove: that it runs (for the tests)"
    )
    args = parser.parse_args(argv)
    targets, seeds = ((140.0,), 1) if args.smoke else (TARGETS_BPM, 3)
    methods = {"wsola": wsola, "rubberband": rubberband, "resample": resample}
    print(
        f"{'target BPM':>10} {'ratio':>6} {'method':>10} {'onset med ms':>12} {'p90 ms':>7} {'spec conv':>9} {'x real time':>11}"
    )
    result = []
    for target in targets:
        for name, method in methods.items():
            rows = np.array([measure(method, target, seed) for seed in range(seeds)])
            median = np.median(rows, axis=0)
            print(
                f"{target:10.2f} {target / SEED_BPM:6.3f} {name:>10} {median[0]:12.2f} "
                f"{median[1]:7.2f} {median[2]:9.3f} {median[3]:11.0f}"
            )
            if name != "resample":
                result += [
                    f"{name}_onset_ms_{target:g}={median[0]:.2f}",
                    f"{name}_spec_conv_{target:g}={median[2]:.3f}",
                ]
    print("RESULT stretch " + " ".join(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
