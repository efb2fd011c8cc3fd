#!/usr/bin/env python3
"""The main job on the built-in demo data (what `make demo` runs).

1. builds the synthetic speech corpus (scripts/make_demo_corpus.py; skipped if already built),
2. pretrains a small MAE-AST on it with fairseq-hydra-train (config/pretrain/demo.yaml),
3. plots the loss curves and a masked reconstruction of a held-out clip,
4. prints where the checkpoint and pictures are, and the validation loss at the first and last
   evaluation; it fails if pretraining did not lower it clearly.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OUT = Path("outputs/demo")
MANIFESTS = Path("manifests/demo")
PRETRAIN_DIR = OUT / "pretrain"


def run(cmd, **kwargs):
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=REPO, check=True, **kwargs)


def pretrain(extra_overrides):
    """Run fairseq-hydra-train, echoing a one-line summary of each log record."""
    import json

    cmd = [
        Path(sys.executable).parent / "fairseq-hydra-train",
        "--config-dir", "config/pretrain",
        "--config-name", "demo",
        "common.user_dir=mae_ast_plugin",
        f"task.data={MANIFESTS}",
        f"hydra.run.dir={PRETRAIN_DIR}",
        *extra_overrides,
    ]
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [str(c) for c in cmd], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    tail = []
    for line in proc.stdout:
        tail = (tail + [line])[-40:]
        for tag, prefix in (("[train_inner]", "train"), ("[valid]", "valid")):
            if tag in line:
                record = json.loads(line.split(" - ", 1)[1])
                key = "" if prefix == "train" else "valid_"
                updates = record.get("num_updates") or record.get("valid_num_updates")
                print(
                    f"  {prefix:5s} update {updates:>5}: loss {record[key + 'loss']}  "
                    f"(recon {record[key + 'loss_recon']}, infonce {record[key + 'loss_infonce']}, "
                    f"acc {record[key + 'infonce_acc']})",
                    flush=True,
                )
    if proc.wait() != 0:
        sys.stdout.write("".join(tail))
        raise SystemExit(f"pretraining failed (exit {proc.returncode}); log: {PRETRAIN_DIR}/hydra_train.log")


def main(args):
    os.chdir(REPO)
    run([sys.executable, "scripts/make_demo_corpus.py", "--out", "data/demo", "--manifests", MANIFESTS])
    pretrain(args.overrides)

    from mae_ast_plugin.plotting import plot_losses

    log = PRETRAIN_DIR / "hydra_train.log"
    records = plot_losses(str(log), str(OUT / "pretrain_losses.png"), title="MAE-AST demo pretraining")
    checkpoint = PRETRAIN_DIR / "checkpoints" / "checkpoint_last.pt"
    first_clip = (MANIFESTS / "valid.tsv").read_text().splitlines()
    audio = Path(first_clip[0]) / first_clip[1].split("\t")[0]
    run([sys.executable, "scripts/plot_reconstruction.py", checkpoint, audio, "--out", OUT / "reconstruction.png"])

    valid = records["valid"]
    first, last = valid[0]["valid_loss"], valid[-1]["valid_loss"]
    print()
    print(f"checkpoint:      {checkpoint}")
    print(f"loss curves:     {OUT / 'pretrain_losses.png'}")
    print(f"reconstruction:  {OUT / 'reconstruction.png'}")
    print(f"training log:    {log}")
    print(
        f"validation loss: {first:.3f} at update {valid[0]['valid_num_updates']:.0f} -> "
        f"{last:.3f} at update {valid[-1]['valid_num_updates']:.0f} ({(first - last) / first:.0%} lower)"
    )
    if not last < 0.9 * first:
        raise SystemExit("pretraining did not lower the validation loss clearly (by 10% or more)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="extra hydra overrides for pretraining, e.g. optimization.max_update=200")
    main(parser.parse_args())
