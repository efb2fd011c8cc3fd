"""What every ``mae-ast-<verb>`` console script shares: its argument parser's help layout.

Each command is a package module with ``main(argv=None)`` (as ``fairseq_cli``'s modules are) and
a docstring that says what it does and shows examples; ``--help`` prints that docstring as it is
written (line breaks kept), then the options with their defaults.
"""

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring verbatim, and ``(default: ...)`` after every option that has one."""


def command_parser(prog: str, doc: str, **kwargs) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` for the console script ``prog`` (``mae-ast-<verb>``) whose help shows
    ``doc``, the command module's docstring with its usage examples."""
    return argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=HelpFormatter, **kwargs
    )


def device_option(value: str) -> str:
    """argparse ``type=`` of a ``--device`` option: a torch device this machine has.

    ``cuda`` (or ``cuda:N``) without a CUDA GPU, or past the last GPU, and ``mps`` without
    Apple's Metal backend are refused here, so ``PROG: error: argument --device: ...`` names the
    option and the fix (``--device cpu``) instead of a traceback from deep inside torch."""
    import torch

    try:
        device = torch.device(value)
    except RuntimeError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a torch device (cpu, cuda, cuda:0...)"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(
                f"{value}: this machine has no CUDA GPU that torch can use "
                "(torch.cuda.is_available() is False): use --device cpu"
            )
        if device.index is not None and device.index >= count:
            raise argparse.ArgumentTypeError(
                f"{value}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{value}: Apple's MPS backend is not available here: "
                                         "use --device cpu")
    return value
