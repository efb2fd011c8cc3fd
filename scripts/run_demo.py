#!/usr/bin/env python3
"""The main job on the built-in demo data (what `make demo` runs).

1. builds the synthetic speech corpus (scripts/make_demo_corpus.py; skipped if already built),
2. pretrains a small MAE-AST on it with fairseq-hydra-train (config/pretrain/demo.yaml),
3. plots the loss curves and a masked reconstruction of a held-out clip,
4. fine-tunes on the corpus's keyword task twice with the same budget, from the pretrained
   checkpoint and from scratch (config/finetune/demo_keyword.yaml), and scores both on the
   test split, whose voices were never heard in training,
5. prints where everything is, the validation loss at the first and last evaluation (it fails
   if pretraining did not lower it clearly) and the two test accuracies.

Re-running continues finished or interrupted runs from their checkpoints.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

OUT = Path("outputs/demo")
MANIFESTS = Path("manifests/demo")
PRETRAIN_DIR = OUT / "pretrain"


def run(cmd):
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], cwd=REPO, check=True)


def summarize(line: str):
    """One short line for a fairseq json log record of training or validation, else None."""
    for tag, prefix, key in (("[train_inner]", "train", ""), ("[valid]", "valid", "valid_")):
        if tag in line:
            record = json.loads(line.split(" - ", 1)[1])
            updates = record.get(key + "num_updates")
            shown = [f"{name.replace(key, '')} {value}" for name, value in record.items()
                     if name.replace(key, "") in ("loss", "loss_recon", "loss_infonce", "infonce_acc", "accuracy")]
            return f"  {prefix:5s} update {updates:>5}: " + ", ".join(shown)
    return None


def hydra_train(config_dir: str, config_name: str, run_dir: Path, overrides):
    """Run fairseq-hydra-train from the repository root, echoing a summary of each log record."""
    cmd = [
        Path(sys.executable).parent / "fairseq-hydra-train",
        "--config-dir", config_dir,
        "--config-name", config_name,
        "common.user_dir=mae_ast_plugin",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [str(c) for c in cmd], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    tail = []
    for line in proc.stdout:
        tail = (tail + [line])[-40:]
        summary = summarize(line)
        if summary:
            print(summary, flush=True)
    if proc.wait() != 0:
        sys.stdout.write("".join(tail))
        raise SystemExit(f"training failed (exit {proc.returncode}); log: {run_dir}/hydra_train.log")


def finetune_keyword(name: str, overrides) -> float:
    """Fine-tune on the keyword task, then score the test split; returns the accuracy."""
    run_dir = OUT / f"keyword_{name}"
    hydra_train("config/finetune", "demo_keyword", run_dir, [f"task.data={MANIFESTS / 'keyword'}", *overrides])
    metrics = run_dir / "test_metrics.json"
    run([sys.executable, "scripts/evaluate.py", run_dir / "checkpoints" / "checkpoint_best.pt",
         MANIFESTS / "keyword", "--split", "test", "--out", metrics, "--num-workers", "0"])
    return json.loads(metrics.read_text())["value"]


def encoder_overrides(checkpoint: Path):
    """From-scratch runs get the pretrained model's encoder size, so only the weights differ."""
    from mae_ast_plugin.checkpoints import load_torch_file

    model = load_torch_file(checkpoint)["cfg"]["model"]
    keys = ("token_frames", "token_mel_bins", "encoder_layers", "encoder_embed_dim",
            "encoder_ffn_embed_dim", "encoder_attention_heads", "encoder_layerdrop")
    return [f"model.encoder.{key}={model[key]}" for key in keys]


def main(args):
    os.chdir(REPO)
    run([sys.executable, "scripts/make_demo_corpus.py", "--out", "data/demo", "--manifests", MANIFESTS])
    hydra_train("config/pretrain", "demo", PRETRAIN_DIR, [f"task.data={MANIFESTS}", *args.overrides])

    from mae_ast_plugin.plotting import plot_losses

    log = PRETRAIN_DIR / "hydra_train.log"
    records = plot_losses(str(log), str(OUT / "pretrain_losses.png"), title="MAE-AST demo pretraining")
    checkpoint = PRETRAIN_DIR / "checkpoints" / "checkpoint_last.pt"
    first_clip = (MANIFESTS / "valid.tsv").read_text().splitlines()
    audio = Path(first_clip[0]) / first_clip[1].split("\t")[0]
    run([sys.executable, "scripts/plot_reconstruction.py", checkpoint, audio, "--out", OUT / "reconstruction.png"])

    valid = records["valid"]
    first, last = valid[0]["valid_loss"], valid[-1]["valid_loss"]
    if not args.skip_finetune:
        pretrained = finetune_keyword("pretrained", [f"model.pretrained_checkpoint={checkpoint}"])
        scratch = finetune_keyword("scratch", ["+init=scratch", *encoder_overrides(checkpoint)])

    print()
    print(f"pretrained checkpoint: {checkpoint}")
    print(f"loss curves:           {OUT / 'pretrain_losses.png'}")
    print(f"reconstruction:        {OUT / 'reconstruction.png'}")
    print(f"pretraining log:       {log}")
    print(
        f"validation loss:       {first:.3f} at update {valid[0]['valid_num_updates']:.0f} -> "
        f"{last:.3f} at update {valid[-1]['valid_num_updates']:.0f} ({(first - last) / first:.0%} lower)"
    )
    if not args.skip_finetune:
        print("keyword spotting, 12 classes, test voices never heard in training (same fine-tuning budget):")
        print(f"  from the pretrained checkpoint: accuracy {pretrained:.3f}  ({OUT / 'keyword_pretrained'})")
        print(f"  from scratch:                   accuracy {scratch:.3f}  ({OUT / 'keyword_scratch'})")
    if not last < 0.9 * first:
        raise SystemExit("pretraining did not lower the validation loss clearly (by 10% or more)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="extra hydra overrides for pretraining, e.g. optimization.max_update=200")
    parser.add_argument("--skip-finetune", action="store_true", help="stop after pretraining and the plots")
    main(parser.parse_args())
