"""The native sparse kernel and the joint-major export (pyg_sparse_stgcn.sparsity.export.native / joint_major).

Every result is checked against a reference written here in plain torch (dense products, the masked model).
"""
import contextlib
import copy
import io

import pytest
import torch
from test_sparsity_export import random_bn_stats
from torch import nn

from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier
from pyg_sparse_stgcn.sparsity import SparseGenerator, fold, prune, to_sparse_kernels
from pyg_sparse_stgcn.sparsity.export import ChannelMajorSTGCN, JointMajorSTGCN, native, remove_pruned_edges
from pyg_sparse_stgcn.sparsity.export.joint_major import _Arena, _JMGraph

pytestmark = pytest.mark.skipif(not native.available(), reason="native kernel not built (no C compiler here)")


def tiny(**kw) -> SkeletonClassifier:
    args = {"base_channels": 8, "num_stages": 4, "inflate_stages": (3,), "down_stages": (3,), "backend": "dense"}
    bb = STGCN({"layout": "coco", "mode": "spatial"}, **{**args, **kw})
    return SkeletonClassifier(bb, GCNHead(5, bb.out_channels))


def pruned_tiny(**kw) -> SkeletonClassifier:
    """:func:`tiny` (seeded) with random BN statistics and 80 % of every weight tensor removed, in eval mode."""
    torch.manual_seed(0)
    model = tiny(**kw)
    random_bn_stats(model)
    prune(model, 0.8, scope="layer", kinds="weight")
    return model.eval()


def joint_major(model: nn.Module) -> JointMajorSTGCN:
    f = fold(model).eval()
    remove_pruned_edges(f)
    return JointMajorSTGCN(ChannelMajorSTGCN(f).eval()).eval()


# --------------------------------------------------------------------------------------------------------
# the kernels
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,groups", [(1, 1), (40, 2), (50, 3), (64, 1), (100, 2), (130, 2), (300, 1)])
@pytest.mark.parametrize("residual,relu", [(False, False), (True, True)])
@pytest.mark.parametrize("block,shuffle", [(64, True), (100, False), (native.COLUMN_BLOCK, False),
                                           (native.COLUMN_BLOCK, True)])
def test_spmm_shifted_matches_dense_reference(n, groups, residual, relu, block, shuffle):
    g = torch.Generator().manual_seed(n + groups)
    R, C, k, gap = 7, 12, 3, 4  # rows of about 14 non-zeros: longer than the prefetch distance
    W = torch.randn(k, R, C, generator=g) * (torch.rand(k, R, C, generator=g) < 0.4)
    W[:, 2] = 0  # an empty row: bias (+ residual) only
    bias = torch.randn(R, generator=g)
    L = n + k + gap  # every group: its columns, the k - 1 shifted taps and some slack
    x = torch.randn(C, groups * L, generator=g)
    rowptr, taps, cols, vals = native.sparse_rows(W)
    off = native.int32_offsets(taps + cols * (groups * L))  # tap j reads row c shifted by j columns
    ystride = n + gap
    y = torch.full((R, groups * ystride), float("nan"))
    res = torch.randn(R, groups * ystride, generator=g) if residual else None
    order = native.row_order(rowptr, torch.randperm(R, generator=g)) if shuffle else None
    native.spmm_shifted(y[:, :n], x, rowptr, off, vals, bias, None if res is None else res[:, :n], relu,
                        groups=groups, group_stride_y=ystride, group_stride_x=L, block=block, order=order)
    for gi in range(groups):
        xs = x[:, gi * L: (gi + 1) * L]
        ref = bias[:, None] + sum(W[j] @ xs[:, j: j + n] for j in range(k))
        if res is not None:
            ref = ref + res[:, gi * ystride: gi * ystride + n]
        if relu:
            ref = ref.clamp_min(0)
        got = y[:, gi * ystride: gi * ystride + n]
        assert torch.allclose(got, ref, atol=1e-5), (gi, (got - ref).abs().max())
        assert torch.isnan(y[:, gi * ystride + n: (gi + 1) * ystride]).all()  # nothing written outside


