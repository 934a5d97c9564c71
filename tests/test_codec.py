"""The spectrogram codec on realistic music: the mel inverse at the FFT sizes vocoders use, the
round trip audio -> image -> audio, and clear errors for audio of the wrong shape."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio

from material import groove, song
from streamer.spectrogram import (
    SpectrogramParams,
    audio_from_mel,
    image_from_mel,
    linear_from_mel,
    mel_from_audio,
    mel_from_image,
)
from streamer.spectrogram.codec import linear_from_audio, mel_filterbank, mel_pseudo_inverse

PARAMS = SpectrogramParams()


@pytest.fixture(scope="module")
def music_mel() -> torch.Tensor:
    """Mel amplitudes of 2 s of music made at the image's own FFT size (17640)."""
    return mel_from_audio(torch.from_numpy(song(2.0, seed=3))[None], PARAMS)


def band_centres_hz(params: SpectrogramParams) -> np.ndarray:
    """Centre frequency of each mel band (HTK scale, as the filterbank)."""
    def to_mel(hz):
        return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)

    edges = np.linspace(to_mel(params.min_frequency), to_mel(params.max_frequency),
                        params.num_frequencies + 2)
    return (700.0 * (10.0 ** (edges / 2595.0) - 1.0))[1:-1]


def mel_of_linear(linear: torch.Tensor, n_fft: int) -> torch.Tensor:
    filterbank = mel_filterbank(PARAMS, n_fft)
    return torch.matmul(linear.double().transpose(-1, -2), filterbank).transpose(-1, -2)


def relative_error(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    return float((estimate.double() - reference.double()).norm() / reference.double().norm())


# For each FFT size: bands from this frequency up are each wider than an FFT bin, so the
# filterbank resolves them and the mel comes back; and the bound on its relative error there.
# Below it, narrow low bands share FFT bins and only their least-squares blend can come back.
# Measured 2026-11-25: 0.0016, 0.0035 and 0.012.
MEL_INVERSE_CASES = [(17640, 0.0, 0.005), (8192, 300.0, 0.015), (4096, 1500.0, 0.03)]


@pytest.mark.parametrize(("n_fft", "resolved_from_hz", "bound"), MEL_INVERSE_CASES)
def test_mel_inverse_gives_back_the_mel_at_vocoder_fft_sizes(
    music_mel, n_fft, resolved_from_hz, bound
):
    linear = linear_from_mel(music_mel, PARAMS, n_fft=n_fft)
    assert linear.shape == (1, n_fft // 2 + 1, music_mel.shape[-1])
    assert torch.isfinite(linear).all() and linear.min() >= 0

    again = mel_of_linear(linear, n_fft)
    resolved = torch.from_numpy(band_centres_hz(PARAMS) >= resolved_from_hz)
    assert relative_error(again[:, resolved], music_mel[:, resolved]) < bound

    # Over all bands, clamping at zero costs little against the best any spectrum at this FFT
    # size can do (the orthogonal projection onto what its filterbank can express).
    inverse = mel_pseudo_inverse(PARAMS, n_fft, dtype=torch.float64)
    best = mel_of_linear(torch.matmul(inverse, music_mel.double()), n_fft)
    assert relative_error(again, music_mel) < relative_error(best, music_mel) + 0.005


@pytest.mark.parametrize("n_fft", [2048, 3072, 4096])
def test_pseudo_inverse_ignores_near_duplicate_bands_at_small_fft_sizes(n_fft):
    # Two narrow low bands can cover the same FFT bins with almost proportional weights
    # (singular values of 1e-4, 3e-4 and 1e-8 of the largest at these sizes); inverting one
    # would multiply amplitudes by thousands to millions. Sane entries are below 2.
    inverse = mel_pseudo_inverse(PARAMS, n_fft, dtype=torch.float64)
    assert float(inverse.abs().max()) < 3.0


@pytest.mark.filterwarnings("ignore:At least one mel filterbank has all zero values")
def test_torchaudios_inverse_mel_scale_fails_where_ours_works(music_mel):
    """Why the codec has its own inverse: torchaudio's default least-squares driver gives up on
    the rank-deficient filterbank at the FFT sizes a fast vocoder wants."""
    for n_fft in (8192, 4096):
        inverse = torchaudio.transforms.InverseMelScale(
            n_stft=n_fft // 2 + 1,
            n_mels=PARAMS.num_frequencies,
            sample_rate=PARAMS.sample_rate,
            f_min=float(PARAMS.min_frequency),
            f_max=float(PARAMS.max_frequency),
            mel_scale="htk",
        )
        with pytest.raises(torch.linalg.LinAlgError, match="full rank"):
            inverse(music_mel[..., :8])
        assert torch.isfinite(linear_from_mel(music_mel[..., :8], PARAMS, n_fft=n_fft)).all()


def spectral_convergence(reference: np.ndarray, estimate: np.ndarray, below_hz: float) -> float:
    """||S_ref - S_est||_F / ||S_ref||_F of magnitude STFTs at the image's FFT size, below a
    frequency."""
    bins = int(below_hz * PARAMS.n_fft / PARAMS.sample_rate) + 1
    ref = linear_from_audio(torch.from_numpy(reference), PARAMS)[:, :bins]
    est = linear_from_audio(torch.from_numpy(estimate), PARAMS)[:, :bins]
    return float((ref - est).norm() / ref.norm())


def test_round_trip_through_an_image_keeps_the_music():
    # 2.56 s of music (256 hops) -> 8-bit image -> Griffin-Lim (Riffusion's 32 iterations).
    original = song(2.56, seed=1)[None]
    mel = mel_from_audio(torch.from_numpy(original), PARAMS)
    decoded, params = mel_from_image(image_from_mel(mel.numpy(), PARAMS))
    audio = audio_from_mel(torch.from_numpy(decoded), params, n_iter=32).numpy()

    assert audio.shape == original.shape
    assert np.abs(audio).max() <= 1.0
    # Measured 0.066 (0.059 for another seed); 8 iterations give 0.17, and the image's 8-bit
    # levels add almost nothing over the mel itself (0.0652 without the image).
    assert spectral_convergence(original, audio, below_hz=10_000) < 0.10


def test_audio_with_the_wrong_channel_count_is_refused():
    stereo = torch.zeros(2, 4410)
    with pytest.raises(ValueError, match="audio has 2 channels but the parameters want 1"):
        mel_from_audio(stereo, PARAMS)
    with pytest.raises(ValueError, match=r"expected audio shaped \(channels, samples\)"):
        mel_from_audio(torch.zeros(4410), PARAMS)


def test_a_loop_that_is_not_a_whole_number_of_hops_is_refused():
    loop = torch.from_numpy(groove().samples[:-100])[None]
    with pytest.raises(ValueError, match="not a whole number of 441-sample hops"):
        mel_from_audio(loop, PARAMS, circular=True)
