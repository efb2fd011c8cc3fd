"""The networks as plain PyTorch: tokens, masking, transformer layers, MAE-AST and SSAST.

Nothing here imports fairseq, so an exported encoder runs where fairseq is not installed.  The
fairseq registration of these networks (``mae_ast``, ``ssast``) lives in ``mae_ast_plugin.models``.
"""
