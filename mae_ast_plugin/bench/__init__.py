"""Benchmarks that print tables (``mae-ast-benchmark-*``): pretraining steps (pretrain, the
command, over its pretrain_* parts: step, flops, trainer, report, configs), the audio -> fbank
loader (data), the precomputed fbank cache (loader_cache) and large manifests (manifest);
report.py holds what their reports share."""
