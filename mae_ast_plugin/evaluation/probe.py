"""Frozen-encoder linear probe: what a checkpoint's representations know about a labelled task.

    mae-ast-probe outputs/demo/pretrain/checkpoints/checkpoint_last.pt manifests/demo/keyword \\
        --out-dir outputs/demo/probe_pretrained
    mae-ast-probe outputs/demo/pretrain/checkpoints/checkpoint_last.pt manifests/demo/keyword \\
        --out-dir outputs/demo/probe_random --random-init     # the same architecture, fresh weights

The method is the field's frozen evaluation (SUPERB's per-layer sweep, Yang et al. 2021; HEAR's
frozen embeddings, Turian et al. 2022), with a linear classifier:

1. Every clip of ``train``, ``valid`` and ``test`` goes once through the frozen encoder (eval
   mode, no masking, no dropout); for each encoder layer the clip's embedding is the mean of that
   layer's output over the clip's real tokens (padding excluded): (layers, clips, C) float32.
   Embeddings are cached on disk, keyed by the checkpoint's bytes, the manifest's bytes, every
   audio file's size and modification time and the random-init seed, so a second probe of the
   same pair costs no encoder pass and a changed clip is embedded again.
2. Per layer: features standardised with the train split's mean and standard deviation; a
   logistic regression (multinomial for single-label tasks; one-vs-rest for multi-label ones)
   from scikit-learn's lbfgs solver is fitted on train for each inverse regularisation strength
   C of a small grid; the C with the best valid metric is kept and that classifier is scored
   once on test.  Metric: accuracy (single-label) or mAP (multi-label, classes without positives
   left out and counted, ``mae_ast_plugin.evaluation.metrics``).
3. The best layer is the one with the highest valid metric (the first on ties); the report also
   gives the last layer, the usual choice when no sweep is done.

Standard errors: binomial ``sqrt(p (1 - p) / n)`` for accuracy; for mAP the standard deviation
of a bootstrap over clips (``--bootstrap`` resamples, seed 0).

``--random-init`` probes the checkpoint's architecture with fresh weights drawn with ``--seed``
(the constructor's own initialisation) as the control that tells what the pretraining added.
It keeps the checkpoint's input BatchNorm statistics (the dataset's fbank mean and variance,
not learnt weights), so both encoders see the same normalised input.

Modules: :mod:`.probe_data` reads the task and computes and caches the embeddings (step 1),
:mod:`.probe_classifier` fits and scores the classifiers (steps 2-3, standard errors); this
module runs the whole probe and writes, plots and prints its report (the command).

Outputs in ``--out-dir``: ``probe.json`` (strict JSON: per layer the valid and test metric
with standard errors, the chosen C; the chosen layer; settings; provenance) and ``probe.png``
(metric against layer).
"""

import argparse
import datetime
import logging
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..atomic_io import atomic_write_json
from ..cli import device_option
from .probe_classifier import (
    C_GRID,
    MAX_ITER,
    binomial_se,
    chance_levels,
    gain_over_control,
    probe_layer,
)
from .probe_data import (
    SPLITS,
    ProbeError,
    cached_embeddings,
    file_digest,
    random_init_encoder,
    read_task,
)

# What other modules import from here (the demo, the Table 1 driver and report)
__all__ = ["C_GRID", "ProbeError", "binomial_se", "gain_over_control", "format_report",
           "get_parser", "main", "plot_report", "probe_to_dir", "run_probe", "write_report"]

logger = logging.getLogger(__name__)

EXAMPLE = """example:
  mae-ast-probe outputs/demo/pretrain/checkpoints/checkpoint_last.pt manifests/demo/keyword \\
      --out-dir outputs/demo/probe_pretrained
  mae-ast-probe outputs/demo/pretrain/checkpoints/checkpoint_last.pt manifests/demo/keyword \\
      --out-dir outputs/demo/probe_random --random-init --seed 1
"""


