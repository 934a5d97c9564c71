"""The frame generator on the tiny random-weight model: what a user relies on, frame by frame.

The tiny model makes noise-like images, but it is the real architecture, so everything that
matters here (determinism, transitions, blends, guidance, batching) behaves as with the real
checkpoint. Most tests use a 512x128 seed image (a quarter of the work of a full frame); the
output format test uses a full 512x512 one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamer.generate.config import GeneratorConfig
from streamer.generate.request import FrameRequest, Keyframe, PromptBlend, transition
from streamer.generate.tiny_model import build_tiny_lora
from streamer.spectrogram.image import mel_from_image

JAZZ, METAL = "jazz piano trio", "heavy metal guitar"
#: A 4-step schedule at denoising 0.5: two UNet evaluations per frame keep the tests fast.
STEPS, DENOISING, GUIDANCE = 4, 0.5, 7.0


@pytest.fixture(scope="module")
def seed_images():
    from streamer.seeds import load_seed_loop

    full = load_seed_loop("boom_bap_94").image().convert("RGB")
    return {"full": full, "narrow": full.crop((0, 0, 128, 512))}


def make_generator(model_dir, seed_images, **overrides):
    from streamer.generate.generator import FrameGenerator

    settings = {
        "model": str(model_dir),
        "device": "cpu",
        "dtype": "fp32",
        "num_inference_steps": STEPS,
        # One runtime for every generator here: ``auto`` picks by timing one UNet call at load,
        # so on a loaded CPU two loads could pick differently and differ by a pixel level.
        # OpenVINO's frames are checked against torch's in test_cpu_runtime.py.
        "cpu_runtime": "torch",
    }
    return FrameGenerator.load(GeneratorConfig(**{**settings, **overrides}), seed_images)


@pytest.fixture(scope="module")
def generator(tiny_model_dir, seed_images):
    return make_generator(tiny_model_dir, seed_images)


def request(prompts=JAZZ, seed=1, **fields) -> FrameRequest:
    blend = PromptBlend.single(prompts) if isinstance(prompts, str) else PromptBlend(tuple(prompts))
    values = {"seed_image": "narrow", "seed_a": seed, "denoising": DENOISING, "guidance": GUIDANCE}
    return FrameRequest(blend, **{**values, **fields})


def pixels(frame) -> np.ndarray:
    return np.asarray(frame.image, dtype=np.float64)


def distance(a, b) -> float:
    """Mean absolute difference of two frames' images, in 8-bit levels."""
    return float(np.abs(pixels(a) - pixels(b)).mean())


def test_a_frame_is_a_full_spectrogram_image_and_its_mel_amplitudes(generator):
    [frame] = generator.generate([request(seed_image="full")])
    assert frame.image.size == (512, 512) and frame.image.mode == "RGB"
    assert frame.mel.shape == (1, 512, 512) and frame.mel.dtype == np.float32
    np.testing.assert_array_equal(frame.mel, mel_from_image(frame.image)[0])
    assert frame.timings.unet_calls == 2 and frame.timings.total_s > 0


def test_same_request_same_frame_in_a_fresh_generator(generator, tiny_model_dir, seed_images):
    requests = [request(seed=5), request(METAL, seed=6)]
    first = generator.generate(requests)
    again = make_generator(tiny_model_dir, seed_images).generate(requests)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(pixels(a), pixels(b))
        np.testing.assert_array_equal(a.mel, b.mel)


def test_different_seeds_give_different_frames(generator):
    one, two = generator.generate([request(seed=1), request(seed=2)])
    assert distance(one, two) > 5


def test_transition_ends_reproduce_the_keyframes(generator):
    start = Keyframe.of(JAZZ, 1, DENOISING, GUIDANCE)
    end = Keyframe.of(METAL, 2, 0.6, 5.0)
    first, middle, last = generator.generate(transition(start, end, 3, "narrow"))
    [alone_start] = generator.generate([request(JAZZ, seed=1)])
    [alone_end] = generator.generate([request(METAL, seed=2, denoising=0.6, guidance=5.0)])
    # Same batch composition is not needed for equality at the ends; compare within the rounding
    # that batch size may cause (one 8-bit level).
    assert np.abs(pixels(first) - pixels(alone_start)).max() <= 1
    assert np.abs(pixels(last) - pixels(alone_end)).max() <= 1
    assert distance(middle, first) > 2 and distance(middle, last) > 2


def test_frames_change_continuously_with_alpha(generator):
    start = Keyframe.of(JAZZ, 1, DENOISING, GUIDANCE)
    end = Keyframe.of(METAL, 2, DENOISING, GUIDANCE)

    def at(alpha: float) -> FrameRequest:
        return FrameRequest(
            start.prompts.mix(end.prompts, alpha), "narrow", 1, 2, alpha, DENOISING, GUIDANCE
        )

    steps = [0.4, 0.1, 0.025]
    frames = generator.generate([at(0.5)] + [at(0.5 + d) for d in steps])
    distances = [distance(frames[0], other) for other in frames[1:]]
    assert distances[0] > distances[1] > distances[2]
    # Roughly proportional to the step, as for a smooth path (not a jump hidden at some alpha).
    assert distances[2] < distances[0] / 8


