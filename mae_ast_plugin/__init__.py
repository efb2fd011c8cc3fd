"""mae_ast_plugin: MAE-AST for fairseq (use as ``common.user_dir=mae_ast_plugin``).

Where fairseq is installed, importing the package registers its tasks, models and criteria with
fairseq (``mae_ast_pretraining``, ``mae_ast``, ...) and lets fairseq load the authors'
checkpoints (see ``checkpoints.authors``).  Without fairseq the package still imports: the networks
(``modules``), the filterbank (``features``) and :func:`load_encoder` on an exported folder
(``mae-ast-export CHECKPOINT DIR --format safetensors``) need only torch and safetensors.
"""

from .checkpoints import load_encoder  # noqa: F401  (the one door: mae_ast_plugin.checkpoints)
from .encoder import MaeAstEncoder, Windowing  # noqa: F401

__version__ = "0.1.0"

try:
    import fairseq  # noqa: F401
except ImportError:  # a fairseq that is installed but broken raises something else, and shows
    HAVE_FAIRSEQ = False
else:
    HAVE_FAIRSEQ = True

if HAVE_FAIRSEQ:
    from . import criterions, data, models, optim, tasks  # noqa: F401  (registration side effects)
    from .checkpoints.authors import install_checkpoint_upgrade
    from .fairseq_fixes import install_fairseq_fixes

    install_checkpoint_upgrade()  # the authors' checkpoints load through every fairseq path
    install_fairseq_fixes()
