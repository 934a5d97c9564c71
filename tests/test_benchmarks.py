"""The benchmarks run on their smallest paths, so a rename breaks here and not on the day a
figure is needed. The figures of these runs mean nothing; each must get through and print its
``RESULT`` line. (vocoder.py and latency.py are run by test_vocoder.py and test_client.py.)

They run in this process (importing torch again per benchmark would cost more than most of
them take), each from its file, with ``main(argv)``.
"""

from __future__ import annotations

import collections
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from streamer.training.composer import compose
from streamer.training.dataset import ClipRecord, write_info, write_metadata

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
#: The data set's styles: a few, so the quality benchmark makes few frames.
STYLES = 3


@pytest.fixture(autouse=True)
def process_state_restored() -> Iterator[None]:
    """The benchmarks set process-wide state for their measurements (torch's threads, its
    flushing of subnormal floats, OMP_WAIT_POLICY); the tests after them get it back. Nothing in
    streamer flushes subnormals: off is the process's own setting."""
    threads, environment = torch.get_num_threads(), dict(os.environ)
    yield
    torch.set_num_threads(threads)
    torch.set_flush_denormal(False)
    os.environ.clear()
    os.environ.update(environment)


def benchmark(name: str) -> ModuleType:
    """The benchmark script ``benchmarks/<name>.py`` as a module (its folder on the path, as
    when it runs: some import their neighbours)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run(name: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Run a benchmark's ``main`` with ``argv``; its ``RESULT`` lines."""
    benchmark(name).main(argv)
    output = capsys.readouterr().out
    results = [line for line in output.splitlines() if line.startswith("RESULT")]
    assert results, f"{name} printed no RESULT line:\n{output[-2000:]}"
    return results


@pytest.mark.parametrize(
    "name",
    [
        "opus_encoder",
        "stretch",
        "loudness",
        "generator",
        "fanout",
        "clock_work",
        "soak",
        "distill_step",
        "capture",
    ],
)
def test_a_benchmark_runs_its_smoke_size(name: str, capsys: Any) -> None:
    run(name, ["--smoke"], capsys)


def test_the_opus_benchmark_measures_both_paths_of_the_one_encoding(capsys: Any) -> None:
    result = run("opus_encoder", ["--smoke"], capsys)[0]
    fields = dict(field.split("=") for field in result.split()[2:])
    for path in ("opus_message_kbit_s", "ogg_kbit_s"):
        assert 0.5 < float(fields[path]) / float(fields["kbit_per_second"]) < 1.5, result


def test_the_novelty_benchmark_finds_the_song_form_moving_where_the_loop_stands(
    capsys: Any,
) -> None:
    result = run("novelty", ["--smoke"], capsys)[0]
    fields = dict(field.split("=") for field in result.split()[1:])
    assert float(fields["standin_song_5s"]) < float(fields["standin_loop_5s"]), result
    assert fields["standin_song_clicks"] == fields["standin_loop_clicks"] == "0", result


def test_the_gc_pause_benchmark_runs_on_the_tiny_model(tiny_model_dir: Path, capsys: Any) -> None:
    run("gc_pause", ["--model", str(tiny_model_dir), "--repeats", "1"], capsys)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data set as ``streamer make-dataset`` lays it out, of ``STYLES`` styles: the composer's
    captions and labels, with plain pictures instead of renders (no FluidSynth, no seconds per
    clip)."""
    folder = tmp_path_factory.mktemp("dataset")
    compositions = [compose(0, index) for index in range(12 * 40)]
    styles = sorted({c.labels["style"] for c in compositions})[:STYLES]
    chosen = [c for c in compositions if c.labels["style"] in styles]
    family_clips = collections.Counter(c.labels["lead_family"] for c in chosen)
    # Held out: per style, an ensemble clip whose caption prompts the model, and two more that
    # the frames are compared with; each of a lead family that training has plenty of.
    common = [c for c in chosen if family_clips[c.labels["lead_family"]] >= 4 * STYLES]
    prompts = [
        next(c for c in common if c.labels["style"] == style and c.labels["kind"] == "ensemble")
        for style in styles
    ]
    test = prompts + [
        c for style in styles for c in [c for c in common if c.labels["style"] == style
                                        and c not in prompts][:2]
    ]  # fmt: skip
    train = [c for c in chosen if c not in test]
    for split, members in (("train", train), ("test", test)):
        (folder / split).mkdir()
        records = []
        for composition in members:
            name = f"clip_{composition.index:05d}.png"
            pixels = np.full((512, 512, 3), 40 + 60 * styles.index(composition.labels["style"]))
            pixels[:, composition.index % 512] = 255
            Image.fromarray(pixels.astype(np.uint8), mode="RGB").save(folder / split / name)
            records.append(ClipRecord(name, composition.caption, composition.labels))
        write_metadata(folder / split, records)
    write_info(folder, {"maker": "tests/test_benchmarks.py", "clips": len(chosen)})
    return folder


def test_the_judge_trains_on_a_data_set_scores_pictures_and_is_cached(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    classifier = benchmark("quality_classifier")
    config = classifier.ClassifierConfig(epochs=1)
    judge, summary = classifier.load_or_train(dataset, config, log=lambda _: None)
    assert not summary["cached"] and len(judge.labels.styles) == STYLES
    test = classifier.read_split(dataset, "test")
    scores = judge.score(classifier.split_pictures(test))
    assert scores.style_probabilities.shape == (len(test), STYLES)
    assert np.allclose(scores.style_probabilities.sum(1), 1.0, atol=1e-5)
    assert scores.embeddings.shape == (len(test), config.embedding_size)
    assert classifier.load_or_train(dataset, config)[1]["cached"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # statistics of 3 frames: degenerate
def test_the_quality_benchmark_runs_on_a_tiny_data_set_and_the_tiny_model(
    dataset: Path,
    tiny_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # A short schedule, little denoising and no guidance: frames in a fraction of the preset's
    # time.
    argv = ["--smoke", "--data", str(dataset), "--model", str(tiny_model_dir), "--steps", "8",
            "--denoising", "0.2", "--guidance", "1"]  # fmt: skip
    run("model_quality", [*argv, "--artifacts", str(tmp_path / "artifacts")], capsys)
    assert list((tmp_path / "artifacts").glob("*.wav"))


def test_the_builtin_model_speed_benchmark_names_the_cpu_class_and_compute_type(
    capsys: Any, tiny_model_dir: Path
) -> None:
    result = run("builtin_model_speed", ["--quick", "--model", str(tiny_model_dir)], capsys)[0]
    fields = dict(field.split("=") for field in result.split()[2:])
    assert fields["capability"] == torch.backends.cpu.get_cpu_capability()
    assert fields["dtype"] in ("fp32", "bf16") and float(fields["stream_rtf"]) > 0
    # OpenVINO's lever ran, frames and all (a dependency: missing, this fails, never skips)
    assert float(fields["openvino_frame_s"]) > 0 and int(fields["openvino_max_levels"]) >= 0
