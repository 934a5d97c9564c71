"""What runs the UNet and VAE decoder on a CPU (streamer.generate.cpu_runtime): the rule, and the
tiny model through OpenVINO: frames as torch's within a pixel level or two, the guidance-distilled
student's ``timestep_cond`` honoured, a second start reads the conversion from the cache, a failed
conversion falls back to torch and says so, and a non-finite frame is still refused.

The tiny model, made guidance-distilled so both kinds of rows go through ``timestep_cond``, is
converted once for the module (about 15 s); the rule's tests need nothing. The plain UNet's
conversion is run by tests/test_benchmarks.py (builtin_model_speed's openvino lever)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from streamer.generate.autoencoder import VaeDecoder, VaeEncoder
from streamer.generate.config import GeneratorConfig
from streamer.generate.cpu_runtime import (
    choose_cpu_runtime,
    cpu_parts,
    default_cache_folder,
    keep_faster,
)
from streamer.generate.generator import FrameGenerator, UnplayableFrame
from streamer.generate.guidance import DISTILLED_NEGATIVE_PROMPT, student_from_teacher
from streamer.generate.loading import load_model
from streamer.generate.request import FrameRequest, PromptBlend

STEPS = 4
#: How far OpenVINO's frames may be from torch's in fp32, in 8-bit pixel levels: kernels sum in
#: another order (measured on the tiny model: at most 1, and on the built-in model: see
#: benchmarks/RESULTS.md).
MAX_LEVELS = 2


# --- the rule ------------------------------------------------------------------------------------


def test_auto_takes_openvino_on_a_cpu_where_it_is_installed():
    choice = choose_cpu_runtime("auto", "cpu", compiled=False, openvino_version="2026.4.1")
    assert choice.name == "openvino"
    assert "OpenVINO 2026.4.1" in choice.announcement()
    assert "--cpu-runtime torch" in choice.announcement()


@pytest.mark.parametrize(
    ("device", "compiled", "version", "why"),
    [
        ("cpu", False, None, "not installed (pip install openvino)"),
        ("cuda", False, "2026.4.1", "runs on cuda"),
        ("cpu", True, "2026.4.1", "--compile"),
    ],
)
def test_auto_keeps_torch_where_openvino_cannot_run_and_says_why(device, compiled, version, why):
    choice = choose_cpu_runtime("auto", device, compiled, version)
    assert choice.name == "torch" and why in choice.reason


def test_asking_for_openvino_where_it_cannot_run_is_an_error_not_a_silent_torch():
    with pytest.raises(ValueError, match="cannot run: OpenVINO is not installed"):
        choose_cpu_runtime("openvino", "cpu", compiled=False, openvino_version=None)
    with pytest.raises(ValueError, match="auto, torch, openvino"):
        GeneratorConfig(cpu_runtime="onnx")


def test_auto_keeps_openvino_only_where_a_unet_call_is_measured_no_slower_and_says_so():
    choice = choose_cpu_runtime("auto", "cpu", compiled=False, openvino_version="2026.4.1")
    kept = keep_faster(choice, {"openvino": 0.200, "torch": 0.250})
    assert kept.name == "openvino" and "0.200 s, torch 0.250 s" in kept.reason
    slower = keep_faster(choice, {"openvino": 0.300, "torch": 0.250})
    assert slower.name == "torch" and "measured slower here" in slower.reason


def test_auto_on_the_tiny_model_times_both_and_says_which_it_kept(model, cache, monkeypatch):
    monkeypatch.setenv("STREAMER_CACHE", str(cache))
    parts = parts_of(model, "auto")
    assert parts.choice.name in ("openvino", "torch")
    assert "one UNet call" in parts.choice.reason and "torch" in parts.choice.reason


def test_torch_asked_for_is_torch_even_where_openvino_is_installed():
    assert choose_cpu_runtime("torch", "cpu", False, "2026.4.1").name == "torch"


# --- the tiny model through OpenVINO ---------------------------------------------------------------

@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache for the module, so the tiny model is converted once."""
    return tmp_path_factory.mktemp("openvino-cache")


@pytest.fixture(scope="module")
def seed_images():
    from streamer.seeds import load_seed_loop

    return {"loop": load_seed_loop("boom_bap_94").image().convert("RGB")}


@pytest.fixture
def model(tiny_model_dir):
    """The tiny model in fp32 with a guidance-distilled UNet whose guidance projection is not
    zero (as a trained student's), the same weights in every test: one conversion serves all."""
    model = load_model(GeneratorConfig(model=str(tiny_model_dir), device="cpu", dtype="fp32"))
    model.unet = student_from_teacher(model.unet)
    with torch.no_grad():
        weight = model.unet.time_embedding.cond_proj.weight
        weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(0)))
    return model


