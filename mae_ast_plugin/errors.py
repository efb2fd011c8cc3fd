"""The error every user mistake raises: :class:`InputError`.

A mistake in what a user gave (a file, a line of it, an option, a split too small for what a tool
computes) is an :class:`InputError` whose message names where it is (``file:line``, the option,
the split) and what to do.  The ``mae-ast-*`` tools print it as ``PROG: error: MESSAGE`` and exit
with status 1, without a traceback; so does ``fairseq-hydra-train`` once the plugin is imported
(:func:`mae_ast_plugin.fairseq_fixes.install_input_error_report`).  Everything else (a bug) keeps
its traceback.
"""


class InputError(ValueError):
    """A user mistake, reported without a traceback (see the module docstring)."""

