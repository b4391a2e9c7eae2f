r"""A skeleton action recogniser: backbone + head (PYSKL ``RecognizerGCN``)."""
from __future__ import annotations

from torch import Tensor, nn

__all__ = ["SkeletonClassifier"]


class SkeletonClassifier(nn.Module):
    r"""Backbone and head in one module (PYSKL's ``RecognizerGCN`` without the test-time averaging).

    ``forward`` takes :math:`(N, M, T, V, C)` and returns logits :math:`(N, \text{classes})`. A multi-clip
    batch :math:`(N, \text{num\_clips}, M, T, V, C)` is folded into :math:`N \cdot \text{num\_clips}` samples
    and the **per-clip** logits :math:`(N \cdot \text{num\_clips}, \text{classes})` are returned (clip-major
    within each sample); averaging them (e.g. softmax then mean, PYSKL's ``average_clips='prob'``) is the
    caller's job.

    Args:
        backbone (nn.Module): Maps :math:`(N, M, T, V, C)` to features :math:`(N, M, C', T', V)`
            (e.g. :class:`STGCN`).
        head (nn.Module): Maps the features to logits (e.g. :class:`GCNHead`).

    Shapes:
        - **input:** :math:`(N, M, T, V, C)` or :math:`(N, \text{num\_clips}, M, T, V, C)`
        - **output:** :math:`(N, \text{classes})` or :math:`(N \cdot \text{num\_clips}, \text{classes})`
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def extract_feat(self, x: Tensor) -> Tensor:
        """Backbone features of :math:`(N, M, T, V, C)` (multi-clip input is folded first)."""
        return self.backbone(self._fold(x))

    @staticmethod
    def _fold(x: Tensor) -> Tensor:
        if x.dim() == 6:
            return x.reshape(x.size(0) * x.size(1), *x.shape[2:])
        if x.dim() != 5:
            raise ValueError("SkeletonClassifier: x must be (N, M, T, V, C) or (N, num_clips, M, T, V, C), "
                             f"got shape {tuple(x.shape)}")
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(self._fold(x)))
