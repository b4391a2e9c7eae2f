"""Layers and models: graph convolutions (PyG ``MessagePassing``), temporal units, blocks, backbones."""
from .block import STGCNBlock
from .classifier import SkeletonClassifier
from .compile import INDUCTOR_OPTIONS, compile_model
from .conv import BACKENDS, AAGCNConv, CTRGCNConv, DGGCNConv, SkeletonMessagePassing, STGCNConv
from .heads import GCNHead
from .models import AAGCN, CTRGCN, DGSTGCN, STGCN, AAGCNBlock, CTRGCNBlock, DGBlock, STGCNPlusPlus
from .temporal import CTRMultiScaleTemporalConv, DGMultiScaleTemporalConv, MultiScaleTemporalConv, TemporalConv

__all__ = ["SkeletonMessagePassing", "STGCNConv", "AAGCNConv", "CTRGCNConv", "DGGCNConv", "TemporalConv",
           "MultiScaleTemporalConv", "DGMultiScaleTemporalConv", "CTRMultiScaleTemporalConv", "STGCNBlock",
           "AAGCNBlock", "CTRGCNBlock", "DGBlock", "STGCN", "STGCNPlusPlus", "AAGCN", "CTRGCN", "DGSTGCN",
           "GCNHead", "SkeletonClassifier", "BACKENDS", "compile_model", "INDUCTOR_OPTIONS"]
