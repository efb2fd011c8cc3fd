"""Export a checkpoint for use outside this plugin: ``mae-ast-export``.

    mae-ast-export CHECKPOINT OUT.pt  --format authors
    mae-ast-export CHECKPOINT OUT_DIR --format safetensors
    mae-ast-export CHECKPOINT OUT_DIR --format hf

CHECKPOINT is any model the plugin reads (``mae_ast_plugin.model_io``, which does the
work): ours or the authors', pretraining or fine-tuned, or an exported folder.

``authors``: a fairseq checkpoint in the exact layout of the authors' plugin
(AlanBaade/MAE-AST-Public): their ``cfg.model``/``cfg.task`` field names and values and every
state-dict key their ``MAE_AST`` expects, including the stored sinusoidal tables
(``--max-token-length`` rows).  s3prl's ``mae_ast_local`` upstream and the authors' own plugin
load it.  Only pretraining ``mae_ast`` checkpoints have an equivalent there; an option the
authors never had (SSAST, a fine-tuned classifier, span masking, chunk sides other than 3-5,
another analysis window) is refused with an error naming it, and so is an exported folder (it
lacks the decoder their format holds: the error names the ``.pt`` it was exported from).

``safetensors``: a folder ``model.safetensors`` + ``config.json`` (see
:mod:`mae_ast_plugin.model_io.folder`) of any model (a pretraining or fine-tuned checkpoint,
ours or the authors', or an exported folder, copied), which ``mae_ast_plugin.load_encoder``
and ``mae-ast-predict`` read without fairseq.

``hf``: a Hugging Face ``transformers`` folder with custom code (``AutoModel``, and
``AutoModelForAudioClassification`` for fine-tuned models, a waveform-in feature extractor; see
:mod:`mae_ast_plugin.hf_export`) of any checkpoint or exported folder.

The input checkpoint is read with ``torch.load(weights_only=True)`` (a file that would run
code is refused); reading it needs fairseq, the exported files do not.
"""

import argparse
import logging
import sys

from .model_io import ArtefactError, export
from .model_io.authors import AUTHORS_MAX_TOKEN_LENGTH, NotExportableError  # noqa: F401

logger = logging.getLogger(__name__)


def export_safetensors(checkpoint: str, out_dir: str) -> dict:
    """``mae-ast-export CHECKPOINT OUT_DIR --format safetensors``: the config written."""
    return export(checkpoint, out_dir, "safetensors")


def export_authors(checkpoint: str, out_path: str, max_token_length=AUTHORS_MAX_TOKEN_LENGTH):
    """``mae-ast-export CHECKPOINT OUT.pt --format authors``: the checkpoint written."""
    return export(checkpoint, out_path, "authors", max_token_length)


# --------------------------------------------------------------------------------------------
EPILOG = """examples:
  mae-ast-export outputs/pretrain/checkpoints/checkpoint_last.pt mae_ast_patch.pt --format authors
      then in s3prl: python run_downstream.py -u mae_ast_local -k mae_ast_patch.pt ...
  mae-ast-export outputs/esc50/checkpoints/checkpoint_best.pt esc50_model/ --format safetensors
      then: mae_ast_plugin.load_encoder("esc50_model/"), or mae-ast-predict esc50_model/ a.wav
"""


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="mae-ast-export",
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "checkpoint",
        help="a checkpoint (ours or the authors', pretraining or fine-tuned) or an exported folder",
    )
    parser.add_argument("out", help="OUT.pt for --format authors, a folder for safetensors, hf")
    parser.add_argument("--format", required=True, choices=("authors", "safetensors", "hf"))
    parser.add_argument(
        "--max-token-length",
        type=int,
        default=AUTHORS_MAX_TOKEN_LENGTH,
        help="authors: rows of the stored sinusoid tables, the longest clip in tokens "
        f"(default {AUTHORS_MAX_TOKEN_LENGTH}, theirs)",
    )
    args = parser.parse_args(argv)
    if args.max_token_length < 1:
        parser.error(f"--max-token-length must be positive, got {args.max_token_length}")
    logging.basicConfig(level=logging.WARNING)
    try:
        if args.format == "authors":
            exported = export_authors(args.checkpoint, args.out, args.max_token_length)
            model = exported["cfg"]["model"]
            print(
                f"wrote {args.out}: authors' format, {model['encoder_layers']}-layer encoder, "
                f"tokens {model['ast_kernel_size_time']} frames x {model['ast_kernel_size_chan']}"
                f" mel bins, mask_type {exported['cfg']['task']['mask_type']}"
            )
        elif args.format == "hf":  # a Hugging Face custom-code folder: see hf_export.py
            from .hf_export import export_hf

            config = export_hf(args.checkpoint, args.out)
            print(f"wrote {args.out}/: Hugging Face folder, {config['architectures'][0]}")
        else:
            config = export_safetensors(args.checkpoint, args.out)
            kind = "classifier" if config["classifier"] else "encoder"
            print(f"wrote {args.out}/: {config['model_type']} {kind}, safetensors + config.json")
    except ArtefactError as err:
        print(f"mae-ast-export: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
