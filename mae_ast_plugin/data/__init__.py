"""Data the tasks read: manifests (manifest), the fbank dataset (fbank_dataset), class labels
(labelled_dataset) and the precomputed fbank cache (fbank_cache)."""

from .fbank_dataset import FbankAudioDataset  # noqa: F401
from .manifest import Manifest, ManifestError, read_manifest  # noqa: F401
