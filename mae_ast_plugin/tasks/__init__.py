from . import mae_ast_pretraining  # noqa: F401
