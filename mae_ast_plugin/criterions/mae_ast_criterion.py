"""The MAE-AST pretraining loss: ``10 x MSE + 1 x InfoNCE`` on the masked tokens.

Logged in natural units (nats for InfoNCE), as per-clip averages that sum exactly across
workers and accumulation steps: ``loss``, ``loss_recon``, ``loss_infonce``, ``infonce_acc``, and
``loss_recon_mean_baseline``: the MSE a trivial predictor scores on the same masked tokens by
predicting each one as its clip's mean visible token.  A ``loss_recon`` near that baseline means
the model has learnt little beyond the clip's average spectrum.
"""

from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn.functional as F
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

from .clip_metrics import clip_logging_output, reduce_clip_metrics


@dataclass
class MaeAstCriterionConfig(FairseqDataclass):
    reconstruction_weight: float = field(default=10.0, metadata={"help": "weight of the MSE term"})
    classification_weight: float = field(
        default=1.0, metadata={"help": "weight of the InfoNCE term"}
    )


def masked_prediction_losses(
    recon: torch.Tensor,
    cls: torch.Tensor,
    target: torch.Tensor,
    masked_padding: Optional[torch.Tensor] = None,
):
    """Per-clip losses from (B, M, P) predictions and targets; ``masked_padding`` (B, M) is True
    at the slots of clips that mask fewer than M tokens (see ``modules.masking``).

    Returns ``mse`` (B,): mean squared error over the clip's masked values; ``infonce`` (B,):
    for each masked token, cross entropy of picking its own target among the clip's own masked
    targets by dot product (no temperature, the authors' orientation: softmax over targets);
    ``correct`` (B,): how many picks were right (:func:`masked_counts` gives the denominators).
    Padding slots count nowhere, neither as predictions nor as InfoNCE negatives; a clip with
    no masked token (a static-shape batch filler) has zero losses.
    """
    batch, slots = target.shape[:2]
    own = torch.arange(slots, device=target.device)
    logits = torch.bmm(cls, target.transpose(1, 2))  # (B, M predictions, M candidates)
    squared = (recon - target).pow(2).mean(dim=2)  # (B, M)
    if masked_padding is None:
        mse = squared.mean(dim=1)
        infonce = -F.log_softmax(logits, dim=-1).diagonal(dim1=1, dim2=2).mean(dim=1)
        correct = (logits.argmax(dim=-1) == own).sum(dim=1)
        return mse, infonce, correct
    real = ~masked_padding
    count = real.sum(dim=1)
    denominator = count.clamp(min=1).to(squared.dtype)
    mse = squared.masked_fill(masked_padding, 0.0).sum(dim=1) / denominator
    logits = logits.masked_fill(masked_padding.unsqueeze(1), torch.finfo(logits.dtype).min)
    picked = F.log_softmax(logits, dim=-1).diagonal(dim1=1, dim2=2)
    infonce = -picked.masked_fill(masked_padding, 0.0).sum(dim=1) / denominator
    correct = ((logits.argmax(dim=-1) == own) & real).sum(dim=1)
    return mse, infonce, correct


def real_clips(sample: dict, batch: int) -> int:
    """Clips of ``sample`` (``len(sample["id"])``; static-shape filler rows have no id), else
    ``batch``: a number the host knows, no copy from the device."""
    ids = sample.get("id")
    return len(ids) if ids is not None else batch


def masked_counts(target: torch.Tensor, masked_padding: Optional[torch.Tensor]) -> torch.Tensor:
    """Masked tokens of each clip (B,), from (B, M, P) targets and their slot padding."""
    if masked_padding is None:
        return torch.full((target.shape[0],), target.shape[1], device=target.device)
    return (~masked_padding).sum(dim=1)


def mean_visible_token_mse(
    target: torch.Tensor,
    visible: torch.Tensor,
    visible_padding: torch.Tensor | None = None,
    masked_padding: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-clip MSE (B,) of predicting every masked token as the clip's mean visible token.

    ``target`` (B, M, P) and ``visible`` (B, V, P) are normalised tokens (the model's units);
    ``visible_padding`` (B, V) and ``masked_padding`` (B, M), True at padding slots, keep padding
    out of the mean and out of the error.  Comparable with ``loss_recon`` when no masked slot is
    padded (the reconstruction MSE also averages over the clip's masked values).
    """
    target, visible = target.float(), visible.float()
    if visible_padding is not None:
        real = (~visible_padding).unsqueeze(-1).float()
        mean = (visible * real).sum(1) / real.sum(1).clamp(min=1.0)
    else:
        mean = visible.mean(1)
    error = (target - mean.unsqueeze(1)).pow(2).mean(-1)  # (B, M)
    if masked_padding is None:
        return error.mean(1)
    real = (~masked_padding).float()
    return (error * real).sum(1) / real.sum(1).clamp(min=1.0)


def infonce_accuracy(meters) -> float:
    """The fraction of masked tokens whose own target won the InfoNCE pick, over the logged
    steps (fairseq's derived meter: read when a line is logged)."""
    count = float(meters["_infonce_count"].sum)
    return round(float(meters["_infonce_correct"].sum) / count, 4) if count > 0 else 0.0


@register_criterion("mae_ast", dataclass=MaeAstCriterionConfig)
class MaeAstCriterion(FairseqCriterion):
    def __init__(self, task, reconstruction_weight: float, classification_weight: float):
        super().__init__(task)
        if reconstruction_weight < 0 or classification_weight < 0:
            raise ValueError("criterion weights must be >= 0")
        if reconstruction_weight == 0 and classification_weight == 0:
            raise ValueError("reconstruction_weight and classification_weight cannot both be 0")
        self.reconstruction_weight = reconstruction_weight
        self.classification_weight = classification_weight

    def forward(self, model, sample, reduce=True):
        out = model(**sample["net_input"])
        recon, cls, target = out["recon"].float(), out["cls"].float(), out["target"].float()
        masked_padding = out.get("masked_padding")
        mse, infonce, correct = masked_prediction_losses(recon, cls, target, masked_padding)
        count = masked_counts(target, masked_padding)
        per_clip = self.reconstruction_weight * mse + self.classification_weight * infonce
        loss = per_clip.sum()
        with torch.no_grad():
            baseline = mean_visible_token_mse(
                target, out["visible_tokens"], out.get("visible_padding"), masked_padding
            )
        # Only the sample's clips count (static-shape batch fillers are not clips); their
        # number is known on the host.  Logged values stay tensors: fairseq sums them and
        # copies them to the host at the log interval, not at every update.
        batch = real_clips(sample, target.shape[0])
        logging_output = clip_logging_output(
            loss,
            batch,
            sample,
            loss_recon=mse.sum().detach(),
            loss_recon_mean_baseline=baseline.sum(),
            loss_infonce=infonce.sum().detach(),
            infonce_correct=correct.sum(),
            infonce_count=count.sum(),
            ntokens=count.sum(),
        )
        return loss, batch, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        total = reduce_clip_metrics(
            logging_outputs, ("loss", "loss_recon", "loss_recon_mean_baseline", "loss_infonce")
        )
        # Sums of tensors, divided only when a line is logged: a weight or a test of a device
        # value here would copy it to the host at every update.
        metrics.log_scalar_sum("_infonce_correct", total("infonce_correct"))
        metrics.log_scalar_sum("_infonce_count", total("infonce_count"))
        metrics.log_derived("infonce_acc", infonce_accuracy)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
