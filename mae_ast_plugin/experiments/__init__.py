"""End-to-end experiments that drive fairseq-hydra-train from the checkout: the demo (demo,
``mae-ast-demo``) and Table 1 in miniature (table1, ``mae-ast-table1``)."""
