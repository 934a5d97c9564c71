"""Guidance distillation on the tiny model: the student starts as its teacher, training moves it
towards the teacher's guided prediction, and the generator then makes a guided frame in one UNet
row (two for a negative prompt it was not distilled against).

The teacher is the tiny random-weight model; the data set is four grooves cut to 64 pixels wide
(a 4x64x8 latent), so a training step takes a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from material import groove_dataset, logged_losses

from streamer.errors import UserError
from streamer.generate.config import GeneratorConfig
from streamer.generate.generator import FrameGenerator
from streamer.generate.guidance import (
    GUIDANCE_EMBEDDING_DIM,
    classifier_free_guidance,
    guidance_embedding,
    is_guidance_distilled,
    student_from_teacher,
)
from streamer.generate.loading import load_model
from streamer.generate.presets import GeneratorPreset
from streamer.generate.request import FrameRequest, PromptBlend
from streamer.training.config import TrainConfig
from streamer.training.train import train

CAPTIONS = ("house beat, piano chords, minor", "techno beat, synth bass, major, busy")
#: The scale the comparisons use: the ``builtin`` preset's guidance.
GUIDANCE = 4.0


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four one-frame grooves, captioned, each cut to its first 64 pixel columns."""
    return groove_dataset(tmp_path_factory.mktemp("narrow-dataset"), CAPTIONS, columns=64)


def distill_config(teacher: Path | None, **changes) -> TrainConfig:
    settings = {
        "stages": ("guidance",),
        "architecture": "tiny",
        "init": teacher and str(teacher),
        "guidance_steps": 40,
        "guidance_batch_size": 4,
        "guidance_learning_rate": 1e-4,
        # Narrower than the stream's 1..15, so a few dozen steps show the trend.
        "guidance_scale_range": (1.0, 7.0),
        "warmup_steps": 1,
        "checkpoint_every_steps": 100,
        "log_every_steps": 1,
        "precision": "fp32",
        "threads": 1,
    }
    return TrainConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def distilled(dataset, tiny_model_dir, tmp_path_factory) -> Path:
    """The run folder of 40 distillation steps of the tiny model."""
    run = tmp_path_factory.mktemp("distilled")
    train(dataset, run, distill_config(tiny_model_dir), report=lambda line: None)
    return run


def fp32_model(folder: Path):
    return load_model(GeneratorConfig(model=str(folder), device="cpu", dtype="fp32"))