def test_spmm_shifted_zeroes_the_padding_columns_only():
    g = torch.Generator().manual_seed(1)
    R, C, n, groups, pad, gap = 3, 4, 10, 3, 2, 5
    W = torch.randn(1, R, C, generator=g)
    x = torch.randn(C, groups * n, generator=g)
    rowptr, taps, cols, vals = native.sparse_rows(W)
    off = native.int32_offsets(cols * (groups * n))
    stride = n + 2 * pad + gap
    y = torch.full((R, groups * stride), float("nan"))
    native.spmm_shifted(y[:, pad: pad + n], x, rowptr, off, vals, torch.zeros(R), groups=groups,
                        group_stride_y=stride, group_stride_x=n, pad=pad)
    for gi in range(groups):
        seg = y[:, gi * stride: (gi + 1) * stride]
        assert (seg[:, :pad] == 0).all() and (seg[:, pad + n: 2 * pad + n] == 0).all()
        assert torch.allclose(seg[:, pad: pad + n], W[0] @ x[:, gi * n: (gi + 1) * n], atol=1e-5)
        assert torch.isnan(seg[:, 2 * pad + n:]).all()  # nothing written past the padding
    with pytest.raises(ValueError, match="pad=3"):
        native.spmm_shifted(y[:, pad: pad + n], x, rowptr, off, vals, torch.zeros(R), pad=3)


@pytest.mark.parametrize("inner", [1, 2, 4])  # 1 and 2 floats per frame have their own loops
def test_split_phases_matches_strided_slices(inner):
    src = torch.randn(6, 11, inner)
    dst = torch.full((3, 6, 4, inner), float("nan"))
    native.split_phases(dst, src)
    for q in range(3):
        m = src[:, q::3].size(1)
        assert torch.equal(dst[q, :, :m], src[:, q::3])


def test_column_block_keeps_the_sources_of_a_block_in_l2_while_the_input_stays_in_cache():
    small, cached, large = native.SOURCE_BUDGET, native.RESIDENT_INPUT, 4 * native.RESIDENT_INPUT
    for rows in (1, 400, 6400):  # an input that fits in L2, or that no cache holds: the widest blocks
        assert native.column_block(rows, small) == native.column_block(rows, large) == native.COLUMN_BLOCK
    blocks = [native.column_block(rows, cached) for rows in (16, 400, 1600, 3200, 6400, 10**6)]
    assert all(b % 64 == 0 and 64 <= b <= native.COLUMN_BLOCK for b in blocks)
    assert blocks == sorted(blocks, reverse=True) and blocks[0] == native.COLUMN_BLOCK and blocks[-1] == 64
    for rows, b in zip((16, 400, 1600, 3200, 6400), blocks):
        assert b == 64 or rows * b * 4 <= native.SOURCE_BUDGET
    with pytest.raises(ValueError, match="block"):
        native.spmm_shifted(torch.zeros(1, 4), torch.zeros(4), torch.zeros(2, dtype=torch.long),
                            torch.zeros(0, dtype=torch.int32), torch.zeros(0), torch.zeros(1), block=0)


def test_row_order_is_a_permutation_with_its_work():
    rowptr = torch.tensor([0, 3, 3, 7])
    order = native.row_order(rowptr, torch.tensor([2, 0, 1]))
    assert order.tolist() == [2, 0, 1, 0, 5, 9, 10]  # rows 2, 0, 1 cost 4 + 1, 3 + 1, 0 + 1
    with pytest.raises(ValueError, match="permutation"):
        native.row_order(rowptr, torch.tensor([0, 0, 1]))
    y, x = torch.zeros(3, 4), torch.zeros(8)
    with pytest.raises(ValueError, match="row_order"):
        native.spmm_shifted(y, x, rowptr, torch.zeros(7, dtype=torch.int32), torch.zeros(7), torch.zeros(3),
                            order=order[:3])


@pytest.mark.parametrize("threads,shuffle", [(2, False), (3, False), (2, True), (3, True)])
def test_spmm_shifted_threads_split_uneven_rows_exactly(threads, shuffle):
    """Rows go to threads by their non-zeros: one heavy row, empty rows, more threads than light rows."""
    g = torch.Generator().manual_seed(threads)
    R, C, n = 5, 40, 70
    W = torch.zeros(1, R, C)
    W[0, 1] = torch.randn(C, generator=g)  # every non-zero but two in one row
    W[0, 3, :2] = torch.randn(2, generator=g)
    x, bias = torch.randn(C, n, generator=g), torch.randn(R, generator=g)
    rowptr, taps, cols, vals = native.sparse_rows(W)
    y = torch.full((R, n + 4), float("nan"))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        order = native.row_order(rowptr, torch.randperm(R, generator=g)) if shuffle else None
        native.spmm_shifted(y[:, 2: 2 + n], x, rowptr, native.int32_offsets(cols * n), vals, bias, pad=2,
                            order=order)
    finally:
        torch.set_num_threads(before)
    assert torch.allclose(y[:, 2: 2 + n], bias[:, None] + W[0] @ x, atol=1e-5)
    assert (y[:, :2] == 0).all() and (y[:, 2 + n:] == 0).all()


