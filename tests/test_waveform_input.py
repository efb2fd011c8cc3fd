"""Waveforms handed to the Python API are read the way training reads files:
``features.as_mono_waveform`` and ``MaeAstEncoder.extract_features`` against ``load_audio``."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from mae_ast_plugin.encoder import load_encoder
from mae_ast_plugin.features import AudioError, as_mono_waveform, load_audio

CHECKPOINT = Path(__file__).parent / "fixtures" / "authors-mae-ast" / "authors_patch_checkpoint.pt"


def stereo_file(path, subtype, rate=16000, seconds=0.5):
    rng = np.random.default_rng(0)
    t = np.arange(int(rate * seconds)) / rate
    left = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))
    soundfile.write(path, np.stack([left, -0.5 * left], axis=1), rate, subtype=subtype)
    return str(path)


# Every (file format, dtype) a soundfile user meets; float files read as integers are clipped by
# libsndfile, so that pairing is no one's format.
READS = [
    (subtype, dtype)
    for subtype in ("PCM_16", "PCM_24", "PCM_32", "PCM_U8", "FLOAT", "DOUBLE")
    for dtype in ("float32", "float64", "int16", "int32")
    if not (dtype.startswith("int") and subtype in ("FLOAT", "DOUBLE"))
]


@pytest.mark.parametrize("subtype, dtype", READS)
def test_every_soundfile_read_gives_what_load_audio_gives(tmp_path, subtype, dtype):
    path = stereo_file(tmp_path / "x.wav", subtype)
    expected = load_audio(path, 16000)
    wave, _ = soundfile.read(path, dtype=dtype)  # (samples, 2), as the README snippet reads
    tolerance = 2.0**-15 if dtype == "int16" else 1e-7  # int16 keeps only 16 of 24/32 bits
    for array, axis in ((wave, 1), (wave.T, 0), (wave.T.copy(), 0)):
        for value in (array, torch.from_numpy(np.ascontiguousarray(array))):
            got = as_mono_waveform(value, channel_axis=axis)
            assert got.dtype == torch.float32 and got.shape == expected.shape
            assert torch.allclose(got, expected, rtol=0, atol=tolerance), (subtype, dtype, axis)


def test_eight_bit_unsigned_and_mono_layouts(tmp_path):
    path = stereo_file(tmp_path / "u8.wav", "PCM_U8")
    as_int16, _ = soundfile.read(path, dtype="int16")  # libsndfile shifts u8 into int16
    unsigned = ((as_int16.astype(np.int32) >> 8) + 128).astype(np.uint8)  # the file's bytes
    assert torch.equal(as_mono_waveform(unsigned, channel_axis=1), load_audio(path, 16000))
    mono = np.linspace(-1, 1, 100, dtype=np.float32)
    for layout in (mono, mono[None, :], mono[:, None], mono.tolist()):
        assert torch.equal(as_mono_waveform(layout), torch.from_numpy(mono))


@pytest.mark.parametrize(
    "audio, message",
    [
        (np.zeros((400, 400), np.float32), r"shape \(400, 400\).*channel_axis=1.*channel_axis=0"),
        (np.zeros((4, 4), np.float32), r"shape \(4, 4\).*channel_axis"),
        (np.zeros((16000, 2), np.float32), r"shape \(16000, 2\) has several channels.*mono"),
        (torch.zeros(2, 16000), r"shape \(2, 16000\) has several channels.*channel_axis=0"),
        (np.zeros((2, 3, 100), np.float32), r"shape \(2, 3, 100\)"),
        (np.zeros(0, np.float32), "empty"),
        (np.array([0.0, np.nan], np.float32), "NaN or infinite"),
        (np.array([0.0, np.inf]), "NaN or infinite"),
        (np.zeros(10, np.int64), "int64"),
        (np.array(["a", "b"]), "not audio"),
    ],
)
def test_bad_arrays_are_refused_clearly(audio, message):
    with pytest.raises(AudioError, match=message):
        as_mono_waveform(audio)


def test_stated_channel_axis_settles_an_ambiguous_shape():
    square = np.arange(400 * 400, dtype=np.float32).reshape(400, 400) / 1e6
    for axis in (0, 1):
        expected = torch.from_numpy(square.mean(axis))
        assert torch.allclose(as_mono_waveform(square, channel_axis=axis), expected)


@pytest.fixture(scope="module")
def encoder():
    return load_encoder(str(CHECKPOINT))


def test_extract_features_reads_arrays_like_files(encoder, tmp_path):
    """The README snippet on a 44.1 kHz 24-bit stereo file: the same features as the file's
    mono mix loaded for training, in every layout and dtype a reader returns."""
    path = stereo_file(tmp_path / "speech.wav", "PCM_24", rate=44100)
    reference = encoder.extract_features([load_audio(path, 16000)], 16000).last_hidden_state
    float_wave, rate = soundfile.read(path, dtype="float32")  # (samples, 2)
    int_wave, _ = soundfile.read(path, dtype="int32")
    for clip, axis in ((float_wave, 1), (torch.from_numpy(float_wave.T.copy()), 0), (int_wave, 1)):
        out = encoder.extract_features([clip], sample_rate=rate, channel_axis=axis)
        out = out.last_hidden_state
        assert out.shape == reference.shape
        assert torch.allclose(out, reference, atol=1e-5)


def test_extract_features_names_the_bad_clip(encoder):
    good = np.zeros(16000, np.float32)
    with pytest.raises(AudioError, match=r"waveforms\[1\] contains NaN"):
        encoder.extract_features([good, np.full(16000, np.nan, np.float32)], 16000)
    with pytest.raises(AudioError, match=r"waveforms\[0\] is empty"):
        encoder.extract_features([np.zeros(0, np.float32), good], 16000)
    with pytest.raises(AudioError, match=r"waveforms\[1\]: clip of 100 samples is shorter"):
        encoder.extract_features([good, good[:100]], 16000)
    # batched with a longer clip it would be all padding (an empty mean): refused the same way
    with pytest.raises(AudioError, match=r"waveforms\[1\]: 8 filterbank frames, fewer than one"):
        encoder.extract_features([good, good[:1600]], 16000)
    with pytest.raises(AudioError, match=r"waveforms\[0\]: a 2-D clip of shape \(3000, 3000\)"):
        encoder.extract_features([np.zeros((3000, 3000), np.float32)], 16000)
    with pytest.raises(AudioError, match="sample rate"):
        encoder.extract_features([good], sample_rate=0)


def test_multichannel_clip_without_channel_axis_is_refused_by_name(encoder, tmp_path):
    """The old README snippet on a stereo file: a clear error naming the clip, its shape and the
    option to pass, never the interleaved samples encoded as a clip twice as long."""
    path = stereo_file(tmp_path / "speech.wav", "PCM_16")
    wave, rate = soundfile.read(path, dtype="float32")
    with pytest.raises(AudioError, match=r"waveforms\[0\].*\(8000, 2\).*channel_axis=1"):
        encoder.extract_features([wave], sample_rate=rate)
