"""Which model plays: ``--model auto`` on machines with and without a GPU, cache or network;
the built-in model from the package folder; and what a user reads when a cached model is
damaged rather than missing."""

from __future__ import annotations

import argparse
import shutil

import numpy as np
import pytest
from PIL import Image

from streamer.config import add_stream_options, chosen_model, stream_config_from_args
from streamer.errors import UserError
from streamer.generate import loading
from streamer.generate.config import DEFAULT_MODEL, GeneratorConfig, default_preset_for
from streamer.generate.generator import FrameGenerator
from streamer.generate.loading import load_model
from streamer.generate.model_choice import Machine, choose_model, resolve_model
from streamer.generate.presets import BUILTIN_PROMPTS, PRESETS
from streamer.plan.planner import DEFAULT_PLAYLIST
from streamer.plan.settings import StreamSettings
from streamer.training.composer import compose
from streamer.generate.request import FrameRequest, PromptBlend


class Hub:
    """A fake hub probe that counts how often it is asked."""

    def __init__(self, reachable: bool) -> None:
        self.reachable, self.asked = reachable, 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.reachable


# --- the rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accelerator", "cached", "offline", "reachable", "plays", "hub_asked"),
    [
        ("cuda", True, False, False, DEFAULT_MODEL, 0),  # cached: no need to ask the hub
        ("cuda", False, False, True, DEFAULT_MODEL, 1),  # downloadable
        ("cuda", False, False, False, "builtin", 1),  # unreachable hub
        ("mps", False, False, True, DEFAULT_MODEL, 1),
        (None, True, False, True, "builtin", 0),  # no GPU: never Riffusion, never the network
        (None, False, False, True, "builtin", 0),
        ("cuda", False, True, True, "builtin", 0),  # offline: the hub is not asked...
        ("cuda", True, True, False, DEFAULT_MODEL, 0),  # ...but the cache is used
    ],
)
def test_auto_plays_riffusion_only_on_a_gpu_that_has_or_can_get_it(
    accelerator, cached, offline, reachable, plays, hub_asked
):
    hub = Hub(reachable)
    choice = choose_model(Machine(accelerator, riffusion_cached=cached, offline=offline), hub)
    assert choice.model == plays
    assert hub.asked == hub_asked


@pytest.mark.parametrize(
    "machine",
    [
        Machine(None, False, False),
        Machine("cuda", True, False),
        Machine("cuda", False, False),
        Machine("cuda", False, True),
    ],
)
@pytest.mark.parametrize("reachable", [True, False])
def test_the_announcement_is_one_line_naming_the_model_and_the_other(machine, reachable):
    choice = choose_model(machine, Hub(reachable))
    line = choice.announcement
    assert "\n" not in line and line.startswith("playing ")
    if choice.model == "builtin":
        assert line.startswith("playing the built-in model")
        assert f"--model {DEFAULT_MODEL}" in line  # how to get Riffusion's checkpoint
    else:
        assert line.startswith(f"playing Riffusion's checkpoint {DEFAULT_MODEL}")
        assert "--model builtin" in line


def test_the_cpu_announcement_reads_as_promised():
    choice = choose_model(Machine(None, False, False), Hub(True))
    assert choice.announcement == (
        "playing the built-in model (CPU); on a CUDA GPU, --model riffusion/riffusion-model-v1 "
        "plays Riffusion's checkpoint (4 GB download)"
    )


# --- the shell --------------------------------------------------------------------------------


def test_an_install_without_the_built_in_weights_plays_riffusion_as_before_and_says_so():
    for machine in (Machine(None, False, False, False), Machine("cuda", False, True, False)):
        hub = Hub(True)
        choice = choose_model(machine, hub)
        assert choice.model == DEFAULT_MODEL and hub.asked == 0
        assert "no built-in model" in choice.announcement and "\n" not in choice.announcement


