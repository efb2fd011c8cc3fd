"""``mae-ast-benchmark-pretrain --trainer``: what users get.  Times fairseq's own
``Trainer.train_step`` with the real task, dataset, loader and options, configured by composing
``config/pretrain/{model}_{tokens}.yaml`` as ``fairseq-hydra-train`` composes it, on a generated
corpus (a third of it at 44.1 kHz, so the loader resamples), per model and variant (``eager``;
``static``: task.static_shapes; ``compiled``: static + task.compile); and the loader's clips/s
(its workers alone), to say which of the two limits training.
"""

import contextlib
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from mae_ast_plugin.bench.data import generate_corpus
from mae_ast_plugin.bench.pretrain_configs import (
    failure_lines,
    model_size,
    run_all,
    run_in_subprocess,
)
from mae_ast_plugin.bench.pretrain_report import trainer_markdown
from mae_ast_plugin.bench.report import command_line, log, machine_info, write_report
from mae_ast_plugin.hydra_configs import compose

# Every third clip at 44.1 kHz: the loader's resampling is part of what it costs.
TRAINER_RATES = (16000, 16000, 44100)

VARIANTS = {
    "eager": [],
    "static": ["task.static_shapes=true"],
    "compiled": ["task.static_shapes=true", "task.compile=true"],
    # config/pretrain/run/fast.yaml; the spec's batch, workers and fbank option still apply
    "fast": ["+run=fast"],
}


def build_trainer(config_name: str, overrides, seed: int):
    """fairseq's task, ``Trainer`` and train epoch iterator for ``config/pretrain/CONFIG_NAME``
    with hydra ``overrides``, built as ``fairseq-hydra-train`` builds them."""
    import torch
    from fairseq import tasks, utils
    from fairseq.trainer import Trainer

    cfg = compose("pretrain", config_name, overrides)
    utils.import_user_module(cfg.common)
    torch.manual_seed(seed)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    trainer = Trainer(cfg, task, model, criterion)
    epoch_itr = trainer.get_train_iterator(epoch=1, load_dataset=True)
    return task, trainer, epoch_itr


@contextlib.contextmanager
def peaks_kept(peaks: list):
    """While open, each ``torch.cuda.reset_peak_memory_stats()`` first appends the peak it
    clears (``max_memory_allocated``, bytes) to ``peaks``.  fairseq's ``Trainer.train_step``
    resets the peak at the end of every step (for its gb_free log), so a peak read after the
    step would hold only what stays allocated (weights, gradients, optimizer state), not the
    step's activations."""
    import torch

    reset = torch.cuda.reset_peak_memory_stats

    def record_then_reset(device=None):
        peaks.append(torch.cuda.max_memory_allocated(device))
        reset(device)

    torch.cuda.reset_peak_memory_stats = record_then_reset
    try:
        yield peaks
    finally:
        torch.cuda.reset_peak_memory_stats = reset


