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
"""

import json
import os
import sys

import numpy as np
import torch

from mae_ast_plugin.atomic_io import atomic_save_npy, atomic_write_text
from mae_ast_plugin.checkpoints import ArtefactError, load_encoder
from mae_ast_plugin.cli import command_parser
from mae_ast_plugin.data.manifest import read_manifest
from mae_ast_plugin.encoder import add_window_option, windowing_of
from mae_ast_plugin.features import AudioError, load_audio, num_frames


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
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--skip-invalid", action="store_true", help="log and count unreadable clips"
    )
    add_window_option(parser)
    return parser


def check_settings(out_dir: str, settings: dict):
    """Refuse to mix features of different settings in one directory."""
    path = os.path.join(out_dir, "settings.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            previous = json.load(handle)
        if previous != settings:
            raise SystemExit(
                f"{out_dir} holds features made with other settings ({previous}); "
                "use another output directory"
            )
    else:
        atomic_write_text(path, json.dumps(settings, indent=1, allow_nan=False) + "\n")


def main(argv=None):
    from tqdm import tqdm

    args = get_parser().parse_args(argv)
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
            "checkpoint": os.path.abspath(args.checkpoint),
            "manifest": os.path.abspath(args.manifest),
            "layer": layer,
            "pooling": args.pooling,
            "window_seconds": args.window_seconds,
        },
    )

    def npy_path(row):
        return os.path.join(feature_dir, f"{row:08d}.npy")

    # Longest first, so each batch holds clips of similar length.
    todo = [
        row
        for row in np.argsort(-manifest.sizes, kind="stable")
        if not os.path.exists(npy_path(row))
    ]
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
