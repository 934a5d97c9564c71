"""The vocoder turns spectrogram frames into seamless loops, as well as Riffusion's reference
reconstruction and continuing each frame coherently from the one before."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from material import groove, song
from streamer.audio.measures import high_passed, level_db, spectral_convergence
from streamer.audio.vocoder import Vocoder, VocoderConfig
from streamer.spectrogram import codec
from streamer.spectrogram.params import SpectrogramParams

PARAMS = SpectrogramParams()
LOOP = 512 * PARAMS.hop_length  # one frame: 225792 samples, 5.12 s
#: Riffusion's reconstruction (torchaudio Griffin-Lim, 32 iterations, momentum 0.99, n_fft 17640)
#: of these grooves measures 0.059-0.064 (benchmarks/vocoder.py); the issue's figure is 0.075.
BASELINE_SPECTRAL_CONVERGENCE = 0.075


def mel_of(samples: np.ndarray) -> torch.Tensor:
    return codec.mel_from_audio(torch.from_numpy(samples)[None], PARAMS, circular=True)


@pytest.fixture(scope="module")
def vocoder() -> Vocoder:
    return Vocoder(PARAMS)


@pytest.fixture(scope="module")
def grooves() -> list[np.ndarray]:
    """A gradual change, as consecutive frames of one stream: groove 0 turning into groove 1."""
    first, second = groove(seed=0).samples, groove(seed=1).samples
    return [first, 0.7 * first + 0.3 * second, 0.4 * first + 0.6 * second]


@pytest.fixture(scope="module")
def cold_frame(vocoder, grooves):
    return vocoder.vocode(mel_of(grooves[0]))


def test_a_frame_becomes_exactly_one_loop_period(cold_frame):
    assert cold_frame.samples.shape == (1, LOOP)
    assert cold_frame.samples.dtype == np.float32
    assert np.all(np.isfinite(cold_frame.samples))
    assert np.abs(cold_frame.samples).max() <= 1.0


def test_the_loop_wraps_around_without_a_jump(cold_frame):
    """Played twice in a row, the seam jumps no more than the loop's own 99.9th-percentile
    high-passed step (Riffusion's non-circular reconstruction of this groove jumps twice that)."""
    jumps = high_passed(np.tile(cold_frame.samples, 2))
    assert jumps[LOOP - 2 : LOOP + 3].max() <= np.percentile(jumps[:LOOP], 99.9)


def test_a_cold_frame_is_as_faithful_as_riffusions_reconstruction(cold_frame, grooves):
    error = spectral_convergence(cold_frame.samples, grooves[0][None], PARAMS)
    assert error <= BASELINE_SPECTRAL_CONVERGENCE


def test_the_level_of_the_source_is_kept(cold_frame, grooves):
    assert abs(level_db(cold_frame.samples) - level_db(grooves[0])) <= 1.0


def test_consecutive_frames_continue_each_others_phase(vocoder, grooves, cold_frame):
    """Warm-started frames converge further in half the iterations and stay coherent with their
    predecessor (so a crossfade between them neither cancels nor phases); cold starts do not."""
    previous, errors, correlations = cold_frame, [], []
    for samples in grooves[1:]:
        frame = vocoder.vocode(mel_of(samples), previous)
        assert frame.warm
        errors.append(spectral_convergence(frame.samples, samples[None], PARAMS))
        correlations.append(np.corrcoef(frame.samples[0], previous.samples[0])[0, 1])
        previous = frame
    cold = vocoder.vocode(mel_of(grooves[1]))
    cold_correlation = np.corrcoef(cold.samples[0], cold_frame.samples[0])[0, 1]
    source_correlation = np.corrcoef(grooves[0], grooves[1])[0, 1]

    assert max(errors) <= 0.055  # the stretch goal
    assert min(correlations) >= 0.9 * source_correlation
    assert cold_correlation < 0.5 * source_correlation


def test_a_frame_unlike_the_last_gets_the_full_iterations(vocoder, cold_frame):
    different = song(5.12, seed=9)[None]
    frame = vocoder.vocode(mel_of(different[0]), cold_frame)
    assert not frame.warm
    assert spectral_convergence(frame.samples, different, PARAMS) <= BASELINE_SPECTRAL_CONVERGENCE


def test_stereo_frames_and_the_full_rate_path():
    stereo = SpectrogramParams(stereo=True)
    left, right = groove(seed=2).samples, groove(seed=3).samples
    audio = torch.from_numpy(np.stack([left, right]))
    mel = codec.mel_from_audio(audio, stereo, circular=True)[..., :128]  # 1.28 s is enough here
    for decimation in (1, 2):
        frame = Vocoder(stereo, VocoderConfig(iterations=8, decimation=decimation)).vocode(mel)
        assert frame.samples.shape == (2, 128 * stereo.hop_length)
        # each channel is reconstructed from its own magnitudes
        for channel, source in enumerate((left, right)):
            level = level_db(frame.samples[channel])
            assert abs(level - level_db(source[: 128 * stereo.hop_length])) <= 1.5


def test_inputs_it_cannot_reconstruct_are_refused(vocoder):
    with pytest.raises(ValueError, match="512"):
        vocoder.vocode(np.zeros((1, 256, 512), dtype=np.float32))
    with pytest.raises(ValueError, match="even width"):
        vocoder.vocode(np.zeros((1, 512, 511), dtype=np.float32))
    with pytest.raises(ValueError, match="decimation=1"):
        Vocoder(SpectrogramParams(max_frequency=20000))
    with pytest.raises(ValueError, match="momentum"):
        VocoderConfig(momentum=1.5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_gpu_gives_the_same_loop(grooves):
    mel = mel_of(grooves[0])
    config = VocoderConfig(iterations=8)
    on_cpu = Vocoder(PARAMS, config).vocode(mel).samples
    on_gpu = Vocoder(PARAMS, dataclasses.replace(config, device="cuda")).vocode(mel).samples
    assert spectral_convergence(on_gpu, on_cpu, PARAMS) < 0.01
