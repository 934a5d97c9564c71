"""A data set from the user's own music: a folder of audio files -> whole-beat loops with captions.

Riffusion's users asked for a way to train on their own music; this is the data half of it.
Every WAV, FLAC or OGG file under the folder (nested folders too) is cut into consecutive 5.12 s
windows, each made a loop exactly as ``streamer make-seed`` makes one (``seeds.from_audio``):
time-stretched, keeping the pitch, to the nearest tempo at which a whole number of beats fills
the frame, started on the strongest onset, its end crossfaded into its beginning. The tempo is
the file's own (``seeds.tempo``) unless the user gives one. Silent windows are left out.

Captions, first found wins:

1. ``SONG.txt`` (or ``SONG.wav.txt``) next to ``SONG.wav``: its text;
2. ``captions.txt`` (lines ``FILE: caption``) or ``captions.csv`` (rows ``FILE,caption``) in the
   file's folder or any folder above it, FILE relative to that folder;
3. the folder names: ``my-band/ambient/x.wav`` -> "my band, ambient"; a file directly in the
   folder takes the folder's own name.

The held-out split takes the last loops of every file (``held_out_fraction`` of them, rounded
up), one stretch at the end of each song rather than loops scattered among those trained on, plus
whole one-loop files if that is not enough. It depends on nothing but the files, so reruns make the same data set.
The folder written is in the format of ``training.dataset``.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from streamer.errors import UserError
from streamer.seeds.from_audio import (
    FittedLoop,
    check_bpm,
    fit_to_frame,
    lead_in_samples,
    loop_image,
    mono_at_rate,
    read_audio,
    source_samples_needed,
    whole_beat_tempo,
)
from streamer.seeds.library import frame_samples
from streamer.seeds.tempo import estimate_tempo
from streamer.spectrogram import SpectrogramParams, save_image
from streamer.training.dataset import ClipRecord, write_info, write_metadata

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
CAPTION_FILES = ("captions.txt", "captions.csv")
#: Loops quieter than this (RMS in dB below full scale) are left out: silence teaches nothing.
SILENT_LOOP_DBFS = -50.0


@dataclasses.dataclass(frozen=True)
class UserAudioConfig:
    """How a folder of music becomes a data set."""

    #: Share of the loops held out for measuring, never trained on (0.1 to 0.5).
    held_out_fraction: float = 0.1
    #: The tempo of every file in beats per minute, when known; None estimates each file's.
    bpm: float | None = None

    def __post_init__(self) -> None:
        if not 0.1 <= self.held_out_fraction <= 0.5:
            raise ValueError(f"held_out_fraction must be 0.1..0.5, got {self.held_out_fraction}")


@dataclasses.dataclass(frozen=True)
class Caption:
    text: str
    source: str  # "file" (SONG.txt), "captions" (captions.txt/.csv) or "folders"


@dataclasses.dataclass(frozen=True)
class PreparedFile:
    """What one audio file gave: how many loops, at what whole-beat tempo, with what caption,
    or why it gave none."""

    path: Path  # relative to the folder
    loops: int
    bpm: float | None  # the loops' tempo (whole beats per frame); None: cut without stretching
    beats: int | None
    caption: Caption
    skipped: str | None = None


def prepare_user_audio(
    folder: str | Path,
    directory: str | Path,
    config: UserAudioConfig = UserAudioConfig(),
    params: SpectrogramParams | None = None,
    report: Callable[[PreparedFile], None] = lambda prepared: None,
) -> tuple[PreparedFile, ...]:
    """Write the data set of the music under ``folder`` into ``directory`` (new or empty);
    ``report`` hears of each file as it is done. Raises UserError for a folder without audio,
    an unreadable file (named), a caption file that names no audio file, or music too short to
    make two loops in all; ``directory`` is then removed again.

    Each loop's image is written as soon as it is made (a long folder would not fit in memory),
    into train/; the held-out ones move to test/ at the end, once the split is known.
    """
    params = SpectrogramParams() if params is None else params
    check_bpm(config.bpm)
    folder, directory = Path(folder), Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UserError(f"{directory} exists and is not an empty folder: choose a new one")
    files = find_audio_files(folder)
    captions = caption_table(folder, files)
    (directory / "train").mkdir(parents=True, exist_ok=True)
    (directory / "test").mkdir()
    try:
        prepared, clips = [], []
        for path in files:
            first = sum(len(records) for records in clips)
            done, records = _prepare_file(
                folder, path, captions[path], config, params, directory / "train", first
            )
            report(done)
            prepared.append(done)
            clips.append(records)
        _split(folder, directory, prepared, clips, config)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)  # it was empty: nothing of the user's is lost
        raise
    return tuple(prepared)


def find_audio_files(folder: Path) -> list[Path]:
    """The WAV, FLAC and OGG files under ``folder`` (relative, sorted; hidden ones skipped)."""
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder: give the folder that holds your music")
    files = sorted(
        path.relative_to(folder)
        for path in folder.rglob("*")
        if path.suffix.lower() in AUDIO_SUFFIXES
        and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    if not files:
        raise UserError(
            f"no audio in {folder}: it and its subfolders hold no {', '.join(AUDIO_SUFFIXES)} "
            "files (convert MP3s with e.g. `ffmpeg -i song.mp3 song.flac`)"
        )
    return files


def caption_table(folder: Path, files: Sequence[Path]) -> dict[Path, Caption]:
    """The caption of every file (see the module docstring for the order of sources)."""
    listed: dict[Path, Caption] = {}
    # Shallow caption files first, so that one nearer to a file wins over one above it.
    for sidecar in sorted(folder.rglob("captions.*"), key=lambda p: (len(p.parts), p)):
        if sidecar.name in CAPTION_FILES:
            listed.update(_read_caption_file(folder, sidecar, set(files)))
    table = {}
    for path in files:
        own = _own_caption(folder / path)
        table[path] = own or listed.get(path) or Caption(folder_caption(folder, path), "folders")
    return table


def folder_caption(folder: Path, path: Path) -> str:
    """``my-band/ambient/x.wav`` -> "my band, ambient"; the folder's own name at its top."""
    parts = path.parent.parts or (folder.resolve().name,)
    return ", ".join(_words(part) for part in parts)


