"""fairseq registration of the MAE-AST network (``mae_ast``); the network is ``modules.mae_ast``."""

from dataclasses import dataclass, field

from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import BaseFairseqModel, register_model

from ..checkpoints.authors import drop_authors_buffers
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
        return cls(cfg)

    def upgrade_state_dict_named(self, state_dict, name):
        super().upgrade_state_dict_named(state_dict, name)
        drop_authors_buffers(state_dict, f"{name}." if name else "", keep=self.state_dict().keys())
        return state_dict


@register_model("mae_ast", dataclass=MaeAstModelConfig)
class MaeAstModel(PretrainingModelMixin, mae_ast.MaeAst, BaseFairseqModel):
    pass