def probe(model, rows: int = 8):
    """Fixed noisy latents, timesteps and the captions' and empty caption's embeddings."""
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(rows, 4, 64, 8, generator=generator)
    timesteps = torch.randint(0, 1000, (rows,), generator=generator)
    texts = [CAPTIONS[row % 2] for row in range(rows)] + [""]
    tokens = model.tokenizer(
        texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        hidden = model.text_encoder(tokens)[0]
    return latents, timesteps, hidden[:rows], hidden[rows:].expand(rows, -1, -1)


def student_error(student, teacher, scale: float) -> float:
    """Mean squared distance of the student's one row at ``scale`` from the teacher's guided
    prediction of two rows."""
    latents, timesteps, conditional, unconditional = probe(teacher)
    embedding = guidance_embedding(torch.full((len(latents),), scale), GUIDANCE_EMBEDDING_DIM)
    with torch.no_grad():
        target = classifier_free_guidance(
            teacher.unet(latents, timesteps, encoder_hidden_states=unconditional).sample,
            teacher.unet(latents, timesteps, encoder_hidden_states=conditional).sample,
            scale,
        )
        prediction = student(
            latents, timesteps, encoder_hidden_states=conditional, timestep_cond=embedding
        ).sample
    return float(((prediction - target) ** 2).mean())


# --- the student and its embedding -------------------------------------------------------------


def test_the_guidance_embedding_is_lcms_of_the_scale_minus_one():
    """The convention a published LCM checkpoint reads: diffusers' LCM pipeline embeds w - 1."""
    from diffusers import LatentConsistencyModelPipeline

    scales = torch.tensor([1.0, 4.0, 8.5, 15.0])
    lcm = LatentConsistencyModelPipeline.get_guidance_scale_embedding(None, scales - 1, 256)
    # Equal up to fp32 rounding of the sines' arguments, up to 14000 radians (0.001 there).
    assert torch.allclose(guidance_embedding(scales, 256), lcm, atol=2e-3)
    assert not torch.allclose(guidance_embedding(scales + 1, 256), lcm, atol=0.1)


def test_a_student_with_a_zero_projection_predicts_its_teachers_conditional_row(tiny_model_dir):
    teacher = fp32_model(tiny_model_dir)
    student = student_from_teacher(teacher.unet)
    assert is_guidance_distilled(student) and not is_guidance_distilled(teacher.unet)
    latents, timesteps, conditional, _ = probe(teacher, rows=2)
    with torch.no_grad():
        expected = teacher.unet(latents, timesteps, encoder_hidden_states=conditional).sample
        for scale in (1.0, GUIDANCE, 15.0):
            embedding = guidance_embedding(torch.full((2,), scale), GUIDANCE_EMBEDDING_DIM)
            predicted = student(
                latents, timesteps, encoder_hidden_states=conditional, timestep_cond=embedding
            ).sample
            assert torch.equal(predicted, expected), scale
    with pytest.raises(ValueError, match="already guidance-distilled"):
        student_from_teacher(student)


# --- the trainer -------------------------------------------------------------------------------


def test_distillation_reduces_its_loss_and_exports_a_student_the_loader_loads(distilled):
    curve = logged_losses(distilled, "guidance")
    assert len(curve) == 40
    assert np.mean(curve[-10:]) < 0.85 * np.mean(curve[:10]), curve
    assert sorted(p.name for p in (distilled / "checkpoint").iterdir()) == ["guidance.pt"]
    folder = distilled / "model"
    for part in ("model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (folder / part).exists(), part
    model = fp32_model(folder)
    assert model.unet.config.time_cond_proj_dim == GUIDANCE_EMBEDDING_DIM


def test_the_trained_student_is_closer_to_the_guided_prediction_than_the_untrained(
    distilled, tiny_model_dir
):
    teacher = fp32_model(tiny_model_dir)
    trained = fp32_model(distilled / "model").unet
    untrained = student_from_teacher(teacher.unet)  # the teacher's conditional row
    assert student_error(trained, teacher, GUIDANCE) < 0.7 * student_error(
        untrained, teacher, GUIDANCE
    )


def test_distillation_resumes_exactly_where_it_stopped(dataset, tiny_model_dir, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    quiet = {"report": lambda line: None}
    train(dataset, straight, distill_config(tiny_model_dir, guidance_steps=3), **quiet)
    train(dataset, resumed, distill_config(tiny_model_dir, guidance_steps=2), **quiet)
    train(dataset, resumed, distill_config(tiny_model_dir, guidance_steps=3), resume=True, **quiet)

    assert logged_losses(resumed, "guidance") == logged_losses(straight, "guidance")
    a, b = (
        torch.load(run / "checkpoint" / "guidance.pt", weights_only=False)
        for run in (straight, resumed)
    )
    for weights in ("live", "export"):
        for key, tensor in a[weights]["unet"].items():
            assert torch.equal(tensor, b[weights]["unet"][key]), (weights, key)


def test_distilling_without_a_teacher_is_a_clear_error(dataset, tmp_path):
    with pytest.raises(UserError, match="--init builtin"):
        train(dataset, tmp_path, distill_config(None), report=lambda line: None)


def test_bf16_training_falls_back_to_fp32_where_bf16_is_not_native(
    dataset, tiny_model_dir, tmp_path, monkeypatch
):
    from streamer.generate import compute_type

    monkeypatch.setattr(compute_type, "cpu_facts", lambda: compute_type.CpuFacts("AVX2", False))
    lines: list[str] = []
    config = distill_config(tiny_model_dir, guidance_steps=1, precision="bf16")
    train(dataset, tmp_path, config, report=lines.append)
    assert any("training in fp32" in line for line in lines), lines


# --- the generator -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed_images():
    from streamer.seeds import load_seed_loop

    return {"narrow": load_seed_loop("boom_bap_94").image().convert("RGB").crop((0, 0, 128, 512))}


def request(seed: int, **fields) -> FrameRequest:
    values = {"seed_image": "narrow", "seed_a": seed, "denoising": 0.5, "guidance": GUIDANCE}
    return FrameRequest(PromptBlend.single(CAPTIONS[0]), **{**values, **fields})


def generator_for(model, seed_images, **options) -> FrameGenerator:
    return FrameGenerator(model, GeneratorPreset("t", "dpm++", 4, 0.5, GUIDANCE), seed_images,
                          **options)  # fmt: skip


def unet_rows(generator: FrameGenerator, requests: list[FrameRequest]) -> list[int]:
    """The rows of every UNet call that making ``requests`` takes, counted by a forward hook."""
    rows: list[int] = []
    hook = generator.model.unet.register_forward_hook(
        lambda module, inputs, output: rows.append(inputs[0].shape[0])
    )
    try:
        generator.generate(requests)
    finally:
        hook.remove()
    return rows


def test_a_student_guides_in_one_row_for_the_empty_negative_prompt_and_two_for_another(
    distilled, tiny_model_dir, seed_images
):
    student = generator_for(fp32_model(distilled / "model"), seed_images)
    assert unet_rows(student, [request(1)]) == [1, 1]
    assert unet_rows(student, [request(1, negative_prompt="noise")]) == [2, 2]
    assert unet_rows(student, [request(1), request(2, negative_prompt="noise")]) == [3, 3]
    assert unet_rows(student, [request(1, guidance=1.0)]) == [1, 1]
    teacher = generator_for(fp32_model(tiny_model_dir), seed_images)
    assert unet_rows(teacher, [request(1)]) == [2, 2]


def test_a_students_frame_follows_its_guidance_and_is_the_same_in_a_mixed_batch(
    distilled, seed_images
):
    student = generator_for(fp32_model(distilled / "model"), seed_images)
    (alone,) = student.generate([request(1)])
    (unguided,) = student.generate([request(1, guidance=1.0)])
    mixed, classic = student.generate([request(1), request(2, negative_prompt="noise")])
    (classic_alone,) = student.generate([request(2, negative_prompt="noise")])

    def difference(a, b) -> np.ndarray:
        return np.abs(np.asarray(a.image, np.float64) - np.asarray(b.image, np.float64))

    assert difference(alone, unguided).mean() > 0.05  # the scale reaches the UNet (0.14)
    assert difference(alone, mixed).max() <= 1  # batching changes only rounding
    assert difference(classic, classic_alone).max() <= 1


def test_a_compiled_student_pads_its_guidance_rows_and_never_recompiles(distilled, seed_images):
    """One-row and two-row frames in one batch give 1 to 3 rows; padded to the warmed-up
    counts with their guidance embeddings, nothing compiles again."""
    from torch._dynamo.testing import CompileCounter

    model = fp32_model(distilled / "model")
    torch._dynamo.reset()
    counter = CompileCounter()
    compiled = generator_for(model, seed_images, compile="default", compile_backend=counter)
    compiled.warm_up(max_frames=2, seed_image="narrow")
    assert counter.frame_count == 3  # 1, 2 and 4 rows
    eager = generator_for(model, seed_images)
    batches = [
        [request(1), request(2, negative_prompt="noise", denoising=1.0)],  # 2, then 3 rows
        [request(3), request(4, guidance=1.0)],  # 2 rows
    ]
    for batch in batches:
        for ours, theirs in zip(compiled.generate(batch), eager.generate(batch)):
            difference = np.abs(
                np.asarray(ours.image, np.float64) - np.asarray(theirs.image, np.float64)
            )
            assert difference.max() <= 1
    assert counter.frame_count == 3
    torch._dynamo.reset()
