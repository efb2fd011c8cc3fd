"""``mae-ast-cv``: k-fold cross-validation of a fine-tuning recipe (ESC-50: 5 folds; IEMOCAP ER:
5 sessions).

Example:
    mae-ast-cv --config-name esc50 --data /abs/esc50 --folds 1 2 3 4 5 \
        --pretrained /abs/pretrain/checkpoint_best.pt --out outputs/finetune/esc50_cv \
        [-- extra hydra overrides]

For each fold k: fine-tune with ``fairseq-hydra-train`` on ``{data}/fold{k}`` (checkpoints
chosen on that fold's ``valid`` split, as the recipe says), then score ``checkpoint_best.pt``
once on the fold's ``test`` split with ``mae-ast-evaluate``.  The test fold never chooses a
checkpoint or an epoch.  Writes ``{out}/fold{k}/metrics.json`` per fold and ``{out}/summary.json``
with the mean and the sample standard deviation over folds (the layout
``mae-ast-results-table`` reads).

A fold whose ``metrics.json`` exists is not rerun if it was made by the same run: the same
recipe, overrides and evaluation split, the same pretraining checkpoint (sha256) and the same
fold data (the manifests', label files' and class list's bytes, every audio file's size and
modification time), recorded in ``fold{k}/cv_run.json``.  If any of them changed, the command
stops and names what changed; ``--rerun`` then deletes the fold's run directory and trains the
fold again (a fairseq run directory left in place would be resumed, not rerun).
"""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

from ..atomic_io import atomic_write_json
from ..cli import device_option
from ..hashing import inputs_fingerprint
from ..hydra_configs import PACKAGE_DIR, config_dir
from . import evaluate

HYDRA_TRAIN = str(Path(sys.executable).parent / "fairseq-hydra-train")


def check_overrides(overrides, eval_split: str):
    """Refuse overrides that would validate (hence choose checkpoints) on the test split."""
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key == "dataset.valid_subset" and eval_split in value.split(","):
            raise SystemExit(
                f"{override}: validating on '{eval_split}' would choose checkpoints on the test "
                "fold; keep dataset.valid_subset=valid"
            )