def run_trainer_config(spec: dict) -> dict:
    """Time ``Trainer.train_step`` on batches from the real loader, and the loader alone:
    ``spec["warmup"]`` untimed then ``spec["steps"]`` timed steps; returns step time (s, median),
    CPU seconds per step, the step's and the loader's clips/s and the peak memory (bytes).
    A corpus with fewer batches than needed raises ``RuntimeError``."""
    import torch

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
        *(["task.bf16_autocast=true"] if cuda else ["common.amp=false"]),
        *VARIANTS[spec["variant"]],
        *(["task.compile_mode=" + spec["compile_mode"]] if spec.get("compile_mode") else []),
    ]
    config_name = f"{spec['model']}_{spec['tokens']}"
    overrides += list(spec.get("overrides", ()))
    task, trainer, epoch_itr = build_trainer(config_name, overrides, spec["seed"])

    def sync():
        if cuda:
            torch.cuda.synchronize()

    # The data path alone: the loader as configured (workers; waveforms, or cached filterbanks).
    # ``distinct_batches`` (default: one per step) are loaded and the steps cycle through them,
    # so that a large batch needs no corpus of (warm-up + steps) x batch clips.  Only full
    # batches of spec["batch"] clips are timed: an epoch's shuffled batches include its
    # remainder (544 clips in batches of 512 leave one of 32), and timing that one would report
    # a smaller batch than the one asked for.
    needed = spec["warmup"] + spec["steps"]
    distinct = min(needed, spec.get("distinct_batches") or needed)
    batches, clips, short = [], 0, []
    itr = epoch_itr.next_epoch_itr(shuffle=True)
    if spec.get("skip_first_batch", True):
        next(itr)  # worker start-up is not throughput
    start = time.perf_counter()
    for sample in itr:
        clips += len(sample["id"])
        if len(sample["id"]) != spec["batch"]:
            short.append(len(sample["id"]))
            continue
        batches.append(sample)
        if len(batches) == distinct:
            break
    loader_s = time.perf_counter() - start
    if len(batches) < distinct:
        raise RuntimeError(
            f"the corpus gave {len(batches)} batches of {spec['batch']} clips (and batches of "
            f"{short} clips), {distinct} needed: generate a larger corpus"
        )
    batches = [batches[i % distinct] for i in range(needed)]

    times, cpu_times, step_clips, peaks = [], [], [], []
    with peaks_kept(peaks):
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
    if spec["variant"] in ("compiled", "fast"):
        from mae_ast_plugin.tasks.mae_ast_pretraining import compiled_graphs

        graphs = compiled_graphs()
    peak = max([*peaks, torch.cuda.max_memory_allocated()]) if cuda else None
    syncs = None
    if spec.get("count_syncs"):
        # one more step inside the dispatch mode: what still makes the host wait, per update
        from mae_ast_plugin.bench.host_syncs import count_train_step_syncs

        try:
            # Compiled layers run eagerly here (no recompilation under the dispatch mode); the
            # host's reads are those of the same Python code path.
            with torch.compiler.set_stance("force_eager"):
                counter = count_train_step_syncs(trainer, batches[:1], warmup=0)
            syncs = {
                "per_update": {o: counter.total(o) for o in ("plugin", "fairseq", "other")},
                "sites": counter.lines(),
            }
        except Exception as err:  # a measurement that could not be made, said so
            syncs = {"error": f"{type(err).__name__}: {err}"[:300]}
    return {
        **{k: spec[k] for k in ("name", "model", "tokens", "layers", "variant", "device")},
        "batch": spec["batch"],
        # the clips each timed step trained on (the batch, unless the loader gave fewer)
        "step_clips": step_clips,
        "workers": spec["workers"],
        "step_s": step_s,
        "step_cpu_time_s": statistics.median(cpu_times),
        "step_clips_per_s": statistics.mean(step_clips) / step_s,
        "loader_clips_per_s": clips / loader_s,
        "compiled_graphs": graphs,
        "peak_memory_bytes": peak
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "host_syncs": syncs,
        "step_times_s": times,
    }


def trainer_main(args, device: str) -> int:
    """The ``--trainer`` mode of the command: every (tokens, layers, variant, model) of ``args``
    in its own process, the table on stdout, the JSON report in ``--out``; returns the exit
    status (1 when a configuration failed)."""
    size = model_size(args)
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
        generate_corpus(data, clips, size["clip_seconds"], TRAINER_RATES, seed=args.seed)
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
                            "compile_mode": args.compile_mode,
                            "seed": args.seed,
                            "threads": args.threads,
                            "kind": "trainer",
                            **size,
                        }
                    )
    report = {
        "machine": machine_info(device),
        "command": command_line(),
        "settings": {
            "mode": "trainer: fairseq Trainer.train_step, real task, loader and options",
            "device": device,
            "batch": batch,
            "steps": steps,
            "warmup": warmup,
            "workers": workers,
            "variants": {v: VARIANTS[v] for v in args.variants},
            **size,
        },
    }
    report["results"], report["failed"] = run_all(specs, run_in_subprocess)
    report["machine"]["load_average_at_end"] = os.getloadavg()
    write_report(report, trainer_markdown(report) + failure_lines(report["failed"]), args.out)
    return 1 if report["failed"] else 0
