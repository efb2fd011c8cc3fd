"""What every audio task of the plugin shares: data options, mixed precision, per-worker seeds.

Distributed training is fairseq's: every worker reads the whole manifest and fairseq's epoch
iterator gives each worker every W-th batch.  Random draws (masks, dropout, LayerDrop,
SpecAugment, mixup) are seeded per micro-batch by its place in the update's global batch
(:func:`micro_batch_seed`), so W workers draw independent values, and W workers x F accumulation
steps draw exactly what one worker with ``update_freq`` W x F would.
"""

import atexit
import contextlib
import functools
import logging
import multiprocessing
import weakref
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from fairseq import utils
from fairseq.dataclass import FairseqDataclass
from fairseq.distributed import utils as distributed_utils
from fairseq.optim.amp_optimizer import AMPOptimizer
from fairseq.tasks import FairseqTask
from omegaconf import II, MISSING

from ..data.fbank_cache import FbankCache
from ..data.manifest import Manifest
from ..features import FbankConfig

logger = logging.getLogger(__name__)


@dataclass
class FbankTaskConfig(FairseqDataclass, FbankConfig):
    """The filterbank settings as a fairseq/hydra config node (``task.features``)."""


@dataclass
class AudioTaskConfig(FairseqDataclass):
    data: str = field(
        default=MISSING, metadata={"help": "directory holding the {split}.tsv manifests"}
    )
    features: FbankTaskConfig = field(
        default_factory=FbankTaskConfig,
        metadata={"help": "filterbank front end; saved in checkpoints and reused downstream"},
    )
    skip_invalid: bool = field(
        default=False,
        metadata={
            "help": "log and count bad manifest lines and unreadable/empty/non-finite/too-short "
            "clips instead of stopping with an error"
        },
    )
    fbank_cache: Optional[str] = field(
        default=None,
        metadata={
            "help": "directory of precomputed filterbanks (mae-ast-precompute-fbank): read "
            "the features from it instead of decoding the audio; the same values and crops"
        },
    )
    bf16_autocast: bool = field(
        default=False,
        metadata={
            "help": "forward passes in bfloat16 autocast on GPUs with native bf16 (Ampere and "
            "later); elsewhere float16 with common.amp, else float32.  No-op on CPU"
        },
    )
    persistent_workers: bool = field(
        default=True,
        metadata={
            "help": "keep DataLoader workers alive between epochs (fairseq's default).  On an "
            "H100 a run with 4+ workers finished but did not exit; false is the first thing to try"
        },
    )
    seed: int = II("common.seed")


def micro_batch_seed(seed: int, update_num: int, position: int) -> int:
    """Torch seed of the micro-batch at ``position`` in an update's global batch.  Position 0
    keeps fairseq's own per-update seed (``seed + update_num``), so one worker without
    accumulation draws exactly what it would without this; the others get independent seeds."""
    if position == 0:
        return seed + update_num
    return int(np.random.SeedSequence([seed, update_num, position]).generate_state(1)[0])


def autocast_dtype(bf16_requested: bool, on_gpu: bool, native_bf16: bool, amp: bool):
    """The autocast dtype of a forward pass, or None for float32."""
    if not on_gpu:
        return None
    if bf16_requested and native_bf16:
        return torch.bfloat16
    return torch.float16 if amp else None


def _loader_iterators(epoch_itr):
    """The multiprocessing DataLoader iterators held by a fairseq EpochBatchIterator: the
    reused DataLoader's persistent one and those of the current and prefetched epochs."""
    from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

    found = [getattr(getattr(epoch_itr, "dataloader", None), "_iterator", None)]
    for name in ("_cur_epoch_itr", "_next_epoch_itr"):
        itr = getattr(epoch_itr, name, None)
        while itr is not None and not isinstance(itr, _MultiProcessingDataLoaderIter):
            inner = getattr(itr, "_itr", None)  # CountingIterator
            itr = inner if inner is not None else getattr(itr, "_iterable", None)  # Buffered
        found.append(itr)
    unique = {id(i): i for i in found if isinstance(i, _MultiProcessingDataLoaderIter)}
    return list(unique.values())  # a persistent DataLoader's epochs share one iterator


_EPOCH_ITERATORS = weakref.WeakSet()


