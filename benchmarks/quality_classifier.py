"""A small spectrogram classifier of style and lead instrument family: the quality benchmark's judge.

``benchmarks/model_quality.py`` scores generated frames with it, so it must know nothing the
model under test could have learnt from the held-out split: it is trained on the training split
only, from the labels ``streamer make-dataset`` wrote beside each caption. It must also train in
about a minute on 2 CPU cores, so it reads each 512x512 image shrunk by 4 on both axes (a
128x128 grey picture: 4 mel bins and 40 ms per pixel, enough for onsets and registers) and is
a plain convolution stack of ~0.1M parameters.

Its shape follows what a spectrogram is: convolutions, then a mean over time only (a loop may
start on any column of its beat grid, and training shifts clips around the loop at random),
keeping the frequency axis, where the instruments' registers are. The penultimate layer
(``embed``, 64 numbers) is the fixed embedding the Fréchet distance is measured on.

Trained once per data set and configuration and cached (``~/.cache/streamer/model-quality``, or
``$XDG_CACHE_HOME``), keyed by a hash of the data set's description, the training split's
metadata, this module's code and the configuration, so reruns skip training. Deterministic for a
seed on one thread count (two cold runs here ended at the same loss, 0.6049).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from streamer.training.dataset import INFO_FILE, METADATA_FILE, DatasetSplit, read_split

#: Each side of a 512x512 spectrogram image is shrunk by this factor (box filter) for the judge.
SHRINK = 4


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    """How the judge is trained (its key in the cache: change any value and it trains again)."""

    epochs: int = 6
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    embedding_size: int = 64
    seed: int = 0
    #: Train on this many clips of the training split (evenly spaced), or all of them (None).
    clips: int | None = None


@dataclasses.dataclass(frozen=True)
class Labels:
    """The classes the judge knows, in a fixed (sorted) order."""

    styles: tuple[str, ...]
    families: tuple[str, ...]


class SpectrogramClassifier(nn.Module):
    """Convolutions -> mean over time -> ``embed`` (the Fréchet embedding) -> two heads."""

    def __init__(self, labels: Labels, embedding_size: int = 64) -> None:
        super().__init__()
        self.labels = labels

        def block(into: int, out: int, kernel: int = 3) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(into, out, kernel, stride=2, padding=kernel // 2, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            )

        # 128x128 -> 8 frequency rows after four halvings.
        self.features = nn.Sequential(block(1, 16, 5), block(16, 32), block(32, 48), block(48, 64))
        self.embed = nn.Sequential(nn.Linear(64 * 8, embedding_size), nn.ReLU(inplace=True))
        self.style_head = nn.Linear(embedding_size, len(labels.styles))
        self.family_head = nn.Linear(embedding_size, len(labels.families))

    def embedding(self, pictures: torch.Tensor) -> torch.Tensor:
        """(N, 1, 128, 128) pictures in [0, 1] -> (N, embedding_size)."""
        features = self.features(pictures).mean(dim=3)  # (N, 64, 8): time averaged away
        return self.embed(features.flatten(1))

    def forward(self, pictures: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.embedding(pictures)
        return self.style_head(embedding), self.family_head(embedding)


@dataclasses.dataclass
class Scores:
    """What the judge says about a set of pictures."""

    style_probabilities: np.ndarray  # (N, styles)
    family_probabilities: np.ndarray  # (N, families)
    embeddings: np.ndarray  # (N, embedding_size), float64


class Judge:
    """A trained classifier and the label order it predicts in."""

    def __init__(self, model: SpectrogramClassifier) -> None:
        self.model = model.eval()
        self.labels = model.labels

    def score(self, pictures: np.ndarray, batch_size: int = 256) -> Scores:
        """Scores of uint8 pictures shaped (N, 128, 128) (``picture`` of each image)."""
        styles, families, embeddings = [], [], []
        with torch.inference_mode():
            for start in range(0, len(pictures), batch_size):
                batch = _tensor(pictures[start : start + batch_size])
                embedding = self.model.embedding(batch)
                styles.append(self.model.style_head(embedding).softmax(1))
                families.append(self.model.family_head(embedding).softmax(1))
                embeddings.append(embedding)
        return Scores(
            torch.cat(styles).numpy(),
            torch.cat(families).numpy(),
            torch.cat(embeddings).double().numpy(),
        )


def picture(image: Image.Image) -> np.ndarray:
    """A spectrogram image as the judge reads it: grey, shrunk by ``SHRINK``, uint8 (loud=dark)."""
    return np.asarray(image.convert("L").reduce(SHRINK), dtype=np.uint8)


def split_pictures(split: DatasetSplit) -> np.ndarray:
    """Every image of a split as a picture, (N, 128, 128) uint8, in the split's order."""
    pictures = []
    for record in split:
        with Image.open(split.image_path(record)) as image:
            pictures.append(picture(image))
    return np.stack(pictures)


