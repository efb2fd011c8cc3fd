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
   Embeddings are cached on disk, keyed by the checkpoint's bytes, the manifest's bytes and the
   random-init seed, so a second probe of the same pair costs no encoder pass.
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

Outputs in ``--out-dir``: ``probe.json`` (strict JSON: per layer the valid and test metric
with standard errors, the chosen C; the chosen layer; settings; provenance) and ``probe.png``
(metric against layer).
"""

import argparse
import datetime
import hashlib
import json
import logging
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
# Bumped when the embeddings change for the same checkpoint and manifest (cache key).
EMBEDDING_FORMAT = 1
C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
MAX_ITER = 2000
EXAMPLE = """example:
  mae-ast-probe outputs/demo/pretrain/checkpoints/checkpoint_last.pt manifests/demo/keyword \\
      --out-dir outputs/demo/probe_pretrained
  mae-ast-probe outputs/demo/pretrain/checkpoints/checkpoint_last.pt manifests/demo/keyword \\
      --out-dir outputs/demo/probe_random --random-init --seed 1
"""


class ProbeError(ValueError):
    """Unusable probe input (bad manifest directory, clip too short for one token)."""


# ----------------------------------------------------------------------------------------------
# Data


@dataclass
class Split:
    name: str
    manifest: object  # data.manifest.Manifest
    targets: np.ndarray  # (N,) int64 class indices, or (N, C) 0/1 float32 for multi-label


def read_split(manifest_dir: str, split: str, num_classes: int, multi_label: bool) -> Split:
    """``{split}.tsv`` and ``{split}.lbl`` of the fine-tuning layout, read by the fine-tuning
    readers (errors name the file and line)."""
    from ..data.labelled_dataset import LabelError, read_clip_labels
    from ..data.manifest import read_manifest

    manifest = read_manifest(os.path.join(manifest_dir, f"{split}.tsv"))
    try:
        labels = read_clip_labels(
            os.path.join(manifest_dir, f"{split}.lbl"), manifest, num_classes, multi_label
        )
    except LabelError as err:
        if multi_label or "exactly one" not in str(err):
            raise
        raise LabelError(f"{err}; mae-ast-probe: pass --multi-label for such data") from None
    if multi_label:
        targets = np.zeros((len(labels), num_classes), dtype=np.float32)
        for row in range(len(labels)):
            targets[row, labels.of(row)] = 1.0
    else:
        targets = labels.values[labels.offsets[:-1]].astype(np.int64)
    return Split(split, manifest, targets)


def read_task(manifest_dir: str, multi_label: bool):
    """The class list and the three splits of a labelled manifest directory."""
    from ..data.labelled_dataset import read_class_list

    if not os.path.isdir(manifest_dir):
        raise ProbeError(
            f"{manifest_dir} is not a directory: pass the directory holding train/valid/test.tsv, "
            "their .lbl files and labels.csv (the fine-tuning layout)"
        )
    classes = read_class_list(os.path.join(manifest_dir, "labels.csv"))
    splits = {s: read_split(manifest_dir, s, len(classes), multi_label) for s in SPLITS}
    return classes, splits


# ----------------------------------------------------------------------------------------------
# Embeddings


def file_digest(path: str) -> str:
    """sha256 of a file's bytes, or of a directory's files (relative names and bytes, sorted)."""
    digest = hashlib.sha256()
    paths = [Path(path)]
    if Path(path).is_dir():
        paths = sorted(p for p in Path(path).rglob("*") if p.is_file())
    for item in paths:
        if Path(path).is_dir():
            digest.update(item.relative_to(path).as_posix().encode() + b"\0")
        with open(item, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()


def random_init_encoder(encoder, seed: int):
    """The encoder's architecture with the constructor's fresh weights drawn under ``seed``,
    keeping the input BatchNorm statistics (data statistics, not learnt weights)."""
    from ..encoder import MaeAstEncoder

    model = encoder.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(model)(model.cfg)
    fresh.batch_norm.load_state_dict(model.batch_norm.state_dict())
    return MaeAstEncoder(fresh, encoder.features, device=encoder.device)


def _tokens_per_clip(encoder, num_samples: int) -> int:
    from ..features import num_frames

    cfg = encoder.model.cfg
    frames = num_frames(num_samples, encoder.features)
    freq_blocks = max(1, encoder.features.num_mel_bins // cfg.token_mel_bins)
    return (frames // cfg.token_frames) * freq_blocks


def clip_embeddings(encoder, manifest, batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """Mean-pooled embeddings (layers, N, C) float32 of every clip of ``manifest``: for each
    encoder layer, the mean of its output over the clip's real tokens.  Clips are batched by
    length (the encoder's output for a clip does not depend on the batch)."""
    from tqdm import tqdm

    from ..features import AudioError, load_audio

    rate = encoder.features.sample_rate
    order = np.argsort(manifest.sizes, kind="stable")
    out = np.empty((encoder.num_layers, len(manifest), encoder.embed_dim), dtype=np.float32)
    bar = tqdm(total=len(manifest), desc=os.path.basename(manifest.path), unit="clip",
               disable=not progress, file=sys.stderr)
    for start in range(0, len(order), batch_size):
        ids = order[start : start + batch_size]
        waves = []
        for index in ids:
            try:
                wave = load_audio(manifest.audio_path(index), rate)
            except AudioError as err:
                raise AudioError(f"{manifest.where(index)}: {err}") from None
            if _tokens_per_clip(encoder, wave.numel()) == 0:
                raise ProbeError(
                    f"{manifest.where(index)}: {wave.numel() / rate:.3f} s is shorter than one "
                    f"token ({encoder.model.cfg.token_frames} frames): remove the line"
                )
            waves.append(wave)
        result = encoder.extract_features(waves, sample_rate=rate)
        real = (~result.padding_mask).unsqueeze(-1).float()
        count = real.sum(1)
        for layer, hidden in enumerate(result.hidden_states):
            out[layer, ids] = ((hidden.float() * real).sum(1) / count).cpu().numpy()
        bar.update(len(ids))
    bar.close()
    return out


def _atomic_save_npz(path: Path, **arrays):
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez(temporary, **arrays)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def cached_embeddings(encoder, manifest, cache_dir, key_parts: dict, batch_size=16, progress=True):
    """:func:`clip_embeddings`, read from ``cache_dir`` when the same checkpoint, manifest bytes
    and settings were embedded before; returns (embeddings, "hit" or "miss")."""
    key = dict(key_parts, manifest_sha256=file_digest(manifest.path), format=EMBEDDING_FORMAT)
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:40]
    path = Path(cache_dir) / f"{name}.npz" if cache_dir else None
    if path is not None and path.is_file():
        with np.load(path) as stored:
            embeddings = stored["embeddings"]
        if embeddings.shape[1] == len(manifest):
            return embeddings, "hit"
    embeddings = clip_embeddings(encoder, manifest, batch_size, progress)
    if path is not None:
        _atomic_save_npz(path, embeddings=embeddings, key=json.dumps(key, sort_keys=True))
    return embeddings, "miss"


