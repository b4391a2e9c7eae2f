r"""Export masked models: fold the masks into plain tensors, or build an inference model in which pruned
weights and pruned edges are removed work.

* :func:`fold` — a plain copy of the model: every mask multiplied into its tensor (:math:`W \odot M`, and the
  edge gate becomes the 0/1 edge mask), no scores, no parametrizations, no generator wrappers. Outputs are
  those of the masked model in eval mode. Masks alone give no speed-up.
* :func:`to_sparse_kernels` — :func:`fold`, then pruned edges are removed from every graph convolution
  (:func:`remove_pruned_edges`), then the whole ST-GCN runs joint-major on a native sparse kernel
  (:class:`JointMajorSTGCN`: one sparse operator per graph or temporal convolution) or channel-major
  (:class:`ChannelMajorSTGCN`), or the folded model keeps its layout with CSR layers (:class:`CSRLinear`,
  :class:`CSRTemporalConv`); CSR-or-dense per weight and dense-or-sparse aggregation per graph convolution
  are **decided by measurement** on the model's real input, and recorded in an :class:`ExportResult`.
  Inference only (no gradients through the exported kernels).
"""
from .channel_major import ChannelMajorSTGCN
from .csr import CSRLinear, CSRTemporalConv
from .fold import fold, remove_pruned_edges
from .joint_major import JointMajorSTGCN
from .result import LAYOUTS, AggregationChoice, ExportResult, KernelChoice, LayoutChoice
from .sparse_kernels import to_sparse_kernels

__all__ = [
    "fold", "remove_pruned_edges", "to_sparse_kernels", "ExportResult", "KernelChoice", "AggregationChoice",
    "LayoutChoice", "LAYOUTS", "CSRLinear", "CSRTemporalConv", "ChannelMajorSTGCN", "JointMajorSTGCN",
]
