"""Dataset preparation: one module per dataset of the paper's Table 1 (and LibriSpeech for
pretraining); the command is ``mae-ast-prepare`` (:mod:`.cli`).  Each dataset module writes
fairseq manifests (``{split}.tsv``), label files (``{split}.lbl``) and ``labels.csv`` from the
dataset's own metadata, over the shared helpers: :mod:`.common` (records, errors, command line),
:mod:`.audio` (finding and probing audio), :mod:`.splits` (validation hold-out),
:mod:`.manifests` (validated writing) and :mod:`.summary` (the closing summary)."""
