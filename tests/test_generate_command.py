"""The smoke test a user runs after installing: a tiny model, then frames from it, offline."""

from __future__ import annotations

import numpy as np
from PIL import Image

from streamer.cli import main
from streamer.spectrogram.image import mel_from_image


def test_make_tiny_model_then_generate_writes_spectrogram_pngs(tmp_path, capsys):
    model = tmp_path / "tiny"
    assert main(["make-tiny-model", str(model)]) == 0
    assert (model / "model_index.json").is_file() and (model / "unet").is_dir()
    out = tmp_path / "frames"
    status = main(
        [
            "generate", "--model", str(model), "--offline", "--device", "cpu", "--dtype", "fp32",
            "--prompt", "jazz:2", "--prompt", "rain", "--to-prompt", "techno", "--to-seed", "9",
            "--frames", "2", "--steps", "4", "--out", str(out),
        ]
    )  # fmt: skip
    assert status == 0
    pngs = sorted(out.glob("frame_*.png"))
    assert [p.name for p in pngs] == ["frame_000.png", "frame_001.png"]
    with Image.open(pngs[0]) as image:
        mel, _ = mel_from_image(image)
    assert mel.shape == (1, 512, 512) and np.isfinite(mel).all()
    assert "3 UNet steps per frame" in capsys.readouterr().out


def test_generate_with_a_bad_option_is_a_user_error(tmp_path, capsys):
    status = main(
        ["generate", "--model", str(tmp_path / "none"), "--prompt", "x", "--denoising", "2"]
    )
    assert status == 2
    assert "denoising must be in (0, 1]" in capsys.readouterr().err
