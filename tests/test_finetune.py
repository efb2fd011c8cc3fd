"""Fine-tuning: every recipe through fairseq-hydra-train from a checkpoint pretrained in this
session (and one from the authors' checkpoint), evaluation of the results, label-file errors,
and the classifier's options."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq import tasks
from finetune_helpers import (
    RECIPES,
    TINY_FINETUNE,
    checkpoint_of,
    pretrained_checkpoint,
    recipe_data,
    write_labelled_corpus,
)
from omegaconf import OmegaConf

from mae_ast_plugin.data.labelled_dataset import LabelError
from mae_ast_plugin.evaluation import cv, evaluate
from mae_ast_plugin.features import FbankConfig
from mae_ast_plugin.models import mae_ast_classifier
from mae_ast_plugin.models.mae_ast_classifier import FeatureMismatchError
from mae_ast_plugin.tasks.mae_ast_audio_classification import MaeAstAudioClassificationConfig

EXPECTED_COLUMN = {"esc50": "ESC", "speechcommands_v2": "KS2", "speechcommands_v1": "KS1",
                   "voxceleb1_sid": "SID", "iemocap_er": "ER", "audioset_20k": "AS"}


def make_task(data, **overrides):
    cfg = OmegaConf.merge(
        OmegaConf.structured(MaeAstAudioClassificationConfig(data=str(data))),
        {"_name": "mae_ast_audio_classification", "seed": 1, **overrides},
    )
    return tasks.setup_task(cfg)


# --------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_trains_and_evaluates(recipe, runs, base, tmp_path):
    checkpoint = checkpoint_of(runs, recipe)
    _, multi_label, folds, eval_split = RECIPES[recipe]
    data = recipe_data(base, recipe) / (folds[0] if folds else "")
    out = tmp_path / "metrics.json"
    result = evaluate.evaluate(checkpoint, str(data), split=eval_split, out=out, device="cpu")
    saved = json.loads(out.read_text())
    assert saved["benchmark"] == EXPECTED_COLUMN[recipe]
    assert saved["metric"] == ("mAP" if multi_label else "accuracy")
    assert 0.0 <= saved["value"] <= 1.0 and saved["num_clips"] == 4 and saved["skipped_clips"] == 0
    assert saved["model"] == {"name": "MAE-AST Patch", "encoder_layers": 2, "masking": "Chunked"}
    assert len(saved["per_class"]) == result["num_classes"]
    if multi_label:
        assert saved["classes_without_positives"] == result["num_classes"] - 5
    else:
        assert (tmp_path / "metrics.confusion.png").stat().st_size > 0


@pytest.mark.slow
def test_validation_logs_the_best_checkpoint_metric(runs):
    for recipe, metric in (("esc50", "valid_accuracy"), ("audioset_20k", "valid_mAP")):
        log = (checkpoint_of(runs, recipe).parents[1] / "hydra_train.log").read_text()
        assert f'"{metric}"' in log
        state = torch.load(checkpoint_of(runs, recipe), map_location="cpu", weights_only=False)
        assert 0.0 <= state["extra_state"]["val_loss"] <= 1.0  # the metric chose checkpoint_best


@pytest.mark.slow
def test_authors_checkpoint_with_layer_decay(runs, base, tmp_path):
    checkpoint = checkpoint_of(runs, "authors_layer_decay")
    log = (checkpoint.parents[1] / "hydra_train.log").read_text()
    # 2 encoder layers + embeddings + head: four learning rates, halving per layer down
    assert "'lr': [1.25e-06]" in log and "'lr': [1e-05]" in log
    result = evaluate.evaluate(
        checkpoint,
        str(recipe_data(base, "speechcommands_v1")),
        out=tmp_path / "m.json",
        device="cpu",
    )
    assert result["model"]["encoder_layers"] == 2 and result["benchmark"] == "KS1"


@pytest.mark.slow
def test_scratch_frozen_encoder(runs):
    state = torch.load(
        checkpoint_of(runs, "scratch_frozen"), map_location="cpu", weights_only=False
    )
    assert state["cfg"]["model"]["pretrained_cfg"]["checkpoint"] == ""
    assert state["cfg"]["model"]["pretrained_cfg"]["model"]["encoder_layers"] == 2
    assert (
        "num. trained: 9,476"
        in (checkpoint_of(runs, "scratch_frozen").parents[1] / "hydra_train.log").read_text()
    )


@pytest.mark.slow
def test_finetuned_checkpoint_loads_without_training_data_or_pretrained_file(runs, monkeypatch):
    from mae_ast_plugin.tools.predict import load_classifier

    def no_pretrained_file(path):
        raise AssertionError(f"read the pretrained checkpoint {path}")

    monkeypatch.setattr(mae_ast_classifier, "encoder_source", no_pretrained_file)
    model, task = load_classifier(str(checkpoint_of(runs, "esc50")), data="/nonexistent/data")
    assert len(task.classes) == 50 and task.classes.names[3] == "class 3, a test class"
    logits = model(fbank=torch.randn(1, 100, 128))["logits"]
    assert logits.shape == (1, 50)


@pytest.mark.slow
def test_cross_validation_runner(runs, base, tmp_path):
    """Two ESC-50 folds: fold 1 reuses the recipe run (its metrics.json, made from the same
    inputs), fold 2 trains; the summary averages test accuracy."""
    data = recipe_data(base, "esc50")
    out = tmp_path / "esc50_cv"
    shutil.copytree(checkpoint_of(runs, "esc50").parent, out / "fold1" / "checkpoints")
    evaluate.evaluate(
        out / "fold1/checkpoints/checkpoint_best.pt",
        str(data / "fold1"),
        out=out / "fold1/metrics.json",
        device="cpu",
    )
    # the recipe run was made with this command's inputs: recorded as mae-ast-cv records them
    inputs = cv.fold_inputs("esc50", Path(data).resolve() / "fold1",
                            str(pretrained_checkpoint(base)), TINY_FINETUNE, "test")
    (out / "fold1" / cv.RUN_RECORD).write_text(json.dumps(inputs))
    assert (
        cv.main(
            [
                "--config-name",
                "esc50",
                "--data",
                str(data),
                "--folds",
                "1",
                "2",
                "--pretrained",
                str(pretrained_checkpoint(base)),
                "--out",
                str(out),
                "--device",
                "cpu",
                "--",
                *TINY_FINETUNE,
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    folds = [json.loads((out / f"fold{k}/metrics.json").read_text())["value"] for k in (1, 2)]
    assert summary["benchmark"] == "ESC" and summary["num_folds"] == 2
    assert summary["value"] == pytest.approx(np.mean(folds))
    assert summary["std"] == pytest.approx(np.std(folds, ddof=1))
    with pytest.raises(SystemExit, match="choose checkpoints on the test"):
        cv.main(
            [
                "--config-name",
                "esc50",
                "--data",
                str(data),
                "--pretrained",
                "x",
                "--out",
                str(out),
                "--",
                "dataset.valid_subset=valid,test",
            ]
        )


# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return write_labelled_corpus(
        tmp_path_factory.mktemp("labels"), num_classes=5, splits={"train": 4, "valid": 3}
    )


def copy_split(src, dst):
    shutil.copytree(src, dst, dirs_exist_ok=True)
    return dst


def test_label_index_out_of_range(small_data, tmp_path):
    data = copy_split(small_data, tmp_path / "d")
    (data / "valid.lbl").write_text("0\n7\n1\n")
    with pytest.raises(
        LabelError, match=r"valid\.lbl:2: class index 7 is out of range for the 5 classes"
    ):
        make_task(data).load_dataset("valid")


def test_label_file_shorter_than_manifest(small_data, tmp_path):
    data = copy_split(small_data, tmp_path / "d")
    (data / "valid.lbl").write_text("0\n1\n")
    with pytest.raises(LabelError, match=r"valid\.lbl has 2 lines but .*valid\.tsv has 3 rows"):
        make_task(data).load_dataset("valid")


def test_label_not_an_integer_or_several_in_single_label(small_data, tmp_path):
    data = copy_split(small_data, tmp_path / "d")
    (data / "valid.lbl").write_text("0\ndog\n1\n")
    with pytest.raises(
        LabelError, match=r"valid\.lbl:2: class indices must be comma-separated integers"
    ):
        make_task(data).load_dataset("valid")
    (data / "valid.lbl").write_text("0\n1,2\n1\n")
    with pytest.raises(LabelError, match=r"valid\.lbl:2: expected exactly one class index"):
        make_task(data).load_dataset("valid")
    make_task(data, multi_label=True).load_dataset("valid")  # fine as multi-label data


def test_class_list_errors(small_data, tmp_path):
    data = copy_split(small_data, tmp_path / "d")
    (data / "labels.csv").write_text("index,mid,display_name\n0,/m/a,A\n2,/m/b,B\n")
    with pytest.raises(LabelError, match=r"labels\.csv:3: index '2', expected 1"):
        make_task(data).load_dataset("valid")
    (data / "labels.csv").unlink()
    with pytest.raises(LabelError, match="class list .*labels.csv not found"):
        make_task(data).load_dataset("valid")


def test_labels_follow_manifest_rows_that_are_skipped(small_data, tmp_path):
    data = copy_split(small_data, tmp_path / "d")
    lines = (data / "valid.tsv").read_text().splitlines()
    lines[2] = "broken line without a size"
    (data / "valid.tsv").write_text("\n".join(lines) + "\n")
    (data / "valid.lbl").write_text("0\n1\n2\n")
    task = make_task(data, skip_invalid=True)
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    batch = dataset.collater([dataset[i] for i in range(len(dataset))])
    assert batch["target"].tolist() == [0, 2]  # manifest row 2 and its label are gone


def test_multi_label_targets(tmp_path):
    data = write_labelled_corpus(
        tmp_path / "ml", num_classes=6, multi_label=True, splits={"valid": 4}
    )
    task = make_task(data, multi_label=True)
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    target = dataset.collater([dataset[i] for i in range(4)])["target"]
    expected = torch.zeros(4, 6)
    for row, classes in enumerate([(0, 1), (1, 4), (2, 1), ()]):
        expected[row, list(classes)] = 1.0
    assert torch.equal(target, expected)


@pytest.mark.slow
def test_features_must_match_the_pretrained_checkpoint(base, small_data):
    task = make_task(small_data, features={"num_mel_bins": 64})
    cfg = OmegaConf.create(
        {"_name": "mae_ast_classifier", "pretrained_checkpoint": str(pretrained_checkpoint(base))}
    )
    with pytest.raises(FeatureMismatchError, match="num_mel_bins.*64.*128"):
        task.build_model(cfg)


def build_classifier(base, data, **options):
    task = make_task(data)
    cfg = OmegaConf.create(
        {
            "_name": "mae_ast_classifier",
            "pretrained_checkpoint": str(pretrained_checkpoint(base)),
            **options,
        }
    )
    return task, task.build_model(cfg)


@pytest.mark.slow
def test_the_classifier_and_its_datasets_are_built_whole(base, small_data):
    """The model resolves its encoder's config without writing into the config it was given;
    the task records it in the config that checkpoints save; datasets loaded after the model
    (fairseq_cli/train.py's order) get the token size at construction."""
    checkpoint = str(pretrained_checkpoint(base))
    given = OmegaConf.structured(
        mae_ast_classifier.MaeAstClassifierConfig(pretrained_checkpoint=checkpoint)
    )
    model = mae_ast_classifier.MaeAstClassifier(given, num_classes=3, features=FbankConfig())
    assert given.pretrained_cfg is None
    assert model.cfg.pretrained_cfg["checkpoint"] == checkpoint
    assert model.front_end.cfg == FbankConfig()

    task = make_task(small_data)
    cfg = OmegaConf.create({"_name": "mae_ast_classifier", "pretrained_checkpoint": checkpoint})
    model = task.build_model(cfg)
    assert cfg.pretrained_cfg == model.cfg.pretrained_cfg
    assert cfg.pretrained_cfg["model"]["encoder_layers"] == 2
    task.load_dataset("train")
    assert task.dataset("train").min_frames == model.min_frames == 16


@pytest.mark.slow
def test_layer_decay_requires_the_composite_optimizer(base, small_data):
    from fairseq.optim.adam import FairseqAdam, FairseqAdamConfig

    _, model = build_classifier(base, small_data, layer_decay=0.5)
    scales = {
        name: p.optim_overrides["optimizer"]["lr_scale"] for name, p in model.named_parameters()
    }
    assert scales["encoder_model.post_extract_proj.weight"] == 0.125
    assert scales["encoder_model.encoder.layers.1.fc1.weight"] == 0.5
    assert scales["head.1.weight"] == 1.0
    adam = FairseqAdam(
        OmegaConf.structured(FairseqAdamConfig(lr=[1e-4], tpu=False)), list(model.parameters())
    )
    with pytest.raises(ValueError, match="layer_decay=0.5 needs optimizer._name=composite"):
        model.check_optimizer(adam)


@pytest.mark.slow
def test_augmentations_and_layer_weighting(base, small_data):
    torch.manual_seed(0)
    _, model = build_classifier(
        base,
        small_data,
        layer_weighting=True,
        time_mask_width=30,
        freq_mask_width=20,
        mixup_prob=1.0,
        freeze_encoder=True,
    )
    source = torch.randn(3, 120, 128)
    padding = torch.zeros(3, 120, dtype=torch.bool)
    padding[2, 60:] = True
    masked = model.spec_augment(source, padding)
    changed = masked != source
    assert changed.any() and not changed[2, 60:].any()  # padding is never masked
    mixed, soft = model.mixup(source, padding, torch.tensor([0, 1, 2]))
    assert soft.shape == (3, 5) and torch.allclose(soft.sum(dim=1), torch.ones(3))
    model.train()
    assert not model.encoder_model.training  # frozen encoder stays in eval mode
    out = model(fbank=source, padding_mask=padding, target=torch.tensor([0, 1, 2]))
    out["logits"].sum().backward()
    assert model.layer_weights.grad is not None
    assert all(p.grad is None for p in model.encoder_model.parameters())
