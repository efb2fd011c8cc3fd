"""Count the operators of a training step that make the host wait for the device.

A GPU runs ahead of the Python code that feeds it only as long as that code never needs a value
the GPU computes.  Every read of a device value on the host (``.item()``, ``bool(t)``,
``int(t)``, ``if t.any():``, ``torch.equal``) and every operator whose output *shape* depends on
the data (boolean-mask indexing, ``nonzero``, ``masked_select``, ``unique``) waits until the GPU
has caught up: the step is then as slow as the host and the GPU added, not the slower of them.

:class:`HostSyncCounter` is a ``TorchDispatchMode`` that sees every ATen operator run inside it
(on any device, CPU included, so the count is testable without a GPU) and records those of
:data:`HOST_READS`, :data:`DATA_DEPENDENT_SHAPES` and copies from a device to the host, each with
the code that asked for it: the innermost frame of the call stack that belongs to the plugin
(``mae_ast_plugin``) or to fairseq.  Why these operators:

* ``aten._local_scalar_dense``: the one kernel behind ``Tensor.item()``, ``bool``, ``int``,
  ``float`` and ``is_nonzero`` of a one-element tensor (those are composite operators that
  reach the dispatch mode as this one); ``aten.item`` and ``aten.is_nonzero`` are listed in case
  a backend dispatches them directly.
* ``aten.equal``: returns a Python bool computed on the device.
* ``aten.nonzero``, ``aten.masked_select``, the ``unique`` family, ``repeat_interleave`` with a
  tensor of repeats (no ``output_size``): the output's size is read from the device.
* ``aten.index.Tensor`` / ``aten.index_put_`` with a boolean index: ``x[mask]``, a nonzero.
* ``aten._to_copy`` / ``aten.copy_`` from a non-CPU tensor into a CPU one: ``.cpu()``,
  ``.tolist()`` and ``.numpy()`` of a device tensor; and from host memory to a device without
  ``non_blocking`` (``torch.tensor(x, device="cuda")``), after which torch waits for the
  stream.  (On a CPU-only run neither occurs: a CPU tensor's ``.tolist()`` reads memory without
  an operator and is no device copy; the GPU check counts them on the GPU.)

Not counted: host tensors read by the host (LayerDrop's draws from torch's CPU generator), which
do not involve the device.
"""

import os
import traceback
from collections import Counter
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

HOST_READS = {
    aten._local_scalar_dense.default,
    aten.item.default,
    aten.is_nonzero.default,
    aten.equal.default,
}
DATA_DEPENDENT_SHAPES = {
    aten.nonzero.default,
    aten.masked_select.default,
    aten._unique.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.repeat_interleave.Tensor,
}
_BOOL_INDEX = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default}
_COPIES = {aten._to_copy.default, aten.copy_.default}

_PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_THIS_FILE = os.path.abspath(__file__)


def _owner(filename: str) -> str | None:
    path = os.path.abspath(filename)
    if path == _THIS_FILE:
        return None
    if path.startswith(_PLUGIN_DIR + os.sep):
        return "plugin"
    parts = path.split(os.sep)
    if "fairseq" in parts or "fairseq_cli" in parts:
        return "fairseq"
    return None


@dataclass(frozen=True)
class SyncSite:
    """One kind of host wait: the operator, who asked for it (``plugin`` or ``fairseq``, else
    ``other``) and where (``file:line in function`` of the innermost such frame)."""

    op: str
    owner: str
    where: str


def _is_bool_index(func, args) -> bool:
    if func not in _BOOL_INDEX:
        return False
    indices = args[1] if len(args) > 1 else ()
    return any(
        isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ()
    )


def _copy_kind(func, args, kwargs) -> str | None:
    """ "device-to-host copy", "blocking host-to-device copy" (torch waits for the stream after
    a copy from host memory without ``non_blocking``), or None."""
    if func is aten._to_copy.default:
        source, device = args[0], kwargs.get("device")
        if device is None:
            return None
        src, dst = source.device.type, torch.device(device).type
    else:
        src, dst = args[1].device.type, args[0].device.type
    non_blocking = kwargs.get("non_blocking", args[2] if len(args) > 2 else False)
    if src != "cpu" and dst == "cpu":
        return "device-to-host copy"
    if src == "cpu" and dst not in ("cpu", "meta") and not non_blocking:
        return "blocking host-to-device copy"
    return None


