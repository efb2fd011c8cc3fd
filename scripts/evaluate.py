"""Thin wrapper kept for the paths the docs and users name: same as ``mae-ast-evaluate``
(mae_ast_plugin/evaluation/evaluate.py); ``--help`` lists the options."""
import sys

from mae_ast_plugin.evaluation.evaluate import main

if __name__ == "__main__":  # importing this file runs nothing
    sys.exit(main())
