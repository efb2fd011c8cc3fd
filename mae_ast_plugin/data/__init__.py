from .fbank_dataset import FbankAudioDataset  # noqa: F401
from .manifest import Manifest, ManifestError, read_manifest  # noqa: F401