def _git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_probe(
    checkpoint: str,
    manifest_dir: str,
    random_init: bool = False,
    seed: int = 1,
    multi_label: bool = False,
    cache_dir=None,
    batch_size: int = 16,
    device: str = "cpu",
    c_grid=C_GRID,
    bootstrap: int = 100,
    progress: bool = True,
) -> dict:
    """Probe ``checkpoint`` (anything ``mae_ast_plugin.load_encoder`` loads) on ``manifest_dir``;
    returns the report (see the module docstring).  Deterministic for the same inputs."""
    from ..model_io import load_encoder

    started = time.time()
    classes, splits = read_task(manifest_dir, multi_label)
    encoder = load_encoder(checkpoint, device=device)
    if random_init:
        encoder = random_init_encoder(encoder, seed)
    key = {
        "checkpoint_sha256": file_digest(checkpoint),
        "random_init_seed": seed if random_init else None,
    }
    embeddings, cache = {}, {}
    for split in SPLITS:
        embeddings[split], cache[split] = cached_embeddings(
            encoder, splits[split].manifest, cache_dir, key, batch_size, progress
        )
    embedded = time.time()
    targets = {split: splits[split].targets for split in SPLITS}
    from tqdm import tqdm

    layers = []
    for layer in tqdm(range(encoder.num_layers), desc="probe layers", disable=not progress,
                      file=sys.stderr):
        entry = probe_layer({s: embeddings[s][layer] for s in SPLITS}, targets, multi_label,
                            c_grid, bootstrap)
        layers.append({"layer": layer + 1, **entry})
    valid_scores = [e["valid"] if e["valid"] is not None else -math.inf for e in layers]
    best = layers[int(np.argmax(valid_scores))]
    import sklearn

    return {
        "tool": "mae-ast-probe",
        "checkpoint": os.path.abspath(checkpoint),
        "checkpoint_sha256": key["checkpoint_sha256"],
        "encoder": "random-init" if random_init else "pretrained",
        "seed": seed if random_init else None,
        "manifest_dir": os.path.abspath(manifest_dir),
        "task": "multi-label" if multi_label else "single-label",
        "metric": "mAP" if multi_label else "accuracy",
        "num_classes": len(classes),
        "clips": {split: len(splits[split].manifest) for split in SPLITS},
        "num_layers": encoder.num_layers,
        "embed_dim": encoder.embed_dim,
        "layers": layers,
        "best_layer": best["layer"],
        "best": best,
        "last": layers[-1],
        "chance": chance_levels(targets, multi_label),
        "settings": {
            "pooling": "mean of each layer's output over the clip's real tokens",
            "standardisation": "train split mean and standard deviation",
            "classifier": ("one-vs-rest " if multi_label else "multinomial ")
            + f"logistic regression (scikit-learn lbfgs, max_iter {MAX_ITER})",
            "C_grid": list(c_grid),
            "selection": "C per layer and the best layer on valid; test scored once",
            "standard_error": "bootstrap over clips" if multi_label else "binomial",
            "bootstrap_resamples": bootstrap if multi_label else None,
            "batch_size": batch_size,
            "device": str(device),
        },
        "provenance": {
            "command": " ".join(["mae-ast-probe", *sys.argv[1:]]) if sys.argv else None,
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "host": platform.node(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            "python": platform.python_version(),
            "torch": torch.__version__,
            "scikit_learn": sklearn.__version__,
            "plugin_commit": _git_commit(),
            "embedding_cache": {"dir": str(cache_dir) if cache_dir else None, **cache},
            "wall_s": {"embeddings": round(embedded - started, 2),
                       "classifiers": round(time.time() - embedded, 2)},
        },
    }


def write_report(report: dict, path):
    """Strict JSON (NaN or infinity raise ValueError), written atomically."""
    atomic_write_json(str(path), report)


def plot_report(report: dict, path, title: str = ""):
    """PNG of the valid and test metric (with one standard error) against layer."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # fairseq's root logger is chatty
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plotting import _save

    layers = [e["layer"] for e in report["layers"]]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for split, style in (("valid", "o-"), ("test", "s-")):
        values = [np.nan if e[split] is None else e[split] for e in report["layers"]]
        errors = [0.0 if e[split + "_se"] is None else e[split + "_se"] for e in report["layers"]]
        ax.errorbar(layers, values, yerr=errors, fmt=style, capsize=3, label=split)
    ax.axvline(report["best_layer"], color="grey", ls=":", label="chosen on valid")
    chance = report["chance"].get("test_majority_class", report["chance"].get(
        "test_mean_prevalence"))
    if chance is not None:
        ax.axhline(chance, color="black", ls="--", lw=0.8, label="chance (test)")
    ax.set_xlabel("encoder layer")
    ax.set_ylabel(report["metric"])
    ax.set_xticks(layers)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"linear probe, {report['encoder']} encoder")
    _save(fig, str(path))
    plt.close(fig)


def format_report(report: dict) -> str:
    """The per-layer table a terminal shows."""
    metric = report["metric"]
    lines = [f"{report['encoder']} encoder, {report['task']} {metric} "
             f"(test {report['clips']['test']} clips)",
             "  layer       C   valid            test"]

    def cell(value, se):
        return "   n/a        " if value is None else f"{value:.3f} ± {se or 0:.3f}"

    for e in report["layers"]:
        mark = "  <- chosen on valid" if e["layer"] == report["best_layer"] else ""
        lines.append(f"  {e['layer']:>5} {e['C']:>7g}   {cell(e['valid'], e['valid_se'])}   "
                     f"{cell(e['test'], e['test_se'])}{mark}")
    return "\n".join(lines)


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mae_ast_plugin", "probe")


def get_parser():
    parser = argparse.ArgumentParser(
        prog="mae-ast-probe",
        description=__doc__.split("\n\n")[0] + " Linear probe per encoder layer on a labelled "
        "manifest directory (train/valid/test.tsv, .lbl, labels.csv); writes probe.json and "
        "probe.png.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="a checkpoint mae_ast_plugin.load_encoder loads "
                        "(ours, the authors', a fine-tuned classifier, an exported folder)")
    parser.add_argument("manifest_dir", help="directory with train/valid/test.tsv, their .lbl "
                        "files and labels.csv")
    parser.add_argument("--out-dir", required=True, help="where probe.json and probe.png go")
    parser.add_argument("--random-init", action="store_true",
                        help="probe the same architecture with fresh weights (the control)")
    parser.add_argument("--seed", type=int, default=1, help="seed of --random-init's weights")
    parser.add_argument("--multi-label", action="store_true",
                        help="multi-label task: one-vs-rest classifiers, mAP")
    parser.add_argument("--cache-dir", default=default_cache_dir(),
                        help="embedding cache (default: %(default)s); '' disables it")
    parser.add_argument("--batch-size", type=int, default=16, help="clips per encoder batch")
    parser.add_argument(
        "--device", type=device_option, default="cpu", help="torch device of the encoder"
    )
    parser.add_argument("--C-grid", type=float, nargs="+", default=list(C_GRID), metavar="C",
                        help="inverse regularisation strengths tried on valid")
    parser.add_argument("--bootstrap", type=int, default=100,
                        help="bootstrap resamples for the mAP standard error")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def probe_to_dir(argv=None) -> dict:
    """The command line's work: parse ``argv``, probe, write probe.json and probe.png, print the
    table; returns the report."""
    args = get_parser().parse_args(argv)
    if args.batch_size < 1 or args.bootstrap < 2 or any(c <= 0 for c in args.C_grid):
        raise SystemExit("--batch-size must be >= 1, --bootstrap >= 2 and every C > 0")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # the manifest reader's per-file INFO lines would drown the table (fairseq logs at INFO)
    logging.getLogger("mae_ast_plugin.data").setLevel(logging.WARNING)
    from ..errors import InputError
    from ..model_io import ArtefactError

    try:
        report = run_probe(
            args.checkpoint, args.manifest_dir, random_init=args.random_init, seed=args.seed,
            multi_label=args.multi_label, cache_dir=args.cache_dir or None,
            batch_size=args.batch_size, device=args.device, c_grid=tuple(args.C_grid),
            bootstrap=args.bootstrap, progress=not args.no_progress,
        )
    except (InputError, FileNotFoundError, ArtefactError) as err:
        raise SystemExit(f"mae-ast-probe: error: {err}") from None
    out = Path(args.out_dir)
    write_report(report, out / "probe.json")
    plot_report(report, out / "probe.png")
    print(format_report(report))
    print(f"report: {out / 'probe.json'}  figure: {out / 'probe.png'}")
    return report


def main(argv=None):
    probe_to_dir(argv)


if __name__ == "__main__":
    main()