def test_sparse_rows_lists_every_nonzero_by_row():
    W = torch.zeros(2, 3, 4)
    W[1, 0, 2], W[0, 0, 3], W[0, 2, 1] = 1.0, 2.0, 3.0
    rowptr, taps, cols, vals = native.sparse_rows(W)
    assert rowptr.tolist() == [0, 2, 2, 3]
    assert list(zip(taps.tolist(), cols.tolist(), vals.tolist())) == [(0, 3, 2.0), (1, 2, 1.0), (0, 1, 3.0)]


# --------------------------------------------------------------------------------------------------------
# the joint-major model
# --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kind", ["dense", "layer", "generator", "edges"])
@pytest.mark.parametrize("small_cache", [False, True])  # every operator in blocks of 64, graph rows by joint
def test_joint_major_equals_masked_model(batch, kind, small_cache, monkeypatch):
    blocks: list[int] = []
    orders: list[bool] = []
    if small_cache:
        monkeypatch.setattr(native, "SOURCE_BUDGET", 1)
        monkeypatch.setattr(native, "L2_BYTES", 0)
        spmm = native.spmm_shifted

        def recorded(*a, **kw):
            blocks.append(kw["block"])
            orders.append(kw.get("order") is not None)
            return spmm(*a, **kw)
        monkeypatch.setattr(native, "spmm_shifted", recorded)
    torch.manual_seed(0)
    model = tiny()
    random_bn_stats(model)
    if kind == "layer":
        prune(model, 0.9, scope="layer", kinds="weight")
    elif kind == "generator":
        model = SparseGenerator(model, 0.9)  # global, uneven per layer
    elif kind == "edges":
        prune(model, 0.8, scope="layer", edge_sparsity=0.6)
    model.eval()
    x = torch.randn(batch, 2, 20, 17, 3)
    jm = joint_major(model)
    with torch.no_grad():
        y = model(x)
        assert jm.runs_native(x)
        out = jm(x)
        assert not small_cache or (set(blocks) == {64} and sum(orders) == len(jm.blocks))  # every graph conv
        assert out.shape == y.shape
        assert (out - y).abs().max() <= 1e-4 * max(1.0, float(y.abs().max()))
        assert torch.equal(jm(x), out)  # workspaces reused: the same again
        assert torch.allclose(jm(x[:1]), model(x[:1]), atol=1e-5)  # another batch size after this one


def test_joint_major_operator_without_kept_weights_reads_nothing(monkeypatch):
    """Strided convs whose weights are all removed (the generator's masks at initialisation remove whole
    high-fan-in temporal convs) output their bias (plus the residual) without splitting their input."""
    torch.manual_seed(0)
    model = tiny()
    random_bn_stats(model)
    with torch.no_grad():  # the strided block's temporal and residual convs
        model.backbone.gcn[2].tcn.conv.weight.zero_()
        model.backbone.gcn[2].residual.conv.weight.zero_()
    model.eval()
    jm = joint_major(model)
    block = jm._blocks()[2]
    assert block.tcn.stride == 2 and block.tcn.rows.nnz == 0

    def split(dst, src):
        raise AssertionError("an operator without kept weights split its input")

    monkeypatch.setattr(native, "split_phases", split)
    x = torch.randn(2, 2, 20, 17, 3)
    with torch.no_grad():
        y = model(x)
        out = jm(x)
    assert (out - y).abs().max() <= 1e-4 * max(1.0, float(y.abs().max()))


def test_joint_major_graph_operator_is_kept_weights_times_kept_entries():
    model = tiny()
    prune(model, 0.8, scope="layer", edge_sparsity=0.5)
    jm = joint_major(model.eval())
    for blk, jblk in zip(jm.channel_major.blocks, jm.blocks):
        W, A = blk.gcn.weight, blk.gcn.adjacency  # (L, C_out, C_in), (L, V, V) [l, v, w]
        dense_op = torch.einsum("lvw,loc->owcv", A, W)  # (C_out, V, C_in, V)
        assert jblk.gcn.rows.nnz == int((dense_op != 0).sum())
        assert jblk.tcn.rows.nnz == int((blk.tcn.weight != 0).sum())


