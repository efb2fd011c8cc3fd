"""``mae-ast-evaluate``: score a fine-tuned checkpoint on one split: accuracy (single-label)
or mAP (multi-label).

Examples:
    mae-ast-evaluate CHECKPOINT DATA_DIR --split test --out metrics.json
    mae-ast-evaluate CHECKPOINT DATA_DIR/test.tsv --out metrics.json

DATA_DIR holds ``{split}.tsv``, ``{split}.lbl`` and ``labels.csv`` (the same class list as the
checkpoint's).  Writes ``metrics.json`` with the overall score, per-class scores (accuracy or
AP, and support) and the Table 1 column and model row it belongs to (for
``mae-ast-results-table``), and for single-label tasks a confusion-matrix PNG beside it.
Files are written atomically; the JSON is strict (no NaN).

A score that cannot be computed is never written as a number: mAP with no positive label in
the split is ``"value": null`` with ``"value_undefined"`` saying why, and the command exits
with status 1; AP of a class without positives (left out of the mAP, as AudioSet evaluations
do) is ``"score": null`` and counted in ``classes_without_positives``.  A bad manifest line or
clip (unreadable, too short) stops with an error naming ``{split}.tsv:LINE``; with
``--skip-invalid`` such clips are skipped, logged and counted in ``skipped_clips``.
"""

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from ..atomic_io import atomic_target, atomic_write_json
from ..cli import device_option
from ..errors import InputError
from ..model_io import ArtefactError, load_classifier
from ..tools.predict import (
    benchmark_of,
    class_probabilities,
    describe_model,
)
from . import metrics

logger = logging.getLogger("mae_ast_plugin.evaluate")


def split_location(data: str, split: str):
    """A directory and split name, or a ``.tsv`` path (whose name is the split)."""
    path = Path(data)
    if path.suffix == ".tsv":
        return str(path.parent), path.stem
    return str(path), split


class EvaluationError(InputError):
    """A split that cannot be scored (every clip skipped, no labels...)."""


@torch.no_grad()
def score_split(model, task, split: str, batch_size: int, num_workers: int, device: str):
    """``(probabilities, targets, num_listed, num_skipped)``: probabilities (N, C) and targets
    ((N,) indices or (N, C) multi-hot) of every scored clip, the clips the manifest lists and
    how many of them were skipped (``task.skip_invalid``: bad manifest lines and clips)."""
    task.load_dataset(split)
    dataset = task.dataset(split)
    batches = task.get_batch_iterator(
        dataset=dataset,
        max_sentences=batch_size,
        required_batch_size_multiple=1,  # a multiple > 1 would drop the last clips
        num_workers=num_workers,
    ).next_epoch_itr(shuffle=False)
    probabilities, targets = [], []
    for batch in batches:
        if not batch:  # every clip of the batch was skipped (task.skip_invalid)
            continue
        net_input = {k: v.to(device) for k, v in batch["net_input"].items()}
        logits = model(**net_input)["logits"]
        probabilities.append(class_probabilities(logits, task.cfg.multi_label).cpu())
        targets.append(batch["target"])
    num_listed = len(dataset) + dataset.manifest.num_skipped_lines
    if not targets:
        raise EvaluationError(f"{split}: every one of the {num_listed} clips was skipped")
    probabilities, targets = torch.cat(probabilities).numpy(), torch.cat(targets).numpy()
    return probabilities, targets, num_listed, num_listed - len(targets)


def plot_confusion(confusion: np.ndarray, names, path: Path, title: str):
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = min(4 + 0.25 * len(names), 16)
    figure, axes = plt.subplots(figsize=(size, size))
    # row-normalised, so every class is visible whatever its support
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    image = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(title)
    if len(names) <= 60:
        axes.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        axes.set_yticks(range(len(names)), names, fontsize=7)
    figure.colorbar(image, ax=axes, fraction=0.046, label="fraction of the true class")
    figure.tight_layout()
    with atomic_target(path) as temporary:
        figure.savefig(temporary, dpi=100, format="png")
    plt.close(figure)


