"""Exact dense products with per-sample (data-dependent) adjacencies on channels-last activations."""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["per_sample_subsets"]


def per_sample_subsets(x: Tensor, M: Tensor) -> Tensor:
    r"""``out[b, t, v, k, c] = Σ_u M[b, k, u, v] x[b, t, u, c]`` returned as :math:`(B, T, V, K C)`.

    ``x`` :math:`(B, T, U, C)`, ``M`` :math:`(B, K, U, V)` (one graph per sample and subset, shared by the
    channels and frames): one batched GEMM per sample with the :math:`(V K \times U)` operator.
    """
    B, K, U, V = M.shape
    Mt = M.permute(0, 3, 1, 2).reshape(B, 1, V * K, U)
    out = torch.matmul(Mt.to(x.dtype), x)  # (B, T, V K, C)
    return out.reshape(x.size(0), x.size(1), V, K * x.size(-1))

