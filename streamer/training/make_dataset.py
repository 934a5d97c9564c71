"""``streamer make-dataset``: the built-in model's training data, rendered from the composer.

Clip ``index`` of a data set made with ``seed`` is always the same clip: its composition is a pure
function of (seed, index), its render is deterministic, and which split it lands in is fixed by
(seed, clips, held-out fraction). So a run that was interrupted continues where it stopped (clips
whose PNG exists are skipped; PNGs are written whole or not at all), and the metadata is written
once every image exists.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import multiprocessing
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from streamer.errors import UserError
from streamer.training.composer import STYLES, ComposerConfig, Composition, compose
from streamer.training.dataset import (
    INFO_FILE,
    ClipRecord,
    read_info,
    write_info,
    write_metadata,
)
from streamer.training.midi import loop_events, standard_midi_file
from streamer.training.synth import (
    FRAME_SECONDS,
    SynthConfig,
    check_synth,
    loop_image,
    render_loop,
)

#: Bumped when the composer or the rendering changes what a (seed, index) makes, so a folder
#: made by another version is not silently continued.
COMPOSER_VERSION = 1


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """How the clips of a data set are made."""

    #: The kept repetition may differ from the next by 0.3 % RMS (-50 dB): measured over clips,
    #: most settle to 1e-4 after three repetitions, but a few sounds (the choir pad) never get
    #: below about 1e-3, and rendering more repetitions costs time for nothing visible.
    synth: SynthConfig = SynthConfig(steady_tolerance=3e-3)
    composer: ComposerConfig = ComposerConfig()
    #: Loudness of every clip (RMS of the samples), unless that would push a peak past
    #: ``peak_limit``: clips sound alike in level whatever their instruments.
    target_rms: float = 0.1
    peak_limit: float = 0.95


def file_name(index: int) -> str:
    return f"{index:06d}.png"


def held_out_indices(seed: int, clips: int, fraction: float) -> frozenset[int]:
    """The clips of the test split: in every style (styles take turns by index) the same share,
    rounded up, so the split holds at least ``fraction`` of the clips and every style."""
    if not 0 < fraction < 1:
        raise UserError(f"--held-out-fraction must be between 0 and 1 (exclusive), not {fraction}")
    rng = random.Random(f"streamer-split:{seed}:{clips}")
    chosen: set[int] = set()
    for style in range(len(STYLES)):
        members = list(range(style, clips, len(STYLES)))
        chosen.update(rng.sample(members, math.ceil(fraction * len(members))))
    return frozenset(chosen)


def composition_midi(composition: Composition, config: SynthConfig) -> bytes:
    events = loop_events(composition.programs, composition.notes, composition.steps,
                         FRAME_SECONDS, config.repetitions)
    return standard_midi_file(events)


def render_clip(composition: Composition, config: DatasetConfig, workdir: Path):
    """The Riffusion image of a composition, at the data set's level."""
    loop = render_loop(composition_midi(composition, config.synth), composition.index,
                       config.synth, workdir)
    rms = float(np.sqrt(np.mean(loop**2)))
    peak = float(np.max(np.abs(loop)))
    if peak > 0:
        loop = loop * min(config.target_rms / rms, config.peak_limit / peak)
    return loop_image(loop)


def _split_folder(directory: Path, index: int, held_out: frozenset[int]) -> Path:
    return directory / ("test" if index in held_out else "train")


@dataclasses.dataclass(frozen=True)
class _Job:
    seed: int
    index: int
    path: Path
    config: DatasetConfig


def _worker_setup() -> None:
    import torch

    torch.set_num_threads(1)  # one process per core already


def _render_job(job: _Job) -> tuple[int, str | None]:
    """Render one clip to its PNG (written under a temporary name, then renamed, so an
    interrupted run leaves no half-written image). Returns (index, error or None)."""
    from streamer.spectrogram import png_bytes

    try:
        with tempfile.TemporaryDirectory(prefix="streamer-clip-") as workdir:
            image = render_clip(compose(job.seed, job.index, job.config.composer), job.config,
                                Path(workdir))
        partial = job.path.with_name(job.path.name + ".partial")
        partial.write_bytes(png_bytes(image))
        os.replace(partial, job.path)
    except Exception as error:  # noqa: BLE001 - reported per clip, the others go on
        return job.index, f"{type(error).__name__}: {error}"
    return job.index, None


def _check_or_write_info(directory: Path, info: dict[str, Any]) -> None:
    if (directory / INFO_FILE).exists():
        existing = read_info(directory)
        differing = [key for key in info if existing.get(key) != info[key]]
        if differing:
            was = ", ".join(f"{key}={existing.get(key)!r}" for key in differing)
            raise UserError(
                f"{directory} holds a data set made with {was}; continue it with the same "
                "options or give another folder"
            )
        return
    write_info(directory, info)


def make_dataset(
    directory: Path,
    clips: int,
    seed: int = 0,
    held_out_fraction: float = 0.1,
    jobs: int | None = None,
    config: DatasetConfig = DatasetConfig(),
    progress: bool = True,
) -> dict[str, Any]:
    """Render (or finish rendering) a data set; returns what dataset.json says of it."""
    if clips < 1:
        raise UserError(f"--clips must be at least 1, not {clips}")
    jobs = jobs or os.cpu_count() or 1
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, not {jobs}")
    check_synth(config.synth.soundfont)
    directory = Path(directory)
    held_out = held_out_indices(seed, clips, held_out_fraction)
    info = {"seed": seed, "clips": clips, "held_out_fraction": held_out_fraction,
            "composer_version": COMPOSER_VERSION, "maker": "streamer make-dataset"}
    directory.mkdir(parents=True, exist_ok=True)
    _check_or_write_info(directory, info)
    for split in ("train", "test"):
        (directory / split).mkdir(exist_ok=True)

    pending = []
    for index in range(clips):
        path = _split_folder(directory, index, held_out) / file_name(index)
        if not path.exists():
            pending.append(_Job(seed, index, path, config))
    failures = dict(_render_all(pending, jobs, progress, done=clips - len(pending), total=clips))

    # A clip that cannot be rendered (none has been seen so far) is left out of the metadata,
    # said in dataset.json, and reported; the rest of the data set stays usable.
    records: dict[str, list[ClipRecord]] = {"train": [], "test": []}
    for index in range(clips):
        if index in failures:
            continue
        composition = compose(seed, index, config.composer)
        records[_split_folder(directory, index, held_out).name].append(
            ClipRecord(file_name(index), composition.caption, composition.labels)
        )
    for split, split_records in records.items():
        write_metadata(directory / split, split_records)
    summary = {**info, "splits": {split: len(rs) for split, rs in records.items()},
               "styles": dict(collections.Counter(r.labels["style"] for r in records["train"])),
               "failed_clips": {str(index): error for index, error in sorted(failures.items())}}
    write_info(directory, summary)
    return summary


def _render_all(pending: list[_Job], jobs: int, progress: bool, done: int,
                total: int) -> list[tuple[int, str]]:
    from tqdm import tqdm

    failures = []
    with tqdm(total=total, initial=done, unit="clip", desc="rendering clips",
              disable=not progress) as bar:
        if not pending:
            return failures
        with multiprocessing.Pool(min(jobs, len(pending)), initializer=_worker_setup) as pool:
            for index, error in pool.imap_unordered(_render_job, pending, chunksize=1):
                if error is not None:
                    failures.append((index, error))
                bar.update(1)
    return failures
