"""The report of ``mae-ast-benchmark-pretrain``: the MAE-AST / SSAST ratios, and the markdown
tables of both modes (step mode: :func:`markdown`; ``--trainer``: :func:`trainer_markdown`).
Writing them (stdout table, strict JSON written atomically) and the machine they ran on are
``write_report`` and ``machine_info`` of :mod:`mae_ast_plugin.bench.report`, shared by every
benchmark.
"""

from mae_ast_plugin.bench.report import markdown_table


def ratios(results):
    """MAE-AST over SSAST, per (tokens, layers): speed-up in clips/s and memory ratio."""
    rows = []
    by_key = {(r["model"], r["tokens"], r["layers"]): r for r in results}
    for r in results:
        if r["model"] != "mae_ast" or ("ssast", r["tokens"], r["layers"]) not in by_key:
            continue
        s = by_key[("ssast", r["tokens"], r["layers"])]
        rows.append(
            {
                "tokens": r["tokens"],
                "layers": r["layers"],
                "device": r["device"],
                "batch": r["batch"],
                "speedup": r["clips_per_s"] / s["clips_per_s"],
                "memory_ratio": r["peak_memory_bytes"] / s["peak_memory_bytes"],
                "cpu_time_speedup": s["step_cpu_time_s"] / r["step_cpu_time_s"],
                "mae_ast_encoder_tokens": r["encoder_tokens"],
                "ssast_encoder_tokens": s["encoder_tokens"],
            }
        )
    return rows


def markdown(report) -> str:
    """The step mode's tables: one row per configuration, then the MAE-AST / SSAST ratios per
    (tokens, layers); CPU reports add the ratio of CPU seconds per step."""
    peak = report.get("bf16_peak_tflops")
    cpu_mem = report["results"] and report["results"][0]["device"] == "cpu"
    header = [
        "config", "device", "mode", "batch", "enc. layers", "enc. tokens/clip",
        "dec. tokens/clip", "step (ms, median)", "clips/s", "peak memory (GiB)",
        "model TFLOP/s", "% of bf16 peak",
    ]
    rows = [
        [
            r["name"], r["device"], r["mode"], r["batch"], r["layers"], r["encoder_tokens"],
            r["decoder_tokens"] or "-", f"{1e3 * r['step_time_s']:.1f}",
            f"{r['clips_per_s']:.2f}", f"{r['peak_memory_bytes'] / 2**30:.2f}",
            f"{r['tflops']:.3f}", f"{100 * r['tflops'] / peak:.1f}" if peak else "-",
        ]
        for r in report["results"]
    ]
    lines = markdown_table(header, rows) + [""]
    header = ["tokens", "enc. layers", "MAE-AST / SSAST clips/s", "MAE-AST / SSAST peak memory"]
    header += ["SSAST / MAE-AST CPU seconds per step"] if cpu_mem else []
    rows = [
        [q["tokens"], q["layers"], f"{q['speedup']:.2f}x", f"{q['memory_ratio']:.2f}"]
        + ([f"{q['cpu_time_speedup']:.2f}x"] if cpu_mem else [])
        for q in report["ratios"]
    ]
    lines += markdown_table(header, rows)
    if peak:
        lines.append(f"\nMeasured bf16 matmul peak: {peak:.0f} TFLOP/s.")
    if cpu_mem:
        lines.append(
            "\nCPU peak memory is the configuration process's ru_maxrss (libraries included)."
        )
    return "\n".join(lines)


def trainer_markdown(report) -> str:
    """The ``--trainer`` table: one row per (model, tokens, layers, variant) with the step's and
    the loader's clips/s and which of the two limits training; then MAE-AST / SSAST per row."""
    header = [
        "model", "tokens", "layers", "variant", "step ms", "step clips/s",
        "loader clips/s (workers)", "limit",
    ]
    rows = [
        [
            r["model"], r["tokens"], r["layers"], r["variant"], f"{1000 * r['step_s']:.1f}",
            f"{r['step_clips_per_s']:.1f}", f"{r['loader_clips_per_s']:.1f} ({r['workers']})",
            "loader" if r["loader_clips_per_s"] < r["step_clips_per_s"] else "model",
        ]
        for r in report["results"]
    ]
    lines = markdown_table(header, rows)
    by = {(r["model"], r["tokens"], r["layers"], r["variant"]): r for r in report["results"]}
    for (model, tokens, layers, variant), r in by.items():
        other = by.get(("ssast", tokens, layers, variant))
        if model == "mae_ast" and other:
            speedup = r["step_clips_per_s"] / other["step_clips_per_s"]
            lines.append(f"\nMAE-AST / SSAST, {tokens} {layers}L {variant}: {speedup:.2f}x")
    return "\n".join(lines)
