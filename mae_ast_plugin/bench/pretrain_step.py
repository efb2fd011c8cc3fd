"""One configuration of ``mae-ast-benchmark-pretrain``'s step mode: build the model from its
config dataclass, time full training steps on identical random inputs, return the measurements.

One step is what the trainer does per update: forward with masking, the ``mae_ast`` loss
(``10 x MSE + 1 x InfoNCE`` on the masked tokens, via ``masked_prediction_losses``), backward,
gradient clipping at 10 and an Adam step with decoupled weight decay 0.01
(``torch.optim.AdamW``, as fairseq's ``adam``).  The step runs eagerly, captured whole in one CUDA
graph (``cuda_graph``: masks sampled eagerly before each replay into the graph's static index
buffers), or with every Transformer layer compiled (``compile``); ``profile_steps`` more steps
can run under the torch profiler.  The encoder's and decoder's real token counts are read with
forward pre-hooks, for the FLOP model (:mod:`.pretrain_flops`).

The timed step, its three variants and the hooks share the step's local state (model,
optimizer, inputs, counts), so :func:`run_config` reads best whole.
"""

import contextlib
import gc
import platform
import resource
import statistics
import time

from mae_ast_plugin.bench.pretrain_configs import NUM_MEL_BINS, TOKENS
from mae_ast_plugin.bench.pretrain_flops import step_flops
from mae_ast_plugin.bench.report import log


def build_model(spec: dict):
    """The ``mae_ast`` or ``ssast`` model of ``spec`` (its layers, widths, heads, LayerDrop, mask
    ratio and token kind), built from ``MaeAstModelConfig`` / ``SsastModelConfig``: no fairseq
    task."""
    from mae_ast_plugin.models.mae_ast import MaeAstModel, MaeAstModelConfig
    from mae_ast_plugin.models.ssast import SsastModel, SsastModelConfig

    config_cls, model_cls = {
        "mae_ast": (MaeAstModelConfig, MaeAstModel),
        "ssast": (SsastModelConfig, SsastModel),
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
    """Fbank frames of a clip of ``seconds`` s with the default ``FbankConfig`` (10 s: 998)."""
    from mae_ast_plugin.features import FbankConfig
    from mae_ast_plugin.features import num_frames as fbank_frames

    config = FbankConfig()
    return fbank_frames(int(round(seconds * config.sample_rate)), config)


def run_config(spec: dict) -> dict:
    """Build the model and optimizer, time ``spec["warmup"]`` untimed then ``spec["steps"]``
    timed steps on a batch of ``spec["batch"]`` random fbanks (frames x 128 mel bins, fp32, all
    frames real), return the measurements: step times (s, median and each), clips/s, token
    counts, FLOPs, peak memory (bytes; CUDA: ``max_memory_allocated``, CPU: ``ru_maxrss``).
    ``--cuda-graph`` without CUDA, or with LayerDrop, raises ``ValueError``."""
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
            out = model(fbank=source, padding_mask=model_padding, mask=True)
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

