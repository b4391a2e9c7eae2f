"""Backbones."""
from .aagcn import AAGCN, AAGCNBlock
from .ctrgcn import CTRGCN, CTRGCNBlock
from .dgstgcn import DGSTGCN, DGBlock
from .stgcn import STGCN, STGCNPlusPlus, build_graph

__all__ = ["STGCN", "STGCNPlusPlus", "AAGCN", "CTRGCN", "DGSTGCN", "AAGCNBlock", "CTRGCNBlock", "DGBlock",
           "build_graph"]
