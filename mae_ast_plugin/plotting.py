"""Pictures of a pretraining run: loss curves from the fairseq log, and masked reconstructions."""

import json
import logging
import re

import numpy as np
import torch

from .atomic_io import atomic_target

# importing fairseq sets the root logger to DEBUG (wav2vec2_classification calls
# logging.basicConfig(level=DEBUG)), which makes matplotlib print its font search line by line
logging.getLogger("matplotlib").setLevel(logging.WARNING)

_LOG_LINE = re.compile(r"\[(train_inner|train|valid)\]\[INFO\] - (\{.*\})\s*$")


def read_training_log(path: str) -> dict[str, list[dict]]:
    """Parse fairseq's ``log_format=json`` lines from a hydra_train.log.

    Returns ``{"train_inner": [...], "train": [...], "valid": [...]}``, each a list of dicts with
    numbers as floats (fairseq prints them as strings).
    """
    records = {"train_inner": [], "train": [], "valid": []}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            match = _LOG_LINE.search(line)
            if not match:
                continue
            entry = {}
            for key, value in json.loads(match.group(2)).items():
                try:
                    entry[key] = float(value)
                except (TypeError, ValueError):
                    entry[key] = value
            records[match.group(1)].append(entry)
    return records


def _save(fig, out_path: str):
    with atomic_target(out_path) as temporary:
        # format given: the temporary name's extension is not .png
        fig.savefig(temporary, dpi=110, bbox_inches="tight", format="png")


BASELINE = "loss_recon_mean_baseline"


def _plot_mean_baseline(ax, train, valid):
    """The criterion's trivial predictor (each masked token := its clip's mean visible token),
    dashed, in the colours of the train and valid curves; logs from before it existed lack it."""
    train = [r for r in train if BASELINE in r]
    valid = [r for r in valid if "valid_" + BASELINE in r]
    if train:
        ax.plot([r["num_updates"] for r in train], [r[BASELINE] for r in train], "--",
                color="C0", alpha=0.7, label="train: clip's mean visible token")
    if valid:
        ax.plot([r["valid_num_updates"] for r in valid], [r["valid_" + BASELINE] for r in valid],
                "s--", color="C1", alpha=0.7, label="valid: clip's mean visible token")


def plot_losses(log_path: str, out_path: str, title: str | None = None) -> dict[str, list[dict]]:
    """PNG of training and validation loss (and its two terms) against updates; the
    reconstruction panel also shows the mean-visible-token baseline when the log has it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_training_log(log_path)
    train, valid = records["train_inner"], records["valid"]
    if not train and not valid:
        raise ValueError(f"{log_path}: no json training records (was common.log_format=json?)")
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    for ax, key, label in zip(
        axes,
        ("loss", "loss_recon", "loss_infonce"),
        ("total loss", "reconstruction MSE", "InfoNCE (nats)"), strict=False,
    ):
        if train:
            ax.plot([r["num_updates"] for r in train], [r[key] for r in train], label="train")
        if valid:
            ax.plot(
                [r["valid_num_updates"] for r in valid],
                [r["valid_" + key] for r in valid],
                "o-",
                label="valid",
            )
        if key == "loss_recon":
            _plot_mean_baseline(ax, train, valid)
        ax.set_xlabel("updates")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    _save(fig, out_path)
    plt.close(fig)
    return records


@torch.no_grad()
def reconstruction_images(model, fbank: torch.Tensor, seed: int = 0):
    """Normalised input, masked input (NaN where masked) and reconstruction, each (T, F), for one
    (T, F) filterbank, using the model's own masking."""
    from .modules.tokens import unpatchify

    model.eval()
    cfg = model.cfg
    source = fbank.unsqueeze(0)
    tokens, _, _ = model.tokenize(source, None)
    torch.manual_seed(seed)
    out = model(fbank=source, mask=True)
    masked_idx = out["masked_idx"][0]
    masked = tokens.clone()
    masked[0, masked_idx] = float("nan")
    recon = tokens.clone()
    recon[0, masked_idx] = out["recon"][0].to(recon.dtype)
    mels = fbank.shape[-1]

    def image(t):
        return unpatchify(t, cfg.token_frames, cfg.token_mel_bins, mels)[0].float().numpy()

    return image(tokens), image(masked), image(recon)


def plot_reconstruction(images, out_path: str, title: str = ""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    original, masked, recon = images
    limits = dict(vmin=float(np.nanmin(original)), vmax=float(np.nanmax(original)))
    fig, axes = plt.subplots(3, 1, figsize=(10, 7.5), sharex=True)
    for ax, img, name in zip(
        axes, images, ("input (normalised)", "masked input", "reconstruction"), strict=False
    ):
        cmap = plt.get_cmap("magma").copy()
        cmap.set_bad("#9db4c0")
        ax.imshow(
            img.T, origin="lower", aspect="auto", cmap=cmap, interpolation="nearest", **limits
        )
        ax.set_ylabel("mel bin")
        ax.set_title(name)
    axes[-1].set_xlabel("frame (10 ms)")
    if title:
        fig.suptitle(title)
    _save(fig, out_path)
    plt.close(fig)