def cache_folder() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "streamer" / "model-quality"


def dataset_key(data: Path, config: ClassifierConfig) -> str:
    """A hash of what the judge is made from: the data set's description, the training split's
    metadata, this module's code and the training configuration."""
    digest = hashlib.sha256()
    for path in (data / INFO_FILE, data / "train" / METADATA_FILE, Path(__file__)):
        digest.update(path.read_bytes())
    digest.update(json.dumps(dataclasses.asdict(config)).encode())
    return digest.hexdigest()[:16]


def load_or_train(data: Path, config: ClassifierConfig, log=print) -> tuple[Judge, dict]:
    """The judge for the data set at ``data``, from the cache or trained now (then cached).

    Returns it and a summary: whether it was cached, training seconds, final training loss."""
    key = dataset_key(data, config)
    path = cache_folder() / f"classifier-{key}.pt"
    if path.is_file():
        stored = torch.load(path, map_location="cpu", weights_only=False)
        model = SpectrogramClassifier(Labels(**stored["labels"]), config.embedding_size)
        model.load_state_dict(stored["state"])
        return Judge(model), {**stored["summary"], "cached": True}
    started = time.perf_counter()
    split = read_split(data, "train")
    if config.clips is not None and config.clips < len(split):
        step = len(split) / config.clips
        chosen = tuple(split.records[int(k * step)] for k in range(config.clips))
        split = dataclasses.replace(split, records=chosen)
    pictures = split_pictures(split)
    log(f"# judge: {len(split)} training pictures read in {time.perf_counter() - started:.0f} s")
    model, loss = train(pictures, [r.labels for r in split], config, log)
    summary = {"seconds": round(time.perf_counter() - started, 1), "final_loss": round(loss, 4),
               "clips": len(split)}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    labels = dataclasses.asdict(model.labels)
    torch.save({"labels": labels, "state": model.state_dict(), "summary": summary}, partial)
    partial.replace(path)
    return Judge(model), {**summary, "cached": False}


def train(
    pictures: np.ndarray, labels: list[dict], config: ClassifierConfig, log=print
) -> tuple[SpectrogramClassifier, float]:
    """Train on (N, 128, 128) uint8 pictures and their labels (``style``, ``lead_family``).

    Each batch rolls every clip by a random number of columns (a loop rolled is the same loop)
    so the judge does not learn where in its image a clip starts. One-cycle learning rate."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    classes = Labels(
        styles=tuple(sorted({label["style"] for label in labels})),
        families=tuple(sorted({label["lead_family"] for label in labels})),
    )
    styles = torch.tensor([classes.styles.index(label["style"]) for label in labels])
    families = torch.tensor([classes.families.index(label["lead_family"]) for label in labels])
    model = SpectrogramClassifier(classes, config.embedding_size)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    batches = -(-len(pictures) // config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, config.learning_rate, total_steps=config.epochs * batches
    )
    losses: list[float] = []
    model.train()
    for epoch in range(config.epochs):
        started = time.perf_counter()
        order = rng.permutation(len(pictures))
        for start in range(0, len(order), config.batch_size):
            chosen = order[start : start + config.batch_size]
            shifts = rng.integers(pictures.shape[2], size=len(chosen))
            batch = np.stack([np.roll(pictures[i], s, axis=1) for i, s in zip(chosen, shifts)])
            style_logits, family_logits = model(_tensor(batch))
            loss = nn.functional.cross_entropy(style_logits, styles[chosen])
            loss = loss + nn.functional.cross_entropy(family_logits, families[chosen])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        recent = float(np.mean(losses[-batches:]))
        log(f"# judge: epoch {epoch + 1}/{config.epochs} loss {recent:.3f} "
            f"({time.perf_counter() - started:.0f} s)")
    return model.eval(), float(np.mean(losses[-batches:]))


def _tensor(pictures: np.ndarray) -> torch.Tensor:
    """uint8 pictures (loud is dark) -> float (N, 1, H, W) in [0, 1], loud is high."""
    return torch.from_numpy(255 - pictures[:, None]).float() / 255.0
