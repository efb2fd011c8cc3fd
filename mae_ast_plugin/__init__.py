"""mae_ast_plugin: MAE-AST for fairseq (use as ``common.user_dir=mae_ast_plugin``).

Where fairseq is installed, importing the package registers its tasks, models and criteria with
fairseq (``mae_ast_pretraining``, ``mae_ast``, ...) and lets fairseq load the authors'
checkpoints (see ``model_io.authors``).  Without fairseq the package still imports: the networks
(``modules``), the filterbank (``features``) and :func:`load_encoder` on an exported folder
(``mae-ast-export CHECKPOINT DIR --format safetensors``) need only torch and safetensors.
"""

from .encoder import MaeAstEncoder, Windowing  # noqa: F401
from .model_io import load_encoder  # noqa: F401  (the one door: mae_ast_plugin.model_io)

__version__ = "0.1.0"

try:
    import fairseq  # noqa: F401
except ImportError:  # a fairseq that is installed but broken raises something else, and shows
    HAVE_FAIRSEQ = False
else:
    HAVE_FAIRSEQ = True

if HAVE_FAIRSEQ:
    from . import criterions, data, models, optim, tasks  # noqa: F401  (registration side effects)
    from .fairseq_fixes import install_fairseq_fixes
    from .model_io.authors import install_checkpoint_upgrade

    install_checkpoint_upgrade()  # the authors' checkpoints load through every fairseq path
    install_fairseq_fixes()
