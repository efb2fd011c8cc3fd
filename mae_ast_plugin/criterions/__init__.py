from . import mae_ast_criterion  # noqa: F401