def test_removed_edge_is_not_read():
    """A NaN on a joint that sends nothing stays out of every other joint (no multiply by a zero weight)."""
    model = tiny()
    random_bn_stats(model)
    cm = ChannelMajorSTGCN(fold(model.eval()).eval())
    blk = cm.blocks[0]
    joint = 5
    with torch.no_grad():
        blk.gcn.adjacency[:, joint, :] = 0  # joint 5 sends to nobody, itself included
    g = _JMGraph(blk)
    C, V, T, B, P = blk.gcn.in_channels, 17, 6, 2, 4
    x = torch.zeros(C, V, T + 2 * P, B)
    x[:, :, P: P + T] = torch.randn(C, V, T, B)
    x[:, joint, P: P + T] = float("nan")
    y = g(x, T, P, _Arena(), None)
    assert torch.isfinite(y).all()
    ref = torch.einsum("lvw,loc,cvtb->owtb", blk.gcn.adjacency, blk.gcn.weight,
                       torch.nan_to_num(x[:, :, P: P + T]))
    ref = ref + blk.gcn_const[:, :, None, None]
    assert torch.allclose(y[:, :, P: P + T], ref.relu() if blk.gcn_act else ref, atol=1e-5)
    assert (y[:, :, :P] == 0).all() and (y[:, :, P + T:] == 0).all()


def test_joint_major_replays_the_kernels_it_recorded(monkeypatch):
    """A geometry seen twice is recorded (its kernel calls with their pointers), then replayed without
    running the operators: new inputs, stale buffer contents (NaN), other geometries in between, reloaded
    weights and dtype round trips all give the masked model's outputs."""
    model = pruned_tiny(num_stages=6, inflate_stages=(3, 5), down_stages=(3, 5))
    jm = joint_major(model)
    run_ops = []
    block_forward = type(jm.blocks[0]).forward
    monkeypatch.setattr(type(jm.blocks[0]), "forward", lambda self, *a: run_ops.append(1) or block_forward(self, *a))

    def check(shape, ref_model=model, target=jm):
        x = torch.randn(shape)
        for slot in target.arena.slots:
            slot.fill_(float("nan"))
        with torch.no_grad():
            ref, out = ref_model(x), target(x)
        assert (out - ref).abs().max() <= 1e-4 * max(1.0, float(ref.abs().max()))

    a, b = (2, 2, 20, 17, 3), (1, 2, 12, 17, 3)
    check(a)
    check(a)  # recorded
    assert len(jm.plans) == 1
    run_ops.clear()
    check(a)
    check(a)
    assert not run_ops  # replayed: no operator ran
    check(b)
    check(b)
    check(a)
    check(b)
    assert len(jm.plans) == 2
    c = (4, 2, 24, 17, 3)  # larger: the buffers grow, and the plans of the old ones go
    check(c)
    check(c)
    assert list(jm.plans) == [(4, 2, 24, torch.get_num_threads())]
    check(a)
    # new weights through load_state_dict (in place, or assign=True): nothing recorded survives
    state = {k: v * 1.5 if v.is_floating_point() else v for k, v in jm.state_dict().items()}
    fresh = JointMajorSTGCN(copy.deepcopy(jm.channel_major)).eval()
    fresh.load_state_dict(state)

    def unrecorded(x):  # the operators run one by one (the scaled sparse operators, not the channel-major)
        fresh.plans.clear()
        return fresh(x)
    for assign in (False, True):
        jm.load_state_dict(state, assign=assign)
        assert not jm.plans
        for _ in range(3):
            check(a, ref_model=unrecorded)
    jm.double()
    jm.float()
    assert not jm.plans
    check(a, ref_model=unrecorded)


@pytest.mark.parametrize("layout", ["joint_major", "channel_major"])
def test_exported_model_runs_in_and_out_of_inference_mode(layout):
    """Buffers kept between calls are never inference tensors: a first call under torch.inference_mode()
    does not stop later plain, no_grad or inference calls (nor the recorded replay) from writing them."""
    model = pruned_tiny()
    jm = joint_major(model)
    exported = jm if layout == "joint_major" else jm.channel_major
    x = torch.randn(2, 2, 20, 17, 3)
    with torch.no_grad():
        ref = model(x)
    for mode in ("inference", "inference", "inference", "plain", "no_grad", "inference", "plain"):
        ctx = {"inference": torch.inference_mode(), "no_grad": torch.no_grad()}.get(mode, contextlib.nullcontext())
        with ctx:
            out = exported(x)
        assert (out - ref).abs().max() <= 1e-4 * max(1.0, float(ref.abs().max())), mode


