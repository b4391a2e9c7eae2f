r"""Adjacency partitions of a skeleton (PYSKL ``Graph`` semantics) and their PyG edge form.

Conventions (DESIGN §4): PYSKL aggregates with ``einsum('nkctv,kvw->nctw')``, so joint :math:`v` sends a
message to joint :math:`w` with weight :math:`A_{k,v,w}`. We expose that as ``edge_index[0] = v`` (source),
``edge_index[1] = w`` (target) and ``edge_weight[k, e] = A[k, v_e, w_e]``.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from .layouts import Layout, get_layout

__all__ = ["SkeletonGraph", "edge2mat", "normalize_digraph", "get_hop_distance", "GRAPH_MODES"]

GRAPH_MODES = ("uniform", "distance", "stgcn_spatial", "spatial", "binary_adj", "random")


def edge2mat(links, num_node: int) -> np.ndarray:
    """Adjacency with ``A[j, i] = 1`` for every link ``(i, j)`` (PYSKL ``edge2mat``)."""
    A = np.zeros((num_node, num_node))
    for i, j in links:
        A[j, i] = 1
    return A


def normalize_digraph(A: np.ndarray, dim: int = 0) -> np.ndarray:
    r"""Column normalisation :math:`A D^{-1}` with :math:`D_{ii} = \sum_j A_{ji}` (zero-degree columns stay 0)."""
    deg = A.sum(dim)
    inv = np.zeros_like(deg, dtype=np.float64)
    nz = deg > 0
    inv[nz] = 1.0 / deg[nz]
    return A @ np.diag(inv)


def get_hop_distance(num_node: int, links, max_hop: int = 1) -> np.ndarray:
    """Hop distance between joints along bones; ``inf`` beyond ``max_hop`` (PYSKL / ST-GCN semantics)."""
    A = np.zeros((num_node, num_node))
    for i, j in links:
        A[i, j] = 1
        A[j, i] = 1
    hop = np.full((num_node, num_node), np.inf)
    reach = [np.linalg.matrix_power(A, d) > 0 for d in range(max_hop + 1)]
    for d in range(max_hop, -1, -1):
        hop[reach[d]] = d
    return hop


class SkeletonGraph:
    r"""A skeleton graph with :math:`K` adjacency subsets.

    Modes (PYSKL ``Graph`` / original ST-GCN):

    * ``uniform`` — one subset, :math:`\mathrm{norm}(A_{\le h})` over all joints within ``max_hop``.
    * ``distance`` — one subset per hop :math:`0..h`.
    * ``stgcn_spatial`` — ST-GCN's spatial configuration: per hop a "close" subset (neighbour at least as far
      from the centre) and, for hop > 0, a "further" subset; 3 subsets for ``max_hop=1``.
    * ``spatial`` — :math:`[I, \mathrm{norm}(A_{in}), \mathrm{norm}(A_{out})]` (ST-GCN++, CTR-GCN, AAGCN).
    * ``binary_adj`` — one unnormalised symmetric adjacency (MS-G3D).
    * ``random`` — :math:`\mathcal{N}(\text{init\_off}, \text{init\_std}^2)` of shape ``(num_filter, V, V)``
      (PYSKL, Sparse-ST-GCN); drawn from ``numpy.random`` (or a ``seed``-ed generator when ``seed`` is given).

    Here :math:`\mathrm{norm}(A) = A D^{-1}` normalises columns.

    Args:
        layout (str | Layout | dict): Registry name, layout or custom dict.
        mode (str, optional): One of :obj:`GRAPH_MODES`. (default: :obj:`"spatial"`)
        max_hop (int, optional): Largest hop distance. (default: :obj:`1`)
        num_filter (int, optional): Number of subsets of mode ``random``. (default: :obj:`3`)
        init_std (float, optional): Std of mode ``random``. (default: :obj:`0.02`)
        init_off (float, optional): Mean of mode ``random``. (default: :obj:`0.04`)
        seed (int, optional): Seed for mode ``random``; :obj:`None` uses numpy's global RNG like PYSKL.
            (default: :obj:`None`)
    """

    def __init__(self, layout: str | Layout | Mapping = "nturgb+d", mode: str = "spatial", max_hop: int = 1,
                 num_filter: int = 3, init_std: float = 0.02, init_off: float = 0.04,
                 seed: int | None = None) -> None:
        self.layout = get_layout(layout)
        if mode not in GRAPH_MODES:
            raise ValueError(f"unknown graph mode {mode!r}; valid modes: {', '.join(GRAPH_MODES)}")
        if isinstance(max_hop, bool) or not isinstance(max_hop, int) or max_hop < 1:
            raise ValueError(f"max_hop must be an int >= 1, got {max_hop!r}")
        if mode == "random" and (not isinstance(num_filter, int) or num_filter < 1):
            raise ValueError(f"num_filter must be an int >= 1, got {num_filter!r}")
        self.mode = mode
        self.max_hop = max_hop
        self.num_filter = num_filter
        self.init_std = init_std
        self.init_off = init_off
        self.seed = seed
        self.num_nodes = self.layout.num_nodes
        self.center = self.layout.center
        self.hop_dis = get_hop_distance(self.num_nodes, self.layout.inward, max_hop)
        self.A = np.asarray(getattr(self, "_" + mode)(), dtype=np.float32)

    # --- modes -----------------------------------------------------------------------------------------------
    def _within_hops(self) -> np.ndarray:
        adj = np.zeros((self.num_nodes, self.num_nodes))
        adj[self.hop_dis <= self.max_hop] = 1
        return normalize_digraph(adj)

    def _uniform(self) -> np.ndarray:
        return self._within_hops()[None]

    def _distance(self) -> np.ndarray:
        norm = self._within_hops()
        A = np.zeros((self.max_hop + 1, self.num_nodes, self.num_nodes))
        for hop in range(self.max_hop + 1):
            sel = self.hop_dis == hop
            A[hop][sel] = norm[sel]
        return A

    def _stgcn_spatial(self) -> np.ndarray:
        norm = self._within_hops()
        hop_dis, c = self.hop_dis, self.center
        out = []
        for hop in range(self.max_hop + 1):
            close = np.zeros_like(norm)
            further = np.zeros_like(norm)
            for i in range(self.num_nodes):
                for j in range(self.num_nodes):
                    if hop_dis[j, i] == hop:
                        if hop_dis[j, c] >= hop_dis[i, c]:
                            close[j, i] = norm[j, i]
                        else:
                            further[j, i] = norm[j, i]
            out.append(close)
            if hop > 0:
                out.append(further)
        return np.stack(out)

    def _spatial(self) -> np.ndarray:
        n = self.num_nodes
        return np.stack([edge2mat(self.layout.self_link, n),
                         normalize_digraph(edge2mat(self.layout.inward, n)),
                         normalize_digraph(edge2mat(self.layout.outward, n))])

    def _binary_adj(self) -> np.ndarray:
        return edge2mat(self.layout.neighbor, self.num_nodes)[None]

    def _random(self) -> np.ndarray:
        shape = (self.num_filter, self.num_nodes, self.num_nodes)
        if self.seed is None:
            noise = np.random.randn(*shape)  # numpy's global RNG, like PYSKL
        else:
            noise = np.random.default_rng(self.seed).standard_normal(shape)
        return noise * self.init_std + self.init_off

    # --- PyG view --------------------------------------------------------------------------------------------
    @property
    def num_subsets(self) -> int:
        return int(self.A.shape[0])

    @property
    def dense_candidates(self) -> bool:
        """True when every ``V²`` pair is a candidate edge (mode ``random``)."""
        return self.mode == "random"

    def candidate_edge_index(self, all_pairs: bool = False) -> torch.Tensor:
        """``(2, E)`` candidate edges sorted by (target, source).

        The support of ``A`` (union over subsets), or all :math:`V^2` pairs when ``all_pairs`` or mode
        ``random`` (a learnable or random adjacency can be non-zero anywhere).
        """
        V = self.num_nodes
        if all_pairs or self.dense_candidates:
            support = np.ones((V, V), dtype=bool)
        else:
            support = (self.A != 0).any(0)
        target, source = np.nonzero(support.T)  # support.T[w, v] = support[v, w]: sorted by (target, source)
        return torch.stack([torch.as_tensor(source, dtype=torch.long), torch.as_tensor(target, dtype=torch.long)])

    @property
    def edge_index(self) -> torch.Tensor:
        """``(2, E)`` candidate edges of ``A``'s support (``edge_index[0]`` = source ``v``, ``[1]`` = target ``w``)."""
        return self.candidate_edge_index()

    @property
    def edge_weight(self) -> torch.Tensor:
        """``(K, E)`` with ``edge_weight[k, e] = A[k, edge_index[0, e], edge_index[1, e]]``."""
        return self.gather(self.edge_index)

    def gather(self, edge_index: torch.Tensor, A: np.ndarray | torch.Tensor | None = None) -> torch.Tensor:
        """Values of ``A`` (default: this graph's) at ``edge_index`` as a ``(K, E)`` tensor."""
        A = torch.as_tensor(self.A if A is None else A)
        return A[:, edge_index[0], edge_index[1]]

    def __repr__(self) -> str:
        return (f"SkeletonGraph(layout={self.layout.name!r}, mode={self.mode!r}, num_nodes={self.num_nodes}, "
                f"num_subsets={self.num_subsets})")
