"""Layers and models: :class:`STGCNConv` (a PyG ``MessagePassing``), temporal units, blocks, backbones."""
from .block import STGCNBlock
from .classifier import SkeletonClassifier
from .conv import BACKENDS, STGCNConv
from .heads import GCNHead
from .models import STGCN, STGCNPlusPlus
from .temporal import MultiScaleTemporalConv, TemporalConv

__all__ = ["STGCNConv", "TemporalConv", "MultiScaleTemporalConv", "STGCNBlock", "STGCN", "STGCNPlusPlus",
           "GCNHead", "SkeletonClassifier", "BACKENDS"]
