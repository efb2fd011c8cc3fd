"""The probe step of ``mae-ast-table1`` (:mod:`.table1`): every row's encoder, frozen, probed
on every task with ``mae-ast-probe``'s logic (:func:`mae_ast_plugin.evaluation.probe.run_probe`;
per layer, C and the best layer chosen on valid, test scored once).  A no-pretraining row
probes the same encoder at random initialisation (seed 1).  Result:
``{out}/probe/{row}/{task}/probe.json`` (and ``probe.png``), skipped when it exists and was made
from the same checkpoint and data (``table1_inputs`` in it);
embeddings are cached in ``{out}/probe_cache``.
"""

from pathlib import Path

from mae_ast_plugin.experiments.runs import read_json
from mae_ast_plugin.experiments.table1_design import ROWS, TASKS
from mae_ast_plugin.hashing import inputs_fingerprint


def probe_source(row_key: str, pretrained: dict):
    """(checkpoint, random_init) whose encoder a row's probe reads: the row's own pretraining,
    or for a no-pretraining row a pretrained checkpoint with the same tokens and encoder, at
    fresh weights (its input BatchNorm statistics kept); None when no such checkpoint ran."""
    if row_key in pretrained:
        return Path(pretrained[row_key]["checkpoint"]), False
    tokens = ROWS[row_key].tokens
    for candidate in (f"mae_ast_{tokens}", f"ssast_{tokens}"):
        if candidate in pretrained:
            return Path(pretrained[candidate]["checkpoint"]), True
    return None


def probe(args, row_key: str, task_key: str, pretrained: dict):
    """The row's encoder, frozen, probed on the task; returns the report's best (on valid) and
    last layer entries, or None when the row has no encoder to probe."""
    from mae_ast_plugin.evaluation import probe as linear_probe

    source = probe_source(row_key, pretrained)
    if source is None:
        return None
    out = args.out / "probe" / row_key / task_key
    checkpoint, random_init = source
    # reused only when made from the same checkpoint, data and encoder (never stale)
    inputs = {"random_init": random_init,
              "inputs": inputs_fingerprint([checkpoint, args.manifests / task_key])}
    previous = read_json(out / "probe.json") if (out / "probe.json").exists() else None
    if previous is not None and previous.get("table1_inputs") == inputs:
        report = previous
    else:
        report = linear_probe.run_probe(
            str(checkpoint), str(args.manifests / task_key), random_init=random_init, seed=1,
            cache_dir=str(args.out / "probe_cache"), progress=False,
        )
        report["table1_inputs"] = inputs
        linear_probe.plot_report(report, out / "probe.png",
                                 title=f"{ROWS[row_key].label}, {TASKS[task_key].label}")
        linear_probe.write_report(report, out / "probe.json")  # last: marks it done
        best, last = report["best"], report["last"]
        print(f"  probe {ROWS[row_key].label:<22} {TASKS[task_key].label:<13} test accuracy "
              f"{100 * best['test']:.1f}% (layer {best['layer']}), last layer "
              f"{100 * last['test']:.1f}%", flush=True)
    keep = ("layer", "C", "valid", "valid_se", "test", "test_se")
    return {
        "best": {k: report["best"][k] for k in keep},
        "last": {k: report["last"][k] for k in keep},
        "encoder": report["encoder"],
        "checkpoint": report["checkpoint"],
        "report": str(out / "probe.json"),
    }
