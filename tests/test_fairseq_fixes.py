import torch
from fairseq.optim.amp_optimizer import AMPOptimizer
from fairseq.optim.sgd import SGD
from omegaconf import OmegaConf

import mae_ast_plugin  # noqa: F401  (installs the fixes)


def test_amp_optimizer_unscales_gradients_once():
    """With loss scale 128, SGD at lr 1 on loss 2w must move w by exactly -2."""
    weight = torch.nn.Parameter(torch.zeros(1))
    cfg = OmegaConf.create(
        {"optimizer": {"lr": [1.0], "momentum": 0.0, "weight_decay": 0.0},
         "common": {"fp16_init_scale": 128, "amp_scale_window": None, "min_loss_scale": 1e-4}}
    )
    optimizer = AMPOptimizer(cfg, [weight], SGD(cfg.optimizer, [weight]))
    # CUDA's GradScaler is disabled on CPU; the CPU one has the same bookkeeping.
    optimizer._grad_scaler = torch.amp.GradScaler("cpu", init_scale=128.0)
    optimizer.backward((2.0 * weight).sum())
    assert weight.grad.item() == 256.0  # scaled by 128
    optimizer.clip_grad_norm(10.0)
    optimizer.step()
    assert weight.item() == -2.0

