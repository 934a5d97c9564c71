"""Vocoder speed and quality against Riffusion's reconstruction, side by side in one run.

Baseline: torchaudio's Griffin-Lim at Riffusion's settings (32 iterations, momentum 0.99, n_fft
17640, reflect-padded STFT of the non-circular image), as ``codec.audio_from_mel`` runs it.
Ours: ``streamer.audio.vocoder.Vocoder`` with its defaults, on the circular image of the same
audio. Both on the same realistic frames (one 5.12 s loop each):

- FluidSynth renders of the seed-loop styles (scripts/render_seed_loops.py, General MIDI drums
  and bass with room ambience; needs fluidsynth and fluid-soundfont-gm),
- the synthesised grooves and song of tests/material.py,
- Riffusion's own test clip (real music; tests/fixtures/riffusion/clip.wav,
  scaled to a -6 dB peak so that neither method clips).

Measured per frame: the real-time factor (5.12 s over the wall-clock seconds for one frame, with
``torch.set_num_threads(2)``; medians of repeated runs, ours and the baseline interleaved) and the
spectral convergence below 10 kHz against the source audio's own STFT magnitude (Riffusion's
STFT; 6 columns at each end are left out so a circular and a non-circular reconstruction are
compared on equal terms). Then:

- ablations of our choices (FFT size, half-rate reconstruction, acceleration, initial phase,
  iterations) on a few frames;
- streaming: a groove turning gradually into two others over nine frames (five with --quick),
  as consecutive frames of one stream, vocoded cold (each from scratch) and warm (each from the
  previous frame's phase; "warm" counts the frames similar enough for the short warm
  iterations): quality, speed, and how the frames add up in a crossfade, as the level of a 50/50
  mix relative to the mean level of the two (0 dB: coherent, -3 dB: unrelated phases).

The machine is shared; the load average is printed with the results. OpenMP threads sleep
while they wait (``OMP_WAIT_POLICY=PASSIVE`` unless set otherwise): with libgomp's default busy
waiting, a CPU loaded by other processes slows our many short parallel steps 5-10 times (and the
baseline about 2 times). Ours is also timed on one thread.

Usage: python benchmarks/vocoder.py [--quick | --smoke] [--device cuda]
(--quick: two frames, fewer variants, < 60 s; --smoke: one synthesised frame, one variant, a
stream of two frames, no baseline, a few seconds: the GPU check's dry run runs it, and so a
test. ``--device`` runs ours there; the baseline always runs on the CPU, as Riffusion's
reference.)
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # read once, when torch's OpenMP loads

import numpy as np  # noqa: E402
import soundfile  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from material import groove, song  # noqa: E402

from streamer.audio.measures import spectral_convergence  # noqa: E402
from streamer.errors import UserError  # noqa: E402
from streamer.audio.vocoder import Vocoder, VocoderConfig  # noqa: E402
from streamer.spectrogram import codec  # noqa: E402
from streamer.spectrogram.params import SpectrogramParams  # noqa: E402

PARAMS = SpectrogramParams()
LOOP = 512 * PARAMS.hop_length
SECONDS = LOOP / PARAMS.sample_rate
EDGE_COLUMNS = 6
CLIP = ROOT / "tests" / "fixtures" / "riffusion" / "clip.wav"
RENDERER = ROOT / "scripts" / "render_seed_loops.py"


def fluidsynth_loops(count: int) -> list[tuple[str, np.ndarray]]:
    """Seed-loop styles rendered by FluidSynth (the renderer script's own code), as audio; none
    where FluidSynth or its sound font is missing."""
    if count == 0:
        return []
    spec = importlib.util.spec_from_file_location("render_seed_loops", RENDERER)
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script  # its dataclasses look their module up
    spec.loader.exec_module(script)
    config = script.SynthConfig()
    try:
        script.check_synth(config.soundfont)
    except UserError:
        return []
    with tempfile.TemporaryDirectory() as workdir:
        return [
            (style.name, script.render_style_audio(style, index, config, Path(workdir)))
            for index, style in enumerate(script.STYLES[:count])
        ]


def frames(size: str) -> list[tuple[str, np.ndarray]]:
    chosen = fluidsynth_loops({"smoke": 0, "quick": 1, "full": 6}[size])
    chosen.append(("groove", groove(seed=0).samples))
    if size != "full":
        return chosen
    chosen.append(("groove-16-beats", groove(bpm=187.5, beats=16, seed=5).samples))
    chosen.append(("song", song(12.0, seed=3)[5 * PARAMS.sample_rate :][:LOOP].copy()))
    clip, _ = soundfile.read(CLIP, dtype="float32", always_2d=True)
    mono = clip.mean(axis=1)[:LOOP]
    chosen.append(("riffusion-clip", (mono * (0.5 / np.abs(mono).max())).astype(np.float32)))
    return chosen


def circular_mel(audio: np.ndarray) -> torch.Tensor:
    mono = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    return codec.mel_from_audio(mono[None], PARAMS, circular=True)


def error(reconstruction: np.ndarray, audio: np.ndarray) -> float:
    return spectral_convergence(
        reconstruction[..., :LOOP], audio[None], PARAMS, edge_columns=EDGE_COLUMNS
    )


def timed(run, repeats: int):
    """Median wall-clock and CPU seconds of ``run()`` and its last result."""
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def compare(chosen, repeats: int, device: str, baseline: bool = True) -> list[dict]:
    """Ours against the baseline, frame by frame (without ``baseline``, its columns are NaN:
    Griffin-Lim at Riffusion's settings takes seconds per frame on a CPU)."""
    print("\nRTF: 5.12 s of audio over wall-clock seconds; per core: over CPU seconds (all")
    print("threads); load: 1-minute load average of the (shared, 2-core) machine after the row")
    print(
        f"\n{'frame':18} {'base RTF':>9} {'per core':>9} {'base SC':>8} {'ours RTF':>9} "
        f"{'per core':>9} {'1 thread':>9} {'ours SC':>8} {'speedup':>8} {'load':>6}"
    )
    vocoder = Vocoder(PARAMS, VocoderConfig(device=device))
    vocoder.vocode(circular_mel(chosen[0][1]))  # plans and caches, as in a running stream
    rows = []
    for name, audio in chosen:
        reflect_mel = codec.mel_from_audio(torch.from_numpy(audio)[None], PARAMS)
        base_wall, base_cpu, base = (
            timed(lambda: codec.audio_from_mel(reflect_mel, PARAMS).numpy(), 1)
            if baseline
            else (float("nan"), float("nan"), None)
        )
        mel = circular_mel(audio)
        ours_wall, ours_cpu, ours = timed(lambda: vocoder.vocode(mel).samples, repeats)
        torch.set_num_threads(1)
        one_thread_wall, _, _ = timed(lambda: vocoder.vocode(mel).samples, repeats)
        torch.set_num_threads(2)
        row = {
            "frame": name,
            "base_rtf": SECONDS / base_wall,
            "base_core_rtf": SECONDS / base_cpu,
            "base_sc": float("nan") if base is None else error(base, audio),
            "ours_rtf": SECONDS / ours_wall,
            "ours_core_rtf": SECONDS / ours_cpu,
            "ours_one_thread_rtf": SECONDS / one_thread_wall,
            "ours_sc": error(ours, audio),
        }
        rows.append(row)
        print(
            f"{name:18} {row['base_rtf']:8.2f}x {row['base_core_rtf']:8.2f}x "
            f"{row['base_sc']:8.4f} {row['ours_rtf']:8.1f}x {row['ours_core_rtf']:8.1f}x "
            f"{row['ours_one_thread_rtf']:8.1f}x {row['ours_sc']:8.4f} "
            f"{row['ours_rtf'] / row['base_rtf']:7.0f}x {os.getloadavg()[0]:6.1f}",
            flush=True,
        )
    return rows


DEFAULT = "default (n_fft 8820, half rate, AGLA, integrated phase, 32 it)"
FULL_RATE = "full rate (decimation 1), n_fft 8820"
VARIANTS = {
    DEFAULT: {},
    "24 iterations": {"iterations": 24},
    "48 iterations": {"iterations": 48},
    "fast Griffin-Lim instead of AGLA": {"extrapolation": 0.0, "relaxation": 1.0},
    "random initial phase": {"initial_phase": "random"},
    "zero initial phase": {"initial_phase": "zero"},
    "n_fft 8192 (1.86 x window)": {"n_fft": 8192},
    "n_fft 16384": {"n_fft": 16384},
    FULL_RATE: {"decimation": 1},
    "full rate, n_fft 17640 (Riffusion's)": {"decimation": 1, "n_fft": 17640},
}
SIZED_VARIANTS = {
    "smoke": [DEFAULT],
    "quick": [DEFAULT, "fast Griffin-Lim instead of AGLA", FULL_RATE],
    "full": list(VARIANTS),
}


def ablations(chosen, size: str, device: str) -> None:
    mels = [(circular_mel(audio), audio) for _, audio in chosen]
    print(f"\n{'variant':64} {'RTF':>8} {'SC mean':>8}   (over {len(mels)} frames)")
    for name in SIZED_VARIANTS[size]:
        vocoder = Vocoder(PARAMS, VocoderConfig(**VARIANTS[name], device=device))
        vocoder.vocode(mels[0][0])
        times, errors = [], []
        for mel, audio in mels:
            seconds, _, samples = timed(lambda: vocoder.vocode(mel).samples, 1)
            times.append(seconds)
            errors.append(error(samples, audio))
        rtf = SECONDS / statistics.median(times)
        print(f"{name:64} {rtf:7.1f}x {statistics.mean(errors):8.4f}", flush=True)


def morph(count: int) -> list[np.ndarray]:
    """A groove turning into a second and then a third, in equal steps (frames of one stream)."""
    a, b, c = (groove(seed=seed).samples for seed in (0, 1, 2))
    steps = np.linspace(0.0, 2.0, count)
    return [((1 - s) * a + s * b) if s <= 1 else ((2 - s) * b + (s - 1) * c) for s in steps]


def mix_level_db(first: np.ndarray, second: np.ndarray) -> float:
    mix = np.mean(((first + second) / 2.0) ** 2)
    return 10.0 * np.log10(mix / ((np.mean(first**2) + np.mean(second**2)) / 2.0))


def streaming(count: int, device: str) -> dict:
    sources = morph(9)[:count]  # steps of a quarter groove
    mels = [circular_mel(audio) for audio in sources]
    vocoder = Vocoder(PARAMS, VocoderConfig(device=device))
    vocoder.vocode(mels[0])
    title = f"stream of {count} frames"
    print(f"\n{title:24} {'RTF':>8} {'SC mean':>8} {'SC max':>8} {'mix level':>10} {'warm':>5}")
    source_mix = statistics.mean(mix_level_db(a, b) for a, b in zip(sources, sources[1:]))
    print(f"{'source audio':24} {'':>8} {'':>8} {'':>8} {source_mix:8.2f} dB")
    results = {}
    for mode in ("cold", "warm"):
        previous, outputs, times, errors, warm = None, [], [], [], 0
        for mel, audio in zip(mels, sources):
            start = time.perf_counter()
            frame = vocoder.vocode(mel, previous if mode == "warm" else None)
            times.append(time.perf_counter() - start)
            previous = frame
            warm += frame.warm
            outputs.append(frame.samples[0])
            errors.append(error(frame.samples, audio))
        # the first frame is a cold start in both modes
        level = statistics.mean(mix_level_db(a, b) for a, b in zip(outputs, outputs[1:]))
        rtf = SECONDS / statistics.median(times[1:])
        mean, worst = statistics.mean(errors[1:]), max(errors[1:])
        results[mode] = {"rtf": rtf, "sc": mean, "mix_db": level}
        label = f"{mode} start"
        print(
            f"{label:24} {rtf:7.1f}x {mean:8.4f} {worst:8.4f} {level:8.2f} dB {warm:5}", flush=True
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="two frames, three variants (< 60 s)")
    size.add_argument(
        "--smoke", action="store_true", help="one frame, one variant (seconds): the smallest run"
    )
    parser.add_argument("--device", default="cpu", help="where ours runs (default cpu)")
    args = parser.parse_args()
    size = "smoke" if args.smoke else "quick" if args.quick else "full"
    torch.set_num_threads(2)
    started = time.perf_counter()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, ours on {args.device}, "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    chosen = frames(size)
    rows = compare(chosen, 1 if args.smoke else 3, args.device, baseline=not args.smoke)
    ablations(chosen if size != "full" else chosen[:4], size, args.device)
    stream = streaming({"smoke": 2, "quick": 5, "full": 9}[size], args.device)

    def median(key: str) -> float:
        return statistics.median(row[key] for row in rows)

    base_sc = statistics.mean(row["base_sc"] for row in rows)
    ours_sc = statistics.mean(row["ours_sc"] for row in rows)
    warm = stream["warm"]
    print(
        f"\nmedian RTF: baseline {median('base_rtf'):.2f}x, ours {median('ours_rtf'):.1f}x cold"
        f" / {warm['rtf']:.1f}x warm; mean SC: baseline {base_sc:.4f}, ours {ours_sc:.4f} cold"
        f" / {warm['sc']:.4f} warm (stream)"
    )
    elapsed = time.perf_counter() - started
    print(f"load average at end {os.getloadavg()[0]:.2f}; took {elapsed:.0f} s")
    print(
        f"RESULT frames={len(rows)} baseline_rtf={median('base_rtf'):.2f} "
        f"baseline_sc={base_sc:.4f} baseline_core_rtf={median('base_core_rtf'):.2f} "
        f"cold_rtf={median('ours_rtf'):.1f} cold_core_rtf={median('ours_core_rtf'):.1f} "
        f"cold_one_thread_rtf={median('ours_one_thread_rtf'):.1f} cold_sc={ours_sc:.4f} "
        f"warm_rtf={warm['rtf']:.1f} warm_sc={warm['sc']:.4f} "
        f"speedup={median('ours_rtf') / median('base_rtf'):.0f} "
        f"mix_db_cold={stream['cold']['mix_db']:.2f} mix_db_warm={warm['mix_db']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
