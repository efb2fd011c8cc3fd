"""``mae-ast-benchmark-pretrain``: time full pretraining steps of MAE-AST and the SSAST baseline
on identical inputs.

One step is what the trainer does per update: forward with masking, the ``mae_ast`` loss
(``10 x MSE + 1 x InfoNCE`` on the masked tokens, via ``masked_prediction_losses``), backward,
gradient clipping at 10 and an Adam step (decoupled weight decay 0.01, as fairseq's ``adam``).
The models are built directly from ``MaeAstConfig`` / ``SsastConfig``; no fairseq trainer runs.
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

The module is the whole benchmark (FLOP model, one configuration's timed steps with their
eager / CUDA-graph / compiled variants, the subprocess per CPU configuration, the report):
its parts share one configuration dict and read best together.

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
import contextlib
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mae_ast_plugin.bench.report import command_line, log, write_report
from mae_ast_plugin.bench.report import machine_info as common_machine_info
from mae_ast_plugin.cli import command_parser

REPO = Path(__file__).resolve().parents[2]  # the checkout: config/pretrain for --trainer

MODELS = ("mae_ast", "ssast")
TOKENS = {
    "patch": {"token_frames": 16, "token_mel_bins": 16, "mask_type": "chunk"},
    "frame": {"token_frames": 2, "token_mel_bins": 128, "mask_type": "random"},
}
PAPER_SIZE = {
    "embed_dim": 768, "ffn_dim": 3072, "heads": 12, "decoder_layers": 2, "clip_seconds": 10.0
}
TINY_SIZE = {"embed_dim": 32, "ffn_dim": 64, "heads": 2, "decoder_layers": 1, "clip_seconds": 1.0}
NUM_MEL_BINS = 128
RESULT_PREFIX = "BENCHMARK_RESULT "


# ------------------------------------------------------------------------------------------------
# FLOPs


def layer_flops(tokens: int, dim: int, ffn: int) -> int:
    """Forward matrix-product FLOPs of one Transformer layer on one clip of ``tokens`` tokens."""
    projections = 2 * tokens * dim * (4 * dim)  # q, k, v, out
    attention = 2 * 2 * tokens * tokens * dim  # QK^T and AV over all heads
    ffn_flops = 2 * 2 * tokens * dim * ffn  # fc1 and fc2
    return projections + attention + ffn_flops


def step_flops(spec: dict, counts: dict) -> int:
    """Forward + backward (3 x forward) matrix-product FLOPs of one training step."""
    dim, ffn = spec["embed_dim"], spec["ffn_dim"]
    token_dim = TOKENS[spec["tokens"]]["token_frames"] * TOKENS[spec["tokens"]]["token_mel_bins"]
    total, enc, masked = counts["tokens"], counts["encoder_tokens"], counts["masked_tokens"]
    flops = 2 * total * token_dim * dim  # post_extract_proj
    flops += spec["layers"] * layer_flops(enc, dim, ffn)
    if spec["model"] == "mae_ast":
        flops += spec["decoder_layers"] * layer_flops(counts["decoder_tokens"], dim, ffn)
    flops += 2 * (2 * masked * dim * token_dim)  # reconstruction and classification heads
    flops += 2 * masked * masked * token_dim  # InfoNCE logits
    return 3 * spec["batch"] * flops


# ------------------------------------------------------------------------------------------------
# One configuration


def build_model(spec: dict):
    from mae_ast_plugin.models.mae_ast import MaeAstConfig, MaeAstModel
    from mae_ast_plugin.models.ssast import SsastConfig, SsastModel

    config_cls, model_cls = {
        "mae_ast": (MaeAstConfig, MaeAstModel),
        "ssast": (SsastConfig, SsastModel),
    }[spec["model"]]
    cfg = config_cls(
        encoder_layers=spec["layers"],
        encoder_embed_dim=spec["embed_dim"],
        decoder_embed_dim=spec["embed_dim"],
        encoder_ffn_embed_dim=spec["ffn_dim"],
        encoder_attention_heads=spec["heads"],
        decoder_layers=spec["decoder_layers"],
        encoder_layerdrop=spec["layerdrop"],
        mask_ratio=spec["mask_ratio"],
        **TOKENS[spec["tokens"]],
    )
    return model_cls(cfg)


def num_frames(seconds: float) -> int:
    from mae_ast_plugin.features import FbankConfig
    from mae_ast_plugin.features import num_frames as fbank_frames

    config = FbankConfig()
    return fbank_frames(int(round(seconds * config.sample_rate)), config)


def run_config(spec: dict) -> dict:
    """Build the model and optimizer, time the steps, return the measurements."""
    import torch

    from mae_ast_plugin.criterions.mae_ast_criterion import masked_prediction_losses

    device = torch.device(spec["device"])
    cuda = device.type == "cuda"
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    frames = num_frames(spec["clip_seconds"])
    generator = torch.Generator().manual_seed(1234)  # the same clips for every configuration
    shape = (spec["batch"], frames, NUM_MEL_BINS)
    source = (torch.randn(*shape, generator=generator) * 4.5 - 4.3).to(device)
    # all frames real, as collated
    padding_mask = torch.zeros(spec["batch"], frames, dtype=torch.bool, device=device)

    model = build_model(spec).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    fused = {"fused": True, "capturable": spec.get("cuda_graph", False)} if cuda else {}
    optimizer = torch.optim.AdamW(
        params, lr=1e-4, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01, **fused
    )
    if spec["compile"]:
        torch._dynamo.reset()
        decoder = getattr(model, "decoder", None)
        stacks = [model.encoder] + ([decoder] if decoder is not None else [])
        mode = spec.get("compile_mode") or None
        for stack in stacks:
            for layer in stack.layers:
                layer.compile(dynamic=False, mode=mode)

    counts = {}

    def count_hook(name):
        def hook(module, args):
            counts.setdefault(name, args[0].shape[1])

        return hook

    handles = [model.encoder.register_forward_pre_hook(count_hook("encoder_tokens"))]
    if getattr(model, "decoder", None) is not None:
        handles.append(model.decoder.register_forward_pre_hook(count_hook("decoder_tokens")))

    graph_mode = spec.get("cuda_graph", False)
    model_padding = padding_mask
    restore_sampler = None
    if graph_mode:
        if not cuda or spec["layerdrop"] > 0:
            raise ValueError("--cuda-graph needs --device cuda and --layerdrop 0")
        # Masks are sampled eagerly before each replay (their sampling synchronises with the
        # host) and copied into the static index buffers that the captured step reads.
        from mae_ast_plugin.modules import mae_ast as mae_ast_module
        from mae_ast_plugin.modules.masking import TokenMask, sample_mask
        from mae_ast_plugin.modules.tokens import mel_blocks

        token = TOKENS[spec["tokens"]]
        freq_blocks = mel_blocks(NUM_MEL_BINS, token["token_mel_bins"])
        mask_args = dict(
            token_padding=None,
            batch_size=spec["batch"],
            num_tokens=(frames // token["token_frames"]) * freq_blocks,
            freq_blocks=freq_blocks,
            mask_type=token["mask_type"],
            mask_ratio=spec["mask_ratio"],
            chunk_min=model.cfg.chunk_min_size,
            chunk_max=model.cfg.chunk_max_size,
            span_length=model.cfg.span_length,
            device=device,
        )
        first = sample_mask(**mask_args)
        static_mask = TokenMask(first.masked_idx.clone(), first.visible_idx.clone(), None)
        restore_sampler = mae_ast_module.sample_mask
        mae_ast_module.sample_mask = lambda *args, **kwargs: static_mask
        model_padding = None  # no padded frames; a padding mask would make the model synchronise

        def resample():
            fresh = sample_mask(**mask_args)
            static_mask.masked_idx.copy_(fresh.masked_idx)
            static_mask.visible_idx.copy_(fresh.visible_idx)

    if cuda:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        def precision():
            stack = contextlib.ExitStack()
            # Graph capture needs autocast's weight-cast cache off.
            stack.enter_context(
                torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=not graph_mode)
            )
            kernels = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
            stack.enter_context(sdpa_kernel(kernels))
            return stack

        sync = torch.cuda.synchronize
    else:
        precision = contextlib.nullcontext

        def sync():
            pass

    def body():
        with precision():
            out = model(source, model_padding, mask=True)
            mse, infonce, _ = masked_prediction_losses(
                out["recon"].float(), out["cls"].float(), out["target"].float()
            )
            weighted = spec["reconstruction_weight"] * mse + spec["classification_weight"] * infonce
            loss = weighted.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        if "masked_tokens" not in counts:
            counts["masked_tokens"] = out["masked_idx"].shape[1]
            token = TOKENS[spec["tokens"]]
            counts["tokens"] = (frames // token["token_frames"]) * (
                NUM_MEL_BINS // token["token_mel_bins"]
            )

    if graph_mode:
        # Whole-step capture (forward, loss, backward, clipping, fused capturable AdamW), as in
        # PyTorch's CUDA-graph docs: warm up on a side stream, then capture one step.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                optimizer.zero_grad(set_to_none=True)
                body()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph):
            body()

        def step():
            resample()
            graph.replay()

    else:

        def step():
            body()
            optimizer.zero_grad(set_to_none=True)

    times, cpu_times = [], []
    for index in range(spec["warmup"] + spec["steps"]):
        sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        sync()
        elapsed = time.perf_counter() - start
        if index >= spec["warmup"]:
            times.append(elapsed)
            cpu_times.append(time.process_time() - cpu_start)
        total = spec["warmup"] + spec["steps"]
        log(f"  {spec['name']}: step {index + 1}/{total} {elapsed * 1e3:.1f} ms"
            + (" (warm-up)" if index < spec["warmup"] else ""))
    for handle in handles:
        handle.remove()
    if restore_sampler is not None:
        mae_ast_module.sample_mask = restore_sampler

    profile = None
    if spec["profile_steps"]:
        profile = profile_steps(step, sync, spec, cuda)

    median = statistics.median(times)
    flops = step_flops(spec, counts)
    result = {
        "name": spec["name"],
        "model": spec["model"],
        "tokens": spec["tokens"],
        "device": spec["device"],
        "device_name": (
            torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu"
        ),
        "batch": spec["batch"],
        "layers": spec["layers"],
        "decoder_layers": spec["decoder_layers"] if spec["model"] == "mae_ast" else 0,
        "embed_dim": spec["embed_dim"],
        "frames": frames,
        "tokens_per_clip": counts["tokens"],
        "encoder_tokens": counts["encoder_tokens"],
        "decoder_tokens": counts.get("decoder_tokens", 0),
        "masked_tokens": counts["masked_tokens"],
        "steps": spec["steps"],
        "warmup": spec["warmup"],
        "step_time_s": median,
        "step_times_s": times,
        # CPU seconds of this process per step (all its threads): on a CPU shared with other
        # jobs, wall time stretches while this stays close to the work done.
        "step_cpu_time_s": statistics.median(cpu_times),
        "clips_per_s": spec["batch"] / median,
        "flops_per_step": flops,
        "tflops": flops / median / 1e12,
        "compile": spec["compile"],
        "compile_mode": spec.get("compile_mode"),
        "cuda_graph": graph_mode,
        "mode": "+".join(
            ["cuda-graph" if graph_mode else "eager"]
            + (["compiled layers"] if spec["compile"] else [])
        ),
    }
    if cuda:
        result["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
        result["peak_memory_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
        result["memory_measure"] = "torch.cuda.max_memory_allocated"
    else:
        result["peak_memory_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        result["baseline_rss_bytes"] = baseline_rss
        result["memory_measure"] = "ru_maxrss of the configuration's own process"
    if profile is not None:
        result["profile"] = profile
    model = optimizer = params = None  # release them (the step closures still hold their cells)
    return result


def profile_steps(step, sync, spec, cuda):
    """Profile a few more steps; prints the operator table to stderr and returns a summary."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync()
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for _ in range(spec["profile_steps"]):
            step()
        sync()
    wall = time.perf_counter() - start
    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=60)
    steps = f"{spec['profile_steps']} steps, {wall * 1e3:.1f} ms"
    log(f"\n===== profile: {spec['name']} ({steps}) =====\n{table}")
    summary = {"steps": spec["profile_steps"], "wall_s": wall, "table": table}
    if cuda:
        # Kernels (and memcpy/memset) are the events on the CUDA device; their time is GPU-busy
        # time.
        kernel_us = sum(
            event.device_time_total
            for event in prof.key_averages()
            if event.device_type == torch.autograd.DeviceType.CUDA
        )
        summary["gpu_kernel_s"] = kernel_us / 1e6
        summary["gpu_busy_fraction"] = kernel_us / 1e6 / wall
        busy = kernel_us / 1e6 / wall
        log(f"GPU kernels busy {kernel_us / 1e3:.1f} ms of {wall * 1e3:.1f} ms ({100 * busy:.0f}%)")
    return summary


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


