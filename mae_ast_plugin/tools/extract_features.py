"""``mae-ast-extract-features``: embed every clip of a manifest with a checkpoint's encoder.

    mae-ast-extract-features CHECKPOINT MANIFEST.tsv OUT_DIR [--layer K] [--pooling mean|tokens]

Example::

    mae-ast-extract-features chk/mae_ast_patch.pt manifests/esc50/fold1.tsv feats/ --layer 6

Writes ``OUT_DIR/features/NNNNNNNN.npy`` per manifest row (row 0 is the first clip): the
mean over the clip's tokens (``mean``, shape (C,)) or every token (``tokens``, shape (L, C)) of
encoder layer K (default: the last), and ``OUT_DIR/index.tsv`` (row, audio path, npy file,
tokens).  Clips longer than ``--window-seconds`` (10 s, the pretraining crop) are encoded in
overlapping windows and stitched (``mae_ast_plugin.encoder.Windowing``), so memory grows
linearly with a recording's length and every token sees the positions training used.  Every
file is written under a temporary name and renamed, so an interrupted run can
be restarted with the same command: finished clips are skipped.

What a restart reuses is keyed by everything it depends on.  ``settings.json`` holds the
checkpoint's sha256 (not its path), the layer, the pooling and the filterbank settings: a
restart with any of them changed is refused, naming what changed.  ``progress.tsv`` records, per
finished row, the clip's relative path and the audio file's size and modification time: a row
whose manifest line now names another file, or whose audio file was replaced (even by different
content of the same length), is embedded again; feature files of rows the manifest no longer
has are removed.
"""

import json
import os
import sys

import numpy as np
import torch

from mae_ast_plugin.atomic_io import atomic_save_npy, atomic_write_text
from mae_ast_plugin.cli import command_parser, device_option
from mae_ast_plugin.data.manifest import read_manifest
from mae_ast_plugin.encoder import add_window_option, windowing_of
from mae_ast_plugin.errors import InputError
from mae_ast_plugin.features import AudioError, load_audio, num_frames
from mae_ast_plugin.hashing import file_stamps
from mae_ast_plugin.model_io import ArtefactError, load_encoder


def get_parser():
    parser = command_parser("mae-ast-extract-features", __doc__)
    parser.add_argument(
        "checkpoint", help="pretraining or fine-tuning checkpoint (ours or the authors'), or an "
        "exported folder"
    )
    parser.add_argument("manifest", help="fairseq tsv manifest")
    parser.add_argument("out_dir", help="output directory")
    parser.add_argument(
        "--layer", type=int, default=None, help="encoder layer, 1-based (default: last)"
    )
    parser.add_argument("--pooling", choices=("mean", "tokens"), default="mean")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--device", type=device_option, default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument(
        "--skip-invalid", action="store_true", help="log and count unreadable clips"
    )
    add_window_option(parser)
    return parser


SETTINGS_FORMAT = 2  # 1: checkpoint and manifest paths (a replaced checkpoint went unseen)
PROGRESS = "progress.tsv"


