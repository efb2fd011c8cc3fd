"""``mae-ast-plot-reconstruction``: plot a pretraining checkpoint's masked reconstruction of
one audio file.

    mae-ast-plot-reconstruction CHECKPOINT AUDIO [--out recon.png] [--seed 0]

Example::

    mae-ast-plot-reconstruction outputs/demo/pretrain/checkpoints/checkpoint_last.pt clip.wav \\
        --out recon.png

Writes a PNG with three panels: the normalised input filterbank, the masked input (masked
tokens in grey) and the reconstruction (visible tokens from the input, masked ones predicted).
"""

import os
import sys

import torch

import mae_ast_plugin  # noqa: F401  (registers the plugin, upgrades authors' checkpoints)
from mae_ast_plugin.cli import command_parser
from mae_ast_plugin.features import load_audio
from mae_ast_plugin.model_io import ArtefactError, load_pretraining_model
from mae_ast_plugin.plotting import plot_reconstruction, reconstruction_images


def get_parser():
    parser = command_parser("mae-ast-plot-reconstruction", __doc__)
    parser.add_argument("checkpoint", help="pretraining checkpoint (mae_ast or ssast, ours or the "
                        "authors'): the kinds that keep the decoder")
    parser.add_argument("audio", help="any soundfile-readable audio file")
    parser.add_argument("--out", default="reconstruction.png", help="output PNG")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mask")
    parser.add_argument(
        "--max-seconds", type=float, default=10.0, help="plot at most this much audio"
    )
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    try:
        model, features = load_pretraining_model(args.checkpoint)
    except ArtefactError as err:
        print(f"mae-ast-plot-reconstruction: error: {err}", file=sys.stderr)
        return 2
    waveform = load_audio(args.audio, features.sample_rate)
    waveform = waveform[: int(args.max_seconds * features.sample_rate)]
    fbank = model.front_end(waveform.unsqueeze(0))[0][0]  # the model's own filterbank
    images = reconstruction_images(model, fbank, seed=args.seed)
    masking = f"{model.cfg.mask_type} masking, ratio {model.cfg.mask_ratio}"
    title = f"{os.path.basename(args.audio)} - {masking}"
    plot_reconstruction(images, args.out, title=title)
    masked = torch.isnan(torch.from_numpy(images[1])).float().mean().item()
    print(f"wrote {args.out} ({masked:.0%} of the plotted frames x bins masked)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
