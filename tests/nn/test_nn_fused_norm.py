"""The native fused batch norm (+ residual) (+ ReLU): equal to PyTorch's operators in float64 (values, every
gradient, running statistics), where it runs and where it must not, and whole models with and without it."""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pyg_sparse_stgcn.engine.distributed import convert_sync_batchnorm
from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier, STGCNPlusPlus, fused_norm
from pyg_sparse_stgcn.nn._utils import BatchNormLast, linear_norm_act, norm_act
from pyg_sparse_stgcn.nn.fused_norm import fused_batch_norm, fused_batch_norm_groups

pytestmark = pytest.mark.skipif(not fused_norm.available(), reason="no C compiler: the native kernel is not built")


def native_ran(y: torch.Tensor) -> bool:
    """Whether ``y`` came out of the native kernel (through views, and the ReLU that runs after it where the
    residual needs a gradient)."""
    fn = y.grad_fn
    while fn is not None and fn.name() in ("ViewBackward0", "ReluBackward0"):
        fn = fn.next_functions[0][0]
    return fn is not None and fn.name() == "_FusedBatchNormBackward"


def _graph_has(y: torch.Tensor, name: str) -> bool:
    """Whether ``y``'s autograd graph holds a node called ``name``."""
    seen, todo = set(), [y.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if fn.name() == name:
            return True
        todo.extend(f for f, _ in fn.next_functions)
    return False


def reference(x, rm, rv, w, b, training, momentum, eps, res, relu):
    """PyTorch's operators in ``x``'s dtype on copies: output, and the running statistics after the call."""
    rm = None if rm is None else rm.to(x.dtype).clone()
    rv = None if rv is None else rv.to(x.dtype).clone()
    C = x.size(-1)
    training = training or rm is None  # no running statistics: batch statistics (as nn.BatchNorm)
    y = F.batch_norm(x.reshape(-1, C), rm, rv, w, b, training, momentum, eps).view(x.shape)
    if res is not None:
        y = y + res
    return (F.relu(y) if relu else y), rm, rv


def check(shape, training, relu, with_res, affine=True, stats=True, momentum=0.1, scale=2.0, shift=3.0,
          threads=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * scale + shift
    C = shape[-1]
    res = torch.randn(shape, generator=g) if with_res else None
    w = (torch.rand(C, generator=g) + 0.5) if affine else None
    b = torch.randn(C, generator=g) * 0.1 if affine else None
    rm = torch.randn(C, generator=g) if stats else None
    rv = (torch.rand(C, generator=g) + 0.5) if stats else None
    dy = torch.randn(shape, generator=g)
    leaves32 = [t.clone().requires_grad_() if t is not None else None for t in (x, res, w, b)]
    leaves64 = [t.double().requires_grad_() if t is not None else None for t in (x, res, w, b)]
    rm32, rv32 = (None if t is None else t.clone() for t in (rm, rv))
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        x32, r32, w32, b32 = leaves32
        y = fused_batch_norm(x32, rm32, rv32, w32, b32, training, momentum, 1e-5, r32, relu)
        y.backward(dy)
    finally:
        torch.set_num_threads(saved)
    x64, r64, w64, b64 = leaves64
    want, rm64, rv64 = reference(x64, rm, rv, w64, b64, training, momentum, 1e-5, r64, relu)
    want.backward(dy.double())
    # PyTorch's own float32 operators on the same inputs: where float32 itself is ill-conditioned (a variance
    # near eps, two nearly equal rows), the kernel is held to their error instead
    leavest = [t.clone().requires_grad_() if t is not None else None for t in (x, res, w, b)]
    theirs, _, _ = reference(leavest[0], rm, rv, leavest[2], leavest[3], training, momentum, 1e-5, leavest[1], relu)
    theirs.backward(dy)
    assert native_ran(y)

    def close(got, exp, other, rtol, atol):
        slack = 2 * (other.double() - exp).abs().max().item()
        torch.testing.assert_close(got.double(), exp, rtol=rtol, atol=atol + slack)

    close(y, want, theirs, 1e-5, 2e-5)
    for got, exp, other in zip(leaves32, leaves64, leavest):
        if got is not None:
            close(got.grad, exp.grad, other.grad, 1e-4, 1e-4)
    if stats:
        torch.testing.assert_close(rm32.double(), rm64, rtol=1e-5, atol=2e-5)
        torch.testing.assert_close(rv32.double(), rv64, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("with_res", [False, True])
def test_equals_pytorch_in_float64(training, relu, with_res):
    check((3, 9, 25, 12), training, relu, with_res)


@pytest.mark.parametrize("threads", [1, 2])
def test_block_boundaries_and_threads(threads):
    # 1000 rows: three full blocks of 256 and a partial one, split between the threads
    check((1000, 7), True, True, True, threads=threads)


def test_no_affine_no_running_statistics_and_cumulative_average():
    check((4, 5, 6, 8), True, True, False, affine=False)
    check((4, 5, 6, 8), True, False, True, stats=False)
    check((4, 5, 6, 8), False, True, False, stats=False)  # eval without running statistics: batch statistics
    check((4, 5, 6, 8), True, True, True, momentum=0.5)


def test_mean_far_from_zero_keeps_the_variance():
    """|mean| / std = 1e5: a plain float32 sum of squares would lose every digit of the variance. The float32
    mean itself is rounded (by 1e-3 std here), so the outputs are held to PyTorch's own float32 error."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 4, generator=g) * 0.01 + 1000.0
    dy = torch.randn(512, 4, generator=g)
    rv = torch.ones(4)
    x32, t32, x64 = x.clone().requires_grad_(), x.clone().requires_grad_(), x.double().requires_grad_()
    ours = fused_batch_norm(x32, torch.zeros(4), rv, None, None, True, 1.0, 1e-8, relu=True)
    torch_ = F.relu(F.batch_norm(t32, None, None, None, None, True, 1.0, 1e-8))
    exact = F.relu(F.batch_norm(x64, None, None, None, None, True, 1.0, 1e-8))
    for y in (ours, torch_, exact):
        y.backward(dy.to(y.dtype))
    assert native_ran(ours)
    for got, theirs, want in ((ours, torch_, exact), (x32.grad, t32.grad, x64.grad)):
        assert (got.double() - want).abs().max() <= 2 * (theirs.double() - want).abs().max() + 1e-6
    torch.testing.assert_close(rv.double(), x.double().var(0), rtol=1e-3, atol=0)  # unbiased, momentum 1


@settings(max_examples=40, deadline=None, derandomize=True)
@given(rows=st.integers(2, 700), channels=st.integers(1, 40), training=st.booleans(), relu=st.booleans(),
       with_res=st.booleans(), seed=st.integers(0, 2**16))
def test_property_any_shape(rows, channels, training, relu, with_res, seed):
    check((rows, channels), training, relu, with_res, seed=seed)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("with_res", [False, True])
def test_bfloat16_activations(training, with_res):
    """CPU autocast's case: bfloat16 activations (and gradients), float32 parameters and statistics. Against
    float64 on the same (bfloat16-valued) inputs: within bfloat16's rounding of the outputs; statistics and
    weight gradients are float32 sums."""
    g = torch.Generator().manual_seed(3)
    shape = (600, 24)
    x = (torch.randn(shape, generator=g) * 2 + 1).bfloat16()
    res = torch.randn(shape, generator=g).bfloat16() if with_res else None
    dy = torch.randn(shape, generator=g).bfloat16()
    w, b = torch.rand(24, generator=g) + 0.5, torch.randn(24, generator=g) * 0.1
    rm, rv = torch.randn(24, generator=g), torch.rand(24, generator=g) + 0.5
    leaves = [t.clone().requires_grad_() if t is not None else None for t in (x, res, w, b)]
    leaves64 = [t.double().requires_grad_() if t is not None else None for t in (x, res, w, b)]
    rm32, rv32 = rm.clone(), rv.clone()
    y = fused_batch_norm(leaves[0], rm32, rv32, leaves[2], leaves[3], training, 0.1, 1e-5, leaves[1], relu=True)
    y.backward(dy)
    want, rm64, rv64 = reference(leaves64[0], rm, rv, leaves64[2], leaves64[3], training, 0.1, 1e-5, leaves64[1],
                                 True)
    want.backward(dy.double())
    assert native_ran(y) and y.dtype == torch.bfloat16 and leaves[0].grad.dtype == torch.bfloat16
    assert leaves[2].grad.dtype == torch.float32

    def close(a, e, rel):
        assert (a.double() - e).abs().max() <= rel * e.abs().max(), (a.double() - e).abs().max()

    close(y, want, 2**-8)
    close(leaves[0].grad, leaves64[0].grad, 2**-7)
    if with_res:
        close(leaves[1].grad, leaves64[1].grad, 0)  # the ReLU-masked gradient, exact
    close(leaves[2].grad, leaves64[2].grad, 1e-4)
    close(leaves[3].grad, leaves64[3].grad, 1e-4)
    close(rm32, rm64, 1e-5)
    close(rv32, rv64, 1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("layout", ["split_in", "split_out", "both"])
def test_groups_equal_the_call_on_the_concatenation(dtype, training, relu, layout):
    """Channels given, or wanted, as separate groups (odd widths, one of a single channel): the values, every
    gradient and the running statistics of the kernel's call on the concatenated tensor (itself checked against
    float64 above); the groups come out, and their gradients come back, as contiguous tensors of their own."""
    g = torch.Generator().manual_seed(5)
    sizes = [3, 5, 1, 7]
    shape = (4, 6, 5, sum(sizes))
    x = (torch.randn(shape, generator=g) * 2 + 1).to(dtype)
    dy = torch.randn(shape, generator=g).to(dtype)
    w, b = torch.rand(16, generator=g) + 0.5, torch.randn(16, generator=g) * 0.1
    rm, rv = torch.randn(16, generator=g), torch.rand(16, generator=g) + 0.5
    split_in, split_out = layout in ("split_in", "both"), layout in ("split_out", "both")

    xa, wa, ba = x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()
    rma, rva = rm.clone(), rv.clone()
    want = fused_batch_norm(xa, rma, rva, wa, ba, training, 0.1, 1e-5, relu=relu)
    want.backward(dy)
    assert native_ran(want)

    parts = [p.contiguous().requires_grad_() for p in x.split(sizes, -1)]
    xb = x.clone().requires_grad_()
    wb, bb = w.clone().requires_grad_(), b.clone().requires_grad_()
    rmb, rvb = rm.clone(), rv.clone()
    got = fused_batch_norm_groups(parts if split_in else xb, sizes, rmb, rvb, wb, bb, training, 0.1, 1e-5,
                                  relu=relu, split=split_out)
    if split_out:
        assert [o.shape for o in got] == [(*shape[:-1], c) for c in sizes]
        assert all(o.is_contiguous() and o.dtype == dtype for o in got)
        torch.autograd.backward(got, [d.contiguous() for d in dy.split(sizes, -1)])
        got = torch.cat(got, -1)
    else:
        assert got.shape == shape and got.is_contiguous()
        got.backward(dy)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=2**-8, atol=2**-8)
    torch.testing.assert_close(got, want.detach(), **tol)
    if split_in:
        assert all(p.grad.is_contiguous() and p.grad.shape == p.shape for p in parts)
        gx = torch.cat([p.grad for p in parts], -1)
    else:
        gx = xb.grad
    torch.testing.assert_close(gx, xa.grad, **tol)
    torch.testing.assert_close(wb.grad, wa.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bb.grad, ba.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close((rmb, rvb), (rma, rva), rtol=1e-6, atol=1e-6)


def test_groups_fall_back_and_check_their_sizes():
    """Where the kernel does not run (float64), the groups get PyTorch's batch norm of the concatenation; sizes
    that do not match the groups are refused, naming both."""
    g = torch.Generator().manual_seed(6)
    parts = [torch.randn(30, c, generator=g, dtype=torch.float64) for c in (2, 3)]
    out = fused_batch_norm_groups(parts, (2, 3), None, None, None, None, True, 0.1, 1e-5, relu=True, split=True)
    want = F.relu(F.batch_norm(torch.cat(parts, -1), None, None, None, None, True, 0.1, 1e-5))
    torch.testing.assert_close(torch.cat(out, -1), want)
    with pytest.raises(ValueError, match=r"the groups have \[2, 3\] channels, sizes says \[3, 2\]"):
        fused_batch_norm_groups(parts, (3, 2), None, None, None, None, True, 0.1, 1e-5)
    with pytest.raises(ValueError, match="x has 5 channels, sizes sum to 6"):
        fused_batch_norm_groups(torch.cat(parts, -1), (3, 3), None, None, None, None, True, 0.1, 1e-5)


def test_norm_act_reads_the_groups_where_they_are():
    """A :class:`BatchNormLast` given its input as channel groups: the native pass on the groups, equal to the
    module on their concatenation (output, gradients, running statistics, counter)."""
    torch.manual_seed(0)
    bn = BatchNormLast(9)
    ref = copy.deepcopy(bn)
    parts = [torch.randn(2, 5, 3, c).requires_grad_() for c in (4, 5)]
    y = norm_act(bn, parts, nn.ReLU())
    cat = torch.cat([p.detach() for p in parts], -1).requires_grad_()
    want = F.relu(ref(cat))
    assert _graph_has(y, "_FusedBatchNormBackward")
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-6)
    dy = torch.randn_like(y)
    y.backward(dy)
    want.backward(dy)
    torch.testing.assert_close(torch.cat([p.grad for p in parts], -1), cat.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    assert int(bn.num_batches_tracked) == int(ref.num_batches_tracked) == 1


@pytest.fixture
def portable_kernel(monkeypatch):
    """The kernel built without AVX-512: its portable loops (the default build runs 16-lane vector loops where
    the CPU has AVX-512, as this project's machines do)."""
    from pyg_sparse_stgcn import cbuild

    monkeypatch.setattr(cbuild, "FLAGS", [*cbuild.FLAGS, "-mno-avx512f"])
    monkeypatch.setattr(cbuild, "_loaded", {})  # the process's libraries by name: build this one afresh
    fused_norm._library.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lib = fused_norm._library()
    fused_norm._library.cache_clear()
    if lib is None:
        pytest.skip("the C compiler does not take -mno-avx512f (not x86-64 gcc/clang)")
    monkeypatch.setattr(fused_norm, "_library", lambda: lib)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("relu", [False, True])
def test_portable_loops_equal_pytorch_in_float64(portable_kernel, training, relu):
    check((3, 9, 25, 12), training, relu, True)
    check((1000, 7), training, relu, False)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["split_in", "split_out"])
def test_portable_loops_take_groups(portable_kernel, dtype, layout):
    test_groups_equal_the_call_on_the_concatenation(dtype, True, True, layout)


def test_linear_norm_act_is_the_sequential_in_one_pass():
    """``Sequential(Linear, BatchNormLast, ReLU)`` (DG-STGCN's ``pre``) through one native norm + ReLU pass:
    the module's values, gradients and running statistics; with a hook on the Sequential it is called as it
    is, so the hook sees it."""
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(5, 12), BatchNormLast(12), nn.ReLU())
    ref = copy.deepcopy(seq)
    x = torch.randn(2, 7, 3, 5)
    y = linear_norm_act(seq, x)
    want = ref(x)
    assert native_ran(y) and not _graph_has(y, "ReluBackward0")
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-6)
    dy = torch.randn_like(y)
    y.backward(dy)
    want.backward(dy)
    for a, b in zip(seq.parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(seq[1].running_var, ref[1].running_var)
    # a weight mask (a parametrization, as the sparsity package attaches) keeps the fused pass and is applied
    torch.nn.utils.parametrize.register_parametrization(seq[0], "weight", _HalfMask())
    seq.eval(), ref.eval()
    with torch.no_grad():
        ref[0].weight.mul_(_HalfMask()(torch.ones_like(ref[0].weight)))
        y = linear_norm_act(seq, x)
        torch.testing.assert_close(y, ref(x), rtol=1e-5, atol=1e-6)
    assert native_ran(linear_norm_act(seq, x))
    seen = []
    seq.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    linear_norm_act(seq, x)
    assert seen == [(2, 7, 3, 12)]


class _HalfMask(nn.Module):
    def forward(self, w):
        return w * (torch.arange(w.numel()).view_as(w) % 2 == 0)


def test_autocast_training_step_runs_the_kernel():
    bn = BatchNormLast(8).train()
    lin = nn.Linear(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = norm_act(bn, lin(torch.randn(3, 5, 7, 4)), nn.ReLU())
    assert native_ran(y) and y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert lin.weight.grad is not None and bn.weight.grad.dtype == torch.float32


def test_relu_keeps_nan_like_torch():
    x = torch.randn(6, 3)
    x[2, 1] = float("nan")
    y = fused_batch_norm(x, None, None, None, None, True, 0.1, 1e-5, relu=True)
    assert torch.isnan(y[:, 1]).all() and not torch.isnan(y[:, [0, 2]]).any()


def test_second_order_gradient_is_refused():
    x = torch.randn(8, 3, requires_grad=True)
    y = fused_batch_norm(x, None, None, None, None, True, 0.1, 1e-5, relu=True)
    (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="(?i)differentiable"):
        g.sum().backward()


def test_one_value_per_channel_is_an_error_in_training():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        fused_batch_norm(torch.randn(1, 4), None, None, None, None, True, 0.1, 1e-5)


@pytest.mark.parametrize("case", ["float64", "float16", "channels_first_memory", "residual_float64"])
def test_falls_back_where_the_kernel_does_not_apply(case):
    bn = BatchNormLast(6).train()
    x = torch.randn(2, 5, 4, 6)
    res = None
    if case == "float64":
        bn, x = bn.double(), x.double()
    elif case == "float16":
        bn, x = bn.half(), x.half()
    elif case == "channels_first_memory":
        x = torch.randn(2, 6, 5, 4).permute(0, 2, 3, 1)
    elif case == "residual_float64":
        res = torch.randn(2, 5, 4, 6, dtype=torch.float64)
    ref = copy.deepcopy(bn)
    y = bn.forward_fused(x.requires_grad_(), res, relu=True)
    want = F.relu(ref(x) + (0 if res is None else res))
    assert not native_ran(y)
    # the reference's own batch norm may run the kernel (float32 input): equal up to float32 rounding
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, ref.running_var)


def test_synchronised_subclass_keeps_its_own_forward():
    bn = nn.ModuleList([BatchNormLast(4)])
    convert_sync_batchnorm(bn)
    y = bn[0].forward_fused(torch.randn(3, 5, 4, requires_grad=True), relu=True)
    assert not native_ran(y)


def test_hooks_see_every_module():
    bn, act = BatchNormLast(4), nn.ReLU()
    seen = []
    act.register_forward_hook(lambda m, a, out: seen.append("relu"))
    y = norm_act(bn, torch.randn(3, 5, 4), act)
    assert seen == ["relu"] and (y >= 0).all()


def test_batch_norm_last_runs_the_kernel_and_updates_its_counter():
    bn = BatchNormLast(4, momentum=None).train()
    ref = nn.BatchNorm1d(4, momentum=None).train()
    for _ in range(3):
        x = torch.randn(6, 7, 4) * 3 + 1
        y = bn(x.requires_grad_())
        torch.testing.assert_close(y, ref(x.reshape(-1, 4)).view_as(x), rtol=1e-5, atol=1e-5)
    assert native_ran(y)
    assert int(bn.num_batches_tracked) == 3
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)