def classify(func, args, kwargs) -> str | None:
    """The kind of host wait an operator call is ("host read", "data-dependent shape", a copy
    kind of :func:`_copy_kind`), or None."""
    if func in HOST_READS:
        return "host read"
    if func in DATA_DEPENDENT_SHAPES:
        if func is aten.repeat_interleave.Tensor and kwargs.get("output_size") is not None:
            return None
        return "data-dependent shape"
    if _is_bool_index(func, args):
        return "data-dependent shape"
    if func in _COPIES:
        return _copy_kind(func, args, kwargs)
    return None


def _site(func) -> SyncSite:
    for frame in reversed(traceback.extract_stack()):
        owner = _owner(frame.filename)
        if owner is not None:
            where = f"{os.path.relpath(frame.filename, os.path.dirname(_PLUGIN_DIR))}:"
            where += f"{frame.lineno} in {frame.name}"
            if owner == "fairseq":
                where = where[where.find("fairseq") :]
            return SyncSite(str(func), owner, where)
    return SyncSite(str(func), "other", "?")


class HostSyncCounter(TorchDispatchMode):
    """``with HostSyncCounter() as counter: step()``; then ``counter.sites`` counts each
    :class:`SyncSite` and ``counter.total(owner)`` sums one owner's."""

    def __init__(self):
        super().__init__()
        self.sites: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        kind = classify(func, args, kwargs)
        if kind is not None:
            self.sites[_site(func)] += 1
        return func(*args, **kwargs)

    def total(self, owner: str | None = None) -> int:
        return sum(n for site, n in self.sites.items() if owner in (None, site.owner))

    def lines(self, per: int = 1) -> list[str]:
        """One line per site: count per step (``per`` steps counted), owner, operator, where."""
        return [
            f"{n / per:g} x {site.owner}: {site.op} at {site.where}"
            for site, n in sorted(
                self.sites.items(), key=lambda item: (item[0].owner, item[0].where)
            )
        ]


def count_train_step_syncs(trainer, samples, warmup: int = 1) -> HostSyncCounter:
    """Run ``trainer.train_step([sample])`` for each of ``samples``; the first ``warmup``
    uncounted (first-call work: optimizer state, caches), the others inside one
    :class:`HostSyncCounter`, which is returned."""
    for sample in samples[:warmup]:
        trainer.train_step([sample])
    counter = HostSyncCounter()
    with counter:
        for sample in samples[warmup:]:
            trainer.train_step([sample])
    return counter


def count_config(config_name: str, overrides, batches: int = 3, warmup: int = 1, seed: int = 1):
    """Build fairseq's Trainer for ``config/pretrain/CONFIG_NAME`` with ``overrides`` (as
    ``fairseq-hydra-train`` would), run ``warmup`` steps, then count the host waits of
    ``batches`` more steps on batches that mix clip lengths first.
    Returns ``{"config", "overrides", "steps", "padded_batches", "per_update": {owner: n},
    "sites": [line, ...]}``."""
    from mae_ast_plugin.bench.pretrain_trainer import build_trainer

    _task, trainer, epoch_itr = build_trainer(config_name, list(overrides), seed)
    loaded = list(epoch_itr.next_epoch_itr(shuffle=False))
    mixed = [b for b in loaded if _mixes_lengths(b)]
    chosen = (loaded[:warmup] + mixed + loaded)[: warmup + batches]
    counter = count_train_step_syncs(trainer, chosen, warmup=warmup)
    steps = len(chosen) - warmup
    return {
        "config": config_name,
        "overrides": list(overrides),
        "steps": steps,
        "padded_batches": sum(_mixes_lengths(b) for b in chosen[warmup:]),
        "per_update": {
            owner: counter.total(owner) / steps for owner in ("plugin", "fairseq", "other")
        },
        "sites": counter.lines(per=steps),
    }


def _mixes_lengths(batch) -> bool:
    """Whether a batch holds clips of different lengths (a padding mask that marks something)."""
    net_input = batch.get("net_input", {})
    mask = net_input.get("padding_mask")
    return mask is not None and bool(mask.any(1).any()) and not bool(mask.any(1).all())


def main(argv=None) -> int:
    """``python -m mae_ast_plugin.bench.host_syncs --config mae_ast_patch [--variant
    'a=1,b=2' ...] -- OVERRIDES``: one JSON line per variant on stdout."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--variant", action="append", default=None)
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    for variant in args.variant or [""]:
        extra = [item for item in variant.split(",") if item]
        result = count_config(args.config, [*args.overrides, *extra], args.batches, args.warmup)
        print("HOST_SYNCS " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
