"""``mae-ast-benchmark-pretrain``: time full pretraining steps of MAE-AST and the SSAST baseline
on identical inputs.

One step is what the trainer does per update: forward with masking, the ``mae_ast`` loss
(``10 x MSE + 1 x InfoNCE`` on the masked tokens, via ``masked_prediction_losses``), backward,
gradient clipping at 10 and an Adam step (decoupled weight decay 0.01, as fairseq's ``adam``).
The models are built directly from ``MaeAstModelConfig`` / ``SsastModelConfig``; no fairseq
trainer runs.
Inputs are random filterbanks of 10 s clips (998 frames x 128 mel bins, all real frames);
masking is 75%: 16x16 patch tokens with chunk masks, 2x128 frame tokens with random masks.

For every (model, tokens, encoder layers) configuration it reports the median step time over
``--steps`` timed steps (after ``--warmup`` untimed ones), clips/s, peak memory, the number of
tokens the encoder really processes (read with a hook) and the model FLOP rate, and for every
(tokens, layers) pair the MAE-AST / SSAST speed-up and memory ratio.

* CUDA: bf16 autocast, SDPA restricted to the flash / memory-efficient kernels, fused AdamW;
  peak memory is ``torch.cuda.max_memory_allocated`` (model, gradients, optimizer state and
  activations); the FLOP rate is compared with the GPU's bf16 matrix peak, measured here with a
  large bf16 matmul.
  ``--cuda-graph`` captures the whole step in one CUDA graph (masks are then sampled eagerly
  before each replay into the graph's static index buffers): no host overhead, so it shows what
  the architectures cost on the GPU; ``--compile`` compiles every Transformer layer.
* CPU: fp32; every configuration runs in its own subprocess, whose peak resident memory
  (``ru_maxrss``, which includes the ~0.5 GB of the imported libraries) is reported, as well as
  the process's CPU seconds per step (robust to other jobs on the machine with ``--threads 1``).

This module is the command (its options, the step mode's configurations and report); beside it
in ``mae_ast_plugin.bench``: ``pretrain_step`` (one configuration's timed steps),
``pretrain_flops`` (FLOP model, bf16 peak), ``pretrain_trainer`` (``--trainer``),
``pretrain_report`` (tables) and ``pretrain_configs`` (models, sizes, a process per
configuration).


FLOPs count the matrix products only (token projection, q/k/v/out projections, attention
QK^T and AV, FFN, post-encoder projection, the two heads and the InfoNCE logits), forward x 3
for forward + backward.  LayerDrop is off by default (``--layerdrop``) so that every step runs
every layer and the FLOP count is exact; dropout is on, as in training.

Examples::

    mae-ast-benchmark-pretrain --device cpu --batch-size 8 --layers 12 \\
        --warmup 1 --steps 3 --out cpu.json
    mae-ast-benchmark-pretrain --device cuda --batch-size 32 --layers 6 12 --out gpu.json
    mae-ast-benchmark-pretrain --device cuda --layers 12 --cuda-graph --compile
    mae-ast-benchmark-pretrain --tiny --out tiny.json      # seconds; for tests

``--trainer`` times what users run instead: fairseq's ``Trainer.train_step`` with the task,
dataset, loader and options of ``config/pretrain/{model}_{tokens}.yaml`` composed as
``fairseq-hydra-train`` composes it, on a generated corpus (a third of it 44.1 kHz), per model
and variant (``eager``; ``static``: task.static_shapes; ``compiled``: static + task.compile),
and reports the loader's clips/s (its workers alone) next to the step's::

    mae-ast-benchmark-pretrain --trainer --device cuda --batch-size 32 --layers 12 \
        --workers 8 --out trainer_gpu.json
    mae-ast-benchmark-pretrain --trainer --device cpu --batch-size 4 --layers 2 \
        --embed-dim 192 --ffn-dim 768 --heads 4 --clip-seconds 4 --workers 2 --out cpu.json
"""


import argparse
import gc
import json
import os
import sys

from mae_ast_plugin.bench.pretrain_configs import (
    MODELS,
    RESULT_PREFIX,
    TOKENS,
    failure_lines,
    model_size,
    run_all,
    run_in_subprocess,
)
from mae_ast_plugin.bench.pretrain_flops import measure_bf16_peak
from mae_ast_plugin.bench.pretrain_report import markdown, ratios
from mae_ast_plugin.bench.pretrain_step import run_config
from mae_ast_plugin.bench.pretrain_trainer import VARIANTS, run_trainer_config, trainer_main
from mae_ast_plugin.bench.report import command_line, log, machine_info, write_report
from mae_ast_plugin.cli import command_parser