@pytest.mark.parametrize("cls", [STGCN, STGCNPlusPlus])
def test_whole_model_equals_the_unfused_operators(cls, monkeypatch):
    """A training step and an inference of a whole model, native kernel (float32) against PyTorch's operators
    in float64 (the library made unavailable): logits, every gradient and every running statistic.

    The reference is float64 because PyTorch's own float32 batch norm is not accurate enough to be one here:
    after the global pooling the gradient is nearly constant per channel, the batch norm's backward pass
    cancels it, and float32 rounding of a pre-activation near zero can flip a ReLU; PyTorch's float32 path
    measured up to 2 % off float64 in a gradient of this model where the kernel was within 1e-7."""
    torch.manual_seed(0)
    bb = cls({"layout": "coco", "mode": "spatial"}, base_channels=8, num_stages=4, inflate_stages=(3,),
             down_stages=(3,), backend="dense")
    native = SkeletonClassifier(bb, GCNHead(5, bb.out_channels))
    plain = copy.deepcopy(native).double()
    x = torch.randn(2, 2, 16, 17, 3)
    outs = []
    for model, lib in ((native, fused_norm._library), (plain, lambda: None)):
        monkeypatch.setattr(fused_norm, "_library", lib)
        xm = x.to(next(model.parameters()).dtype)
        model.train()
        out = model(xm)
        out.square().sum().backward()
        model.eval()
        with torch.no_grad():
            outs.append((out.detach().double(), model(xm).double()))
        assert _graph_has(out, "_FusedBatchNormBackward") == (model is native)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    for (n, p), q in zip(native.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad.double(), q.grad, rtol=1e-3, atol=1e-5,
                                   msg=lambda m, n=n: f"{n}: {m}")
    for (n, b), c in zip(native.named_buffers(), plain.buffers()):
        torch.testing.assert_close(b.to(c.dtype), c, rtol=1e-5, atol=1e-6, msg=lambda m, n=n: f"{n}: {m}")


