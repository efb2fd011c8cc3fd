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