def fake_machine(
    monkeypatch, device: str, cached: bool, reachable: bool, builtin: bool = True
) -> Hub:
    """Fake the probes resolve_model makes: the device, the cache, the hub and the install."""
    import torch
    from huggingface_hub import constants

    hub = Hub(reachable)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(loading, "select_device", lambda requested=None: torch.device(device))
    monkeypatch.setattr(loading, "model_in_cache", lambda repo, cache_dir: cached)
    monkeypatch.setattr(loading, "builtin_installed", lambda: builtin)
    monkeypatch.setattr(
        loading, "hub_problem", lambda repo, timeout: None if hub() else "unreachable"
    )
    return hub


def test_an_explicit_model_is_never_resolved(monkeypatch):
    hub = fake_machine(monkeypatch, "cuda", cached=False, reachable=True)
    for model in ("builtin", DEFAULT_MODEL, "/models/mine", "someone/model"):
        config = GeneratorConfig(model=model)
        assert resolve_model(config) == (config, None)
    assert hub.asked == 0


def test_resolve_model_probes_and_keeps_the_other_options(monkeypatch):
    hub = fake_machine(monkeypatch, "cuda", cached=False, reachable=False)
    config, line = resolve_model(GeneratorConfig(dtype="fp32", num_inference_steps=3))
    assert (config.model, config.dtype, config.num_inference_steps) == ("builtin", "fp32", 3)
    assert hub.asked == 1 and "hub is unreachable" in line
    config, _ = resolve_model(GeneratorConfig(offline=True))
    assert config.model == "builtin" and hub.asked == 1  # offline: not asked again

    fake_machine(monkeypatch, "cpu", cached=True, reachable=True)
    assert resolve_model(GeneratorConfig())[0].model == "builtin"


def test_serve_prints_exactly_one_line_naming_the_model(monkeypatch, capsys, tmp_path):
    fake_machine(monkeypatch, "cpu", cached=False, reachable=False)
    parser = argparse.ArgumentParser()
    add_stream_options(parser)
    config = stream_config_from_args(parser.parse_args([]), chosen_model)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("playing the built-in model (CPU)")
    # The built-in model plays its own preset, and the stream's keyframes take its defaults...
    builtin = PRESETS["builtin"]
    assert config.model.model == "builtin" and config.model.resolved_preset() == builtin
    assert (config.settings.denoising, config.settings.guidance) == (
        builtin.denoising,
        builtin.guidance,
    )
    # It knows only its captions' words: the stream starts and drifts in them...
    assert config.settings.prompts == PromptBlend.single(BUILTIN_PROMPTS[0])
    assert config.planner.playlist == BUILTIN_PROMPTS
    # ...unless the user chose: a preset, the keyframe values or the prompts themselves.
    chosen = stream_config_from_args(
        parser.parse_args(["--preset", "default", "--guidance", "2.5"]), chosen_model
    )
    assert chosen.model.resolved_preset().name == "default"
    assert (chosen.settings.denoising, chosen.settings.guidance) == (0.75, 2.5)
    assert chosen.settings.prompts == StreamSettings().prompts
    assert chosen.planner.playlist == DEFAULT_PLAYLIST
    (tmp_path / "stream.toml").write_text('playlist = ["rock", "ambient"]\n')
    own = stream_config_from_args(
        parser.parse_args(["--prompt", "jazz", "--config", str(tmp_path / "stream.toml")]),
        chosen_model,
    )
    assert own.settings.prompts == PromptBlend.single("jazz")
    assert own.planner.playlist == ("rock", "ambient")


def test_the_builtin_prompts_are_in_the_words_of_its_captions():
    """Every phrase of the built-in model's prompts is one its training captions use."""
    phrases = {
        phrase for index in range(3000) for phrase in compose(0, index).caption.split(", ")
    }
    for prompt in BUILTIN_PROMPTS:
        assert set(prompt.split(", ")) <= phrases, prompt


def test_each_model_has_one_default_preset():
    assert default_preset_for("builtin") == "builtin"
    assert default_preset_for(DEFAULT_MODEL) == "default"
    assert default_preset_for("/some/folder") == "default"
    with pytest.raises(ValueError, match="resolve it first"):
        default_preset_for("auto")
    assert GeneratorConfig(model="builtin").resolved_preset() == PRESETS["builtin"]
    assert GeneratorConfig(model="builtin", preset="lcm").resolved_preset().name == "lcm"


