"""The FLOP accounting of ``mae-ast-benchmark-pretrain``: the matrix-product FLOPs of one
training step of a configuration, and the GPU's bf16 matmul peak (measured) they are compared
with.

FLOPs count the matrix products only (token projection, q/k/v/out projections, attention
QK^T and AV, FFN, post-encoder projection, the two heads and the InfoNCE logits), forward x 3
for forward + backward.  The token counts come from the model as run (hooks in
:func:`mae_ast_plugin.bench.pretrain_step.run_config`), so masking is counted as it happened.
"""

from mae_ast_plugin.bench.pretrain_configs import TOKENS


def layer_flops(tokens: int, dim: int, ffn: int) -> int:
    """Forward matrix-product FLOPs of one Transformer layer on one clip of ``tokens`` tokens."""
    projections = 2 * tokens * dim * (4 * dim)  # q, k, v, out
    attention = 2 * 2 * tokens * tokens * dim  # QK^T and AV over all heads
    ffn_flops = 2 * 2 * tokens * dim * ffn  # fc1 and fc2
    return projections + attention + ffn_flops


def step_flops(spec: dict, counts: dict) -> int:
    """Forward + backward (3 x forward) matrix-product FLOPs of one training step."""
    dim, ffn = spec["embed_dim"], spec["ffn_dim"]
    token_dim = TOKENS[spec["tokens"]]["token_frames"] * TOKENS[spec["tokens"]]["token_mel_bins"]
    total, enc, masked = counts["tokens"], counts["encoder_tokens"], counts["masked_tokens"]
    flops = 2 * total * token_dim * dim  # post_extract_proj
    flops += spec["layers"] * layer_flops(enc, dim, ffn)
    if spec["model"] == "mae_ast":
        flops += spec["decoder_layers"] * layer_flops(counts["decoder_tokens"], dim, ffn)
    flops += 2 * (2 * masked * dim * token_dim)  # reconstruction and classification heads
    flops += 2 * masked * masked * token_dim  # InfoNCE logits
    return 3 * spec["batch"] * flops


def measure_bf16_peak(size: int = 8192, repeats: int = 20, trials: int = 3) -> float:
    """Best-of-``trials`` TFLOP/s of a (size x size) @ (size x size) bf16 matmul."""
    import torch

    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    out = torch.empty(size, size, device="cuda", dtype=torch.bfloat16)
    for _ in range(5):
        torch.mm(a, b, out=out)
    best = 0.0
    for _ in range(trials):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(repeats):
            torch.mm(a, b, out=out)
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1e3
        best = max(best, 2 * size**3 * repeats / seconds / 1e12)
    del a, b, out
    torch.cuda.empty_cache()
    return best
