"""mae_ast_plugin: MAE-AST pretraining for fairseq (use as ``common.user_dir=mae_ast_plugin``).

Importing the package registers the task ``mae_ast_pretraining``, the model ``mae_ast`` and the
criterion ``mae_ast`` with fairseq.
"""

from . import criterions, data, models, tasks  # noqa: F401  (registration side effects)
from .compat import install_checkpoint_upgrade

install_checkpoint_upgrade()  # the authors' checkpoints load through every fairseq path

__version__ = "0.1.0"
