"""The shared feature pipeline: audio reading (RIFF and NIST SPHERE), MFCC + deltas, cache, batching."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.fft
import scipy.signal
import soundfile
import torch

from lightning_local.data.speech import (
    FeatureCache,
    MFCCSettings,
    SpeechDataError,
    Utterance,
    mfcc_features,
    pad_batch,
    read_audio,
    speaker_split,
)

UTTERANCE = "TIMIT/TRAIN/DR1/FVMH0/SX116"


def reference_mfcc(audio: np.ndarray, rate: int) -> np.ndarray:
    """13 MFCCs written out step by step: 25 ms periodic Hamming windows centred every 10 ms, |FFT|^2, mel, dB, DCT."""
    window, hop, n_fft = int(0.025 * rate), int(0.010 * rate), 512
    padded = np.pad(audio.astype(np.float64), n_fft // 2)  # frame i centred on sample i * hop
    frames = np.stack([padded[i * hop : i * hop + n_fft] for i in range(1 + len(audio) // hop)])
    taper = np.zeros(n_fft)
    start = (n_fft - window) // 2
    taper[start : start + window] = scipy.signal.get_window("hamming", window)
    power = np.abs(np.fft.rfft(frames * taper, axis=1)) ** 2
    import librosa

    mel = power @ librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=40).T
    db = 10 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - 80.0)
    return scipy.fft.dct(db, type=2, norm="ortho", axis=1)[:, :13]


def test_mfcc_are_25ms_windows_every_10ms(timit_sample):
    audio, rate = read_audio(str(timit_sample / f"{UTTERANCE}.WAV"))
    features = mfcc_features(audio, rate)
    assert rate == 16000 and features.dtype == np.float32
    assert features.shape == (1 + len(audio) // 160, 39)
    expected = reference_mfcc(audio, rate)
    assert np.abs(features[:, :13] - expected).max() < 1e-3 * np.abs(expected).max()


def test_deltas_are_local_polynomial_derivatives(timit_sample):
    features = mfcc_features(*read_audio(str(timit_sample / f"{UTTERANCE}.WAV")))
    mfcc, delta, delta2 = features[:, :13], features[:, 13:26], features[:, 26:]
    offsets = np.arange(-4, 5)
    for t in range(4, len(mfcc) - 4):
        window = mfcc[t - 4 : t + 5].astype(np.float64)
        # HTK's regression formula for the first delta, a least-squares parabola for the second.
        np.testing.assert_allclose(delta[t], offsets @ window / (offsets**2).sum(), rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(delta2[t], 2 * np.polyfit(offsets, window, 2)[0], rtol=1e-4, atol=1e-3)


def test_nist_sphere_reads_like_the_riff_original(timit_sample, tmp_path):
    riff = timit_sample / f"{UTTERANCE}.WAV"
    samples, rate = soundfile.read(riff, dtype="int16")
    sphere = tmp_path / "SX116.WAV"
    soundfile.write(sphere, samples, rate, format="NIST", subtype="PCM_16")
    assert sphere.read_bytes()[:7] == b"NIST_1A" and riff.read_bytes()[:4] == b"RIFF"
    audio_riff, rate_riff = read_audio(str(riff))
    audio_sphere, rate_sphere = read_audio(str(sphere))
    assert rate_riff == rate_sphere == 16000
    np.testing.assert_array_equal(audio_sphere, audio_riff)
    np.testing.assert_array_equal(mfcc_features(audio_sphere, rate_sphere), mfcc_features(audio_riff, rate_riff))


def test_unreadable_and_stereo_audio_are_clear_errors(tmp_path):
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnonsense")
    with pytest.raises(SpeechDataError, match="Cannot read the audio file .*broken.wav"):
        read_audio(str(broken))
    stereo = tmp_path / "stereo.wav"
    soundfile.write(stereo, np.zeros((800, 2), np.int16), 8000)
    with pytest.raises(SpeechDataError, match="2 channels"):
        read_audio(str(stereo))


def test_short_recordings_and_8khz(fsdd_root):
    path = min((fsdd_root / "recordings").iterdir(), key=lambda p: p.stat().st_size)  # the shortest, ~0.14 s
    audio, rate = read_audio(str(path))
    features = mfcc_features(audio, rate)
    assert rate == 8000 and MFCCSettings().frame_sizes(rate) == (200, 80, 256)
    assert features.shape == (1 + len(audio) // 80, 39) and np.isfinite(features).all()


def test_cache_returns_the_same_features_and_can_be_off(timit_sample, tmp_path, monkeypatch):
    monkeypatch.setenv("LIGHTNING_LOCAL_CACHE", str(tmp_path / "cache"))
    paths = [str(p) for p in sorted((timit_sample / "TIMIT/TRAIN/DR1/FVMH0").glob("SX*.WAV"))[:3]]
    first = FeatureCache(MFCCSettings())
    extracted = [first.features(p) for p in paths]
    assert (first.misses, first.hits) == (3, 0)
    second = FeatureCache(MFCCSettings())
    for path, expected in zip(paths, extracted):
        np.testing.assert_array_equal(second.features(path), expected)
    assert (second.misses, second.hits) == (0, 3)
    other = FeatureCache(MFCCSettings(n_mfcc=12))  # other settings, other entries
    assert other.features(paths[0]).shape[1] == 36 and other.misses == 1
    off_folder = tmp_path / "off"
    monkeypatch.setenv("LIGHTNING_LOCAL_CACHE", str(off_folder))
    off = FeatureCache(MFCCSettings(), enabled=False)
    off.features(paths[0])
    off.features(paths[0])
    assert off.misses == 2 and not off_folder.exists()


def test_pad_batch_pads_frames_with_zeros_and_frame_labels_with_ignore_index():
    a, b = torch.ones(3, 2), torch.full((5, 2), 2.0)
    frames, labels = pad_batch([(a, torch.tensor([0, 1, 2])), (b, torch.tensor([3, 3, 3, 3, 3]))])
    assert frames.shape == (2, 5, 2) and frames.dtype == torch.float32 and labels.dtype == torch.int64
    assert torch.equal(frames[0, 3:], torch.zeros(2, 2)) and torch.equal(frames[1], b)
    assert labels.tolist() == [[0, 1, 2, -100, -100], [3, 3, 3, 3, 3]]
    frames, labels = pad_batch([(a, 4), (b, 7)], length=4)  # fixed length: pad or cut
    assert frames.shape == (2, 4, 2) and labels.tolist() == [4, 7]
    assert torch.equal(frames[1], b[:4]) and torch.equal(frames[0, 3], torch.zeros(2))


def test_speaker_split_holds_out_whole_speakers():
    utterances = [Utterance(f"{s}/{i}.wav", s) for s in "ABCDEFGHIJ" for i in range(3)]
    kept, held = speaker_split(utterances, 0.2, seed=1)
    assert len({u.speaker for u in held}) == 2 and len(held) == 6
    assert not {u.speaker for u in held} & {u.speaker for u in kept}
    assert speaker_split(utterances, 0.2, seed=1) == (kept, held)
    assert len({u.speaker for u in speaker_split(utterances, 0.01, seed=1)[1]}) == 1  # at least one speaker
