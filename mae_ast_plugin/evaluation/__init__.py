"""Evaluation: metrics (:mod:`.metrics`), scoring a checkpoint on a split (``mae-ast-evaluate``,
:mod:`.evaluate`), k-fold cross-validation (``mae-ast-cv``, :mod:`.cv`) and the Table 1 report
(``mae-ast-results-table``, :mod:`.results_table`)."""
