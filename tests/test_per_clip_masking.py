"""Every clip is masked at the ratio asked, whatever it is batched with; batches
budget the same audio per file whatever its native rate."""

import numpy as np
import pytest
import soundfile
import torch
from conftest import TINY_ARCH, synth_clip

from mae_ast_plugin.criterions.mae_ast_criterion import masked_prediction_losses
from mae_ast_plugin.data.fbank_dataset import FbankAudioDataset
from mae_ast_plugin.data.manifest import native_sample_rates, read_manifest
from mae_ast_plugin.features import FbankConfig
from mae_ast_plugin.models.mae_ast import MaeAstModel, MaeAstModelConfig
from mae_ast_plugin.models.ssast import SsastModel, SsastModelConfig
from mae_ast_plugin.modules.masking import num_masked_tokens
from mae_ast_plugin.modules.tokens import sinusoidal_positions

TINY = dict(TINY_ARCH, encoder_layers=1)
# (seconds, native rate): long speech, short 44.1 kHz events, a 22.05 kHz clip, a cropped one
CLIPS = [(2.0, 16000), (0.7, 44100), (1.3, 22050), (3.5, 48000), (0.45, 16000)]


@pytest.fixture(scope="module")
def mixed_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    rng = np.random.default_rng(0)
    lines = [str(root)]
    for i, (seconds, rate) in enumerate(CLIPS):
        clip = synth_clip(rng, seconds, rate)
        soundfile.write(root / f"c{i}.wav", clip, rate)
        lines.append(f"c{i}.wav\t{len(clip)}")  # native-rate sizes, as wav2vec_manifest writes
    (root / "train.tsv").write_text("\n".join(lines) + "\n")
    return root


def dataset(corpus, **kwargs):
    manifest = read_manifest(str(corpus / "train.tsv"))
    return FbankAudioDataset(manifest, FbankConfig(), 3.0, random_crop=False, **kwargs)


def test_batching_sizes_are_16khz_samples_whatever_the_native_rate(mixed_corpus):
    ds = dataset(mixed_corpus)
    expected = [min(int(np.ceil(s * 16000)), 48000) for s, _ in CLIPS]
    assert ds.sizes.tolist() == expected
    # the sizes are the audio the model gets: resampled clip lengths
    assert [ds[i]["source"].shape[0] for i in range(len(CLIPS))] == expected
    # the header scan is cached beside the manifest and reused
    cache = mixed_corpus / "train.tsv.rates.npz"
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns
    rates = native_sample_rates(read_manifest(str(mixed_corpus / "train.tsv")))
    assert rates.tolist() == [rate for _, rate in CLIPS]
    assert cache.stat().st_mtime_ns == stamp
    # given rates are used as they are
    given = dataset(mixed_corpus, sample_rates=np.full(len(CLIPS), 16000))
    assert given.sizes.tolist() == [min(int(s * r), 48000) for s, r in CLIPS]


MODELS = [(MaeAstModel, MaeAstModelConfig), (SsastModel, SsastModelConfig)]


@pytest.mark.parametrize("model_cls, cfg_cls", MODELS)
@pytest.mark.parametrize("mask_type", ["random", "chunk", "span"])
def test_mixed_lengths_and_rates_every_clip_masked_at_its_ratio(
    mixed_corpus, model_cls, cfg_cls, mask_type
):
    ds = dataset(mixed_corpus)
    batch = ds.collater([ds[i] for i in range(len(CLIPS))])
    tokens = {"random": {}, "chunk": {}, "span": dict(span_length=2)}[mask_type]
    torch.manual_seed(0)
    model = model_cls(cfg_cls(**TINY, mask_type=mask_type, **tokens))
    out = model(**batch["net_input"])
    real_tokens = (~out["token_padding"]).sum(1)
    masked = (~out["masked_padding"]).sum(1)
    assert len(set(real_tokens.tolist())) > 2  # the batch really mixes lengths
    for clip_tokens, clip_masked in zip(real_tokens.tolist(), masked.tolist(), strict=True):
        assert clip_masked == num_masked_tokens(clip_tokens, 0.75)
        assert abs(clip_masked - 0.75 * clip_tokens) <= 1
    # no masked slot of a clip points at its padding
    real_slots = ~out["masked_padding"]
    assert not out["token_padding"].gather(1, out["masked_idx"])[real_slots].any()


def test_ssast_replaces_exactly_each_clips_masked_tokens(mixed_corpus):
    ds = dataset(mixed_corpus)
    batch = ds.collater([ds[i] for i in range(len(CLIPS))])
    torch.manual_seed(0)
    model = SsastModel(SsastModelConfig(**TINY)).eval()  # no dropout: inputs compare exactly
    seen = []
    model.encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    out = model(**batch["net_input"], mask=True)
    x = seen[0]
    slots = model.encoder_mask_emb + sinusoidal_positions(x.shape[1], x.shape[2], "cpu", x.dtype)
    replaced = (x == slots.unsqueeze(0)).all(-1)
    assert replaced.sum(1).tolist() == (~out["masked_padding"]).sum(1).tolist()


def test_losses_ignore_padded_masked_slots():
    """Clip 1 masks 3 tokens in a batch of 5 slots: its losses equal those of its 3 slots alone,
    whatever the padding slots hold (as predictions and as InfoNCE negatives)."""
    torch.manual_seed(0)
    recon, cls, target = torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    padding = torch.zeros(2, 5, dtype=torch.bool)
    padding[1, 3:] = True
    mse, infonce, correct = masked_prediction_losses(recon, cls, target, padding)
    alone = masked_prediction_losses(recon[1:, :3], cls[1:, :3], target[1:, :3])
    assert torch.allclose(mse[1], alone[0][0]) and torch.allclose(infonce[1], alone[1][0])
    assert correct[1] == alone[2][0]
    full = masked_prediction_losses(recon[:1], cls[:1], target[:1])
    assert torch.allclose(mse[0], full[0][0]) and torch.allclose(infonce[0], full[1][0])
    # garbage in the padding slots changes nothing
    noisy = [t.clone() for t in (recon, cls, target)]
    for t in noisy:
        t[1, 3:] = 100.0
    again = masked_prediction_losses(*noisy, padding)
    for a, b in zip(again, (mse, infonce, correct), strict=True):
        assert torch.allclose(a.float(), b.float())
    # a clip with no masked token (a static-shape filler) has zero, finite losses
    empty = torch.ones(2, 5, dtype=torch.bool)
    none = masked_prediction_losses(recon, cls, target, empty)
    assert none[0].tolist() == none[1].tolist() == [0.0, 0.0]
