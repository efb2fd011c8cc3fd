"""The errors of loading and saving models: each names the path, what it is, and what to give
instead.  Every ``mae-ast-*`` command prints them as one line (no traceback) and exits 2."""


class ArtefactError(ValueError):
    """A path that is not a model this plugin reads, or not one the entry point it was given
    to can use."""


class MissingArtefactError(ArtefactError, FileNotFoundError):
    """A path that does not exist."""


class UnsafeCheckpointError(ArtefactError):
    """A checkpoint whose unpickling would construct or call something other than plain data."""


class FolderFormatError(ArtefactError):
    """A folder that is not an exported model, or whose config cannot be honoured."""


class IncompatibleCheckpointError(ArtefactError):
    """An authors' checkpoint with an option this plugin cannot reproduce."""


class NotAClassifierError(ArtefactError):
    """A model without a classifier head given where classes are predicted or scored."""


class NotExportableError(ArtefactError):
    """A model the requested export format cannot express."""
