from . import mae_ast  # noqa: F401
