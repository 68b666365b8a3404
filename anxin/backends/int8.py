"""Weight-only int8 for CPU generation: half the bytes read per generated token.

Generating one token reads every weight of the model once, so on a CPU the speed of decoding
is set by memory bandwidth, not arithmetic: SmolLM2 in bf16 spends 75 % of a decoding step in
matrix-vector products at about 12 GB/s. Storing the matmul weights as int8 with one scale
per output row halves those bytes; torch's `_weight_int8pack_mm` kernel multiplies them
without unpacking. Prompts (many rows at once) are compute-bound instead, so there the weight
is unpacked to the activations' dtype and the usual bf16 kernel runs.

Per-row symmetric int8 is the scheme of llama.cpp's q8_0 and torchao's int8 weight-only
(q8_0 uses blocks of 32); its rounding error is far below the spread of sampling. It is opt-in
(`--quantize int8`) because greedy replies can still differ from bf16 after a few tokens.
"""

from __future__ import annotations

import torch

DECODE_ROWS = 4  # at most this many token rows use the int8 kernel; more are a prompt
K_MULTIPLE = 16  # the kernel needs in_features a multiple of 16 (24 gives wrong results)


class Int8Linear(torch.nn.Module):
    """A frozen Linear layer whose weight is int8 with one float scale per output row."""

    def __init__(self, linear: torch.nn.Linear, dtype: torch.dtype):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_int8", torch.round(weight / scale[:, None]).to(torch.int8))
        self.register_buffer("scale", scale.to(dtype))
        bias = linear.bias.detach().to(dtype) if linear.bias is not None else None
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(self.scale.dtype)
        if rows.shape[0] <= DECODE_ROWS:
            out = torch._weight_int8pack_mm(rows, self.weight_int8, self.scale)
        else:
            weight = self.weight_int8.to(self.scale.dtype) * self.scale[:, None]
            out = torch.nn.functional.linear(rows, weight)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize_int8(model: torch.nn.Module) -> int:
    """Replace the model's Linear layers (output layer included) by Int8Linear, in place.

    Embeddings and norms stay as they are. A layer whose input width the kernel cannot take
    is left in its dtype. Returns how many layers were replaced.
    """
    dtype = next(model.parameters()).dtype
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear) and child.in_features % K_MULTIPLE == 0:
                setattr(parent, name, Int8Linear(child, dtype))
                replaced += 1
    return replaced
