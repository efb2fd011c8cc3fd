"""The local Table 1 miniature (mae-ast-table1) end to end in its tiny preset: the
synthetic benchmark, four pretrainings, every row fine-tuned and scored on every task, the
results file, the figure and the report; then resuming, and the benchmark's split rules."""

import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import REPO, console_script

pytest.importorskip("espeakng_loader")

TASKS = ("keyword", "speaker", "events")
PRETRAINED_ROWS = ("ssast_patch", "ssast_frame", "mae_ast_patch", "mae_ast_frame")
ROWS = PRETRAINED_ROWS + ("scratch_patch", "scratch_frame")


def run_driver(out: Path, *extra):
    cmd = [console_script("mae-ast-table1"), "--preset", "tiny", "--out", str(out),
           "--report", str(out / "report.md"), "--figure", str(out / "losses.png"), *extra]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return proc, time.monotonic() - started


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("local_table1")
    proc, _ = run_driver(out)
    return out, proc


def read_meta(manifests: Path, part: str, split: str):
    lines = (manifests / part / f"{split}.meta.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.slow
def test_results_file(tiny_run):
    out, _ = tiny_run
    results = json.loads((out / "results.json").read_text())
    assert list(results["rows"]) == list(ROWS)
    assert list(results["tasks"]) == list(TASKS)
    corpus = json.loads((out / "manifests" / "corpus.json").read_text())
    for row in ROWS:
        for task in TASKS:
            cell = results["accuracy"][row][task]
            assert cell["n"] == 1 and len(cell["values"]) == 1
            assert 0.0 <= cell["mean"] <= 1.0 and cell["std"] == 0.0 and cell["se"] >= 0.0
            assert cell["test_clips"] == corpus["counts"][task]["test"]
    assert set(results["pretraining"]) == set(PRETRAINED_ROWS)
    for row, run in results["pretraining"].items():
        assert run["updates"] == 3
        assert run["wall_s"] > 0 and run["cpu_s"] > 0 and run["step_time_s"] >= 0
        assert run["peak_rss_mb"] > 100  # a python process with torch, measured by os.wait4
        assert Path(run["checkpoint"]).is_file()
        assert f"--config-name {row}" in run["command"] and "+table1=pretrain" in run["command"]
    assert 100 < results["baseline_rss_mb"]
    runs = results["finetune_runs"]
    assert len(runs) == len(ROWS) * len(TASKS)
    for run in runs:
        run_dir = out / "finetune" / run["row"] / run["task"] / f"seed{run['seed']}"
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["split"] == "test" and metrics["value"] == run["test_accuracy"]
        assert run["best_valid_accuracy"] is not None
        scratch = run["row"].startswith("scratch")
        assert ("+init=scratch" in run["command"]) == scratch
        assert ("model.pretrained_checkpoint=" in run["command"]) != scratch
    # linear probes: every row on every task, the no-pretraining rows at random init
    for row in ROWS:
        for task in TASKS:
            cell = results["probe"][row][task]
            report = json.loads(Path(cell["report"]).read_text())
            assert cell["encoder"] == ("random-init" if row.startswith("scratch") else "pretrained")
            tokens = row.rsplit("_", 1)[1]
            source = row if row in PRETRAINED_ROWS else f"mae_ast_{tokens}"
            expected = results["pretraining"][source]
            assert cell["checkpoint"] == str(Path(expected["checkpoint"]).resolve())
            assert cell["best"]["layer"] == report["best_layer"]
            assert cell["last"]["layer"] == report["num_layers"] == 2  # the tiny preset's encoder
            for which in ("best", "last"):
                assert 0.0 <= cell[which]["test"] <= 1.0 and cell[which]["test_se"] >= 0.0
            assert report["clips"]["test"] == corpus["counts"][task]["test"]
    machine = results["machine"]
    assert machine["cpu"] and machine["usable_cores"] >= 1
    assert results["run"]["sessions"] and results["run"]["total_wall_s"] > 0


@pytest.mark.slow
def test_report_and_figure(tiny_run):
    out, _ = tiny_run
    report = (out / "report.md").read_text()
    assert (
        "| Model | Keywords (KS1-like) | Speakers (SID-like) | Sound events (ESC-like) |" in report
    )
    for label in (
        "SSAST Patch",
        "SSAST Frame",
        "MAE-AST Patch",
        "MAE-AST Frame",
        "No pretraining, Patch",
        "No pretraining, Frame",
    ):
        assert f"| {label} |" in report
    for claim in ("Claim 1", "Claim 2", "Claim 3"):
        assert claim in report
    assert "| Model (frozen encoder) | Keywords (KS1-like) |" in report
    assert "| No pretraining, Patch (random init) |" in report
    assert report.count("(layer ") >= len(ROWS) * len(TASKS)
    assert "linear probe of the frozen encoders (layer chosen on valid), MAE-AST Patch" in report
    assert "usable cores" in report and "load average" in report
    # the tiny preset fine-tunes once: the caption says so instead of promising a spread
    assert "Test accuracy (%) of one fine-tuning run (seed 1)" in report
    assert "mae-ast-table1 --preset tiny" in report
    runs = len(PRETRAINED_ROWS) + len(ROWS) * len(TASKS)
    assert report.count("fairseq-hydra-train --config-dir") == runs
    assert "![Pretraining loss curves](losses.png)" in report
    figure = (out / "losses.png").read_bytes()
    assert figure.startswith(b"\x89PNG") and len(figure) < 200_000


@pytest.mark.slow
def test_resume_skips_finished_runs_and_keeps_the_discussion(tiny_run):
    out, _ = tiny_run
    before = json.loads((out / "results.json").read_text())
    report = out / "report.md"
    report.write_text(
        report.read_text().replace(
            "(to be written after looking at the numbers above)", "A hand-written discussion."
        )
    )
    proc, seconds = run_driver(out)
    assert "done before" in proc.stdout
    assert seconds < 90  # no training: data check, aggregation, figure and report only
    after = json.loads((out / "results.json").read_text())

    def finished(results):
        return [run["finished"] for run in results["finetune_runs"]]

    assert finished(after) == finished(before)
    assert len(after["run"]["sessions"]) == 1  # a session that trains nothing does not count
    assert "A hand-written discussion." in report.read_text()


@pytest.mark.slow
def test_split_rules(tiny_run):
    out, _ = tiny_run
    manifests = out / "manifests"
    make = load_benchmark_script()
    # keyword: test (and valid) voices are timbres no training clip, pretraining clip or
    # speaker uses
    variants = {
        split: {clip["variant"] for clip in read_meta(manifests, "keyword", split)}
        for split in ("train", "valid", "test")
    }
    assert not variants["test"] & (variants["train"] | variants["valid"])
    assert not variants["valid"] & variants["train"]
    corpus = json.loads((manifests / "corpus.json").read_text())
    held_out = {
        None if v == "None" else v for v in corpus["variants"]["test"] + corpus["variants"]["valid"]
    }
    for split in ("train", "valid"):
        for clip in read_meta(manifests, "pretrain", split):
            assert clip.get("variant") not in held_out or clip["kind"] == "sound"
    speakers = {
        split: read_meta(manifests, "speaker", split) for split in ("train", "valid", "test")
    }
    for clips in speakers.values():
        assert not {clip["variant"] for clip in clips} & held_out
    # speaker: new sentences by known speakers
    texts = {split: {clip["text"] for clip in clips} for split, clips in speakers.items()}
    assert (
        not texts["test"] & (texts["train"] | texts["valid"])
        and not texts["valid"] & texts["train"]
    )
    labels = {split: {clip["label"] for clip in clips} for split, clips in speakers.items()}
    assert labels["test"] == labels["valid"] == labels["train"]
    # events: every clip's frequency and rate bands belong to its split; pretraining uses
    # train bands
    for split in ("train", "valid", "test"):
        for clip in read_meta(manifests, "events", split):
            ((params, _, _, _),) = clip["events"]
            assert params["class"] == make.EVENT_CLASSES[clip["label"]]
            assert make.BAND_SPLITS[params["freq_band"]] == split
            assert make.BAND_SPLITS[params["rate_band"]] == split
            edges = make.band_edges(make.FREQ_RANGE_HZ)
            assert edges[params["freq_band"]] <= params["freq_hz"] <= edges[params["freq_band"] + 1]
    for split in ("train", "valid"):
        for clip in read_meta(manifests, "pretrain", split):
            for params, *_ in clip.get("events", []):
                assert make.BAND_SPLITS[params["freq_band"]] == "train"
                assert make.BAND_SPLITS[params["rate_band"]] == "train"
    # manifests and labels pair up, and every split of every task has every class
    for task in TASKS:
        classes = len((manifests / task / "labels.csv").read_text().splitlines()) - 1
        for split in ("train", "valid", "test"):
            rows = (manifests / task / f"{split}.tsv").read_text().splitlines()[1:]
            lbl = (manifests / task / f"{split}.lbl").read_text().splitlines()
            assert len(rows) == len(lbl) and {int(x) for x in lbl} == set(range(classes))


def load_benchmark_script():
    from mae_ast_plugin.corpora import sound_events

    return sound_events


def _digests(root: Path):
    """sha256 of every wav and every manifest line except the tsv root lines (paths differ)."""
    digests = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name != "corpus.json":
            data = path.read_bytes()
            if path.suffix == ".tsv":
                data = b"\n".join(data.splitlines()[1:])
            digests[path.relative_to(root).as_posix()] = hashlib.sha256(data).hexdigest()
    return digests


@pytest.mark.slow
def test_benchmark_is_deterministic(tmp_path):
    sizes = [
        "--num-pretrain",
        "4",
        "--num-pretrain-valid",
        "2",
        "--keyword-per-class",
        "1",
        "--keyword-eval-per-class",
        "1",
        "--num-speakers",
        "2",
        "--speaker-clips",
        "1",
        "--speaker-eval-clips",
        "1",
        "--events-per-class",
        "1",
        "--events-eval-per-class",
        "1",
    ]
    from mae_ast_plugin.corpora import table1 as corpus_command

    digests = []
    for name in ("a", "b"):
        args = [
            "--out",
            str(tmp_path / name / "audio"),
            "--manifests",
            str(tmp_path / name / "manifests"),
            "--workers",
            "2" if name == "a" else "1",
            *sizes,
        ]
        if name == "a":  # the installed script, with a pool of 2 worker processes
            cmd = [console_script("mae-ast-make-table1-corpus"), *args]
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr[-3000:]
        else:  # in this process, serially (an interpreter start with torch costs seconds)
            assert corpus_command.main(args) == 0
        digests.append(_digests(tmp_path / name))
    assert digests[0] == digests[1] and len(digests[0]) > 100


def test_report_says_when_no_session_was_recorded():
    """A run whose sessions were all interrupted has no recorded time: the report says so
    instead of printing 0.0 min or nan."""
    from mae_ast_plugin.experiments.table1_report import run_time

    assert run_time({"sessions": [], "total_wall_s": 0}).startswith("run time not recorded")
    sessions = [{"wall_s": 60.0}, {"wall_s": 30.0}]
    assert run_time({"sessions": sessions, "total_wall_s": 90.0}) == (
        "total run time 1.5 min over 2 session(s)")
