"""Graph convolutions (all derive from :class:`SkeletonMessagePassing`)."""
from .aagcn_conv import AAGCNConv
from .ctrgcn_conv import CTRGC, CTRGCNConv
from .dggcn_conv import DGGCNConv
from .skeleton_mp import SkeletonMessagePassing
from .stgcn_conv import ADAPTIVE_MODES, BACKENDS, CONV_POSITIONS, STGCNConv, auto_choices, clear_auto_cache

__all__ = ["SkeletonMessagePassing", "STGCNConv", "AAGCNConv", "CTRGCNConv", "CTRGC", "DGGCNConv", "BACKENDS",
           "ADAPTIVE_MODES", "CONV_POSITIONS", "auto_choices", "clear_auto_cache"]