# --- the built-in model -------------------------------------------------------------------------


@pytest.fixture()
def builtin_folder(monkeypatch, tmp_path, tiny_model_dir):
    """The tiny model standing in for the shipped weights, at the package path's place."""
    folder = tmp_path / "builtin"
    shutil.copytree(tiny_model_dir, folder)
    monkeypatch.setattr(loading, "builtin_model_folder", lambda: folder)
    return folder


def test_the_package_path_is_inside_the_installed_package():
    folder = loading.builtin_model_folder()
    assert folder.name == "builtin" and folder.parent.name == "generate"
    assert (folder.parent / "loading.py").is_file()


def test_the_builtin_model_loads_offline_and_makes_a_frame(builtin_folder):
    config = GeneratorConfig(model="builtin", device="cpu", dtype="fp32", offline=True)
    seeds = {"grey": Image.fromarray(np.full((512, 512, 3), 128, np.uint8))}
    generator = FrameGenerator.load(config, seeds)
    assert generator.preset.name == "builtin"
    assert generator.model.source == "builtin"
    [frame] = generator.generate([FrameRequest(PromptBlend.single("jazz"), "grey", 1)])
    assert np.asarray(frame.image).shape == (512, 512, 3)


def test_a_missing_or_incomplete_builtin_model_says_what_to_do(
    builtin_folder, tmp_path, monkeypatch
):
    (builtin_folder / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    config = GeneratorConfig(model="builtin", device="cpu")
    with pytest.raises(UserError, match="incomplete: vae/diffusion_pytorch_model.safetensors"):
        load_model(config)
    monkeypatch.setattr(loading, "builtin_model_folder", lambda: tmp_path / "nowhere")
    with pytest.raises(UserError, match="built-in model is not there") as error:
        load_model(config)
    assert f"--model {DEFAULT_MODEL}" in str(error.value)


# --- a damaged cache --------------------------------------------------------------------------


def cached_copy(tmp_path, tiny_model_dir):
    """The tiny model in a Hugging Face cache, as if downloaded from the hub as someone/tiny."""
    cache = tmp_path / "cache"
    repo = cache / "models--someone--tiny"
    commit = "0" * 40
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return cache, repo / "snapshots" / commit


def test_a_cached_model_loads_and_counts_as_cached(tmp_path, tiny_model_dir):
    cache, _ = cached_copy(tmp_path, tiny_model_dir)
    config = GeneratorConfig(model="someone/tiny", device="cpu", offline=True, cache_dir=str(cache))
    assert load_model(config).unet is not None
    assert loading.model_in_cache("someone/tiny", str(cache))
    assert not loading.model_in_cache("someone/other", str(cache))


def test_a_damaged_cached_model_is_reported_as_damaged_not_missing(tmp_path, tiny_model_dir):
    cache, snapshot = cached_copy(tmp_path, tiny_model_dir)
    (snapshot / "text_encoder" / "model.safetensors").write_bytes(b"\0" * 100)
    config = GeneratorConfig(model="someone/tiny", device="cpu", offline=True, cache_dir=str(cache))
    with pytest.raises(UserError) as error:
        load_model(config)
    message = str(error.value)
    assert "is in the Hugging Face cache but could not be loaded" in message
    assert str(snapshot / "text_encoder") in message  # which part
    assert f"hf cache rm model/someone/tiny --cache-dir {cache}" in message
    assert str(cache / "models--someone--tiny") in message  # or remove this folder
    assert "not in the cache" not in message


def test_a_partly_downloaded_model_is_still_reported_as_missing(tmp_path, tiny_model_dir):
    cache, snapshot = cached_copy(tmp_path, tiny_model_dir)
    (snapshot / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    config = GeneratorConfig(model="someone/tiny", device="cpu", offline=True, cache_dir=str(cache))
    with pytest.raises(UserError, match="offline mode is on .* not in the cache"):
        load_model(config)
    assert not loading.model_in_cache("someone/tiny", str(cache))
