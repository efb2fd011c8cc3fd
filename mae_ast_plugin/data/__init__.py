"""Data the tasks read: manifests (manifest), the fbank dataset (fbank_dataset), class labels
(labelled_dataset), the precomputed fbank cache (fbank_cache) and the dataset preparation
helpers (prep_utils)."""

from .fbank_dataset import FbankAudioDataset  # noqa: F401
from .manifest import Manifest, ManifestError, read_manifest  # noqa: F401
