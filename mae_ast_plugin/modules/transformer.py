"""Post-LayerNorm Transformer stack used for both the MAE-AST encoder and decoder.

Parameter names follow the authors' fairseq modules (``layers.N.self_attn.{q,k,v,out}_proj``,
``self_attn_layer_norm``, ``fc1``, ``fc2``, ``final_layer_norm``, input ``layer_norm``) so their
checkpoints load unchanged; attention runs through ``F.scaled_dot_product_attention`` so PyTorch
picks the flash or memory-efficient kernel when it can.
"""

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class SelfAttention(nn.Module):
    def __init__(self, embed_dim: int, num_heads: int, dropout: float):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor, attend: Optional[torch.Tensor]) -> torch.Tensor:
        """x: (B, L, C); attend: (B, 1, 1, L) bool, True where a key may be attended, or None."""
        batch, length, dim = x.shape
        # One (3C x C) matrix product instead of three: the separate q/k/v parameters (and so
        # the checkpoint keys) stay, their concatenation is a cheap copy per call.  q, k and v
        # come out as strided views whose last dimension is contiguous, as the fused SDPA
        # kernels require.
        weight = torch.cat((self.q_proj.weight, self.k_proj.weight, self.v_proj.weight))
        bias = torch.cat((self.q_proj.bias, self.k_proj.bias, self.v_proj.bias))
        qkv = F.linear(x, weight, bias).view(
            batch, length, 3, self.num_heads, dim // self.num_heads
        )
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, L, D)
        out = F.scaled_dot_product_attention(
            query,
            key,
            value,
            attn_mask=attend,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, dim))


class PostLNLayer(nn.Module):
    """BERT-style layer: x = LN(x + Attn(x)); x = LN(x + FFN(x))."""

    def __init__(
        self, embed_dim, ffn_dim, num_heads, dropout, attention_dropout, activation_dropout
    ):
        super().__init__()
        self.self_attn = SelfAttention(embed_dim, num_heads, attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, embed_dim)
        self.final_layer_norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.activation_dropout = nn.Dropout(activation_dropout)

    def forward(self, x, attend):
        x = self.self_attn_layer_norm(x + self.dropout(self.self_attn(x, attend)))
        hidden = self.activation_dropout(F.gelu(self.fc1(x)))
        return self.final_layer_norm(x + self.dropout(self.fc2(hidden)))


class TransformerStack(nn.Module):
    """Input LayerNorm and dropout, then ``num_layers`` post-LN layers with LayerDrop."""

    def __init__(
        self,
        num_layers: int,
        embed_dim: int,
        ffn_dim: int,
        num_heads: int,
        dropout: float,
        attention_dropout: float,
        activation_dropout: float,
        layerdrop: float,
        checkpoint_activations: bool = False,
    ):
        super().__init__()
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.layerdrop = layerdrop
        self.checkpoint_activations = checkpoint_activations
        self.layers = nn.ModuleList(
            PostLNLayer(
                embed_dim, ffn_dim, num_heads, dropout, attention_dropout, activation_dropout
            )
            for _ in range(num_layers)
        )

    def forward(
        self,
        x: torch.Tensor,
        padding_mask: Optional[torch.Tensor] = None,
        num_layers: Optional[int] = None,
    ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        """x: (B, L, C), padding_mask: (B, L) True at padding.  Returns the output and the output of
        every layer run (layers skipped by LayerDrop repeat their input), stopping after
        ``num_layers`` layers if given."""
        attend = None
        if padding_mask is not None:
            # Built whenever a mask is given (never by reading it: that would copy it to the
            # host).  A row with no real token (a batch filler of static shapes) attends to
            # every key, which keeps its values finite; nothing reads them.
            attend = (~padding_mask | padding_mask.all(1, keepdim=True))[:, None, None, :]
        x = self.dropout(self.layer_norm(x))
        hidden_states = []
        layers = self.layers[:num_layers]
        for layer, dropped in zip(layers, self.layers_dropped(len(layers)), strict=True):
            if not dropped:
                if self.checkpoint_activations and self.training:
                    x = checkpoint(layer, x, attend, use_reentrant=False)
                else:
                    x = layer(x, attend)
            hidden_states.append(x)
        return x, hidden_states

    @torch.compiler.disable  # Python booleans: host-side control flow, never traced
    def layers_dropped(self, count: int) -> List[bool]:
        """LayerDrop's choice for each of ``count`` layers, drawn on the host from torch's CPU
        generator (seeded per update like every other draw): a host tensor read by the host,
        so a GPU step never waits for it."""
        if not (self.training and self.layerdrop > 0):
            return [False] * count
        return [draw < self.layerdrop for draw in torch.rand(count).tolist()]


def init_bert_params(module: nn.Module):
    """BERT initialisation, as the authors apply it: N(0, 0.02) weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
