"""Thin wrapper kept for the paths the docs and users name: same as ``mae-ast-prepare audioset``
(mae_ast_plugin/prep/audioset.py); ``--help`` lists the options."""
import sys

from mae_ast_plugin.prep.cli import main

if __name__ == "__main__":  # importing this file runs nothing
    sys.exit(main(["audioset", *sys.argv[1:]]))
