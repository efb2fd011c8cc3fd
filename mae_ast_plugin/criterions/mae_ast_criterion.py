"""The MAE-AST pretraining loss: ``10 x MSE + 1 x InfoNCE`` on the masked tokens.

Logged in natural units (nats for InfoNCE), as per-clip averages that sum exactly across
workers and accumulation steps: ``loss``, ``loss_recon``, ``loss_infonce``, ``infonce_acc``, and
``loss_recon_mean_baseline``: the MSE a trivial predictor scores on the same masked tokens by
predicting each one as its clip's mean visible token.  A ``loss_recon`` near that baseline means
the model has learnt little beyond the clip's average spectrum.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics


@dataclass
class MaeAstCriterionConfig(FairseqDataclass):
    reconstruction_weight: float = field(default=10.0, metadata={"help": "weight of the MSE term"})
    classification_weight: float = field(default=1.0, metadata={"help": "weight of the InfoNCE term"})


def masked_prediction_losses(recon: torch.Tensor, cls: torch.Tensor, target: torch.Tensor):
    """Per-clip losses from (B, M, P) predictions and targets.

    Returns ``mse`` (B,): mean squared error over the clip's masked values; ``infonce`` (B,):
    for each masked token, cross entropy of picking its own target among the clip's M masked
    targets by dot product (no temperature, the authors' orientation: softmax over targets);
    ``correct`` (B,): how many of the M picks were right.
    """
    mse = (recon - target).pow(2).mean(dim=(1, 2))
    logits = torch.bmm(cls, target.transpose(1, 2))  # (B, M predictions, M candidates)
    log_probs = F.log_softmax(logits, dim=-1)
    infonce = -log_probs.diagonal(dim1=1, dim2=2).mean(dim=1)
    own = torch.arange(target.shape[1], device=target.device)
    correct = (logits.argmax(dim=-1) == own).sum(dim=1)
    return mse, infonce, correct


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
        mse, infonce, correct = masked_prediction_losses(recon, cls, target)
        per_clip = self.reconstruction_weight * mse + self.classification_weight * infonce
        batch, num_masked = target.shape[:2]
        loss = per_clip.sum()
        with torch.no_grad():
            baseline = mean_visible_token_mse(
                target, out["visible_tokens"], out.get("visible_padding"), out.get("masked_padding")
            )
        logging_output = {
            "loss": loss.item(),
            "loss_recon": mse.sum().item(),
            "loss_recon_mean_baseline": baseline.sum().item(),
            "loss_infonce": infonce.sum().item(),
            "infonce_correct": int(correct.sum()),
            "infonce_count": batch * num_masked,
            "ntokens": batch * num_masked,
            "nsentences": batch,
            "sample_size": batch,
            "skipped_clips": int(sample.get("num_skipped", 0)),
        }
        return loss, batch, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        clips = total("sample_size")
        if clips > 0:
            for key in ("loss", "loss_recon", "loss_recon_mean_baseline", "loss_infonce"):
                metrics.log_scalar(key, total(key) / clips, clips, round=4)
        count = total("infonce_count")
        if count > 0:
            metrics.log_scalar("infonce_acc", total("infonce_correct") / count, count, round=4)
        skipped = total("skipped_clips")
        if skipped:
            metrics.log_scalar_sum("skipped_clips", skipped)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
