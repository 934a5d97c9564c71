"""Audio <-> mel amplitudes, with torchaudio, exactly as Riffusion computes them.

Amplitudes are in Riffusion's units: the STFT of 16-bit sample values (a float sample of 1.0 is
32768). Keeping its units keeps the max value stored in an image comparable with Riffusion's.

The mel inverse is a pseudo-inverse of the filterbank, computed once and clamped at zero.
torchaudio's least-squares ``InverseMelScale`` fails when the filterbank is rank deficient (at
n_fft 4096 or 8192 several narrow low mel bands fall between the same FFT bins); the
pseudo-inverse gives the minimum-norm answer there instead.
"""

from __future__ import annotations

import functools
import warnings

import torch
import torchaudio

from streamer.spectrogram.params import SpectrogramParams

#: One float sample of 1.0 in Riffusion's amplitude units (16-bit sample values).
SAMPLE_SCALE = 32768.0


def mel_filterbank(params: SpectrogramParams, n_fft: int | None = None) -> torch.Tensor:
    """The mel filterbank, shape (n_fft // 2 + 1, num_frequencies), float64 on the CPU."""
    n_fft = params.n_fft if n_fft is None else n_fft
    with warnings.catch_warnings():
        # At n_fft 4096 twelve of the narrowest low bands fall between FFT bins and are empty;
        # that is expected at a vocoder's smaller FFT (the pseudo-inverse copes), not a mistake.
        warnings.filterwarnings("ignore", "At least one mel filterbank has all zero values")
        filterbank = torchaudio.functional.melscale_fbanks(
            n_freqs=n_fft // 2 + 1,
            f_min=float(params.min_frequency),
            f_max=float(params.max_frequency),
            n_mels=params.num_frequencies,
            sample_rate=params.sample_rate,
            norm=None,
            mel_scale="htk",
        )
    return filterbank.double()


#: Singular values of the filterbank below this fraction of the largest are treated as zero by
#: the pseudo-inverse. At small FFT sizes narrow low bands cover the same few FFT bins with almost
#: proportional weights: at n_fft 3072 and 4096 singular values of 3e-4 and 1e-8 of the largest
#: appear, and inverting them multiplies amplitudes by thousands to millions, so the default
#: machine-precision cut-off gives garbage. At FFT sizes from 1024 to 17640 the genuine singular
#: values are all above 0.03 of the largest and the spurious ones below 4e-4.
PSEUDO_INVERSE_RTOL = 1e-3


@functools.lru_cache(maxsize=16)
def _mel_pseudo_inverse_cpu(params: SpectrogramParams, n_fft: int) -> torch.Tensor:
    # Through the eigenvectors of the small (bands x bands) Gram matrix rather than an SVD of the
    # (bins x bands) filterbank: the same matrix (to 1e-14) about six times faster, which matters
    # because every process pays it once at start-up (3 s at n_fft 17640 with torch.linalg.pinv).
    forward = mel_filterbank(params, n_fft).T  # (bands, bins): linear -> mel
    eigenvalues, eigenvectors = torch.linalg.eigh(forward @ forward.T)
    keep = eigenvalues > (PSEUDO_INVERSE_RTOL**2) * eigenvalues.max()
    basis = eigenvectors[:, keep]
    return forward.T @ (basis / eigenvalues[keep]) @ basis.T


