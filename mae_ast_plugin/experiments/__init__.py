"""End-to-end experiments that drive fairseq-hydra-train from the checkout (configs, data and
outputs live there): the demo (demo, ``mae-ast-demo``) and Table 1 in miniature (table1,
``mae-ast-table1``, with its rows, tasks and presets in table1_design, its probe step in
table1_probe and its report in table1_report), over the measured runs of runs.py."""