def train_fold(config_name, data_dir, pretrained, run_dir, overrides):
    cmd = [
        HYDRA_TRAIN,
        "--config-dir", str(config_dir("finetune")),  # the installed recipes
        "--config-name", config_name,
        f"common.user_dir={PACKAGE_DIR}",
        f"task.data={data_dir}",
        f"model.pretrained_checkpoint={pretrained}",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


RUN_RECORD = "cv_run.json"


def fold_inputs(config_name, data_dir, pretrained, overrides, eval_split) -> dict:
    """Everything a fold's metrics depend on (see the module docstring)."""
    recipe = config_dir("finetune") / f"{config_name}.yaml"
    return {
        "config_name": config_name,
        "overrides": list(overrides),
        "eval_split": eval_split,
        "recipe": next(iter(inputs_fingerprint([recipe]).values())),
        "pretrained": inputs_fingerprint([pretrained]) if pretrained else None,
        "data": inputs_fingerprint([data_dir]),
    }


def check_fold_record(fold, run_dir: Path, inputs: dict, rerun: bool) -> bool:
    """Whether the fold's results may be reused: True when ``cv_run.json`` records the same
    inputs.  A run directory made from other inputs is deleted with ``rerun``, else the command
    stops naming what changed (never a silent mix of two runs)."""
    record_path = run_dir / RUN_RECORD
    if not run_dir.exists():
        return False
    recorded = json.loads(record_path.read_text()) if record_path.is_file() else None
    if recorded == inputs and not rerun:
        return (run_dir / "metrics.json").exists()
    if rerun:
        print(f"fold {fold}: --rerun: removing {run_dir}", flush=True)
        shutil.rmtree(run_dir)
        return False
    if recorded is None:
        changed = f"no {RUN_RECORD} records how it was made"
    else:
        keys = sorted(set(recorded) | set(inputs))
        changed = ", ".join(k for k in keys if recorded.get(k) != inputs.get(k))
        changed += " changed since it ran"
    raise SystemExit(
        f"mae-ast-cv: error: fold {fold}: {run_dir} holds a run of other inputs ({changed}): pass "
        "--rerun to delete it and train the fold again, or give another --out"
    )


def check_fold_data(data: Path, folds, eval_split: str):
    """Every fold directory holds the splits a fold needs, before any training starts."""
    for fold in folds:
        fold_dir = data / f"fold{fold}"
        needed = ["labels.csv"] + [f"{s}.{e}" for s in ("train", "valid", eval_split)
                                   for e in ("tsv", "lbl")]
        missing = [name for name in needed if not (fold_dir / name).is_file()]
        if missing:
            raise SystemExit(
                f"mae-ast-cv: error: fold {fold}: {fold_dir} lacks {', '.join(missing)}: prepare "
                "the folds with mae-ast-prepare, or list only the prepared ones with --folds"
            )


def summarize(fold_results: dict) -> dict:
    """Mean and sample standard deviation of the folds' scores; a fold without a score (value
    null) is an error naming it, never averaged as NaN."""
    for fold, result in fold_results.items():
        if result["value"] is None:
            raise SystemExit(f"fold {fold}: no {result['metric']} "
                             f"({result.get('value_undefined')}); see {result['path']}")
    values = np.array([result["value"] for result in fold_results.values()])
    first = next(iter(fold_results.values()))
    return {
        "benchmark": first["benchmark"],
        "model": first["model"],
        "metric": first["metric"],
        "value": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "num_folds": len(values),
        "folds": {
            fold: {"value": result["value"], "metrics": result["path"]}
            for fold, result in fold_results.items()
        },
    }


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="mae-ast-cv",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-name", required=True, help="recipe: esc50, iemocap_er, ...")
    parser.add_argument("--data", required=True, help="directory holding fold{k}/ data directories")
    parser.add_argument("--pretrained", required=True, help="what fine-tuning starts from "
                        "(model.pretrained_checkpoint): any checkpoint or exported folder")
    parser.add_argument("--out", required=True, help="directory for fold{k}/ runs and summary.json")
    parser.add_argument("--folds", nargs="+", default=["1", "2", "3", "4", "5"])
    parser.add_argument("--eval-split", default="test", help="split scored once per fold")
    parser.add_argument("--model-name", help="row name in the results table")
    parser.add_argument(
        "--device", type=device_option, help="device for evaluation (default: cuda when available)"
    )
    parser.add_argument("--rerun", action="store_true",
                        help="delete and rerun folds that have a run directory")
    parser.add_argument("overrides", nargs="*", help="extra hydra overrides (after --)")
    args = parser.parse_args(argv)
    check_overrides(args.overrides, args.eval_split)
    from ..model_io import ArtefactError, identify

    # before any fold trains: every fold's files, then what model.pretrained_checkpoint gets
    check_fold_data(Path(args.data).resolve(), args.folds, args.eval_split)
    try:
        identify(args.pretrained)
    except ArtefactError as err:
        raise SystemExit(f"mae-ast-cv: --pretrained: {err}") from None

    out = Path(args.out).resolve()
    fold_results = {}
    for fold in args.folds:
        data_dir = Path(args.data).resolve() / f"fold{fold}"
        run_dir = out / f"fold{fold}"
        metrics_path = run_dir / "metrics.json"
        inputs = fold_inputs(args.config_name, data_dir, args.pretrained, args.overrides,
                             args.eval_split)
        if check_fold_record(fold, run_dir, inputs, args.rerun):
            print(f"fold {fold}: {metrics_path} made from the same inputs, not rerun")
            result = json.loads(metrics_path.read_text())
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(run_dir / RUN_RECORD, inputs)
            pretrained = Path(args.pretrained).resolve()
            train_fold(args.config_name, data_dir, pretrained, run_dir, args.overrides)
            result = evaluate.evaluate(
                run_dir / "checkpoints" / "checkpoint_best.pt",
                str(data_dir),
                split=args.eval_split,
                out=metrics_path,
                device=args.device,
                model_name=args.model_name,
            )
        result["path"] = str(metrics_path)
        fold_results[fold] = result
        print(f"fold {fold}: {result['metric']} {evaluate.format_value(result['value'])}",
              flush=True)

    summary = summarize(fold_results)
    summary_path = out / "summary.json"
    atomic_write_json(summary_path, summary)
    print(f"{summary['metric']} over {summary['num_folds']} folds: {summary['value']:.4f} "
          f"± {summary['std']:.4f} (sample std) -> {summary_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
