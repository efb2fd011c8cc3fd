"""The comparison `make demo` prints (mae_ast_plugin.experiments.demo): its probe stage on a
tiny task, each accuracy with its standard error, and the verdict on twice the standard error of
the gain."""

import pytest
from test_probe import CHECKPOINT, write_task


def load_demo():
    from mae_ast_plugin.experiments import demo

    return demo


def test_verdict_and_lines():
    demo = load_demo()
    result, lines = demo.comparison_lines(
        "probe:", {"test": 0.40, "test_se": 0.04}, {"test": 0.22, "test_se": 0.03}, "random init"
    )
    assert result["exceeds_2se"] and result["se_of_difference"] == pytest.approx(0.05)
    assert lines[1] == "  pretrained encoder: 0.400 ± 0.040"
    assert lines[2] == "  random init:        0.220 ± 0.030"
    assert "gain +0.180" in lines[3] and "the gain exceeds twice its standard error" in lines[3]
    # a fine-tuning result once reported: 0.417 against 0.344 on 96 clips says nothing
    from mae_ast_plugin.evaluation.probe import binomial_se

    result, lines = demo.comparison_lines(
        "fine-tuned:", {"test": 0.417, "test_se": binomial_se(0.417, 96)},
        {"test": 0.344, "test_se": binomial_se(0.344, 96)}, "from scratch")
    assert not result["exceeds_2se"] and "does NOT exceed" in lines[3]


@pytest.mark.slow
def test_probe_stage_and_timing(tmp_path, monkeypatch):
    demo = load_demo()
    manifests = tmp_path / "manifests"
    write_task(manifests / "keyword", lambda split, i, bands: str(bands[0]))
    monkeypatch.setattr(demo, "OUT", tmp_path / "out")
    monkeypatch.setattr(demo, "MANIFESTS", manifests)
    with demo.stage("probes"):
        probed, control = demo.probe_keyword(CHECKPOINT)
    assert demo.STAGE_TIMES["probes"] > 0
    assert (tmp_path / "out" / "probe_pretrained" / "probe.json").is_file()
    assert (tmp_path / "out" / "probe_random_init" / "probe.png").is_file()
    assert control["test"] >= 0.99  # pitch bands: a probe of any encoder separates them
    assert probed["layer"] >= 1 and 0.0 <= probed["test"] <= 1.0
    result, _ = demo.comparison_lines("probe:", probed, control, "random init")
    assert result["gain"] == pytest.approx(probed["test"] - control["test"])


@pytest.mark.slow
def test_finetune_stage_runs_side_by_side_and_scores_both(tmp_path, monkeypatch, capsys):
    """The demo's fine-tuning stage: both runs (pretrained, scratch with the same encoder size)
    train at once through fairseq-hydra-train, and each best checkpoint is scored on test."""
    demo = load_demo()
    manifests = tmp_path / "manifests"
    write_task(manifests / "keyword", lambda split, i, bands: str(bands[0]))
    monkeypatch.setattr(demo, "OUT", tmp_path / "out")
    monkeypatch.setattr(demo, "MANIFESTS", manifests)
    short = ["optimization.max_update=4", "dataset.validate_interval_updates=2",
             "checkpoint.save_interval_updates=2", "common.log_interval=1",
             "dataset.num_workers=0", "dataset.batch_size=8"]
    results = demo.finetune_keyword({
        "pretrained": [f"model.pretrained_checkpoint={CHECKPOINT}", *short],
        "scratch": ["+init=scratch", *demo.encoder_overrides(CHECKPOINT), *short],
    })
    assert set(results) == {"pretrained", "scratch"}
    for name, result in results.items():
        assert result["clips"] == 12 and 0.0 <= result["test"] <= 1.0
        assert result["test_se"] == pytest.approx(
            (result["test"] * (1 - result["test"]) / 12) ** 0.5)
        assert (tmp_path / "out" / f"keyword_{name}" / "test_metrics.json").is_file()
    printed = capsys.readouterr().out
    # the two runs' log summaries are told apart by their run directory
    assert "[keyword_pretrained]   valid update" in printed
    assert "[keyword_scratch]   valid update" in printed
    scratch_log = (tmp_path / "out" / "keyword_scratch" / "hydra_train.log").read_text()
    assert "'encoder_embed_dim': 64" in scratch_log
    # re-running the demo skips runs finished with the same command and inputs: fairseq would
    # train them one more epoch
    again = demo.finetune_keyword({
        "pretrained": [f"model.pretrained_checkpoint={CHECKPOINT}", *short],
        "scratch": ["+init=scratch", *demo.encoder_overrides(CHECKPOINT), *short],
    })
    assert again == results
    assert (tmp_path / "out" / "keyword_scratch" / "hydra_train.log").read_text() == scratch_log
    assert "finished by an earlier run of the same command and inputs, skipped" in (
        capsys.readouterr().out)


@pytest.mark.slow
def test_a_failed_finetuning_run_is_named(tmp_path, monkeypatch):
    demo = load_demo()
    monkeypatch.setattr(demo, "OUT", tmp_path / "out")
    with pytest.raises(SystemExit, match="keyword_broken/hydra_train.log"):
        demo.hydra_train_together([("config/finetune", "demo_keyword",
                                    tmp_path / "out" / "keyword_broken", ["task.no_such_key=1"])])
