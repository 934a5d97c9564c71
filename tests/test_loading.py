"""Loading checkpoints: from a folder, from one file, and the errors a user sees instead of
tracebacks when weights are missing or the hub cannot be reached."""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from streamer.errors import UserError
from streamer.generate.config import GeneratorConfig
from streamer.generate.generator import FrameGenerator
from streamer.generate.loading import (
    MINIMUM_VERSIONS,
    check_library_versions,
    hub_problem,
    load_model,
    select_device,
    select_dtype,
)
from streamer.generate.request import FrameRequest, PromptBlend
from streamer.generate.tiny_model import SINGLE_FILE_NAME


def tiny_config(model, **fields) -> GeneratorConfig:
    return GeneratorConfig(
        model=str(model), device="cpu", dtype="fp32", num_inference_steps=4, **fields
    )


def test_the_tiny_model_tokenizes_prompts_like_clip(tiny_model_dir):
    model = load_model(tiny_config(tiny_model_dir))
    # OpenAI CLIP's ids: <|startoftext|> a photo of a cat <|endoftext|>
    assert model.tokenizer("a photo of a cat").input_ids == [
        49406,
        320,
        1125,
        539,
        320,
        2368,
        49407,
    ]
    assert model.tokenizer.model_max_length == 77


def test_a_single_file_loads_the_same_weights_as_its_folder(tiny_model_dir, tmp_path):
    # The file alone, with its configs given explicitly from another folder.
    single = tmp_path / "model.safetensors"
    single.symlink_to(tiny_model_dir / SINGLE_FILE_NAME)
    folder_model = load_model(tiny_config(tiny_model_dir))
    file_model = load_model(tiny_config(single, model_config=str(tiny_model_dir)))
    for part in ("unet", "vae", "text_encoder"):
        ours, theirs = (
            getattr(folder_model, part).state_dict(),
            getattr(file_model, part).state_dict(),
        )
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    # And so makes the same frames.
    seeds = {"grey": Image.fromarray(np.full((512, 64, 3), 128, np.uint8))}
    frame = FrameRequest(PromptBlend.single("ambient"), "grey", 3, denoising=0.5)
    preset = GeneratorConfig(preset="default", num_inference_steps=4).resolved_preset()
    [a], [b] = (
        FrameGenerator(m, preset, seeds).generate([frame]) for m in (folder_model, file_model)
    )
    np.testing.assert_array_equal(np.asarray(a.image), np.asarray(b.image))


def test_a_single_file_next_to_its_configs_needs_no_model_config(tiny_model_dir):
    model = load_model(tiny_config(tiny_model_dir / SINGLE_FILE_NAME))
    assert tuple(model.unet.config.block_out_channels) == (32, 64)


def test_a_single_file_without_configs_says_how_to_get_them(tiny_model_dir, tmp_path):
    lonely = tmp_path / "riffusion.safetensors"
    lonely.symlink_to(tiny_model_dir / SINGLE_FILE_NAME)
    with pytest.raises(UserError, match="--model-config") as error:
        load_model(tiny_config(lonely))
    assert "hf download" in str(error.value)


def test_a_missing_path_is_named(tmp_path):
    with pytest.raises(UserError, match="no model at"):
        load_model(tiny_config(tmp_path / "nothing-here"))