# ------------------------------------------------------------------------------------------------
# Whole benchmark


def measure_bf16_peak(size: int = 8192, repeats: int = 20, trials: int = 3) -> float:
    """Best-of-``trials`` TFLOP/s of a (size x size) @ (size x size) bf16 matmul."""
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    out = torch.empty(size, size, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        torch.mm(a, b, out=out)
    best = 0.0
    for _ in range(trials):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(repeats):
            torch.mm(a, b, out=out)
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1e3
        best = max(best, 2 * size**3 * repeats / seconds / 1e12)
    del a, b, out
    torch.cuda.empty_cache()
    return best


def machine_info(device: str) -> dict:
    import torch

    info = common_machine_info(torch_threads=torch.get_num_threads())
    info["load_average_at_start"] = info.pop("load_average")
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
        info["cuda"] = torch.version.cuda
    return info


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
    peak = report.get("bf16_peak_tflops")
    cpu_mem = report["results"] and report["results"][0]["device"] == "cpu"
    lines = [
        "| config | device | mode | batch | enc. layers | enc. tokens/clip | dec. tokens/clip "
        "| step (ms, median) | clips/s | peak memory (GiB) | model TFLOP/s | % of bf16 peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        fraction = f"{100 * r['tflops'] / peak:.1f}" if peak else "-"
        lines.append(
            f"| {r['name']} | {r['device']} | {r['mode']} | {r['batch']} | {r['layers']} | "
            f"{r['encoder_tokens']} | {r['decoder_tokens'] or '-'} | "
            f"{1e3 * r['step_time_s']:.1f} | {r['clips_per_s']:.2f} | "
            f"{r['peak_memory_bytes'] / 2**30:.2f} | {r['tflops']:.3f} | {fraction} |"
        )
    lines += [
        "",
        "| tokens | enc. layers | MAE-AST / SSAST clips/s | MAE-AST / SSAST peak memory "
        + ("| SSAST / MAE-AST CPU seconds per step |" if cpu_mem else "|"),
        "|---|---|---|---|" + ("---|" if cpu_mem else ""),
    ]
    for q in report["ratios"]:
        lines.append(
            f"| {q['tokens']} | {q['layers']} | {q['speedup']:.2f}x | {q['memory_ratio']:.2f} |"
            + (f" {q['cpu_time_speedup']:.2f}x |" if cpu_mem else "")
        )
    if peak:
        lines.append(f"\nMeasured bf16 matmul peak: {peak:.0f} TFLOP/s.")
    if cpu_mem:
        lines.append(
            "\nCPU peak memory is the configuration process's ru_maxrss (libraries included)."
        )
    return "\n".join(lines)



# ------------------------------------------------------------------------------------------------
# --trainer: what users get.  fairseq's own Trainer.train_step with the real task, dataset, loader
# and options, configured by composing config/pretrain/{model}_{tokens}.yaml as
# fairseq-hydra-train composes it.

VARIANTS = {
    "eager": [],
    "static": ["task.static_shapes=true"],
    "compiled": ["task.static_shapes=true", "task.compile=true"],
}


def write_trainer_corpus(root: Path, clips: int, seconds: float, seed: int = 0) -> Path:
    """``clips`` wav files of ``seconds`` (a third at 44.1 kHz, so the loader resamples) and a
    ``train.tsv`` manifest with native-rate sizes, as wav2vec_manifest.py writes it."""
    import numpy as np
    import soundfile

    rng = np.random.default_rng(seed)
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    lines = [str(audio)]
    for i in range(clips):
        rate = 44100 if i % 3 == 2 else 16000
        n = int(seconds * rate)
        t = np.arange(n) / rate
        wave = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 900) * t) + 0.02 * rng.standard_normal(n)
        soundfile.write(audio / f"{i:05d}.wav", wave.astype(np.float32), rate)
        lines.append(f"{i:05d}.wav\t{n}")
    (root / "train.tsv").write_text("\n".join(lines) + "\n")
    return root


