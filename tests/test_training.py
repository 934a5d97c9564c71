"""Training the built-in model, on the tiny architecture: the loss falls, a checkpoint resumes
exactly, and what it exports plays through the existing loader and generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from material import groove_dataset, logged_losses
from PIL import Image

from streamer.errors import UserError
from streamer.generate.config import GeneratorConfig
from streamer.generate.generator import FrameGenerator
from streamer.generate.loading import load_model
from streamer.generate.presets import GeneratorPreset
from streamer.generate.request import FrameRequest, PromptBlend
from streamer.training.config import TrainConfig
from streamer.training.train import random_crops, train

CAPTIONS = ("house beat, piano chords, minor", "techno beat, synth bass, major, busy")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four one-frame grooves in two keys and two tempi, captioned, as a data set folder."""
    return groove_dataset(tmp_path_factory.mktemp("dataset"), CAPTIONS)


def tiny_config(**changes) -> TrainConfig:
    settings = {
        "architecture": "tiny",
        "vae_steps": 6,
        "unet_steps": 6,
        "vae_batch_size": 2,
        "unet_batch_size": 4,
        "vae_crop_pixels": 64,
        "warmup_steps": 1,
        "checkpoint_every_steps": 4,
        "log_every_steps": 1,
        "precision": "fp32",
        "threads": 1,
    }
    return TrainConfig(**{**settings, **changes})


def test_training_reduces_both_losses_and_exports_a_model_the_generator_plays(dataset, tmp_path):
    run = tmp_path / "run"
    config = tiny_config(
        vae_steps=20,
        unet_steps=20,
        vae_learning_rate=3e-3,
        unet_learning_rate=2e-3,
        checkpoint_every_steps=100,
    )
    model_dir = train(dataset, run, config, report=lambda line: None)

    for stage in ("vae", "unet"):
        curve = logged_losses(run, stage)
        assert len(curve) == 20
        assert np.mean(curve[-5:]) < 0.8 * np.mean(curve[:5]), (stage, curve)
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == [
        "unet.pt",
        "vae.pt",
    ]

    model = load_model(GeneratorConfig(model=str(model_dir), device="cpu", dtype="fp32"))
    assert model.vae.config.scaling_factor != pytest.approx(0.18215)  # fitted to the latents
    seed = open_image(dataset / "train" / "000000.png")
    generator = FrameGenerator(model, GeneratorPreset("t", "dpm++", 4, 0.75, 3.0), {"s": seed})
    (frame,) = generator.generate([FrameRequest(PromptBlend.single(CAPTIONS[0]), "s", seed_a=1)])
    assert frame.mel.shape == (1, 512, 512) and np.isfinite(frame.mel).all()


def test_resume_continues_exactly_where_the_run_stopped(dataset, tmp_path):
    """Stopped in the VAE stage, then in the UNet stage: the weights, their average and the
    losses are those of a run that never stopped."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    train(
        dataset,
        straight,
        tiny_config(vae_steps=6, unet_steps=6),
        report=lambda line: None,
    )
    for vae_steps, unet_steps in ((4, 0), (6, 3), (6, 6)):
        train(
            dataset,
            resumed,
            tiny_config(vae_steps=vae_steps, unet_steps=unet_steps),
            resume=(resumed / "checkpoint").is_dir(),
            report=lambda line: None,
        )

    assert logged_losses(resumed, "vae") == logged_losses(straight, "vae")
    assert logged_losses(resumed, "unet") == logged_losses(straight, "unet")
    for name in ("vae.pt", "unet.pt"):
        a = torch.load(straight / "checkpoint" / name, weights_only=False)
        b = torch.load(resumed / "checkpoint" / name, weights_only=False)
        assert a["step"] == b["step"] == 6
        for weights in ("live", "export"):
            for part in a[weights]:
                for key, tensor in a[weights][part].items():
                    assert torch.equal(tensor, b[weights][part][key]), (name, weights, key)


def test_crops_hold_the_image_edges_as_often_as_its_middle():
    """The last rows of a spectrogram image are its lowest mel bins: a decoder that rarely saw
    them in training decodes them wrong."""
    image = np.arange(64 * 64).reshape(64, 64)
    seen = np.zeros((64, 64))
    for crop in random_crops([image] * 4000, 16, np.random.default_rng(0)):
        top, left = divmod(int(crop[0, 0]), 64)
        seen[top : top + 16, left : left + 16] += 1
    middle = seen[24:40, 24:40].mean()
    for corner in (seen[0, 0], seen[0, -1], seen[-1, 0], seen[-1, -1]):
        assert 0.8 * middle < corner < 1.25 * middle
    assert 0.8 * middle < seen[-1].mean() < 1.25 * middle


def test_a_run_folder_is_not_overwritten_without_resume(dataset, tmp_path):
    train(
        dataset,
        tmp_path,
        tiny_config(stages=("vae",), vae_steps=1),
        report=lambda line: None,
    )
    with pytest.raises(UserError, match="--resume"):
        train(
            dataset,
            tmp_path,
            tiny_config(stages=("vae",), vae_steps=2),
            report=lambda line: None,
        )


def open_image(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
    return image

