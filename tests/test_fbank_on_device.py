"""The model owns its front end: the loader yields cropped waveforms, the model computes the Kaldi
fbank inside ``forward`` on its device, bit-identical on the CPU to the per-clip fbank the loader
computed before (torchaudio's Kaldi fbank of each crop), so trained numbers do not change."""

import pytest
import torch
import torchaudio
from conftest import TINY_ARCH
from omegaconf import OmegaConf

from mae_ast_plugin.data.fbank_cache import build_split
from mae_ast_plugin.features import (
    FbankConfig,
    KaldiFbank,
    batched_fbank,
    compute_fbank,
    pad_features,
)
from mae_ast_plugin.modules.mae_ast import MaeAst, MaeAstConfig
from mae_ast_plugin.tasks.mae_ast_pretraining import MaeAstPretrainingConfig, MaeAstPretrainingTask

FEATURES = FbankConfig()


def kaldi_fbank(waveform: torch.Tensor, cfg: FbankConfig) -> torch.Tensor:
    """The loader's fbank before the front end moved into the model: torchaudio's call."""
    return torchaudio.compliance.kaldi.fbank(
        waveform.unsqueeze(0),
        sample_frequency=cfg.sample_rate,
        num_mel_bins=cfg.num_mel_bins,
        frame_length=cfg.frame_length_ms,
        frame_shift=cfg.frame_shift_ms,
        use_energy=False,
    )


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
        reference = kaldi_fbank(clip, cfg)
        assert int((~padding[i]).sum()) == reference.shape[0]
        if reference.shape[0] >= 12:
            assert torch.equal(fbank[i, ~padding[i]], reference)
            assert torch.equal(compute_fbank(clip, cfg), reference)
        else:
            # torch.mm of fewer than 12 rows takes another BLAS kernel (measured: up to 5e-7
            # apart); such clips are shorter than a patch token (16 frames) and never trained on
            assert torch.allclose(fbank[i, ~padding[i]], reference, atol=1e-6, rtol=0)
        assert not padding[i, : reference.shape[0]].any() and padding[i, reference.shape[0] :].all()
        assert (fbank[i, padding[i]] == 0).all()


def _pretraining_task(corpus, **options):
    cfg = OmegaConf.structured(
        MaeAstPretrainingConfig(data=str(corpus), seed=3, max_sample_len_s=1.2, **options)
    )
    task = MaeAstPretrainingTask(cfg)
    task.load_dataset("train")
    return task


def test_in_model_fbank_equals_the_loader_fbank_of_padded_batches(tiny_corpus, tmp_path):
    """Random 1.2-s crops (whole frame shifts), mixed rates and stereo files, batches of mixed
    lengths: the model's front end turns the loader's waveform batch into exactly the batch the
    loader made before (torchaudio's fbank per crop, zero-padded), padding mask included; the
    fbank cache's batch is the same values, and a model fed either gives the same output."""
    task = _pretraining_task(tiny_corpus)
    dataset = task.dataset("train")
    build_split(str(tiny_corpus / "train.tsv"), str(tmp_path / "cache"), "train", FEATURES)
    cached = _pretraining_task(tiny_corpus, fbank_cache=str(tmp_path / "cache")).dataset("train")
    front_end = KaldiFbank(FEATURES)
    torch.manual_seed(0)
    model = MaeAst(MaeAstConfig(**TINY_ARCH), FEATURES).eval()
    indices = list(range(len(dataset)))
    assert any(dataset._crop_start(i, 10**6) > 0 for i in indices)
    for chunk in (indices[:7], indices[7:16], indices[16:]):
        samples = [dataset[i] for i in chunk]
        waves = dataset.collater(samples)
        assert set(waves["net_input"]) == {"source", "padding_mask"}
        assert waves["net_input"]["source"].dtype == torch.float32
        lengths = {int((~row).sum()) for row in waves["net_input"]["padding_mask"]}
        assert len(lengths) > 1  # mixed lengths: padded rows
        before, before_padding = pad_features(
            [kaldi_fbank(s["source"], FEATURES) for s in samples], FEATURES.num_mel_bins
        )
        fbank, padding = front_end(**waves["net_input"])
        assert torch.equal(fbank, before)
        assert torch.equal(padding, before_padding)

        from_cache = cached.collater([cached[i] for i in chunk])
        assert set(from_cache["net_input"]) == {"fbank", "padding_mask"}
        assert torch.equal(from_cache["net_input"]["fbank"], before)
        assert torch.equal(from_cache["net_input"]["padding_mask"], before_padding)
        with torch.no_grad():
            from_waves = model(**waves["net_input"], mask=False)["x"]
            from_fbank = model(**from_cache["net_input"], mask=False)["x"]
        assert torch.equal(from_waves, from_fbank)


def test_front_end_is_float32_under_autocast_and_keeps_state_dicts():
    torch.manual_seed(0)
    waves = 0.3 * torch.randn(2, 8000)
    padding = torch.zeros(2, 8000, dtype=torch.bool)
    padding[1, 5000:] = True
    front_end = KaldiFbank(FEATURES)
    plain = front_end(waves, padding)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = front_end(waves, padding)
    assert autocast[0].dtype == torch.float32 and torch.equal(autocast[0], plain[0])
    assert front_end.state_dict() == {} and not list(front_end.parameters())
    model = MaeAst(MaeAstConfig(**TINY_ARCH))
    assert not any(key.startswith("front_end") for key in model.state_dict())


def test_model_inputs_are_one_kind_at_a_time():
    model = MaeAst(MaeAstConfig(**TINY_ARCH)).eval()
    with pytest.raises(ValueError, match="pass precomputed filterbanks as fbank="):
        model(torch.randn(1, 200, 128), mask=False)  # fbank where waveforms go
    with pytest.raises(ValueError, match="not both or neither"):
        model(torch.randn(1, 16000), fbank=torch.randn(1, 98, 128))
    with pytest.raises(ValueError, match="not both or neither"):
        model(mask=False)


def test_static_shapes_pad_to_the_crop_and_the_batch_size(tiny_corpus, tmp_path):
    """task.static_shapes builds datasets that pad every batch to the crop and to
    dataset.batch_size clips (waveforms and cached filterbanks alike)."""
    build_split(str(tiny_corpus / "train.tsv"), str(tmp_path / "cache"), "train", FEATURES)
    with pytest.raises(ValueError, match="dataset.batch_size"):
        _pretraining_task(tiny_corpus, static_shapes=True, batch_size=None)
    expected = {"source": (4, 19200), "fbank": (4, 1 + (19200 - 400) // 160, 128)}
    for cache in (None, str(tmp_path / "cache")):
        task = _pretraining_task(tiny_corpus, static_shapes=True, batch_size=4, fbank_cache=cache)
        dataset = task.dataset("train")
        assert dataset.pad_to_crop and dataset.pad_to_clips == 4
        with pytest.raises(ValueError, match="max_sentences at most"):
            task.get_batch_iterator(dataset, max_tokens=40000, max_sentences=8)
        itr = task.get_batch_iterator(dataset, max_tokens=40000, max_sentences=4)
        shapes = set()
        for batch in itr.next_epoch_itr(shuffle=False):
            (name,) = set(batch["net_input"]) - {"padding_mask"}
            shapes.add((name, tuple(batch["net_input"][name].shape)))
            assert len(batch["id"]) <= 4
        assert len(shapes) == 1
        name, shape = shapes.pop()
        assert shape == expected[name]
