"""What every configuration of ``mae-ast-benchmark-pretrain`` is made of, and how each one is run.

A configuration is one JSON-serialisable dict (a "spec": model, tokens, encoder layers, sizes,
device, steps) that both modes share: the step mode (:mod:`.pretrain_step`) and the ``--trainer``
mode (:mod:`.pretrain_trainer`).  This module owns the models and token kinds compared, the
paper's and the ``--tiny`` model sizes, running one spec in a fresh interpreter (so that its
``ru_maxrss`` is its own) and the loop that runs every spec and keeps the others' results when
one fails.
"""

import json
import subprocess
import sys

from mae_ast_plugin.bench.report import log

MODELS = ("mae_ast", "ssast")
# Table 1's token kinds (MAE-AST paper): 16 frames x 16 mel bins patches with chunk masks,
# and 2 frames x 128 mel bins with random masks.
TOKENS = {
    "patch": {"token_frames": 16, "token_mel_bins": 16, "mask_type": "chunk"},
    "frame": {"token_frames": 2, "token_mel_bins": 128, "mask_type": "random"},
}
PAPER_SIZE = {
    "embed_dim": 768, "ffn_dim": 3072, "heads": 12, "decoder_layers": 2, "clip_seconds": 10.0
}
TINY_SIZE = {"embed_dim": 32, "ffn_dim": 64, "heads": 2, "decoder_layers": 1, "clip_seconds": 1.0}
SIZE_KEYS = tuple(PAPER_SIZE)  # the options (--embed-dim, ...) that override a size
NUM_MEL_BINS = 128
RESULT_PREFIX = "BENCHMARK_RESULT "  # the child's result line on stdout


def model_size(args) -> dict:
    """The paper's model size (``--tiny``: a small one), with every size option the user gave
    (``--embed-dim``, ``--ffn-dim``, ``--heads``, ``--decoder-layers``, ``--clip-seconds``)."""
    size = dict(TINY_SIZE if args.tiny else PAPER_SIZE)
    for key in SIZE_KEYS:
        value = getattr(args, key)
        if value is not None:
            size[key] = value
    return size


def run_in_subprocess(spec: dict) -> dict:
    """Run one configuration in a fresh interpreter so that its ru_maxrss is its own."""
    proc = subprocess.run(
        [sys.executable, "-m", "mae_ast_plugin.bench.pretrain", "--child", json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"configuration {spec['name']} failed (exit {proc.returncode})")
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"configuration {spec['name']} printed no result")


def run_all(specs, run, after=None):
    """``run(spec)`` for every spec, in order; a configuration that raises is logged and listed
    (``{"name", "error"}``) and the others still run.  ``after()``, when given, runs after each
    configuration, failed or not (CUDA: release its memory).  Returns ``(results, failed)``."""
    results, failed = [], []
    for spec in specs:
        log(f"{spec['name']}: batch {spec['batch']}, {spec['clip_seconds']} s clips, "
            f"{spec['device']}")
        try:
            results.append(run(spec))
        except Exception as err:  # keep the other configurations' results
            log(f"{spec['name']} FAILED: {type(err).__name__}: {err}")
            failed.append({"name": spec["name"], "error": f"{type(err).__name__}: {err}"})
        finally:
            if after is not None:
                after()
    return results, failed


def failure_lines(failed) -> str:
    """The failed configurations, one ``FAILED name: error`` line each, for below the table."""
    return "".join(f"\nFAILED {failure['name']}: {failure['error']}" for failure in failed)
