"""mae_ast_plugin: MAE-AST for fairseq (use as ``common.user_dir=mae_ast_plugin``).

Importing the package registers its tasks, models and criteria with fairseq
(``mae_ast_pretraining``, ``mae_ast``, ...), and lets fairseq load the authors' checkpoints
(see compat.py).
"""

from . import criterions, data, models, tasks  # noqa: F401  (registration side effects)
from .compat import install_checkpoint_upgrade
from .encoder import MaeAstEncoder, load_encoder  # noqa: F401
from .fairseq_fixes import install_fairseq_fixes

install_checkpoint_upgrade()  # the authors' checkpoints load through every fairseq path
install_fairseq_fixes()

__version__ = "0.1.0"
