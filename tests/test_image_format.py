"""The spectrogram image format: what we write is what Riffusion wrote, and what it wrote we read.

The model only understands images in its training format, so these tests compare against images
made by Riffusion itself (tests/fixtures/riffusion, MIT, credited in its README and LICENSE).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from material import groove
from streamer.spectrogram import (
    ExifTag,
    SpectrogramParams,
    image_from_mel,
    mel_from_audio,
    mel_from_image,
    png_bytes,
    save_image,
)

FIXTURES = Path(__file__).parent / "fixtures" / "riffusion"

#: Riffusion's own image of clip.wav and the max amplitude its EXIF records.
RIFFUSION_MAX_VALUE = 46801012.0


def fixture(name: str) -> Path:
    return FIXTURES / name


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_our_image_of_clip_matches_riffusions():
    audio, rate = soundfile.read(fixture("clip.wav"), dtype="float32", always_2d=True)
    reference = Image.open(fixture("clip.png"))
    params = SpectrogramParams()
    assert rate == params.sample_rate
    # The fixture README says the channels were averaged to mono, but the image was evidently
    # made from the LEFT channel: from the left channel every pixel is within one level and the
    # max amplitude agrees to 1 part in 1e7; from the mean of the channels only 51 % of the
    # pixels are within one level and the max is 2 % off.
    left = torch.from_numpy(np.ascontiguousarray(audio[:, :1].T))
    mel = mel_from_audio(left, params)
    ours = image_from_mel(mel.numpy(), params)

    assert ours.size == reference.size == (568, 512)
    difference = np.abs(pixels(ours) - pixels(reference))
    # One level of slack: truncation to uint8 flips a level where float rounding differs.
    assert np.mean(difference <= 1) >= 0.99
    assert ours.getexif()[ExifTag.MAX_VALUE] == pytest.approx(RIFFUSION_MAX_VALUE, rel=1e-6)
    reference_exif = reference.getexif()
    our_exif = ours.getexif()
    for tag in ExifTag:
        if tag is not ExifTag.MAX_VALUE:
            assert our_exif[tag] == reference_exif[tag], tag.name


def test_riffusions_clip_decodes_to_its_parameters():
    mel, params = mel_from_image(Image.open(fixture("clip.png")))
    assert params == SpectrogramParams()
    assert mel.shape == (1, 512, 568)
    # The loudest pixel (level 0) decodes to exactly the stored max amplitude.
    assert float(mel.max()) == pytest.approx(RIFFUSION_MAX_VALUE, rel=1e-6)


def test_riffusions_seed_image_without_exif_decodes_with_the_defaults():
    image = Image.open(fixture("og_beat.png"))
    assert image.mode == "P" and len(image.getexif()) == 0
    mel, params = mel_from_image(image)
    assert params == SpectrogramParams()
    assert mel.shape == (1, 512, 512)
    assert mel.dtype == np.float32 and np.all(np.isfinite(mel)) and mel.max() > 0


def test_exif_survives_saving_and_reopening(tmp_path):
    params = SpectrogramParams()
    mel = mel_from_audio(torch.from_numpy(groove().samples)[None], params).numpy()
    image = image_from_mel(mel, params)
    path = tmp_path / "frame.png"
    save_image(image, path)

    reopened = Image.open(path)
    assert SpectrogramParams.from_exif(reopened.getexif()) == params
    assert reopened.getexif()[ExifTag.MAX_VALUE] == pytest.approx(float(mel.max()), rel=1e-6)
    assert np.array_equal(pixels(reopened), pixels(image))
    # The same bytes go over the wire.
    assert Image.open(io.BytesIO(png_bytes(image))).getexif() == reopened.getexif()


def test_stereo_image_holds_left_in_green_right_in_blue_and_decodes_to_two_channels(tmp_path):
    params = SpectrogramParams(stereo=True)
    left = groove(seed=1).samples
    right = 0.3 * groove(seed=2, root_hz=73.4).samples  # quieter and different, so they differ
    mel = mel_from_audio(torch.from_numpy(np.stack([left, right])), params).numpy()
    image = image_from_mel(mel, params)
    path = tmp_path / "stereo.png"
    save_image(image, path)
    reopened = Image.open(path)

    rgb = pixels(reopened)
    assert np.all(rgb[:, :, 0] == 0)
    mono = SpectrogramParams()
    max_value = float(mel.max())
    alone_left = pixels(image_from_mel(mel[:1], mono, max_value=max_value))[:, :, 0]
    alone_right = pixels(image_from_mel(mel[1:], mono, max_value=max_value))[:, :, 0]
    assert np.array_equal(rgb[:, :, 1], alone_left)
    assert np.array_equal(rgb[:, :, 2], alone_right)
    assert not np.array_equal(alone_left, alone_right)

    decoded, decoded_params = mel_from_image(reopened)
    assert decoded_params.stereo and decoded.shape == (2, 512, mel.shape[-1])
    # Decoding inverts the 8-bit levels: louder bins come back within a level's worth.
    loud = mel > 0.01 * max_value
    relative = np.abs(decoded[loud] - mel[loud]) / mel[loud]
    assert np.median(relative) < 0.02
    assert np.mean(decoded[1]) < np.mean(decoded[0])  # right stays the quieter channel


def test_image_of_three_channels_is_refused():
    with pytest.raises(ValueError, match=r"expected mel amplitudes shaped \(1 or 2, bins"):
        image_from_mel(np.ones((3, 512, 10)), SpectrogramParams())


def test_image_of_the_wrong_height_is_refused():
    image = Image.new("RGB", (512, 256))
    with pytest.raises(ValueError, match="256 pixels high but the parameters have 512 mel bins"):
        mel_from_image(image)
