"""Synthetic, deterministic corpora made on this machine: espeak-ng speech and noise
(speech_synth), the demo corpus (demo, ``mae-ast-make-demo-corpus``) and the miniature Table 1
benchmark (table1, ``mae-ast-make-table1-corpus``), over the helpers in build.py."""
