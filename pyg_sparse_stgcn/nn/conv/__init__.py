"""Graph convolutions."""
from .stgcn_conv import ADAPTIVE_MODES, BACKENDS, CONV_POSITIONS, STGCNConv, auto_choices, clear_auto_cache

__all__ = ["STGCNConv", "BACKENDS", "ADAPTIVE_MODES", "CONV_POSITIONS", "auto_choices", "clear_auto_cache"]
