"""Thin wrapper kept for the paths the docs and users name: same as ``mae-ast-prepare voxceleb1``
(mae_ast_plugin/prep/voxceleb1.py); ``--help`` lists the options."""
import sys

from mae_ast_plugin.prep.cli import main

if __name__ == "__main__":  # importing this file runs nothing
    sys.exit(main(["voxceleb1", *sys.argv[1:]]))