def held_out_counts(loops_per_file: Sequence[int], fraction: float) -> list[int]:
    """How many of each file's last loops are held out: a rounded-up ``fraction`` of each file
    of two or more loops, then whole one-loop files (first ones first) until at least
    ``fraction`` of all loops are held out, always leaving one loop to train on."""
    counts = [math.ceil(fraction * n) if n >= 2 else 0 for n in loops_per_file]
    total = sum(loops_per_file)
    target = min(math.ceil(fraction * total), total - 1)
    for index, n in enumerate(loops_per_file):
        if sum(counts) >= target:
            break
        if n == 1:
            counts[index] = 1
    return counts


def loops_of(
    mono: np.ndarray, params: SpectrogramParams, bpm: float | None
) -> Iterator[FittedLoop]:
    """Consecutive loops of mono audio at the parameters' rate, silent ones left out. The first
    starts after a lead-in, so that it too can start on an onset and fade into what preceded it."""
    needed = source_samples_needed(params, bpm)
    for start in range(lead_in_samples(params, bpm), mono.size - needed + 1, needed):
        loop = fit_to_frame(mono, params, bpm, start=start)
        rms = float(np.sqrt(np.mean(loop.samples.astype(np.float64) ** 2)))
        if 20.0 * math.log10(max(rms, 1e-12)) >= SILENT_LOOP_DBFS:
            yield loop


# --- the shell ----------------------------------------------------------------------------------


