"""The compute type follows the machine: bf16 only where it is native and measured faster, so a
model never runs in a type this CPU emulates (over 70x slower on AVX2-only CPUs)."""

from __future__ import annotations

import torch

from streamer.generate.compute_type import CpuFacts, choose_cpu_dtype, cpu_facts, unet_call_timer
from streamer.generate.config import GeneratorConfig
from streamer.generate.loading import load_model

AVX2 = CpuFacts("AVX2", native_bf16=False)
BF16 = CpuFacts("AVX512", native_bf16=True)


def never_timed(dtypes):
    raise AssertionError("an AVX2 machine must not run a bf16 UNet call: it takes seconds")


def timings(fp32_s: float, bf16_s: float):
    asked = []

    def time_calls(dtypes):
        asked.append(dtypes)
        return {torch.float32: fp32_s, torch.bfloat16: bf16_s}

    return time_calls, asked


def test_a_cpu_without_native_bf16_computes_in_fp32_without_trying_bf16():
    choice = choose_cpu_dtype(AVX2, never_timed)
    assert choice.dtype == torch.float32
    assert "AVX2, no native bf16" in choice.announcement()
    assert choice.announcement().startswith("computing in fp32")


def test_native_bf16_is_kept_only_where_measured_faster():
    faster, asked = timings(fp32_s=0.30, bf16_s=0.18)
    choice = choose_cpu_dtype(BF16, faster)
    assert choice.dtype == torch.bfloat16 and asked == [(torch.float32, torch.bfloat16)]
    assert "0.180 s in bf16, 0.300 s in fp32" in choice.reason
    slower, _ = timings(fp32_s=0.18, bf16_s=0.30)
    choice = choose_cpu_dtype(BF16, slower)
    assert choice.dtype == torch.float32 and "not faster" in choice.reason


def test_the_emulated_avx2_settings_are_seen_as_no_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    assert cpu_facts().native_bf16 is False


def test_the_timer_measures_each_type_on_its_own_copy(tiny_model_dir):
    model = load_model(GeneratorConfig(model=str(tiny_model_dir), device="cpu", dtype="fp32"))
    seconds = unet_call_timer(model.unet, 8, model.unet.config.cross_attention_dim)(
        (torch.float32, torch.bfloat16)
    )
    assert set(seconds) == {torch.float32, torch.bfloat16}
    assert all(0 < value < 60 for value in seconds.values())
    assert next(model.unet.parameters()).dtype == torch.float32  # the caller's UNet is untouched


def test_loading_with_no_dtype_follows_the_machine_and_says_why(tiny_model_dir):
    model = load_model(GeneratorConfig(model=str(tiny_model_dir), device="cpu"))
    facts = cpu_facts()
    if not facts.native_bf16:
        assert model.dtype == torch.float32
    assert model.dtype in (torch.float32, torch.bfloat16)
    assert all(
        next(part.parameters()).dtype == model.dtype
        for part in (model.unet, model.vae, model.text_encoder)
    )
    assert model.compute_announcement().startswith(f"computing in {model_name(model.dtype)}: ")
    assert facts.describe() in model.compute_announcement()
    asked = load_model(GeneratorConfig(model=str(tiny_model_dir), device="cpu", dtype="bf16"))
    assert asked.dtype == torch.bfloat16
    assert asked.compute_announcement() == "computing in bf16: asked for with --dtype"


def model_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
