r"""Classification heads."""
from __future__ import annotations

from torch import Tensor, nn

__all__ = ["GCNHead"]


class GCNHead(nn.Module):
    r"""PYSKL's ``GCNHead``: global average pooling over :math:`(T, V)`, mean over the persons, dropout and a
    linear classifier ``fc_cls``,

    .. math::
        \mathbf{y} = \mathbf{W}\, \mathrm{Drop}\Big(\frac{1}{M T V}
        \sum_{m, t, v} \mathbf{x}_{m, :, t, v}\Big) + \mathbf{b}

    Args:
        num_classes (int): Number of classes.
        in_channels (int, optional): Feature channels :math:`C`. (default: :obj:`256`)
        dropout (float, optional): Dropout probability. (default: :obj:`0.0`)
        init_std (float, optional): Std of the normal init of ``fc_cls.weight`` (bias 0).
            (default: :obj:`0.01`)

    Shapes:
        - **input:** :math:`(N, M, C, T, V)` backbone features
        - **output:** :math:`(N, \text{num\_classes})` logits
    """

    def __init__(self, num_classes: int, in_channels: int = 256, dropout: float = 0.0,
                 init_std: float = 0.01) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"GCNHead: {name} must be a positive int, got {value!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"GCNHead: dropout must be in [0, 1), got {dropout!r}")
        self.num_classes, self.in_channels, self.init_std = num_classes, in_channels, init_std
        self.dropout = nn.Dropout(float(dropout))
        self.fc_cls = nn.Linear(in_channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.fc_cls.weight, 0.0, self.init_std)
        nn.init.zeros_(self.fc_cls.bias)

    def pool(self, x: Tensor) -> Tensor:
        """Pooled features :math:`(N, C)` from :math:`(N, M, C, T, V)`."""
        if x.dim() != 5 or x.size(2) != self.in_channels:
            raise ValueError(f"GCNHead: x must be (N, M, C={self.in_channels}, T, V), got shape "
                             f"{tuple(x.shape)}")
        return x.mean(dim=(3, 4)).mean(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc_cls(self.dropout(self.pool(x)))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, in_channels={self.in_channels}"
