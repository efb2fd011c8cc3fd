"""Evaluation: metrics (:mod:`.metrics`), scoring a checkpoint on a split (``mae-ast-evaluate``,
:mod:`.evaluate`), k-fold cross-validation (``mae-ast-cv``, :mod:`.cv`), the Table 1 report
(``mae-ast-results-table``, :mod:`.results_table`) and the frozen-encoder linear probe
(``mae-ast-probe``, :mod:`.probe`, over :mod:`.probe_data`: the task and cached per-layer
embeddings, and :mod:`.probe_classifier`: the per-layer fit and standard errors)."""
