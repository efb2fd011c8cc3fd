"""fairseq registration of the SSAST baseline network (``ssast``); the network is
``modules.ssast``."""

from dataclasses import dataclass

from fairseq.models import BaseFairseqModel, register_model

from ..modules import ssast
from .mae_ast import MaeAstModelConfig, PretrainingModelMixin


@dataclass
class SsastModelConfig(MaeAstModelConfig):
    """MAE-AST's config; the decoder fields are accepted and ignored (see ``modules.ssast``)."""


@register_model("ssast", dataclass=SsastModelConfig)
class SsastModel(PretrainingModelMixin, ssast.Ssast, BaseFairseqModel):
    pass