def parse_args(argv=None):
    parser = command_parser("mae-ast-benchmark-pretrain", __doc__)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch-size", type=int,
                        help="clips per step (default 32 on CUDA, 8 on CPU)")
    parser.add_argument("--layers", type=int, nargs="+", help="encoder depths (default 6 12)")
    parser.add_argument("--tokens", nargs="+", choices=tuple(TOKENS), default=list(TOKENS))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--steps", type=int, help="timed steps (default 20 on CUDA, 3 on CPU)")
    parser.add_argument("--warmup", type=int,
                        help="untimed steps first (default 5 on CUDA, 1 on CPU)")
    parser.add_argument("--clip-seconds", type=float, help="clip length (default 10 s: 998 frames)")
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--layerdrop", type=float, default=0.0, help="encoder LayerDrop (0: off)")
    parser.add_argument("--embed-dim", type=int, help="model width (default 768)")
    parser.add_argument("--ffn-dim", type=int, help="FFN width (default 3072)")
    parser.add_argument("--heads", type=int, help="attention heads (default 12)")
    parser.add_argument("--decoder-layers", type=int, help="MAE-AST decoder depth (default 2)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile every Transformer layer")
    parser.add_argument("--compile-mode",
                        help="torch.compile mode (e.g. max-autotune-no-cudagraphs)")
    parser.add_argument(
        "--cuda-graph",
        action="store_true",
        help="CUDA: capture the whole step in a CUDA graph (masks sampled outside, LayerDrop off)",
    )
    parser.add_argument("--profile-steps", type=int, default=0,
                        help="profile this many extra steps")
    parser.add_argument("--in-process", action="store_true",
                        help="CPU: no subprocess per configuration")
    parser.add_argument("--threads", type=int,
                        help="torch threads (default: torch's; 1 with --tiny)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tiny", action="store_true",
                        help="small widths, 1 s clips, 1+1 steps, batch 2")
    parser.add_argument(
        "--trainer",
        action="store_true",
        help="time fairseq's Trainer.train_step with the real task, loader and options "
        "(config/pretrain yaml), next to the loader's own clips/s",
    )
    parser.add_argument(
        "--variants", nargs="+", choices=tuple(VARIANTS), default=list(VARIANTS),
        help="--trainer: eager, static (task.static_shapes), compiled (static + task.compile)",
    )
    parser.add_argument("--workers", type=int, help="--trainer: loader workers (default 6)")
    parser.add_argument("--data-dir", help="--trainer: corpus directory (default: generated)")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    """``mae-ast-benchmark-pretrain``: the step mode, ``--trainer``, or (``--child``, internal)
    one configuration whose result is printed as a JSON line for the parent process."""
    args = parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        run = run_trainer_config if spec.get("kind") == "trainer" else run_config
        result = run(spec)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if args.trainer:
        return trainer_main(args, device)
    return step_main(args, device)


def step_main(args, device: str) -> int:
    """The step mode of the command: every (tokens, layers, model) of ``args`` (CPU: each in
    its own process unless ``--in-process``), the tables on stdout, the JSON report in
    ``--out``; returns the exit status (1 when a configuration failed)."""
    import torch

    cuda = device == "cuda"
    size = model_size(args)
    defaults = {"batch": 2, "layers": [2], "steps": 1, "warmup": 1} if args.tiny else {
        "batch": 32 if cuda else 8,
        "layers": [6, 12],
        "steps": 20 if cuda else 3,
        "warmup": 5 if cuda else 1,
    }
    batch = args.batch_size or defaults["batch"]
    layers = args.layers or defaults["layers"]
    steps = args.steps or defaults["steps"]
    warmup = defaults["warmup"] if args.warmup is None else args.warmup

    # the settings every configuration shares, as run (specs) and as reported (settings)
    shared = {
        "device": device,
        "batch": batch,
        "steps": steps,
        "warmup": warmup,
        "mask_ratio": args.mask_ratio,
        "layerdrop": args.layerdrop,
        "compile": args.compile,
        "compile_mode": args.compile_mode,
        "cuda_graph": args.cuda_graph,
        **size,
    }
    specs = []
    for tokens in args.tokens:
        for depth in layers:
            for model in args.models:
                specs.append(
                    {
                        "name": f"{model}-{tokens}-{depth}L",
                        "model": model,
                        "tokens": tokens,
                        "layers": depth,
                        **shared,
                        "profile_steps": args.profile_steps,
                        "seed": args.seed,
                        "threads": args.threads or (1 if args.tiny else None),
                        "reconstruction_weight": 10.0,
                        "classification_weight": 1.0,
                    }
                )

    report = {
        "machine": machine_info(device),
        "command": command_line(),
        "settings": {
            **shared,
            "layers": layers,
            "tokens": args.tokens,
            "models": args.models,
            "precision": "bf16 autocast, SDPA flash/memory-efficient" if cuda else "fp32",
            "optimizer": "AdamW(lr 1e-4, betas (0.9, 0.98), eps 1e-6, wd 0.01) + clip_grad_norm 10",
            "loss": "10 x MSE + 1 x InfoNCE (masked_prediction_losses)",
            "tiny": args.tiny,
        },
    }
    if cuda:
        report["bf16_peak_tflops"] = measure_bf16_peak()
        log(f"measured bf16 matmul peak: {report['bf16_peak_tflops']:.0f} TFLOP/s")

    def run(spec):
        result = run_config(spec) if (cuda or args.in_process) else run_in_subprocess(spec)
        if cuda:
            result["bf16_peak_fraction"] = result["tflops"] / report["bf16_peak_tflops"]
        return result

    def release():  # the next configuration starts with the GPU's memory free
        if cuda:
            gc.collect()
            torch.cuda.empty_cache()

    results, failed = run_all(specs, run, after=release)
    report["results"] = results
    report["failed"] = failed
    report["ratios"] = ratios(results)
    report["machine"]["load_average_at_end"] = os.getloadavg()

    write_report(report, markdown(report) + failure_lines(failed), args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
