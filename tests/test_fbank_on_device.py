"""Filterbanks of the whole padded batch on the model's device, equal to
torchaudio's Kaldi fbank per clip (the features every other path computes)."""

import pytest
import torch
from omegaconf import OmegaConf

from mae_ast_plugin.data.fbank_cache import build_split
from mae_ast_plugin.features import FbankConfig, batched_fbank, compute_fbank
from mae_ast_plugin.tasks.mae_ast_pretraining import MaeAstPretrainingConfig, MaeAstPretrainingTask

FEATURES = FbankConfig()


@pytest.mark.parametrize("num_mel_bins", [128, 80])
def test_batched_fbank_equals_kaldi_fbank_per_clip(num_mel_bins):
    cfg = FbankConfig(num_mel_bins=num_mel_bins)
    torch.manual_seed(0)
    # odd lengths: one window exactly, one sample more, a partial last shift, a 10-s crop
    lengths = [400, 401, 559, 12345, 16000 * 3 + 77, 160000]
    clips = [0.3 * torch.randn(n) + 0.01 for n in lengths]
    batch = torch.zeros(len(clips), max(lengths) + 123)  # longer than every clip: all padded
    for i, clip in enumerate(clips):
        batch[i, : len(clip)] = clip
    batch[0, 400:] = 5.0  # whatever lies in the padding is ignored
    fbank, padding = batched_fbank(batch, torch.tensor(lengths), cfg)
    assert fbank.shape == (len(clips), 1 + (batch.shape[1] - 400) // 160, num_mel_bins)
    for i, clip in enumerate(clips):
        reference = compute_fbank(clip, cfg)
        assert int((~padding[i]).sum()) == reference.shape[0]
        assert torch.allclose(fbank[i, ~padding[i]], reference, atol=1e-4, rtol=0)
        assert not padding[i, : reference.shape[0]].any() and padding[i, reference.shape[0] :].all()
        assert (fbank[i, padding[i]] == 0).all()


def _pretraining_task(corpus, **options):
    cfg = OmegaConf.structured(
        MaeAstPretrainingConfig(data=str(corpus), seed=3, max_sample_len_s=1.2, **options)
    )
    task = MaeAstPretrainingTask(cfg)
    task.load_dataset("train")
    return task


def test_task_batches_on_device_equal_the_loader_fbank_with_crops(tiny_corpus, tmp_path):
    """The train split crops 1.2 s at random offsets (whole frame shifts, as the fbank cache
    cuts its rows); mixed rates and stereo files.  The waveform batch, turned into filterbanks
    by the task, equals the loader-computed fbank batch and the fbank cache's batch."""
    loader = _pretraining_task(tiny_corpus, fbank_on_device="false")
    device = _pretraining_task(tiny_corpus, fbank_on_device="true")
    assert device.fbank_on_device and not loader.fbank_on_device
    build_split(str(tiny_corpus / "train.tsv"), str(tmp_path / "cache"), "train", FEATURES)
    cache = str(tmp_path / "cache")
    cached = _pretraining_task(tiny_corpus, fbank_on_device="true", fbank_cache=cache)
    indices = list(range(len(loader.dataset("train"))))
    assert any(loader.dataset("train")._crop_start(i, 10**6) > 0 for i in indices)
    for chunk in (indices[:7], indices[7:16], indices[16:]):
        expected = loader.dataset("train").collater([loader.dataset("train")[i] for i in chunk])
        waves = device.dataset("train").collater([device.dataset("train")[i] for i in chunk])
        assert set(waves["net_input"]) == {"waveform", "waveform_lengths"}
        got = device.features_on_device(waves)
        assert torch.equal(got["net_input"]["padding_mask"], expected["net_input"]["padding_mask"])
        source = expected["net_input"]["source"]
        assert torch.allclose(got["net_input"]["source"], source, atol=1e-4)
        from_cache = cached.dataset("train").collater([cached.dataset("train")[i] for i in chunk])
        assert "source" in from_cache["net_input"]  # the cache gives features, as before
        assert torch.allclose(
            from_cache["net_input"]["source"], expected["net_input"]["source"], atol=1e-4
        )


def test_static_shapes_pad_to_the_crop_and_the_batch_size(tiny_corpus):
    for on_device in ("true", "false"):
        task = _pretraining_task(tiny_corpus, fbank_on_device=on_device, static_shapes=True)
        dataset = task.dataset("train")
        with pytest.raises(ValueError, match="dataset.batch_size"):
            task.get_batch_iterator(dataset, max_tokens=40000)
        itr = task.get_batch_iterator(dataset, max_tokens=40000, max_sentences=4)
        shapes = set()
        for batch in itr.next_epoch_itr(shuffle=False):
            source = task.features_on_device(batch)["net_input"]["source"]
            shapes.add(tuple(source.shape))
            assert len(batch["id"]) <= 4
        assert shapes == {(4, 1 + (19200 - 400) // 160, 128)}  # 1.2 s crops, 4 clips