def shutdown_loader_workers() -> int:
    """Stop the loader workers (and pin-memory threads) of every epoch iterator the plugin's
    tasks made; returns how many worker processes are left (0 unless one could not be stopped).

    Why (the exit hang of README "Known problems"): fairseq reuses its DataLoaders with
    persistent workers and ``pin_memory=True`` (a pin-memory thread on GPU machines), so at the
    end of training their iterators are still alive, half consumed, with batches in flight.
    They were left to ``__del__`` during interpreter shutdown, after the atexit handlers of
    multiprocessing and torch had run, where joining the pin-memory thread and the workers can
    wait for ever (pytorch/pytorch#81794, #48666).  Registered with atexit when the first
    iterator is made, so it runs before those handlers (atexit runs last-registered first),
    while every queue and thread still works: workers are told to stop, joined, and
    terminated if they do not stop in time (DataLoader's own shutdown)."""
    iterators = [i for epoch_itr in list(_EPOCH_ITERATORS) for i in _loader_iterators(epoch_itr)]
    for itr in iterators:
        itr._shutdown_workers()
    left = len(multiprocessing.active_children())
    if iterators:
        logger.info(
            "stopped the loader workers of %d DataLoader iterators (%d worker processes left)",
            len(iterators),
            left,
        )
    return left


@functools.cache
def _register_shutdown():
    atexit.register(shutdown_loader_workers)


@functools.cache
def _gpu_has_native_bf16() -> bool:
    return torch.cuda.is_bf16_supported(including_emulation=False)


class AudioTask(FairseqTask):
    """Base of the plugin's tasks (not registered itself)."""

    cfg: AudioTaskConfig

    def __init__(self, cfg: AudioTaskConfig):
        super().__init__(cfg)
        # Clips must hold at least one token; the model's token size is known once it is built.
        self.min_frames = 1
        self._update_num, self._accumulation_step = None, 0

    @classmethod
    def setup_task(cls, cfg: AudioTaskConfig, **kwargs):
        return cls(cfg)

    def fbank_cache(self, split: str, manifest: Manifest) -> Optional[FbankCache]:
        """The precomputed filterbanks of ``split`` when ``task.fbank_cache`` is set."""
        if not self.cfg.fbank_cache:
            return None
        return FbankCache.open(self.cfg.fbank_cache, split, manifest, self.cfg.features)

    def autocast(self, model, optimizer=None):
        """The autocast context of a forward pass.  (fairseq's own train_step enters float16
        autocast with common.amp, which would override an outer bf16 one; hence our train_step.)"""
        on_gpu = next(model.parameters()).is_cuda
        native_bf16 = on_gpu and _gpu_has_native_bf16()
        amp = isinstance(optimizer, AMPOptimizer)
        dtype = autocast_dtype(self.cfg.bf16_autocast, on_gpu, native_bf16, amp)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=dtype)

    def _seed_micro_batch(self, update_num: int):
        """fairseq seeds every worker alike before each update; re-seed this micro-batch by its
        place in the global batch: accumulation step k on rank r of W is k * W + r, the
        batch that fairseq's sharded, grouped iterator gives it."""
        if update_num != self._update_num:
            self._update_num, self._accumulation_step = update_num, 0
        else:
            self._accumulation_step += 1
        world_size = distributed_utils.get_data_parallel_world_size()
        rank = distributed_utils.get_data_parallel_rank() if world_size > 1 else 0
        position = self._accumulation_step * world_size + rank
        utils.set_torch_seed(micro_batch_seed(self.cfg.seed, update_num, position))

    def train_step(self, sample, model, criterion, optimizer, update_num, ignore_grad=False):
        self._seed_micro_batch(update_num)
        model.train()
        model.set_num_updates(update_num)
        with self.autocast(model, optimizer):
            loss, sample_size, logging_output = criterion(model, sample)
        if ignore_grad:
            loss *= 0
        optimizer.backward(loss)
        return loss, sample_size, logging_output

    def valid_step(self, sample, model, criterion):
        with self.autocast(model):
            return super().valid_step(sample, model, criterion)

    def get_batch_iterator(self, dataset, *args, **kwargs):
        epoch_itr = super().get_batch_iterator(dataset, *args, **kwargs)
        _EPOCH_ITERATORS.add(epoch_itr)
        _register_shutdown()
        return epoch_itr

    def max_positions(self):
        return None

    @property
    def source_dictionary(self):
        return None

    @property
    def target_dictionary(self):
        return None
