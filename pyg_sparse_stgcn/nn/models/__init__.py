"""Backbones."""
from .stgcn import STGCN, STGCNPlusPlus, build_graph

__all__ = ["STGCN", "STGCNPlusPlus", "build_graph"]