def test_block_hands_its_residual_only_to_the_units_that_take_it():
    """A temporal unit subclassed with its own ``forward(x)`` is called the plain way (no ``residual`` / ``act``
    arguments) and the block adds the residual and the ReLU itself."""
    from pyg_sparse_stgcn.nn.block import STGCNBlock
    from pyg_sparse_stgcn.nn.temporal import TemporalConv

    class Doubled(TemporalConv):
        def forward(self, x):  # type: ignore[override]
            return 2 * super().forward(x)

    torch.manual_seed(0)
    blk = STGCNBlock(8, 8, torch.rand(3, 17, 17)).eval()
    x = torch.randn(2, 6, 17, 8)
    plain = blk(x)
    doubled = Doubled(8, 8, 9)
    doubled.load_state_dict(blk.tcn.state_dict())
    blk.tcn = doubled
    with torch.no_grad():
        want = F.relu(2 * TemporalConv.forward(doubled, blk.gcn(x)) + x)
    torch.testing.assert_close(blk(x), want)
    assert not torch.allclose(blk(x), plain)


@pytest.mark.parametrize("cls", [STGCN, STGCNPlusPlus])
def test_bfloat16_gradients_as_close_as_pytorchs_own(cls, monkeypatch):
    """Under bfloat16 autocast the kernel's gradients are no further from float64 than those of PyTorch's own
    bfloat16 operators (the library made unavailable): the kernel keeps its sums in float32 and rounds each
    output once, so a training run under ``train.precision='bf16'`` loses no more than PyTorch's autocast does.
    (Biases right before a training-mode batch norm are left out: their true gradient is zero.)"""
    torch.manual_seed(0)
    bb = cls({"layout": "coco", "mode": "spatial"}, base_channels=16, num_stages=4, inflate_stages=(3,),
             down_stages=(3,), backend="dense")
    model = SkeletonClassifier(bb, GCNHead(5, bb.out_channels)).train()
    x, y = torch.randn(4, 2, 24, 17, 3), torch.arange(4) % 5

    def grads(native, dtype):
        monkeypatch.setattr(fused_norm, "_library", kernel if native else lambda: None)
        m = copy.deepcopy(model).to(dtype)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.float32):
            out = m(x.to(dtype))
        F.cross_entropy(out.to(dtype), y).backward()
        assert _graph_has(out, "_FusedBatchNormBackward") == native
        return {n: p.grad.double() for n, p in m.named_parameters() if p.grad is not None}

    kernel = fused_norm._library
    exact, ours, torchs = grads(False, torch.float64), grads(True, torch.float32), grads(False, torch.float32)
    errs = {n: ((ours[n] - g).norm() / g.norm(), (torchs[n] - g).norm() / g.norm())
            for n, g in exact.items() if g.abs().max() > 1e-10}  # not a bias right before a batch norm
    # bfloat16 really ran in both; a parameter's error is noisy (the batch norms' backward passes cancel most
    # of a random model's gradient), so the medians over the parameters are compared
    ours_median, torch_median = (torch.stack(e).median().item() for e in zip(*errs.values()))
    assert len(errs) > 20 and torch_median > 1e-3
    assert ours_median <= 1.25 * torch_median, (ours_median, torch_median)
