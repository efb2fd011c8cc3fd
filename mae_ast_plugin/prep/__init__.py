"""Dataset preparation: one module per dataset of the paper's Table 1 (and LibriSpeech for
pretraining) over the shared helpers of :mod:`.common`; the command is ``mae-ast-prepare``
(:mod:`.cli`).  Each module writes fairseq manifests (``{split}.tsv``), label files
(``{split}.lbl``) and ``labels.csv`` from the dataset's own metadata."""