def evaluate(
    checkpoint, data, split="test", out="metrics.json", confusion_png=None, batch_size=16,
    num_workers=0, device=None, benchmark=None, model_name=None, skip_invalid=False,
) -> dict:
    """Score ``checkpoint`` on a split and write the metrics file ``out`` (see the module
    docstring); returns its content.  ``skip_invalid`` skips (logs and counts) bad manifest
    lines and clips instead of stopping at the first."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    data_dir, split = split_location(data, split)
    overrides = {"skip_invalid": bool(skip_invalid)}  # this command's option, not training's
    model, task = load_classifier(checkpoint, data_dir, device, task_overrides=overrides)
    probabilities, targets, num_clips, skipped = score_split(
        model, task, split, batch_size, num_workers, device
    )
    if skipped:
        logger.warning("%s: skipped %d of %d clips (--skip-invalid); see the warnings above",
                       split, skipped, num_clips)
    classes = task.classes
    row = describe_model(model)
    if model_name:
        row["name"] = model_name
    result = {
        "benchmark": benchmark or benchmark_of(task),
        "model": row,
        "checkpoint": str(Path(checkpoint).resolve()),
        "data": str(Path(data_dir).resolve()),
        "split": split,
        "num_clips": num_clips,
        "skipped_clips": skipped,
        "num_classes": len(classes),
    }
    if result["benchmark"] is None:
        logger.warning("not a Table 1 task (%d classes): give --benchmark", len(classes))

    per_class = []
    if task.cfg.multi_label:
        scores = metrics.mean_average_precision(probabilities, targets)
        result.update(
            metric="mAP",
            value=scores.mAP,
            classes_without_positives=scores.classes_without_positives,
        )
        if scores.mAP is None:
            result["value_undefined"] = (
                f"no class has a positive clip in the {len(targets)} scored clips of {split}: "
                "mAP is undefined (the AP of a class needs at least one positive)"
            )
        support = (targets > 0.5).sum(axis=0)
        class_scores = scores.per_class
    else:
        confusion = metrics.confusion_matrix(probabilities.argmax(axis=1), targets, len(classes))
        result.update(metric="accuracy", value=metrics.accuracy(probabilities, targets))
        support = confusion.sum(axis=1)
        class_scores = metrics.per_class_accuracy(confusion)
        png = Path(confusion_png) if confusion_png else Path(out).with_suffix(".confusion.png")
        title = f"{result['benchmark'] or 'classification'} {split}: accuracy {result['value']:.4f}"
        plot_confusion(confusion, classes.names, png, title)
        result["confusion_matrix_png"] = str(png)
    for index, (name, mid) in enumerate(zip(classes.names, classes.mids, strict=True)):
        score = class_scores[index]
        per_class.append({
            "index": index,
            "mid": mid,
            "name": name,
            "score": None if np.isnan(score) else float(score),  # undefined: no clip of it
            "support": int(support[index]),
        })
    result["per_class"] = per_class

    out = Path(out)
    atomic_write_json(out, result)
    logger.info("%s on %s/%s: %s = %s (%d clips) -> %s", checkpoint, data_dir, split,
                result["metric"], format_value(result["value"]), num_clips, out)
    return result


def format_value(value) -> str:
    return "undefined (null)" if value is None else f"{value:.4f}"


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="mae-ast-evaluate",
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="fine-tuned checkpoint (checkpoint_best.pt; an exported "
                        "folder keeps no task to load the split with)")
    parser.add_argument("data", help="data directory, or the {split}.tsv manifest to score")
    parser.add_argument("--split", default="test", help="split to score (ignored for a .tsv path)")
    parser.add_argument("--out", default="metrics.json", help="metrics file to write")
    parser.add_argument("--confusion-png", help="confusion matrix image (default: next to --out)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument(
        "--device", type=device_option, help="cuda or cpu (default: cuda when available)"
    )
    parser.add_argument("--benchmark", choices=["AS", "ESC", "KS2", "KS1", "SID", "ER"],
                        help="Table 1 column (default: inferred from the class count)")
    parser.add_argument(
        "--model-name", help="row name in the results table (default: from the checkpoint)"
    )
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="skip (log and count in skipped_clips) bad manifest lines and clips that cannot "
        "be scored, e.g. shorter than one token, instead of stopping at the first",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = evaluate(
            args.checkpoint, args.data, args.split, args.out, args.confusion_png,
            args.batch_size, args.num_workers, args.device, args.benchmark, args.model_name,
            args.skip_invalid,
        )
    except ArtefactError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    except InputError as err:  # a manifest line, a label file, a clip, an option...
        parser.exit(1, f"{parser.prog}: error: {err}\n")
    print(f"{result['metric']}: {format_value(result['value'])} on {result['num_clips']} clips "
          f"of {result['split']} ({result['skipped_clips']} skipped)")
    if result["value"] is None:
        print(f"{parser.prog}: error: {result['value_undefined']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
