import io

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
import torchaudio.compliance.kaldi as kaldi

from bigssl.audio import AudioError, Fbank, FbankConfig, decode_audio, encode_flac


def tone(freq: float, rate: int, seconds: float = 1.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_fbank_matches_torchaudio_reference_on_decoded_flac():
    rng = np.random.default_rng(0)
    audio = np.clip(tone(440, 16000) + 0.05 * rng.standard_normal(16000), -1, 1).astype(np.float32)
    samples, rate = decode_audio(encode_flac(audio, 16000))
    ours = Fbank().extract(samples, rate)
    wave, ref_rate = sf.read(io.BytesIO(encode_flac(audio, 16000)), dtype="int16")
    reference = kaldi.fbank(
        torch.tensor(wave, dtype=torch.float32).unsqueeze(0),
        num_mel_bins=80,
        dither=0.0,
        energy_floor=0.0,
        sample_frequency=ref_rate,
    ).numpy()
    assert ours.shape == reference.shape == (FbankConfig().num_frames(1.0), 80)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-3)


def test_resampled_fbank_matches_torchaudio_and_leaves_onednn_as_it_was():
    rng = np.random.default_rng(1)
    audio = np.clip(tone(440, 22050) + 0.05 * rng.standard_normal(22050), -1, 1)
    audio = audio.astype(np.float32)
    torch.backends.mkldnn.enabled = True
    ours = Fbank().extract(audio, 22050)  # resamples with oneDNN off (ATen's conv is faster)
    assert torch.backends.mkldnn.enabled
    wave = torchaudio.functional.resample(torch.from_numpy(audio), 22050, 16000)
    reference = kaldi.fbank(
        wave.unsqueeze(0) * 32768.0, num_mel_bins=80, dither=0.0, energy_floor=0.0
    ).numpy()
    assert ours.shape == reference.shape == (FbankConfig().num_frames(1.0), 80)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-3)


def test_tone_energy_lands_in_the_right_mel_bin_at_any_input_rate():
    peaks = {}
    for rate in (8000, 16000, 22050, 44100):
        feats = Fbank().extract(tone(1000, rate), rate)
        assert feats.shape[1] == 80 and np.isfinite(feats).all()
        peaks[rate] = int(np.argmax(feats.mean(axis=0)))
    # Resampling to 16 kHz first: a 1 kHz tone peaks in the same bin whatever the input rate.
    assert max(peaks.values()) - min(peaks.values()) <= 1
    low = int(np.argmax(Fbank().extract(tone(300, 16000), 16000).mean(axis=0)))
    assert low < peaks[16000]


def test_utterance_normalisation_gives_zero_mean_unit_variance():
    noisy = tone(500, 16000, 2.0) + 0.1 * np.random.default_rng(0).standard_normal(32000).astype(
        np.float32
    )
    feats = Fbank(FbankConfig(normalize="utterance")).extract(noisy, 16000)
    np.testing.assert_allclose(feats.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(feats.std(axis=0), 1, atol=5e-3)  # torch std is unbiased


def test_decode_rejects_garbage_and_empty_audio():
    with pytest.raises(AudioError, match="undecodable"):
        decode_audio(b"not audio at all" * 10)
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(0, dtype=np.float32), 16000, format="WAV")
    with pytest.raises(AudioError, match="zero-length"):
        decode_audio(buffer.getvalue())


def test_stereo_is_mixed_down_and_rate_kept():
    stereo = np.stack([tone(440, 22050), np.zeros(22050, np.float32)], axis=1)
    samples, rate = decode_audio(encode_flac(stereo, 22050))
    assert rate == 22050 and samples.ndim == 1
    assert np.abs(samples).max() == pytest.approx(0.15, abs=0.01)