def check_settings(out_dir: str, settings: dict):
    """Refuse to mix features of different settings in one directory: raises InputError naming
    the settings that differ from those ``settings.json`` records."""
    path = os.path.join(out_dir, "settings.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            previous = json.load(handle)
        if previous != settings:
            changed = sorted(
                key for key in set(previous) | set(settings)
                if previous.get(key) != settings.get(key)
            )
            details = "; ".join(
                f"{key}: {previous.get(key)!r} then, {settings.get(key)!r} now" for key in changed
            )
            raise InputError(
                f"{out_dir} holds features made with other settings ({details}): give another "
                "output directory, or delete this one to start over"
            )
    else:
        atomic_write_text(path, json.dumps(settings, indent=1, allow_nan=False) + "\n")


def read_progress(out_dir: str) -> dict:
    """``{row: (relative path, size, mtime_ns)}`` of the rows finished before, from
    ``progress.tsv`` (a line cut short by an interruption is ignored; the last entry of a row
    wins)."""
    done = {}
    path = os.path.join(out_dir, PROGRESS)
    if not os.path.exists(path):
        return done
    with open(path, "rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                continue
            fields = raw.decode("utf-8", errors="replace").rstrip("\n").split("\t")
            try:
                done[int(fields[0])] = (fields[1], int(fields[2]), int(fields[3]))
            except (IndexError, ValueError):
                continue
    return done


def record_progress(out_dir: str, entries):
    """Append ``(row, relative path, size, mtime_ns)`` lines for rows whose features are
    written, and make them durable before the next batch."""
    lines = "".join(f"{row}\t{path}\t{size}\t{mtime}\n" for row, path, size, mtime in entries)
    with open(os.path.join(out_dir, PROGRESS), "a", encoding="utf-8") as handle:
        handle.write(lines)
        handle.flush()
        os.fsync(handle.fileno())


def main(argv=None):
    from tqdm import tqdm

    args = get_parser().parse_args(argv)
    try:
        return extract(args, tqdm)
    except InputError as err:
        raise SystemExit(f"mae-ast-extract-features: error: {err}") from None


def extract(args, tqdm):
    from mae_ast_plugin.data.fbank_cache import features_dict
    from mae_ast_plugin.evaluation.probe_data import file_digest

    windowing = windowing_of(args)
    try:
        encoder = load_encoder(args.checkpoint, device=args.device)
    except ArtefactError as err:
        raise SystemExit(f"mae-ast-extract-features: error: {err}") from None
    layer = args.layer or encoder.num_layers
    manifest = read_manifest(args.manifest, skip_invalid=args.skip_invalid)
    feature_dir = os.path.join(args.out_dir, "features")
    os.makedirs(feature_dir, exist_ok=True)
    check_settings(
        args.out_dir,
        {
            "format": SETTINGS_FORMAT,
            "checkpoint_sha256": file_digest(args.checkpoint),
            "layer": layer,
            "pooling": args.pooling,
            "window_seconds": args.window_seconds,
            "features": features_dict(encoder.features),
        },
    )

    def npy_path(row):
        return os.path.join(feature_dir, f"{row:08d}.npy")

    # Feature files of rows the manifest no longer has would be read as its rows.
    for name in os.listdir(feature_dir):
        stem = name[: -len(".npy")]
        if name.endswith(".npy") and stem.isdigit() and int(stem) >= len(manifest):
            os.remove(os.path.join(feature_dir, name))
    # A row is done when its features exist and were made from the file the row names now.
    relative = [manifest.relative_path(row) for row in range(len(manifest))]
    stamps = file_stamps(manifest.audio_path(row) for row in range(len(manifest)))
    recorded = read_progress(args.out_dir)

    def done(row):
        return (
            os.path.exists(npy_path(row))
            and recorded.get(row) == (relative[row], *stamps[row])
        )

    # Longest first, so each batch holds clips of similar length.
    todo = [row for row in np.argsort(-manifest.sizes, kind="stable") if not done(row)]
    for row in todo:  # stale or partial: never listed in index.tsv as this row's features
        if os.path.exists(npy_path(row)):
            os.remove(npy_path(row))
    done_before = len(manifest) - len(todo)
    skipped = []
    for start in tqdm(range(0, len(todo), args.batch_size), desc="batches", unit="batch"):
        rows, waves = [], []
        for row in todo[start : start + args.batch_size]:
            try:
                wave = load_audio(manifest.audio_path(row), encoder.features.sample_rate)
                frames = num_frames(wave.numel(), encoder.features)
                if frames < encoder.min_frames:  # nothing to embed: never a NaN mean
                    raise AudioError(
                        f"clip gives {frames} filterbank frames, fewer than one token "
                        f"({encoder.min_frames})"
                    )
                waves.append(wave)
                rows.append(row)
            except AudioError as err:
                if not args.skip_invalid:
                    raise SystemExit(
                        f"{manifest.where(row)}: {err} (fix or remove the line, or pass "
                        "--skip-invalid to skip it)"
                    ) from None
                print(f"skipping {manifest.where(row)}: {err}", file=sys.stderr)
                skipped.append(row)
        if not rows:
            continue
        out = encoder.extract_features(
            waves, encoder.features.sample_rate, layer=layer, windowing=windowing
        )
        for i, row in enumerate(rows):
            tokens = out.last_hidden_state[i][~out.padding_mask[i]].float().cpu().numpy()
            atomic_save_npy(npy_path(row), tokens.mean(0) if args.pooling == "mean" else tokens)
        record_progress(args.out_dir, [(row, relative[row], *stamps[row]) for row in rows])

    lines = ["row\taudio\tfeatures\tshape"]
    for row in range(len(manifest)):
        if os.path.exists(npy_path(row)):
            shape = np.load(npy_path(row), mmap_mode="r").shape
            lines.append(
                f"{row}\t{manifest.relative_path(row)}\tfeatures/{row:08d}.npy\t"
                + "x".join(map(str, shape))
            )
    atomic_write_text(os.path.join(args.out_dir, "index.tsv"), "\n".join(lines) + "\n")
    print(
        f"{len(todo) - len(skipped)} clips embedded, {done_before} already done, "
        f"{len(skipped)} skipped; "
        f"layer {layer}, {args.pooling} pooling -> {args.out_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
