"""mae_ast_plugin.plotting: the loss and reconstruction pictures' module."""


def test_plotting_keeps_matplotlib_quiet_after_fairseq_set_the_root_logger_to_debug():
    import logging

    import fairseq  # noqa: F401  (sets the root logger to DEBUG on import)

    import mae_ast_plugin.plotting  # noqa: F401

    assert logging.getLogger("matplotlib.font_manager").getEffectiveLevel() == logging.WARNING