def test_a_folder_without_weights_is_a_clear_error(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(UserError, match="could not load the model folder"):
        load_model(tiny_config(tmp_path))


def test_offline_and_not_cached_says_what_was_looked_for_and_how_to_fix_it(tmp_path):
    config = GeneratorConfig(
        model="riffusion/riffusion-model-v1", device="cpu", offline=True, cache_dir=str(tmp_path)
    )
    with pytest.raises(UserError) as error:
        load_model(config)
    message = str(error.value)
    assert "'riffusion/riffusion-model-v1'" in message
    assert str(tmp_path) in message  # where it looked
    assert "offline" in message
    assert "hf download riffusion/riffusion-model-v1" in message
    assert "--model PATH" in message
    assert "streamer make-tiny-model DIR" in message


def test_an_unreachable_hub_gives_one_clear_error_not_a_traceback(tmp_path):
    env = {
        **os.environ,
        "HF_ENDPOINT": "http://127.0.0.1:9",  # nothing listens on the discard port
        "HF_HOME": str(tmp_path),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_ETAG_TIMEOUT": "2",
        "HF_HUB_DOWNLOAD_TIMEOUT": "2",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamer",
            "generate",
            "--model",
            "someone/some-model",
            "--prompt",
            "jazz",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "could not load the model 'someone/some-model'" in result.stderr
    assert "is unreachable" in result.stderr and "127.0.0.1:9" in result.stderr
    assert "--model PATH" in result.stderr


def test_device_and_dtype_choices():
    assert select_device(None).type in ("cuda", "mps", "cpu")
    assert select_device("cpu") == torch.device("cpu")
    assert select_dtype(torch.device("cpu")) is None  # the machine decides at load
    assert select_dtype(torch.device("cuda")) == torch.float16
    assert select_dtype(torch.device("mps")) == torch.float32
    assert select_dtype(torch.device("cpu"), "fp32") == torch.float32
    with pytest.raises(UserError, match="bf16 or fp32"):
        select_dtype(torch.device("cpu"), "fp16")
    with pytest.raises(UserError, match="unknown dtype"):
        select_dtype(torch.device("cpu"), "int8")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="not available"):
            select_device("cuda")


class _FakeHub(http.server.BaseHTTPRequestHandler):
    """The hub's model API: ``someone/private`` only for the token ``hf_fake``, ``someone/old``
    renamed to it, everything else missing. Records each request's Authorization header."""

    authorizations: list[str | None] = []

    def do_GET(self) -> None:  # noqa: N802 (the handler's name is http.server's)
        authorization = self.headers.get("Authorization")
        self.authorizations.append(authorization)
        if self.path == "/api/models/someone/old":
            self.send_response(307)
            self.send_header("Location", "/api/models/someone/private")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/api/models/someone/private" and authorization == "Bearer hf_fake":
            body = json.dumps({"id": "someone/private", "private": True}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
        else:
            body = b'{"error": "Repository not found"}'
            self.send_response(401 if authorization is None else 404)
            self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_hub(monkeypatch):
    from huggingface_hub import constants

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakeHub.authorizations = []
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", "/nonexistent-streamer-test")  # no saved token
    yield _FakeHub
    server.shutdown()
    server.server_close()


def test_the_hub_check_sends_the_users_token_and_finds_their_private_model(fake_hub, monkeypatch):
    assert "no model 'someone/private'" in hub_problem("someone/private")
    assert fake_hub.authorizations == [None]
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    assert hub_problem("someone/private") is None
    assert fake_hub.authorizations[-1] == "Bearer hf_fake"


def test_the_hub_check_follows_a_renamed_model(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    assert hub_problem("someone/old") is None
    assert len(fake_hub.authorizations) == 2  # the redirect and its target


def test_a_missing_model_says_to_log_in_if_it_is_private(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    problem = hub_problem("someone/nothing")
    assert "HTTP 404" in problem and "hf auth login" in problem


def test_the_download_advice_fetches_only_the_parts_streamer_loads(tmp_path):
    config = GeneratorConfig(
        model="riffusion/riffusion-model-v1", device="cpu", offline=True, cache_dir=str(tmp_path)
    )
    with pytest.raises(UserError) as error:
        load_model(config)
    command = re.search(r"`(hf download [^`]*)`", str(error.value)).group(1)
    arguments = shlex.split(command)
    assert arguments[:3] == ["hf", "download", "riffusion/riffusion-model-v1"]
    patterns = arguments[arguments.index("--include") + 1 :]
    wanted = ["model_index.json", "unet/config.json", "vae/diffusion_pytorch_model.safetensors",
              "text_encoder/model.safetensors", "tokenizer/vocab.json",
              "scheduler/scheduler_config.json"]
    unwanted = ["safety_checker/model.safetensors", "feature_extractor/preprocessor_config.json",
                "riffusion-model-v1.ckpt"]
    assert all(any(fnmatch.fnmatch(name, p) for p in patterns) for name in wanted)
    assert not any(fnmatch.fnmatch(name, p) for name in unwanted for p in patterns)


def test_old_libraries_are_named_with_the_command_that_upgrades_them():
    old = {"transformers": "4.55.4", "huggingface_hub": "2.5.0"}
    with pytest.raises(UserError) as error:
        check_library_versions(old.__getitem__)
    message = str(error.value)
    assert "transformers 4.55.4" in message and "huggingface_hub" not in message.split("\n")[0]
    assert "pip install --upgrade 'transformers>=4.56'" in message
    check_library_versions({"transformers": "5.25.0", "huggingface_hub": "1.1.0"}.__getitem__)


def test_the_version_floors_are_the_ones_pyproject_declares():
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    declared = dict(
        re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", requirement.split(";")[0].strip()).groups()
        for requirement in pyproject["project"]["dependencies"]
    )
    assert {name: declared[name] for name in MINIMUM_VERSIONS} == MINIMUM_VERSIONS


def test_the_readme_gives_the_same_download_command():
    from streamer.generate.config import DEFAULT_MODEL, download_command

    readme = " ".join((Path(__file__).parents[1] / "README.md").read_text().split())
    assert download_command(DEFAULT_MODEL) in readme
