"""Synthetic, deterministic corpora made on this machine (pip-only: espeak-ng comes from PyPI).

- speech_synth: espeak-ng speech through ctypes, resampled to 16 kHz (standalone);
- dsp: noise, mixing at an SNR, fades, 16-bit PCM;
- build: what both builders share (per-clip seeds, parallel rendering, manifests, corpus.json);
- speech_clips: the speech parts (vocabulary, voices, planners, rendering a speech clip);
- sound_events: the synthetic sound events of the Table 1 miniature;
- demo: the demo corpus, ``mae-ast-make-demo-corpus``;
- table1: the miniature Table 1 benchmark, ``mae-ast-make-table1-corpus``.
"""