# ----------------------------------------------------------------------------------------------
# Linear probe


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` independent clips."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / n) if n > 0 else float("nan")


def _classifier(C: float, multi_label: bool):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    logistic = LogisticRegression(C=C, max_iter=MAX_ITER)
    return OneVsRestClassifier(logistic) if multi_label else logistic


def _metric(classifier, x, targets, multi_label: bool) -> float:
    from .metrics import mean_average_precision

    if multi_label:
        return mean_average_precision(classifier.decision_function(x), targets).mAP
    return float(np.mean(classifier.predict(x) == targets))


def _metric_se(classifier, x, targets, multi_label: bool, bootstrap: int) -> float:
    from .metrics import mean_average_precision

    if not multi_label:
        return binomial_se(_metric(classifier, x, targets, False), len(targets))
    scores = classifier.decision_function(x)
    rng = np.random.default_rng(0)
    values = []
    for _ in range(bootstrap):
        rows = rng.integers(0, len(targets), len(targets))
        value = mean_average_precision(scores[rows], targets[rows]).mAP
        if np.isfinite(value):
            values.append(value)
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def probe_layer(features: dict, targets: dict, multi_label: bool, c_grid=C_GRID, bootstrap=100):
    """Fit and score one layer.  ``features[split]`` (N, C) float, ``targets[split]`` (N,) int or
    (N, K) 0/1.  Returns the layer's entry of the report (C chosen on valid, test scored once)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(features["train"])
    x = {split: scaler.transform(features[split]) for split in SPLITS}
    best = None
    valid_by_c = {}
    not_converged = 0
    for C in c_grid:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            classifier = _classifier(C, multi_label).fit(x["train"], targets["train"])
        not_converged += sum(issubclass(w.category, ConvergenceWarning) for w in caught)
        valid = _metric(classifier, x["valid"], targets["valid"], multi_label)
        valid_by_c[repr(C)] = _json_number(valid)
        if best is None or (np.isfinite(valid) and not valid <= best[1]):
            best = (C, valid, classifier)
    C, valid, classifier = best
    return {
        "C": C,
        "valid": _json_number(valid),
        "valid_se": _json_number(_metric_se(classifier, x["valid"], targets["valid"], multi_label,
                                            bootstrap)),
        "test": _json_number(_metric(classifier, x["test"], targets["test"], multi_label)),
        "test_se": _json_number(_metric_se(classifier, x["test"], targets["test"], multi_label,
                                           bootstrap)),
        "valid_by_C": valid_by_c,
        "fits_not_converged": not_converged,
    }


def _json_number(value):
    """None for NaN or infinity (strict JSON has neither), else a float."""
    value = float(value)
    return value if math.isfinite(value) else None


def chance_levels(targets: dict, multi_label: bool) -> dict:
    """What needs no encoder: the test share of train's most frequent class (single-label), or the
    test mAP of constant scores, i.e. the mean class prevalence (multi-label)."""
    if multi_label:
        test = targets["test"]
        present = test.sum(0) > 0
        return {"test_mean_prevalence": _json_number(test.mean(0)[present].mean())}
    majority = np.bincount(targets["train"]).argmax()
    return {
        "test_majority_class": _json_number(np.mean(targets["test"] == majority)),
        "uniform": 1.0 / max(1, int(max(targets[s].max() for s in SPLITS)) + 1),
    }


# ----------------------------------------------------------------------------------------------
# The whole probe


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
    from .. import load_encoder

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


def gain_over_control(pretrained: dict, control: dict, which: str = "best") -> dict:
    """Test-metric gain of ``pretrained`` over ``control`` (two probe reports, or two dicts with
    ``test`` and ``test_se``) and whether it exceeds twice the standard error of the difference,
    ``sqrt(se_a^2 + se_b^2)`` (the two scores treated as independent: conservative when both
    are measured on the same clips)."""
    a = pretrained[which] if which in pretrained else pretrained
    b = control[which] if which in control else control
    gain = a["test"] - b["test"]
    se = math.sqrt(a["test_se"] ** 2 + b["test_se"] ** 2)
    return {
        "pretrained": a["test"], "pretrained_se": a["test_se"],
        "control": b["test"], "control_se": b["test_se"],
        "gain": gain, "se_of_difference": se, "exceeds_2se": bool(gain > 2 * se),
    }


def write_report(report: dict, path):
    """Strict JSON (NaN or infinity raise), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=1, allow_nan=False) + "\n"
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


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
                        "(ours, the authors', a fine-tuned classifier)")
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
    parser.add_argument("--device", default="cpu", help="torch device of the encoder")
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
    from ..data.labelled_dataset import LabelError
    from ..data.manifest import ManifestError
    from ..features import AudioError

    try:
        report = run_probe(
            args.checkpoint, args.manifest_dir, random_init=args.random_init, seed=args.seed,
            multi_label=args.multi_label, cache_dir=args.cache_dir or None,
            batch_size=args.batch_size, device=args.device, c_grid=tuple(args.C_grid),
            bootstrap=args.bootstrap, progress=not args.no_progress,
        )
    except (ProbeError, LabelError, ManifestError, AudioError, FileNotFoundError) as err:
        raise SystemExit(f"mae-ast-probe: {err}") from None
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