def test_a_weighted_blend_leans_towards_its_heavier_prompt(generator):
    jazz, metal, mostly_jazz, mostly_metal = generator.generate(
        [
            request(JAZZ),
            request(METAL),
            request([(JAZZ, 3.0), (METAL, 1.0)]),
            request([(JAZZ, 1.0), (METAL, 3.0)]),
        ]
    )
    assert distance(mostly_jazz, jazz) < distance(mostly_jazz, metal)
    assert distance(mostly_metal, metal) < distance(mostly_metal, jazz)
    assert distance(mostly_jazz, mostly_metal) > 1


def test_the_negative_prompt_steers_the_frame_when_guidance_is_on(generator):
    plain, steered = generator.generate([request(), request(negative_prompt="static noise, hiss")])
    assert distance(plain, steered) > 1
    # Without guidance the negative prompt is not used at all.
    plain, steered = generator.generate(
        [request(guidance=1.0), request(guidance=1.0, negative_prompt="static noise, hiss")]
    )
    np.testing.assert_array_equal(pixels(plain), pixels(steered))


@pytest.mark.parametrize("scheduler", ["dpm++", "lcm"])
def test_a_batch_equals_its_frames_made_one_by_one(tiny_model_dir, seed_images, scheduler):
    """Frames with different seeds, strengths (so different step counts) and guidance (with and
    without its extra row) share UNet batches; each must come out as if made alone."""
    generator = make_generator(
        tiny_model_dir, seed_images, scheduler=scheduler, num_inference_steps=6
    )
    requests = [
        request(seed=1, denoising=0.5),
        request(METAL, seed=2, seed_b=3, noise_alpha=0.3, denoising=0.35, guidance=1.0),
        request([(JAZZ, 1.0), (METAL, 1.0)], seed=4, denoising=0.7, negative_prompt="noise"),
    ]
    batched = generator.generate(requests)
    assert batched[0].timings.unet_calls == 4  # int(6 * 0.7): the longest frame sets the count
    for frame, alone in zip(batched, (generator.generate([r])[0] for r in requests)):
        assert np.abs(pixels(frame) - pixels(alone)).max() <= 1  # fp32: one 8-bit level


def test_seed_image_is_encoded_once_per_name(tiny_model_dir, seed_images):
    looked_up = []

    def lookup(name):
        looked_up.append(name)
        return seed_images[name]

    generator = make_generator(tiny_model_dir, lookup)
    generator.generate([request(seed=1), request(seed=2)])
    generator.generate([request(seed=3)])
    assert looked_up == ["narrow"]


def test_a_lora_is_fused_into_the_model(tiny_model_dir, seed_images, tmp_path):
    lora = build_tiny_lora(tiny_model_dir, tmp_path)
    plain = make_generator(tiny_model_dir, seed_images)
    with_lora = make_generator(tiny_model_dir, seed_images, lora=str(lora))
    assert not any(
        "lora" in name for name in with_lora.model.unet.state_dict()
    )  # fused, no adapters
    [a], [b] = plain.generate([request()]), with_lora.generate([request()])
    assert distance(a, b) > 1


def test_a_missing_lora_in_offline_mode_is_a_clear_error(tiny_model_dir, seed_images, tmp_path):
    from streamer.errors import UserError

    with pytest.raises(
        UserError, match="could not load the LoRA 'latent-consistency/lcm-lora-sdv1-5'"
    ) as error:
        make_generator(
            tiny_model_dir, seed_images, preset="lcm", offline=True, cache_dir=str(tmp_path)
        )
    assert "--lora PATH" in str(error.value) and "--preset default" in str(error.value)


def test_a_stale_batch_stops_within_one_unet_step_and_leaves_nothing_behind(
    tiny_model_dir, seed_images
):
    """A change arriving during the first UNet step stops the batch before the second."""
    from streamer.generate.cancellation import FrameCancelled

    generator = make_generator(tiny_model_dir, seed_images, num_inference_steps=8)
    unet, calls = generator._unet, []

    def counting_unet(*args, **kwargs):
        calls.append(len(calls))
        return unet(*args, **kwargs)

    generator._unet = counting_unet
    requests = [request(denoising=1.0), request(seed=2, denoising=1.0)]
    with pytest.raises(FrameCancelled):
        generator.generate(requests, is_stale=lambda: bool(calls))
    assert len(calls) == 1, "the UNet ran on after the batch became stale"
    generator._unet = unet
    assert distance(generator.generate(requests)[0], generator.generate(requests[:1])[0]) < 1


def test_guidance_until_a_timestep_runs_one_row_on_the_later_steps(tiny_model_dir, seed_images):
    """With guidance only at or above timestep 500, a guided frame's steps below it run its
    prompt row alone (fewer rows, so faster), and the frame still follows its negative prompt,
    which the early steps used."""
    generator = make_generator(
        tiny_model_dir, seed_images, num_inference_steps=8, guidance_until_timestep=500,
        cpu_runtime="torch",
    )
    unet, rows = generator._unet, []

    def counting_unet(sample, timestep, **kwargs):
        rows.append((int(timestep.reshape(-1)[0]), sample.shape[0]))
        return unet(sample, timestep, **kwargs)

    generator._unet = counting_unet
    plain, steered = generator.generate(
        [request(denoising=0.75), request(denoising=0.75, negative_prompt="static noise, hiss")]
    )
    generator._unet = unet
    assert [t for t, _ in rows] == [749, 624, 500, 375, 250, 125]
    assert [n for _, n in rows] == [4, 4, 4, 2, 2, 2]  # two frames, two rows each while guided
    assert distance(plain, steered) > 1
