"""Commands over checkpoints and manifests: prediction (``mae-ast-predict``), feature
extraction, reconstruction plots and the precomputed fbank cache."""
