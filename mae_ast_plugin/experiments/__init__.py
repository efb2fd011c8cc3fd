"""End-to-end experiments that drive fairseq-hydra-train from the checkout (configs, data and
outputs live there): the demo (demo, ``mae-ast-demo``) and Table 1 in miniature (table1, its
report table1_report, ``mae-ast-table1``), over the measured runs of runs.py."""
