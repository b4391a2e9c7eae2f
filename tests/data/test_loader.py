"""Loader: batch shapes, the disjoint-union PyG view, workers, pin_memory, distributed sampling."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch_geometric.nn import GCNConv, global_mean_pool

from pyg_sparse_stgcn.data import (
    SkeletonBatch,
    SkeletonData,
    SkeletonLoader,
    build_dataset,
    build_pipeline,
    collate_skeletons,
    make_loader,
)
from pyg_sparse_stgcn.graph import get_layout


def _sample(i: int, shape=(2, 8, 18, 3), layout="openpose") -> SkeletonData:
    g = torch.Generator().manual_seed(i)
    return SkeletonData(x=torch.randn(*shape, generator=g), y=torch.tensor([i % 4]), num_nodes=shape[-2],
                        frame_dir=f"v{i}", layout=layout)


def test_collate_shapes_and_errors():
    b = collate_skeletons([_sample(i) for i in range(5)])
    assert b.x.shape == (5, 2, 8, 18, 3) and b.y.tolist() == [0, 1, 2, 3, 0] and b.y.dtype == torch.long
    assert b.frame_dir == [f"v{i}" for i in range(5)] and b.layout == "openpose" and len(b) == 5
    clips = collate_skeletons([_sample(i, (3, 2, 8, 18, 3)) for i in range(4)])
    assert clips.x.shape == (4, 3, 2, 8, 18, 3) and clips.num_clips == 3
    with pytest.raises(ValueError, match="different x shapes"):
        collate_skeletons([_sample(0), _sample(1, (2, 9, 18, 3))])
    with pytest.raises(ValueError, match="empty"):
        collate_skeletons([])
    with pytest.raises(ValueError, match=r"\(N,\)"):
        SkeletonBatch(torch.zeros(2, 1, 4, 18, 3), torch.zeros(3, dtype=torch.long))


def test_to_pyg_batch_equals_reference_disjoint_union():
    samples = [_sample(i) for i in range(3)]
    b = collate_skeletons(samples)
    pb = b.to_pyg_batch()
    V = 18
    # reference, written independently: bones of the layout in both directions, offset by n * V
    bones = get_layout("openpose").inward
    ref_edges = set()
    for n in range(3):
        for c, p in bones:
            ref_edges |= {(c + n * V, p + n * V), (p + n * V, c + n * V)}
    assert set(map(tuple, pb.edge_index.t().tolist())) == ref_edges
    assert pb.edge_index.shape[1] == len(ref_edges)
    assert pb.batch.tolist() == sum(([n] * V for n in range(3)), [])
    for n, s in enumerate(samples):
        for v in (0, 7, 17):
            np.testing.assert_array_equal(pb.x[n * V + v].numpy(), s.x[:, :, v, :].reshape(-1).numpy())
    assert pb.y.tolist() == [0, 1, 2] and pb.num_graphs == 3
    # stock PyG layers run on it
    conv = GCNConv(pb.x.shape[1], 4)
    out = global_mean_pool(conv(pb.x, pb.edge_index), pb.batch)
    assert out.shape == (3, 4)
    spatial = b.to_pyg_batch(graph_mode="spatial")  # includes self loops
    assert (spatial.edge_index[0] == spatial.edge_index[1]).sum() == 3 * V
    with pytest.raises(ValueError, match="joints"):
        b.to_pyg_batch(layout="nturgb+d")


def test_to_device_and_pin_memory():
    b = collate_skeletons([_sample(i) for i in range(2)])
    moved = b.to("cpu")
    assert moved.x.device.type == "cpu" and torch.equal(moved.x, b.x)
    if torch.cuda.is_available():
        assert b.pin_memory().x.is_pinned()


@pytest.fixture(scope="module")
def demo_val(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    kw = {"num_train": 16, "num_val": 24, "num_empty": 1, "log": False}
    return build_dataset("demo", root, "val", transform=build_pipeline("2d-normalized", "j", 16, train=False),
                         **kw)


def test_workers_give_the_same_batches(demo_val):
    ref = [b for b in SkeletonLoader(demo_val, batch_size=5)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pin_memory without an accelerator only warns
        got = [b for b in make_loader(demo_val, 5, num_workers=2, pin_memory=True)]
    assert len(ref) == len(got) == 5
    for a, b in zip(ref, got):
        assert a.x.shape[1:] == (2, 16, 18, 3)
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and a.frame_dir == b.frame_dir


def test_distributed_sampler_splits_the_data(demo_val):
    from torch.utils.data.distributed import DistributedSampler

    seen = []
    for rank in (0, 1):
        sampler = DistributedSampler(demo_val, num_replicas=2, rank=rank, shuffle=True, seed=3)
        sampler.set_epoch(1)
        loader = SkeletonLoader(demo_val, batch_size=4, sampler=sampler)
        seen.append([fd for b in loader for fd in b.frame_dir])
    assert len(seen[0]) == len(seen[1]) == 12
    # 23 samples over 2 ranks: the sampler pads with one repeat, everything else is disjoint
    assert len(set(seen[0]) & set(seen[1])) == 1 and len(set(seen[0]) | set(seen[1])) == 23
    shuffled = [fd for b in make_loader(demo_val, 4, shuffle=True, seed=5) for fd in b.frame_dir]
    again = [fd for b in make_loader(demo_val, 4, shuffle=True, seed=5) for fd in b.frame_dir]
    assert shuffled == again and sorted(shuffled) == sorted(set(seen[0]) | set(seen[1]))
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(demo_val, 0)


def test_public_collate_name_batches_the_library_way():
    """``engine.trainer`` imports ``collate`` from ``data.loader``; it must exist and give SkeletonBatch
    (torch's default collate would give a Data batch with x of shape (N*M, T, V, C) and lose the ids)."""
    from pyg_sparse_stgcn.data.loader import collate

    assert collate is collate_skeletons
    b = collate([_sample(i, (2, 8, 18, 3)) for i in range(3)])
    assert isinstance(b, SkeletonBatch) and b.x.shape == (3, 2, 8, 18, 3) and b.y.shape == (3,)
    assert b.frame_dir == ["v0", "v1", "v2"] and b.layout == "openpose"
    loader = torch.utils.data.DataLoader([_sample(i) for i in range(5)], batch_size=2, collate_fn=collate)
    assert [tuple(batch.x.shape) for batch in loader] == [(2, 2, 8, 18, 3)] * 2 + [(1, 2, 8, 18, 3)]