def test_joint_major_copies_and_pickles_after_use():
    """Copies start without the buffers and recorded kernel calls of the original (raw pointers), and both
    keep giving the masked model's outputs."""
    model = pruned_tiny()
    jm = joint_major(model)
    x = torch.randn(2, 2, 20, 17, 3)
    with torch.no_grad():
        ref = model(x)
        for _ in range(3):
            jm(x)
        assert jm.plans
        torch.save(jm, io.BytesIO())  # pickles (the recorded pointers are left out)
        buf = io.BytesIO()
        torch.save(jm.state_dict(), buf)
        buf.seek(0)
        loaded = JointMajorSTGCN(copy.deepcopy(jm.channel_major)).eval()
        loaded.load_state_dict(torch.load(buf, weights_only=True))
        for twin in (copy.deepcopy(jm), loaded):
            assert not twin.plans and not twin.arena.slots
            for _ in range(3):
                assert (twin(x) - ref).abs().max() <= 1e-4 * max(1.0, float(ref.abs().max()))
        assert (jm(x) - ref).abs().max() <= 1e-4 * max(1.0, float(ref.abs().max()))


def test_joint_major_activations_share_a_few_buffers():
    """The buffers are a handful whatever the depth, stale contents (NaN) never leak into a result (the
    padding frames are zeroed on every use) and shapes may change between calls."""
    torch.manual_seed(0)
    sizes = {}
    for stages in (4, 10):
        model = tiny(num_stages=stages, inflate_stages=(3,), down_stages=(3, 7) if stages > 7 else (3,))
        random_bn_stats(model)
        prune(model, 0.8, scope="layer", kinds="weight")
        model.eval()
        jm = joint_major(model)
        with torch.no_grad():
            for shape in [(3, 2, 20, 17, 3), (1, 2, 12, 17, 3), (2, 2, 20, 17, 3)]:
                x = torch.randn(shape)
                ref = model(x)
                for slot in jm.arena.slots:
                    slot.fill_(float("nan"))
                out = jm(x)
                assert torch.isfinite(out).all()
                assert (out - ref).abs().max() <= 1e-4 * max(1.0, float(ref.abs().max()))
            f1 = jm.features(x)
            f1c = f1.clone()
            jm.features(torch.randn_like(x))
            assert torch.equal(f1, f1c)  # a returned result does not live in the shared buffers
            one = torch.randn(1, 1, 20, 17, 3)  # N = M = 1: the channel-major permutation is a no-op
            f2 = jm.channel_major.features(one)
            f2c = f2.clone()
            jm.channel_major.features(torch.randn_like(one))
            assert torch.equal(f2, f2c)
        sizes[stages] = len(jm.arena.slots)
        P, C = jm.pad, 4 * 8  # the widest activation: 4 x base_channels after the inflation
        widest = C * 17 * (20 + 2 * P) * 3 * 2 * 4  # bytes, batch 3 x 2 persons
        assert jm.arena.nbytes <= len(jm.arena.slots) * widest
    assert sizes[4] <= 5 and sizes[10] == sizes[4]  # not one buffer per operator (10 blocks: 20+ operators)


def test_joint_major_falls_back_for_other_dtypes_and_counts_work():
    model = tiny()
    prune(model, 0.9, scope="layer", kinds="weight")
    model.eval()
    x = torch.randn(2, 2, 16, 17, 3)
    jm = joint_major(model)
    kept = sum(int((m.weight != 0).sum()) for m in fold(model).modules()
               if isinstance(m, (nn.Conv2d,)) and m.kernel_size[0] > 1)
    assert sum(op.rows.nnz for op in jm.operators() if getattr(op, "k", 1) > 1) == kept
    y = jm(x)
    d = copy.deepcopy(jm).double()
    assert not d.runs_native(x.double())
    assert torch.allclose(d(x.double()).float(), y, atol=1e-5)
    with pytest.raises(ValueError, match="V=17"):
        jm(torch.randn(1, 2, 16, 25, 3))


def test_auto_layout_measures_joint_major_and_str():
    model = tiny()
    prune(model, 0.95, scope="layer", kinds="weight")
    model.eval()
    x = torch.randn(1, 2, 16, 17, 3)
    sk = to_sparse_kernels(model, x, repeats=1)
    lc = sk.export_result.layout_choice
    assert lc.joint_major_ms is not None and lc.joint_major_unsupported is None
    jm = to_sparse_kernels(model, x, repeats=1, layout="joint_major")
    assert isinstance(jm, JointMajorSTGCN) and jm.layout == "joint_major" == jm.export_result.layout
    assert all(p.sparse and p.type.startswith("joint_major") for p in jm.export_result.products)
    assert all(a.layout == "joint_major" and a.choice == "sparse" for a in jm.export_result.aggregations)
    assert "JointMajorSTGCN" in str(jm)
    with torch.no_grad():
        assert torch.allclose(jm(x), model(x), atol=1e-5)
    with pytest.raises(ValueError, match="joint_major"):
        to_sparse_kernels(model, x.double(), layout="joint_major")
