"""Skeleton layouts and adjacency partitions."""
from .layouts import Layout, available_layouts, get_layout, register_layout
from .partitions import GRAPH_MODES, SkeletonGraph, edge2mat, get_hop_distance, normalize_digraph

__all__ = ["Layout", "get_layout", "register_layout", "available_layouts", "SkeletonGraph", "GRAPH_MODES",
           "edge2mat", "normalize_digraph", "get_hop_distance"]
