"""The MAE-AST pretraining loss: ``10 x MSE + 1 x InfoNCE`` on the masked tokens.

Logged in natural units (nats for InfoNCE), as per-clip averages that sum exactly across
workers and accumulation steps: ``loss``, ``loss_recon``, ``loss_infonce``, ``infonce_acc``.
"""

from dataclasses import dataclass, field

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
        logging_output = clip_logging_output(
            loss,
            batch,
            sample,
            loss_recon=mse.sum().item(),
            loss_infonce=infonce.sum().item(),
            infonce_correct=int(correct.sum()),
            infonce_count=batch * num_masked,
            ntokens=batch * num_masked,
        )
        return loss, batch, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        total = reduce_clip_metrics(logging_outputs, ("loss", "loss_recon", "loss_infonce"))
        count = total("infonce_count")
        if count > 0:
            metrics.log_scalar("infonce_acc", total("infonce_correct") / count, count, round=4)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