def parts_of(model, runtime: str, cache_folder: Path | None = None):
    """The model's parts as ``runtime`` runs them (the VAE's own decoder and encoder)."""
    decoder, encoder = VaeDecoder(model.vae), VaeEncoder(model.vae)
    return cpu_parts(
        model.unet, decoder, encoder, model.dtype, model.device, runtime, False, cache_folder
    )


def generator(model, seed_images, runtime: str, cache: Path, monkeypatch) -> FrameGenerator:
    monkeypatch.setenv("STREAMER_CACHE", str(cache))
    preset = GeneratorConfig(preset="default", num_inference_steps=STEPS).resolved_preset()
    return FrameGenerator(model, preset, seed_images, cpu_runtime=runtime)


def requests(negative_prompt: str = "") -> list[FrameRequest]:
    """Two frames of one batch at different strengths, so rows join the UNet batch mid-way."""
    return [
        FrameRequest(PromptBlend.single(text), "loop", seed, denoising=denoising, guidance=7.0,
                     negative_prompt=negative_prompt)
        for text, seed, denoising in (("jazz", 1, 0.75), ("techno", 2, 0.5))
    ]  # fmt: skip


def levels(a, b) -> np.ndarray:
    return np.abs(np.asarray(a.image, dtype=np.int16) - np.asarray(b.image, dtype=np.int16))


@pytest.mark.parametrize("negative_prompt", ["", DISTILLED_NEGATIVE_PROMPT])
def test_openvino_frames_equal_torch_frames_within_a_pixel_level_or_two(
    model, seed_images, cache, monkeypatch, negative_prompt
):
    """Two rows per frame (another negative prompt) and one (the distilled one)."""
    openvino = generator(model, seed_images, "openvino", cache, monkeypatch)
    assert openvino.runtime.name == "openvino"
    batch = requests(negative_prompt)
    torch_frames = generator(model, seed_images, "torch", cache, monkeypatch).generate(batch)
    for ours, theirs in zip(openvino.generate(batch), torch_frames):
        assert levels(ours, theirs).max() <= MAX_LEVELS
        assert np.abs(ours.mel - theirs.mel).max() < 0.05 * np.abs(theirs.mel).max()
        assert np.asarray(ours.image).std() > 10  # a picture, not a constant


def test_a_guidance_distilled_student_is_told_its_guidance_through_openvino(
    model, seed_images, cache, monkeypatch
):
    """Its one row's guidance scale goes in as ``timestep_cond``: another scale, another frame."""
    one_row = requests(DISTILLED_NEGATIVE_PROMPT)
    openvino = generator(model, seed_images, "openvino", cache, monkeypatch).generate(one_row)
    weaker = [dataclasses.replace(request, guidance=1.5) for request in one_row]
    other = generator(model, seed_images, "openvino", cache, monkeypatch).generate(weaker)
    assert levels(other[0], openvino[0]).max() > MAX_LEVELS  # the guidance reached the UNet


def test_a_second_start_reads_the_conversion_from_the_cache(model, cache, caplog, monkeypatch):
    monkeypatch.setenv("STREAMER_CACHE", str(cache))
    folder = default_cache_folder()
    parts_of(model, "openvino")
    kept = {path: path.stat().st_mtime_ns for path in folder.iterdir()}
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="streamer.generate.cpu_runtime"):
        parts = parts_of(model, "openvino")
    assert parts.choice.name == "openvino"
    assert "converting" not in caplog.text
    assert {path: path.stat().st_mtime_ns for path in folder.iterdir()} == kept
    assert sorted(path.suffix for path in kept) == [".bin"] * 3 + [".xml"] * 3


def test_a_conversion_that_fails_falls_back_to_torch_and_says_so(model, tmp_path, caplog):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="streamer.generate.cpu_runtime"):
        parts = parts_of(model, "auto", blocked)
    assert parts.choice.name == "torch"
    assert "OpenVINO failed" in parts.choice.reason and "using torch" in caplog.text
    assert parts.unet is model.unet


def test_a_frame_openvino_makes_nan_is_refused_not_played(model, seed_images, cache, monkeypatch):
    broken = generator(model, seed_images, "openvino", cache, monkeypatch)
    assert broken.runtime.name == "openvino"
    with torch.no_grad():  # the text encoder runs in torch: NaN text makes the UNet's rows NaN
        model.text_encoder.final_layer_norm.bias.fill_(float("nan"))
    with pytest.raises(UnplayableFrame, match="UNet as NaN"):
        broken.generate(requests()[:1])