def _prepare_file(
    folder: Path,
    path: Path,
    caption: Caption,
    config: UserAudioConfig,
    params: SpectrogramParams,
    out: Path,
    first_number: int,
) -> tuple[PreparedFile, list[ClipRecord]]:
    """Cut one file into loops, each written into ``out`` as it is made, numbered on from
    ``first_number``."""
    audio, rate = read_audio(folder / path)  # a UserError naming the file if it is not audio
    mono = mono_at_rate(audio, rate, params)
    bpm = config.bpm
    if bpm is None:
        tempo = estimate_tempo(mono, params.sample_rate)
        bpm = tempo.bpm if tempo is not None else None
    whole_bpm, beats = whole_beat_tempo(bpm, params) if bpm is not None else (None, None)
    needed = source_samples_needed(params, bpm)
    if mono.size < needed:
        seconds = frame_samples(params) / params.sample_rate
        why = (
            f"{mono.size / params.sample_rate:.2f} s long, shorter than the "
            f"{needed / params.sample_rate:.2f} s one {seconds:g} s loop needs"
        )
        return PreparedFile(path, 0, whole_bpm, beats, caption, skipped=why), []
    records = []
    for index, loop in enumerate(loops_of(mono, params, bpm)):
        name = f"{first_number + index:06d}.png"
        save_image(loop_image(loop, params), out / name)
        labels = {
            "source": path.as_posix(),
            "loop": index,
            "start_seconds": round(loop.start_seconds, 3),
            "bpm": loop.bpm,
            "beats": loop.beats,
            "caption_source": caption.source,
        }
        records.append(ClipRecord(name, caption.text, labels))
    skipped = None if records else "silent"
    return PreparedFile(path, len(records), whole_bpm, beats, caption, skipped), records


def _split(
    folder: Path,
    directory: Path,
    prepared: Sequence[PreparedFile],
    clips: Sequence[list[ClipRecord]],
    config: UserAudioConfig,
) -> None:
    """Move the held-out loops to test/ and write both splits' metadata and the info file."""
    counts = [len(records) for records in clips]
    if sum(counts) < 2:
        too_short = "; ".join(f"{p.path}: {p.skipped}" for p in prepared if p.skipped)
        raise UserError(
            f"the music in {folder} makes {sum(counts)} loop(s), and a data set needs at least "
            f"two (one to train on, one held out): give more or longer files ({too_short})"
        )
    held_out = held_out_counts(counts, config.held_out_fraction)
    train, test = [], []
    for records, held in zip(clips, held_out, strict=True):
        kept = len(records) - held
        train += records[:kept]
        test += records[kept:]
    for record in test:
        (directory / "train" / record.file_name).rename(directory / "test" / record.file_name)
    write_metadata(directory / "train", train)
    write_metadata(directory / "test", test)
    write_info(
        directory,
        {
            "made_by": "streamer prepare-audio",
            "source_folder": str(folder.resolve()),
            "files": len(prepared),
            "clips": sum(counts),
            "held_out_clips": len(test),
            "held_out_fraction": config.held_out_fraction,
        },
    )


def _own_caption(audio: Path) -> Caption | None:
    for sidecar in (audio.with_suffix(".txt"), audio.with_name(audio.name + ".txt")):
        if sidecar.is_file():
            text = _clean(sidecar.read_text(encoding="utf-8", errors="replace"))
            if not text:
                raise UserError(f"{sidecar} is empty: write the caption of {audio.name} in it")
            return Caption(text, "file")
    return None


def _read_caption_file(folder: Path, sidecar: Path, files: set[Path]) -> dict[Path, Caption]:
    """Captions of a captions.txt/.csv, keyed by file path relative to ``folder``."""
    text = sidecar.read_text(encoding="utf-8", errors="replace")
    if sidecar.suffix == ".csv":
        rows = [(number, row) for number, row in enumerate(csv.reader(text.splitlines()), 1)]
        entries = [
            (number, row[0], ",".join(row[1:]))
            for number, row in rows
            if row
            and row[0].strip()
            and not (number == 1 and row[0].strip() in ("file", "file_name"))
        ]
        form = "FILE,caption"
    else:
        entries = [
            (number, *line.partition(":")[::2])
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
        form = "FILE: caption"
    here = sidecar.parent.relative_to(folder)
    table = {}
    for number, name, caption in entries:
        path = here / name.strip()
        if path not in files:
            raise UserError(
                f"{sidecar}, line {number}: no audio file {name.strip()!r} in {sidecar.parent} "
                f"(each line is {form}, FILE relative to the captions file's folder)"
            )
        if not _clean(caption):
            raise UserError(f"{sidecar}, line {number}: the caption of {name.strip()} is empty")
        table[path] = Caption(_clean(caption), "captions")
    return table


def _clean(text: str) -> str:
    return " ".join(text.split())


def _words(name: str) -> str:
    return _clean(re.sub(r"[-_]+", " ", name))