def mel_pseudo_inverse(
    params: SpectrogramParams,
    n_fft: int | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Matrix of shape (n_fft // 2 + 1, num_frequencies) that maps mel amplitudes back to
    linear-frequency amplitudes (before clamping at zero). Cached per parameters and FFT size."""
    n_fft = params.n_fft if n_fft is None else n_fft
    return _mel_pseudo_inverse_cpu(params, n_fft).to(device=device, dtype=dtype)


def stft_window(win_length: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The periodic Hann window both directions use."""
    return torch.hann_window(win_length, periodic=True, device=device)


def linear_from_audio(
    waveform: torch.Tensor, params: SpectrogramParams, *, circular: bool = False
) -> torch.Tensor:
    """Magnitude STFT, shape (channels, n_fft // 2 + 1, columns), of float audio in [-1, 1].

    With ``circular`` the audio is one period of a loop: it is padded by wrapping around instead
    of reflecting, and the result has exactly ``samples / hop`` columns, so the image tiles
    seamlessly (column 0 follows the last column). Its length must be a whole number of hops.
    """
    if circular and waveform.shape[-1] % params.hop_length:
        raise ValueError(
            f"a loop of {waveform.shape[-1]} samples is not a whole number of "
            f"{params.hop_length}-sample hops"
        )
    samples = waveform.to(torch.float32) * SAMPLE_SCALE
    spectrum = torch.stft(
        samples,
        n_fft=params.n_fft,
        hop_length=params.hop_length,
        win_length=params.win_length,
        window=stft_window(params.win_length, samples.device),
        center=True,
        pad_mode="circular" if circular else "reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )
    if circular:
        spectrum = spectrum[..., : waveform.shape[-1] // params.hop_length]
    return spectrum.abs()


def mel_from_audio(
    waveform: torch.Tensor, params: SpectrogramParams, *, circular: bool = False
) -> torch.Tensor:
    """Mel amplitudes, shape (channels, num_frequencies, columns), of audio (channels, samples).

    The audio must already have ``params.channels`` channels; see :func:`to_channels`. For
    ``circular`` see :func:`linear_from_audio`.
    """
    if waveform.ndim != 2:
        raise ValueError(f"expected audio shaped (channels, samples), got {tuple(waveform.shape)}")
    if waveform.shape[0] != params.channels:
        raise ValueError(
            f"audio has {waveform.shape[0]} channels but the parameters want {params.channels}; "
            "mix or duplicate channels first with to_channels()"
        )
    linear = linear_from_audio(waveform, params, circular=circular)
    filterbank = mel_filterbank(params).to(device=linear.device, dtype=linear.dtype)
    return torch.matmul(linear.transpose(-1, -2), filterbank).transpose(-1, -2)


def linear_from_mel(
    mel: torch.Tensor, params: SpectrogramParams, n_fft: int | None = None
) -> torch.Tensor:
    """Linear-frequency amplitudes (..., n_fft // 2 + 1, columns) from mel amplitudes.

    ``n_fft`` may differ from the parameters' own: mel bands are defined in hertz, so a vocoder
    can reconstruct at a cheaper FFT size than the image was made with. The result is the
    spectrum whose mel at *that* FFT size is ``mel``; since a band sums ``n_fft / params.n_fft``
    times as many bins there, the STFT of the same audio at ``n_fft`` is ``n_fft / params.n_fft``
    times this (the vocoder applies that factor itself).
    """
    inverse = mel_pseudo_inverse(params, n_fft, device=mel.device, dtype=mel.dtype)
    return torch.matmul(inverse, mel).clamp_(min=0.0)


def audio_from_mel(
    mel: torch.Tensor,
    params: SpectrogramParams,
    *,
    n_iter: int = 32,
    momentum: float = 0.99,
    seed: int = 0,
) -> torch.Tensor:
    """Float audio in [-1, 1], shape (channels, samples), by torchaudio's Griffin-Lim.

    This is Riffusion's reference reconstruction (32 iterations, momentum 0.99 at the image's own
    FFT size). It is slow; the streaming path uses ``streamer.audio.vocoder`` instead.
    """
    linear = linear_from_mel(mel, params)
    griffin_lim = torchaudio.transforms.GriffinLim(
        n_fft=params.n_fft,
        n_iter=n_iter,
        win_length=params.win_length,
        hop_length=params.hop_length,
        window_fn=torch.hann_window,
        power=1.0,
        momentum=momentum,
        length=params.num_samples(mel.shape[-1] - 1),
        rand_init=True,
    ).to(linear.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        waveform = griffin_lim(linear)
    return (waveform / SAMPLE_SCALE).clamp_(-1.0, 1.0)


def to_channels(waveform: torch.Tensor, channels: int) -> torch.Tensor:
    """Audio (channels, samples) mixed down to mono or spread to stereo, as Riffusion does:
    mono is the mean of the channels."""
    if waveform.shape[0] == channels:
        return waveform
    if channels == 1:
        return waveform.mean(dim=0, keepdim=True)
    if channels == 2 and waveform.shape[0] == 1:
        return waveform.expand(2, -1).clone()
    raise ValueError(f"cannot turn {waveform.shape[0]} channels into {channels}")