def compose_fairseq_config(config_name: str, overrides):
    """The config fairseq-hydra-train would run: the yaml composed with hydra, fairseq's
    defaults added, interpolations resolved."""
    from fairseq.dataclass.initialize import add_defaults, hydra_init
    from fairseq.dataclass.utils import omegaconf_no_object_check
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    hydra_init(config_name)
    with initialize_config_dir(config_dir=str(REPO / "config" / "pretrain"), version_base=None):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    add_defaults(cfg)
    with omegaconf_no_object_check():
        cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    OmegaConf.set_struct(cfg, True)
    return cfg


def run_trainer_config(spec: dict) -> dict:
    """Time ``Trainer.train_step`` on batches from the real loader, and the loader alone."""
    import tempfile

    import torch
    from fairseq import tasks, utils
    from fairseq.trainer import Trainer

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    cuda = spec["device"] == "cuda"
    workdir = Path(tempfile.mkdtemp(prefix="bench_trainer_"))
    overrides = [
        "common.user_dir=mae_ast_plugin",
        f"task.data={spec['data']}",
        f"task.max_sample_len_s={spec['clip_seconds']}",
        f"checkpoint.save_dir={workdir}",
        "common.tensorboard_logdir=null",
        f"common.cpu={'false' if cuda else 'true'}",
        f"common.seed={spec['seed']}",
        f"dataset.num_workers={spec['workers']}",
        f"dataset.batch_size={spec['batch']}",
        f"dataset.max_tokens={spec['batch'] * int(spec['clip_seconds'] * 16000)}",
        "dataset.disable_validation=true",
        "distributed_training.distributed_world_size=1",
        f"model.encoder_layers={spec['layers']}",
        f"model.encoder_embed_dim={spec['embed_dim']}",
        f"model.decoder_embed_dim={spec['embed_dim']}",
        f"model.encoder_ffn_embed_dim={spec['ffn_dim']}",
        f"model.encoder_attention_heads={spec['heads']}",
        f"model.decoder_layers={spec['decoder_layers']}",
        f"task.fbank_on_device={spec['fbank_on_device']}",
        *(["task.bf16_autocast=true"] if cuda else ["common.amp=false"]),
        *VARIANTS[spec["variant"]],
        *(["task.compile_mode=" + spec["compile_mode"]] if spec.get("compile_mode") else []),
    ]
    config_name = f"{spec['model']}_{spec['tokens']}"
    cfg = compose_fairseq_config(config_name, overrides)
    utils.import_user_module(cfg.common)
    torch.manual_seed(spec["seed"])
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    trainer = Trainer(cfg, task, model, criterion)
    epoch_itr = trainer.get_train_iterator(epoch=1, load_dataset=True)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    # The data path alone: the loader as configured (workers, fbank on device or not).
    needed = spec["warmup"] + spec["steps"]
    batches, clips = [], 0
    itr = epoch_itr.next_epoch_itr(shuffle=True)
    next(itr)  # worker start-up is not throughput
    start = time.perf_counter()
    for sample in itr:
        batches.append(sample)
        clips += len(sample["id"])
        if len(batches) == needed:
            break
    loader_s = time.perf_counter() - start
    if len(batches) < needed:
        raise RuntimeError(f"the corpus gave {len(batches)} batches, {needed} needed")

    times, cpu_times, step_clips = [], [], []
    for i, sample in enumerate(batches):
        sync()
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.train_step([sample])
        sync()
        if i >= spec["warmup"]:
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
            step_clips.append(len(sample["id"]))
    step_s = statistics.median(times)
    graphs = None
    if spec["variant"] == "compiled":
        from mae_ast_plugin.tasks.mae_ast_pretraining import compiled_graphs

        graphs = compiled_graphs()
    return {
        **{k: spec[k] for k in ("name", "model", "tokens", "layers", "variant", "device")},
        "batch": spec["batch"],
        "fbank_on_device": bool(task.fbank_on_device),
        "workers": spec["workers"],
        "step_s": step_s,
        "step_cpu_time_s": statistics.median(cpu_times),
        "step_clips_per_s": statistics.mean(step_clips) / step_s,
        "loader_clips_per_s": clips / loader_s,
        "compiled_graphs": graphs,
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def trainer_markdown(report) -> str:
    lines = [
        "| model | tokens | layers | variant | fbank on device | step ms | step clips/s | "
        "loader clips/s (workers) | limit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        limit = "loader" if r["loader_clips_per_s"] < r["step_clips_per_s"] else "model"
        lines.append(
            f"| {r['model']} | {r['tokens']} | {r['layers']} | {r['variant']} | "
            f"{'yes' if r['fbank_on_device'] else 'no'} | {1000 * r['step_s']:.1f} | "
            f"{r['step_clips_per_s']:.1f} | {r['loader_clips_per_s']:.1f} ({r['workers']}) | "
            f"{limit} |"
        )
    by = {(r["model"], r["tokens"], r["layers"], r["variant"]): r for r in report["results"]}
    for (model, tokens, layers, variant), r in by.items():
        other = by.get(("ssast", tokens, layers, variant))
        if model == "mae_ast" and other:
            speedup = r["step_clips_per_s"] / other["step_clips_per_s"]
            lines.append(f"\nMAE-AST / SSAST, {tokens} {layers}L {variant}: {speedup:.2f}x")
    return "\n".join(lines)


def trainer_main(args, device: str) -> int:
    import tempfile

    size = dict(TINY_SIZE if args.tiny else PAPER_SIZE)
    for key in ("embed_dim", "ffn_dim", "heads", "decoder_layers", "clip_seconds"):
        if getattr(args, key) is not None:
            size[key] = getattr(args, key)
    cuda = device == "cuda"
    batch = args.batch_size or (2 if args.tiny else 32 if cuda else 8)
    steps = args.steps or (1 if args.tiny else 20 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 5 if cuda else 2)
    layers = args.layers or ([2] if args.tiny else [12])
    workers = args.workers if args.workers is not None else (0 if args.tiny else 6)
    data = Path(args.data_dir or tempfile.mkdtemp(prefix="bench_corpus_"))
    # one epoch must hold warm-up and timed steps plus the batch that starts the workers
    clips = batch * (warmup + steps + 2)
    if not (data / "train.tsv").is_file():
        log(f"writing {clips} clips of {size['clip_seconds']} s to {data}")
        write_trainer_corpus(data, clips, size["clip_seconds"], seed=args.seed)
    specs = []
    for tokens in args.tokens:
        for depth in layers:
            for variant in args.variants:
                for model in args.models:
                    specs.append(
                        {
                            "name": f"{model}-{tokens}-{depth}L-{variant}",
                            "model": model,
                            "tokens": tokens,
                            "layers": depth,
                            "variant": variant,
                            "batch": batch,
                            "device": device,
                            "steps": steps,
                            "warmup": warmup,
                            "workers": workers,
                            "data": str(data),
                            "fbank_on_device": args.fbank_on_device,
                            "compile_mode": args.compile_mode,
                            "seed": args.seed,
                            "threads": args.threads,
                            "kind": "trainer",
                            **size,
                        }
                    )
    report = {
        "machine": machine_info(device),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "settings": {
            "mode": "trainer: fairseq Trainer.train_step, real task, loader and options",
            "device": device,
            "batch": batch,
            "steps": steps,
            "warmup": warmup,
            "workers": workers,
            "fbank_on_device": args.fbank_on_device,
            "variants": {v: VARIANTS[v] for v in args.variants},
            **size,
        },
    }
    results, failed = [], []
    for spec in specs:
        log(f"{spec['name']}: batch {batch}, {spec['clip_seconds']} s clips, {device}")
        try:
            results.append(run_in_subprocess(spec))
        except Exception as err:  # keep the other configurations' results
            log(f"{spec['name']} FAILED: {type(err).__name__}: {err}")
            failed.append({"name": spec["name"], "error": f"{type(err).__name__}: {err}"})
    report["results"] = results
    report["failed"] = failed
    report["machine"]["load_average_at_end"] = os.getloadavg()
    print(trainer_markdown(report))
    for failure in failed:
        print(f"FAILED {failure['name']}: {failure['error']}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failed else 0


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
    parser.add_argument(
        "--fbank-on-device", default="auto", choices=("auto", "true", "false"),
        help="--trainer: task.fbank_on_device",
    )
    parser.add_argument("--data-dir", help="--trainer: corpus directory (default: generated)")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
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
    cuda = device == "cuda"
    size = dict(TINY_SIZE if args.tiny else PAPER_SIZE)
    for key, value in (
        ("embed_dim", args.embed_dim),
        ("ffn_dim", args.ffn_dim),
        ("heads", args.heads),
        ("decoder_layers", args.decoder_layers),
        ("clip_seconds", args.clip_seconds),
    ):
        if value is not None:
            size[key] = value
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

    results, failed = [], []
    for spec in specs:
        log(f"{spec['name']}: batch {batch}, {spec['clip_seconds']} s clips, {device}")
        try:
            result = run_config(spec) if (cuda or args.in_process) else run_in_subprocess(spec)
        except Exception as err:  # keep the other configurations' results
            log(f"{spec['name']} FAILED: {type(err).__name__}: {err}")
            failed.append({"name": spec["name"], "error": f"{type(err).__name__}: {err}"})
            if cuda:
                gc.collect()
                torch.cuda.empty_cache()
            continue
        if cuda:
            result["bf16_peak_fraction"] = result["tflops"] / report["bf16_peak_tflops"]
            gc.collect()
            torch.cuda.empty_cache()
        results.append(result)
    report["results"] = results
    report["failed"] = failed
    report["ratios"] = ratios(results)
    report["machine"]["load_average_at_end"] = os.getloadavg()

    failures = "".join(f"\nFAILED {failure['name']}: {failure['error']}" for failure in failed)
    write_report(report, markdown(report) + failures, args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
