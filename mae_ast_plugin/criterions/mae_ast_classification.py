"""Clip classification loss and metrics for ``mae_ast_audio_classification``.

Single-label tasks: cross entropy (optionally label-smoothed), ``accuracy`` from summed counts,
exact across workers and batches.  Multi-label tasks (``task.multi_label``): binary cross
entropy averaged over classes, and in validation ``mAP`` over the whole evaluation set: the
scores and targets of every batch are concatenated (``metrics.log_concat_tensor``) and AP is
computed per class at the end, classes without positives left out and counted
(``mAP_skipped_classes``).  Soft targets (mixup) work with both losses.
"""

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

from ..evaluation.metrics import mean_average_precision


@dataclass
class MaeAstClassificationCriterionConfig(FairseqDataclass):
    label_smoothing: float = field(
        default=0.0, metadata={"help": "cross-entropy label smoothing (single-label tasks only)"}
    )


@register_criterion("mae_ast_classification", dataclass=MaeAstClassificationCriterionConfig)
class MaeAstClassificationCriterion(FairseqCriterion):
    def __init__(self, task, label_smoothing: float):
        super().__init__(task)
        self.multi_label = bool(task.cfg.multi_label)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if label_smoothing and self.multi_label:
            raise ValueError("label_smoothing applies to single-label (cross-entropy) tasks only")
        self.label_smoothing = label_smoothing

    def forward(self, model, sample, reduce=True):
        net_output = model(**sample["net_input"], target=sample["target"])
        logits = net_output["logits"].float()
        target = net_output["target"]  # the sample's, or mixed soft targets in training
        batch = logits.shape[0]
        if self.multi_label:
            per_clip = F.binary_cross_entropy_with_logits(
                logits, target.float(), reduction="none"
            ).mean(dim=1)
        else:
            if target.is_floating_point():
                target = target.float()
            per_clip = F.cross_entropy(
                logits, target, reduction="none", label_smoothing=self.label_smoothing
            )
        loss = per_clip.sum()
        logging_output = {
            "loss": loss.item(),
            "nsentences": batch,
            "sample_size": batch,
            "skipped_clips": int(sample.get("num_skipped", 0)),
        }
        if self.multi_label:
            if not model.training:
                # whole-set mAP: every clip's scores and labels go to reduce_metrics
                logging_output["_predictions"] = torch.sigmoid(logits).cpu()
                logging_output["_targets"] = sample["target"].cpu()
        else:
            correct = (logits.argmax(dim=1) == sample["target"]).sum()
            logging_output["_correct"] = int(correct)
            logging_output["_count"] = batch
        return loss, batch, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key):
            return sum(log.get(key, 0) for log in logging_outputs)

        clips = total("sample_size")
        if clips > 0:
            metrics.log_scalar("loss", total("loss") / clips, clips, round=4)
        skipped = total("skipped_clips")
        if skipped:
            metrics.log_scalar_sum("skipped_clips", skipped)

        count = total("_count")
        if count > 0:
            metrics.log_scalar_sum("_correct", total("_correct"))
            metrics.log_scalar_sum("_count", count)
            metrics.log_derived(
                "accuracy",
                # the sums are tensors after a cross-worker reduction
                lambda meters: round(float(meters["_correct"].sum / meters["_count"].sum), 4),
            )

        predictions = [log["_predictions"] for log in logging_outputs if "_predictions" in log]
        if predictions:
            metrics.log_concat_tensor("_predictions", torch.cat(predictions))
            targets = [log["_targets"] for log in logging_outputs if "_targets" in log]
            metrics.log_concat_tensor("_targets", torch.cat(targets))

            def whole_set_mAP(meters):
                scores, targets = meters["_predictions"].tensor, meters["_targets"].tensor
                value = mean_average_precision(scores, targets).mAP
                if value is None:  # never a NaN score, nor a checkpoint chosen on one
                    raise ValueError(
                        "mAP is undefined: no clip of the validation split has a positive "
                        "label (check its .lbl file)"
                    )
                return round(value, 4)

            metrics.log_derived("mAP", whole_set_mAP)
            metrics.log_derived(
                "mAP_skipped_classes",
                lambda meters: int((meters["_targets"].tensor > 0.5).sum(dim=0).eq(0).sum()),
            )

    def logging_outputs_can_be_summed(self) -> bool:
        # validation outputs of multi-label tasks carry tensors, gathered rather than summed
        return not self.multi_label
