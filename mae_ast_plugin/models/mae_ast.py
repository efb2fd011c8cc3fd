"""fairseq registration of the MAE-AST network (``mae_ast``); the network is ``modules.mae_ast``."""

from dataclasses import dataclass, field

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model

from ..model_io.authors import drop_authors_buffers
from ..modules import mae_ast
from ..modules.mae_ast import INIT_STYLES
from ..modules.masking import MASK_TYPES


@dataclass
class MaeAstModelConfig(FairseqDataclass, mae_ast.MaeAstConfig):
    """The config of :class:`MaeAstModel`: the network's :class:`~..modules.mae_ast.MaeAstConfig`
    (defaults are the paper's) as a fairseq/hydra config node.  A config is named after the
    class it builds: ``modules`` holds the networks' plain configs, ``models`` the fairseq ones."""

    mask_type: ChoiceEnum(MASK_TYPES) = field(
        default="chunk",
        metadata={"help": "random (per clip), chunk (SSAST square chunks), span (time spans)"},
    )
    init_style: ChoiceEnum(INIT_STYLES) = field(
        default="bert",
        metadata={
            "help": "bert (ours, default): BERT's N(0, 0.02) for every Linear; authors: PyTorch's "
            "default init for the token projection, post_enc_proj and both output heads"
        },
    )


class PretrainingModelMixin:
    """What fairseq needs of a pretraining network beyond ``nn.Module``."""

    @classmethod
    def build_model(cls, cfg, task=None):
        """The network with every option at construction: its front end's filterbank settings
        (``task.features``) and ``task.static_shapes`` come from the task.  Without a task (an
        encoder rebuilt inside another model), use :func:`build_pretraining_network`, which
        takes the checkpoint's filterbank settings."""
        task_cfg = getattr(task, "cfg", None)
        return cls(
            cfg,
            features=getattr(task_cfg, "features", None),
            static_shapes=bool(getattr(task_cfg, "static_shapes", False)),
        )

    def upgrade_state_dict_named(self, state_dict, name):
        super().upgrade_state_dict_named(state_dict, name)
        drop_authors_buffers(state_dict, f"{name}." if name else "", keep=self.state_dict().keys())
        return state_dict


@register_model("mae_ast", dataclass=MaeAstModelConfig)
class MaeAstModel(PretrainingModelMixin, mae_ast.MaeAst, BaseFairseqModel):
    pass


def build_pretraining_network(model_cfg, features, from_checkpoint: bool = True):
    """A registered pretraining network (``mae_ast``/``ssast``) from a model config node and the
    filterbank settings of its front end (``FbankConfig`` or the checkpoint's
    ``task.features``), with fairseq's config merging (``fairseq.models.build_model`` does the
    same merge, then calls ``build_model(cfg, task)``, which has no task here)."""
    from fairseq.dataclass.utils import merge_with_parent
    from fairseq.models import MODEL_DATACLASS_REGISTRY, MODEL_REGISTRY
    from omegaconf import OmegaConf

    name = model_cfg.get("_name") if OmegaConf.is_config(model_cfg) else model_cfg["_name"]
    if name not in ("mae_ast", "ssast"):
        raise ValueError(f"model {name!r} is not a pretraining network (mae_ast or ssast)")
    cfg = merge_with_parent(
        MODEL_DATACLASS_REGISTRY[name](), OmegaConf.create(model_cfg), from_checkpoint
    )
    return MODEL_REGISTRY[name](cfg, features=features)
