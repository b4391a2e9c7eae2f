"""Skeleton graphs: A against values derived here from PYSKL's definitions (anchors §A.3), edge conventions,
custom-layout validation."""
from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch

from pyg_sparse_stgcn.graph import Layout, SkeletonGraph, get_layout

# PYSKL's bone lists (``inward`` = child -> parent), typed here from its Graph definitions.
PYSKL_LAYOUTS = {
    "openpose": (18, [(4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9), (9, 8), (11, 5), (8, 2),
                      (5, 1), (2, 1), (0, 1), (15, 0), (14, 0), (17, 15), (16, 14)], 1),
    "nturgb+d": (25, [(i - 1, j - 1) for i, j in [
        (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10),
        (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (22, 8),
        (23, 8), (24, 12), (25, 12)]], 20),
    "coco": (17, [(15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8), (8, 6),
                  (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2)], 0),
}


def _links_matrix(links, n):
    """edge2mat: A[j, i] = 1 for each link (i, j)."""
    A = np.zeros((n, n))
    for i, j in links:
        A[j, i] = 1.0
    return A


def _col_normalise(A):
    """A @ D^-1 with D_ii = sum of column i (zero columns stay zero)."""
    out = np.zeros_like(A)
    for i in range(A.shape[1]):
        s = A[:, i].sum()
        if s > 0:
            out[:, i] = A[:, i] / s
    return out


def _hop_distance(n, links, max_hop):
    """BFS distances along the bones, inf beyond max_hop (PYSKL truncates its hop matrix at max_hop)."""
    adj = {i: [] for i in range(n)}
    for i, j in links:
        adj[i].append(j)
        adj[j].append(i)
    hop = np.full((n, n), np.inf)
    for s in range(n):
        dist = {s: 0}
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for w in adj[u]:
                if w not in dist:
                    dist[w] = dist[u] + 1
                    queue.append(w)
        for t, d in dist.items():
            if d <= max_hop:
                hop[s, t] = d
    return hop


def expected_spatial(n, inward):
    outward = [(j, i) for i, j in inward]
    return np.stack([np.eye(n), _col_normalise(_links_matrix(inward, n)),
                     _col_normalise(_links_matrix(outward, n))])


def expected_stgcn_spatial(n, inward, center, max_hop=1):
    hop = _hop_distance(n, inward, max_hop)
    norm = _col_normalise((hop <= max_hop).astype(float))
    subsets = []
    for h in range(max_hop + 1):
        close, further = np.zeros((n, n)), np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                if hop[j, i] == h:
                    if hop[j, center] >= hop[i, center]:
                        close[j, i] = norm[j, i]
                    else:
                        further[j, i] = norm[j, i]
        subsets.append(close)
        if h > 0:
            subsets.append(further)
    return np.stack(subsets)


@pytest.mark.parametrize("layout", list(PYSKL_LAYOUTS))
@pytest.mark.parametrize("mode", ["spatial", "stgcn_spatial"])
def test_A_matches_pyskl_definitions(layout, mode):
    n, inward, center = PYSKL_LAYOUTS[layout]
    expected = expected_spatial(n, inward) if mode == "spatial" else expected_stgcn_spatial(n, inward, center)
    g = SkeletonGraph(layout, mode)
    assert g.A.dtype == np.float32 and g.A.shape == expected.shape == (3, n, n)
    np.testing.assert_allclose(g.A, expected, atol=1e-7, rtol=0)
    assert g.layout.center == center and sorted(g.layout.inward) == sorted(inward)


def test_stgcn_spatial_hand_checked_values():
    # nturgb+d, joint 2 (1-based 3, neck): neighbours 3 (head, index 3) and 21 (spine shoulder, index 20).
    g = SkeletonGraph("nturgb+d", "stgcn_spatial")
    A = g.A
    # column i = receiving joint normalised by its (self + neighbours) count: the neck has 3 -> 1/3 each
    assert A[:, :, 2].sum() == pytest.approx(1.0)
    assert A[0, 2, 2] == pytest.approx(1 / 3)
    # the centre (20) is one hop from the neck: message centre -> neck is "further" (subset 2)
    assert A[2, 20, 2] == pytest.approx(1 / 3) and A[1, 20, 2] == 0
    # the head (3) is beyond max_hop from the centre (inf >= 1): message head -> neck is "close" (subset 1)
    assert A[1, 3, 2] == pytest.approx(1 / 3)


def test_edge_index_and_edge_weight_convention():
    g = SkeletonGraph("coco", "spatial")
    ei, ew = g.edge_index, g.edge_weight
    assert ei.dtype == torch.long and ei.shape[0] == 2 and ew.shape == (3, ei.shape[1])
    A = torch.as_tensor(g.A)
    torch.testing.assert_close(ew, A[:, ei[0], ei[1]])
    # exactly the support of A, sorted by (target, source), no duplicates
    support = {(int(v), int(w)) for v, w in zip(*np.nonzero((g.A != 0).any(0)))}
    assert {(int(a), int(b)) for a, b in ei.t()} == support and ei.shape[1] == len(support)
    keys = (ei[1] * 100 + ei[0]).tolist()
    assert keys == sorted(keys)
    # bone (child 15, parent 13): edge2mat(inward) sets A[1, 13, 15], so in PYSKL's einsum the parent 13
    # sends to the child 15 in subset 1, and the child sends to the parent in subset 2 (outward)
    pos = {(int(a), int(b)): k for k, (a, b) in enumerate(ei.t())}
    assert ew[1, pos[(13, 15)]] > 0 and ew[2, pos[(13, 15)]] == 0
    assert ew[2, pos[(15, 13)]] > 0 and ew[1, pos[(15, 13)]] == 0


def test_candidates_of_random_graph_are_all_pairs():
    g = SkeletonGraph("coco", "random", seed=3)
    assert g.A.shape == (3, 17, 17) and g.dense_candidates
    assert g.edge_index.shape == (2, 17 * 17)
    np.testing.assert_array_equal(SkeletonGraph("coco", "random", seed=3).A, g.A)
    assert abs(float(g.A.mean()) - 0.04) < 0.01 and abs(float(g.A.std()) - 0.02) < 0.005
    full = SkeletonGraph("coco", "spatial").candidate_edge_index(all_pairs=True)
    assert full.shape == (2, 17 * 17)


@pytest.mark.parametrize("mode,K", [("uniform", 1), ("distance", 2), ("binary_adj", 1), ("spatial", 3)])
def test_other_modes(mode, K):
    g = SkeletonGraph("openpose", mode)
    assert g.A.shape == (K, 18, 18)
    n, inward, _ = PYSKL_LAYOUTS["openpose"]
    if mode == "binary_adj":
        np.testing.assert_array_equal(g.A[0], _links_matrix(inward + [(j, i) for i, j in inward], n))
    if mode == "uniform":
        hop = _hop_distance(n, inward, 1)
        np.testing.assert_allclose(g.A[0], _col_normalise((hop <= 1).astype(float)), atol=1e-7)


def test_registry_names():
    for name in ["nturgb+d", "openpose", "coco", "nw-ucla", "openpose-body25", "handmp"]:
        layout = get_layout(name)
        assert len(layout.joint_names) == layout.num_nodes
        assert layout.template_xy.shape == (layout.num_nodes, 2)
        assert len(layout.inward) == layout.num_nodes - 1  # trees
    with pytest.raises(ValueError, match="unknown layout 'kinect2'"):
        get_layout("kinect2")
    with pytest.raises(ValueError, match="unknown graph mode 'spatialx'"):
        SkeletonGraph("coco", "spatialx")


def test_custom_layout():
    spec = {"num_node": 4, "inward": [(1, 0), (2, 1), (3, 1)], "center": 1}
    layout = Layout.from_dict(spec)
    g = SkeletonGraph(spec, "spatial")
    np.testing.assert_allclose(g.A, expected_spatial(4, spec["inward"]), atol=1e-7)
    assert layout.num_nodes == 4 and len(layout.joint_names) == 4


@pytest.mark.parametrize("spec,match", [
    ({"num_node": 3, "inward": [(1, 0), (3, 1)], "center": 0}, r"inward\[1\].*outside \[0, 2\]"),
    ({"num_node": 3, "inward": [(1, 0), (-1, 1)], "center": 0}, r"outside"),
    ({"num_node": 3, "inward": [(1, 0), (0, 1), (2, 1)], "center": 0}, "duplicate"),
    ({"num_node": 3, "inward": [(1, 0), (2, 1), (1, 0)], "center": 0}, "duplicate"),
    ({"num_node": 3, "inward": [(1, 0), (2, 2)], "center": 0}, "self loop"),
    ({"num_node": 4, "inward": [(1, 0), (2, 1)], "center": 0}, r"not reachable.*\[3\]"),
    ({"num_node": 3, "inward": [(1, 0), (2, 1)], "center": 5}, "'center' must be in"),
    ({"inward": [(1, 0)], "center": 0}, "'num_node'"),
    ({"num_node": 2, "center": 0}, "'inward'"),
    ({"num_node": 2, "inward": [(1, 0)]}, "'center'"),
    ({"num_node": 2, "inward": [(1, 0)], "center": 0, "bones": []}, "unknown field"),
    ({"num_node": 2, "inward": [(1, 0)], "center": 0, "joint_names": ["a"]}, "joint_names"),
])
def test_custom_layout_validation(spec, match):
    with pytest.raises(ValueError, match=match):
        Layout.from_dict(spec)


def test_bad_graph_arguments():
    with pytest.raises(ValueError, match="max_hop"):
        SkeletonGraph("coco", "spatial", max_hop=0)
    with pytest.raises(ValueError, match="layout must be"):
        SkeletonGraph(3, "spatial")


def test_custom_layout_center_and_max_hop_types_are_checked():
    import pytest

    from pyg_sparse_stgcn.graph import Layout, SkeletonGraph

    with pytest.raises(ValueError, match="'center' must be an int"):
        Layout.from_dict({"num_node": 3, "inward": [(1, 0), (2, 1)], "center": "a"})
    with pytest.raises(ValueError, match="max_hop"):
        SkeletonGraph("coco", "spatial", max_hop=True)
