"""What keeps the generator safe on a GPU, checked on the CPU with the tiny model: a NaN frame is
refused, never played; an overflowing decode is redone in fp32; frames are decoded one at a
time; a compiled UNet never recompiles mid-stream; cancellation waits for the device when CUDA
graphs queue work ahead."""

from __future__ import annotations

import dataclasses
import logging
import shutil

import numpy as np
import pytest
import torch

from streamer.generate.cancellation import FrameCancelled
from streamer.generate.config import GeneratorConfig
from streamer.generate.generator import FrameGenerator, UnplayableFrame, compiled_row_counts
from streamer.generate.loading import load_model
from streamer.generate.request import FrameRequest, PromptBlend

STEPS = 4


@pytest.fixture(scope="module")
def seed_images():
    from streamer.seeds import load_seed_loop

    full = load_seed_loop("boom_bap_94").image().convert("RGB")
    return {"narrow": full.crop((0, 0, 128, 512))}


@pytest.fixture
def model(tiny_model_dir):
    """A fresh fp32 copy of the tiny model, which a test may break."""
    return load_model(GeneratorConfig(model=str(tiny_model_dir), device="cpu", dtype="fp32"))


def generator_for(model, seed_images, **options) -> FrameGenerator:
    preset = GeneratorConfig(preset="default", num_inference_steps=STEPS).resolved_preset()
    return FrameGenerator(model, preset, seed_images, **options)


def request(seed: int = 1, denoising: float = 0.5, guidance: float = 7.0) -> FrameRequest:
    return FrameRequest(
        PromptBlend.single("jazz"), "narrow", seed, denoising=denoising, guidance=guidance
    )


def test_a_frame_the_unet_makes_nan_is_refused_not_decoded_to_a_black_image(model, seed_images):
    with torch.no_grad():
        model.unet.conv_out.bias.fill_(float("nan"))
    with pytest.raises(UnplayableFrame, match="frame 0 .*UNet as NaN.*--dtype fp32"):
        generator_for(model, seed_images).generate([request()])


def test_a_decode_that_overflows_in_fp16_is_redone_in_fp32(model, seed_images, caplog):
    half = dataclasses.replace(model, dtype=torch.float16)
    for part in (half.unet, half.vae, half.text_encoder):
        part.to(torch.float16)
    with torch.no_grad():  # values past fp16's 65504 inside the decoder, fine in fp32
        half.vae.decoder.conv_in.weight.mul_(3e4)
    with caplog.at_level(logging.WARNING, logger="streamer.generate.generator"):
        [frame] = generator_for(half, seed_images).generate([request()])
    assert "decoding it in fp32" in caplog.text
    assert np.asarray(frame.image).std() > 0  # a picture, not a black square
    assert half.vae.dtype == torch.float16  # the VAE is back in the model's type


def test_a_decode_that_fails_even_in_fp32_is_refused(model, seed_images):
    with torch.no_grad():
        model.vae.decoder.conv_out.bias.fill_(float("nan"))
    with pytest.raises(UnplayableFrame, match="decoded to NaN"):
        generator_for(model, seed_images).generate([request()])


def test_a_batch_is_decoded_one_frame_at_a_time(model, seed_images):
    decode, rows = model.vae.decode, []

    def recording(latent, *args, **kwargs):
        rows.append(latent.shape[0])
        return decode(latent, *args, **kwargs)

    model.vae.decode = recording
    generator_for(model, seed_images).generate([request(1), request(2), request(3)])
    assert rows == [1, 1, 1]


def test_cancellation_waits_for_the_queued_work_when_cuda_graphs_are_on(
    model, seed_images, monkeypatch
):
    """With CUDA graphs the loop runs ahead of the device; the stale check must come after a
    synchronisation, so that it is asked when the work is done, not when it is queued."""
    events = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("sync"))
    generator = generator_for(model, seed_images)
    generator._uses_cuda_graphs = True  # what compile="reduce-overhead" sets, without CUDA

    def is_stale() -> bool:
        events.append("check")
        return events.count("check") == 2

    with pytest.raises(FrameCancelled):
        generator.generate([request()], is_stale)
    assert events == ["sync", "check", "sync", "check"]


def test_compiled_row_counts_are_powers_of_two_up_to_the_batch():
    assert compiled_row_counts(1) == [1]
    assert compiled_row_counts(2) == [1, 2]
    assert compiled_row_counts(5) == [1, 2, 4, 8]
    assert compiled_row_counts(32) == [1, 2, 4, 8, 16, 32]


def test_a_compiled_unet_warmed_up_at_load_never_recompiles_for_mixed_batches(
    model, seed_images
):
    """Frames of different denoising and guidance in one batch change the UNet's row count from
    step to step (here 1 to 4 rows): padded to the warmed-up counts, nothing compiles again."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = generator_for(model, seed_images, compile="default", compile_backend=counter)
    assert compiled.warm_up(max_frames=2, seed_image="narrow") > 0
    assert counter.frame_count == 3  # 1, 2 and 4 rows
    eager = generator_for(model, seed_images)
    batches = [
        [request(1, denoising=0.25, guidance=1.0), request(2, denoising=1.0)],  # 1, 2, 3 rows
        [request(3, denoising=0.5), request(4, denoising=0.5, guidance=1.0)],  # 3 rows
        [request(5)],  # 2 rows
    ]
    for batch in batches:
        for ours, theirs in zip(compiled.generate(batch), eager.generate(batch)):
            difference = np.abs(
                np.asarray(ours.image, np.float64) - np.asarray(theirs.image, np.float64)
            )
            assert difference.max() <= 1  # padding rows change nothing but rounding
    assert counter.frame_count == 3
    torch._dynamo.reset()


def test_rendering_with_a_model_that_makes_nan_stops_with_a_message_not_noise(
    tiny_model_dir, tmp_path, capsys
):
    """The issue's reproduction: a UNet whose output bias is NaN once rendered loud noise (the
    black image's audio levelled up) and exited 0."""
    from safetensors.torch import load_file, save_file

    from streamer.cli import main

    broken = tmp_path / "nan-model"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    tensors["conv_out.bias"] = torch.full_like(tensors["conv_out.bias"], float("nan"))
    save_file(tensors, weights)
    status = main(
        ["render", "--model", str(broken), "--device", "cpu", "--seconds", "3",
         "--out", str(tmp_path / "out.wav"), "--no-endless"]
    )  # fmt: skip
    assert status == 2
    assert "NaN" in capsys.readouterr().err
