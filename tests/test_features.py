import numpy as np
import pytest
import soundfile
import torch
import torchaudio

from mae_ast_plugin.features import (
    AudioError,
    FbankConfig,
    compute_fbank,
    load_audio,
    num_frames,
    pad_features,
)


def test_fbank_is_the_authors_kaldi_call():
    wave = (
        torch.from_numpy(np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32))
        * 0.1
    )
    ours = compute_fbank(wave, FbankConfig())
    theirs = torchaudio.compliance.kaldi.fbank(
        wave.view(1, -1), sample_frequency=16000, use_energy=False, num_mel_bins=128
    )
    assert torch.equal(ours, theirs)
    assert ours.shape == (num_frames(wave.numel(), FbankConfig()), 128)


def test_ten_seconds_give_998_frames():
    assert num_frames(160000, FbankConfig()) == 998
    assert num_frames(399, FbankConfig()) == 0
    assert num_frames(400, FbankConfig()) == 1


def test_load_audio_mixes_down_and_resamples(tmp_path):
    t = np.arange(22050) / 22050
    left = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    soundfile.write(tmp_path / "stereo.wav", np.stack([left, -left], axis=1), 22050)
    wave = load_audio(str(tmp_path / "stereo.wav"), 16000)
    assert wave.shape == (16000,)
    assert wave.abs().max() < 1e-4  # the channels cancel: it really is a mean over channels

    soundfile.write(tmp_path / "mono.flac", left, 22050)
    wave = load_audio(str(tmp_path / "mono.flac"), 16000)
    assert wave.shape == (16000,)
    assert 0.9 < wave.abs().max() < 1.1


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "cannot read audio file"),
        ("empty", "is empty"),
        ("corrupt", "cannot read audio file"),
        ("nan", "NaN or infinite"),
    ],
)
def test_load_audio_errors_name_the_file(tmp_path, kind, message):
    path = tmp_path / f"{kind}.wav"
    if kind == "empty":
        soundfile.write(path, np.zeros(0, dtype=np.float32), 16000)
    elif kind == "corrupt":
        path.write_bytes(b"RIFF\x00\x00garbage" * 10)
    elif kind == "nan":
        data = np.zeros(1600, dtype=np.float32)
        data[10] = np.nan
        soundfile.write(path, data, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match=message) as info:
        load_audio(str(path), 16000)
    assert str(path) in str(info.value)


def test_fbank_of_too_short_clip_is_a_clear_error():
    with pytest.raises(AudioError, match="shorter than one 25.0 ms analysis window"):
        compute_fbank(torch.zeros(300), FbankConfig())


def test_pad_features_mask():
    batch, mask = pad_features([torch.ones(3, 4), torch.ones(5, 4)], 4)
    assert batch.shape == (2, 5, 4)
    assert mask.tolist() == [[False] * 3 + [True] * 2, [False] * 5]
    assert batch[0, 3:].abs().sum() == 0
