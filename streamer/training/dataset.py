"""The on-disk format of a training data set: Riffusion-format spectrogram images with captions.

One folder per split, in the layout Hugging Face's ``imagefolder`` reads, so the data set also
works with the usual tools::

    DIR/dataset.json           what made it: {"format": 1, "seed", "clips", "held_out_fraction", ...}
    DIR/train/metadata.jsonl   one JSON object per clip, "file_name" relative to the split folder
    DIR/train/000000.png       a 512x512 Riffusion image (EXIF carries the spectrogram params)
    DIR/test/...               the held-out split: no training step ever reads it

Each clip's record holds its ``caption`` (plain words: style, instruments, mode, feel) and the
labels the caption was written from (``style``, ``lead_family``, ...), so a classifier can be
trained on the labels and generated frames scored against them without parsing captions.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from streamer.errors import UserError

FORMAT_VERSION = 1
SPLITS = ("train", "test")
METADATA_FILE = "metadata.jsonl"
INFO_FILE = "dataset.json"


@dataclasses.dataclass(frozen=True)
class ClipRecord:
    """One clip of a data set: its image file and what it holds.

    ``labels`` are free-form facts the caption was made from (for the built-in data set:
    style, lead, lead_family, instruments, mode, feel, drums, bpm, key); user audio has only
    what its caption source gave.
    """

    file_name: str
    caption: str
    labels: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"file_name": self.file_name, "caption": self.caption, **self.labels})

    @classmethod
    def from_json(cls, line: str) -> ClipRecord:
        fields = json.loads(line)
        return cls(
            file_name=fields.pop("file_name"), caption=fields.pop("caption"), labels=fields
        )


@dataclasses.dataclass(frozen=True)
class DatasetSplit:
    """The clips of one split and the folder their images are in."""

    folder: Path
    records: tuple[ClipRecord, ...]

    def image_path(self, record: ClipRecord) -> Path:
        return self.folder / record.file_name

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ClipRecord]:
        return iter(self.records)


def write_metadata(folder: Path, records: list[ClipRecord]) -> None:
    """Write a split's metadata.jsonl (records sorted by file name, so reruns are identical)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [record.to_json() for record in sorted(records, key=lambda r: r.file_name)]
    (folder / METADATA_FILE).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_info(directory: Path, info: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": FORMAT_VERSION, **info}, indent=2, sort_keys=True)
    (directory / INFO_FILE).write_text(text + "\n", encoding="utf-8")


def read_info(directory: Path) -> dict[str, Any]:
    path = Path(directory) / INFO_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"{directory} is not a data set: it has no {INFO_FILE} "
            "(make one with `streamer make-dataset DIR`)"
        ) from None


def read_split(directory: str | Path, split: str) -> DatasetSplit:
    """The records of one split, with a clear error when the folder is not a data set."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    folder = Path(directory) / split
    path = folder / METADATA_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(
            f"{directory} has no {split} split ({path} is missing); "
            "make a data set with `streamer make-dataset DIR`"
        ) from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(ClipRecord.from_json(line))
        except (json.JSONDecodeError, KeyError) as error:
            raise UserError(f"{path}, line {number}: not a clip record ({error})") from None
    return DatasetSplit(folder=folder, records=tuple(records))
