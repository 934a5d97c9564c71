"""The light decoder: which decoder a frame uses, its distillation on the tiny model (the loss
falls, a run resumes exactly), and a model folder with one plays through the loader, the
generator and OpenVINO.

The teacher is the tiny random-weight model; the data set is four grooves cut to 64 pixels
wide, trained on 32-pixel crops (a 4x4 latent), so a step takes a few milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from material import groove_dataset, logged_losses

from streamer.errors import UserError
from streamer.generate.autoencoder import (
    LIGHT_DECODER_FOLDER,
    VaeDecoder,
    VaeEncoder,
    choose_decoder,
)
from streamer.generate.config import GeneratorConfig
from streamer.generate.cpu_runtime import cpu_parts
from streamer.generate.generator import FrameGenerator
from streamer.generate.loading import load_model
from streamer.generate.presets import GeneratorPreset
from streamer.generate.request import FrameRequest, PromptBlend
from streamer.training.config import TrainConfig
from streamer.training.train import train

CAPTIONS = ("house beat, piano chords, minor", "techno beat, synth bass, major, busy")


# --- the rule -----------------------------------------------------------------------------------


def test_auto_takes_the_light_decoder_on_a_cpu_where_the_model_has_one():
    assert choose_decoder("auto", "cpu", has_light=True).light
    assert not choose_decoder("auto", "cpu", has_light=False).light
    on_gpu = choose_decoder("auto", "cuda", has_light=True)
    assert not on_gpu.light and "fast enough" in on_gpu.reason


def test_full_and_light_are_taken_as_asked_and_a_missing_light_decoder_is_an_error():
    assert not choose_decoder("full", "cpu", has_light=True).light
    assert choose_decoder("light", "cuda", has_light=True).light
    with pytest.raises(ValueError, match="--stage decoder"):
        choose_decoder("light", "cpu", has_light=False)
    with pytest.raises(ValueError, match="auto, full, light"):
        GeneratorConfig(decoder="tiny")


def test_the_announcement_says_which_decoder_and_how_to_change_it():
    assert "--decoder full" in choose_decoder("auto", "cpu", True).announcement()
    assert "VAE's decoder" in choose_decoder("full", "cpu", True).announcement()


# --- distillation ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return groove_dataset(tmp_path_factory.mktemp("narrow-dataset"), CAPTIONS, columns=64)


def decoder_config(teacher: Path | None, **changes) -> TrainConfig:
    settings = {
        "stages": ("decoder",),
        "architecture": "tiny",
        "init": teacher and str(teacher),
        "decoder_steps": 30,
        "decoder_batch_size": 4,
        "decoder_learning_rate": 3e-3,
        "decoder_crop_pixels": 32,
        "warmup_steps": 1,
        "checkpoint_every_steps": 100,
        "log_every_steps": 1,
        "precision": "fp32",
        "threads": 1,
    }
    return TrainConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def distilled(dataset, tiny_model_dir, tmp_path_factory) -> Path:
    """The run folder of 30 decoder-distillation steps of the tiny model."""
    run = tmp_path_factory.mktemp("light-decoder")
    train(dataset, run, decoder_config(tiny_model_dir), report=lambda line: None)
    return run


def test_distillation_reduces_its_loss_and_exports_the_model_with_its_light_decoder(distilled):
    curve = logged_losses(distilled, "decoder")
    assert len(curve) == 30
    assert np.mean(curve[-5:]) < 0.8 * np.mean(curve[:5]), curve
    folder = distilled / "model"
    for part in ("model_index.json", "unet", "vae", "text_encoder", LIGHT_DECODER_FOLDER):
        assert (folder / part).exists(), part
    assert LIGHT_DECODER_FOLDER not in (folder / "model_index.json").read_text()
    model = load_model(GeneratorConfig(model=str(folder), device="cpu", dtype="fp32"))
    assert model.light_decoder.config.block_out_channels == [4, 8, 16, 32]  # the VAE's halved


def test_decoder_distillation_resumes_exactly_where_it_stopped(dataset, tiny_model_dir, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    quiet = {"report": lambda line: None}
    train(dataset, straight, decoder_config(tiny_model_dir, decoder_steps=3), **quiet)
    train(dataset, resumed, decoder_config(tiny_model_dir, decoder_steps=2), **quiet)
    train(dataset, resumed, decoder_config(tiny_model_dir, decoder_steps=3), resume=True, **quiet)

    assert logged_losses(resumed, "decoder") == logged_losses(straight, "decoder")
    a, b = (
        torch.load(run / "checkpoint" / "decoder.pt", weights_only=False)
        for run in (straight, resumed)
    )
    for weights in ("live", "export"):
        for key, tensor in a[weights]["light_decoder"].items():
            assert torch.equal(tensor, b[weights]["light_decoder"][key]), (weights, key)


def test_distilling_a_decoder_without_a_teacher_is_a_clear_error(dataset, tmp_path):
    with pytest.raises(UserError, match="--init builtin"):
        train(dataset, tmp_path, decoder_config(None), report=lambda line: None)


# --- playing it -----------------------------------------------------------------------------------


def frame(model, decoder: str):
    seed = model_seed()
    preset = GeneratorPreset("t", "dpm++", 4, 0.75, 3.0)
    generator = FrameGenerator(model, preset, {"s": seed}, decoder=decoder)
    request = FrameRequest(PromptBlend.single(CAPTIONS[0]), "s", seed_a=1)
    return generator, generator.generate([request])[0]


def model_seed():
    from streamer.seeds import load_seed_loop

    return load_seed_loop("boom_bap_94").image().convert("RGB")


def test_the_generator_decodes_with_the_light_decoder_on_a_cpu_unless_told_otherwise(distilled):
    model = load_model(GeneratorConfig(model=str(distilled / "model"), device="cpu", dtype="fp32"))
    light, light_frame = frame(model, "auto")
    full, full_frame = frame(model, "full")
    assert light.decoder_choice.light and not full.decoder_choice.light
    for made in (light_frame, full_frame):
        assert made.mel.shape == (1, 512, 512) and np.isfinite(made.mel).all()
    assert not np.array_equal(light_frame.mel, full_frame.mel)  # another decoder decoded it


def test_openvino_decodes_as_the_light_decoder_and_encodes_as_the_vae_do_in_torch(distilled, tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMER_CACHE", str(tmp_path))
    model = load_model(GeneratorConfig(model=str(distilled / "model"), device="cpu", dtype="fp32"))
    light = model.light_decoder
    encoder = VaeEncoder(model.vae)
    openvino = cpu_parts(model.unet, light, encoder, model.dtype, model.device, "openvino", False)
    latent = torch.randn(1, 4, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = openvino.decode(latent), light(latent)
        full = VaeDecoder(model.vae)(latent)
    assert ours.shape == theirs.shape == full.shape == (1, 3, 512, 512)
    assert (ours - theirs).abs().max() < 1e-3
    pixels = full.clamp(-1, 1)
    with torch.no_grad():
        assert (openvino.encode(pixels) - encoder(pixels)).abs().max() < 1e-3
