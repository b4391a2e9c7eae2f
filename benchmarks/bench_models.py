"""Whole-model speed: one training step (forward + backward + SGD step) and inference (eval, ``no_grad``) of
ST-GCN, ST-GCN++, AAGCN, CTR-GCN and DG-STGCN with a classifier head, ours (channels-last, message passing)
against mmaction2 1.1.0's ``STGCN`` + ``GCNHead`` (ST-GCN / ST-GCN++, when importable) and a PYSKL-style
channels-first reference, all with the same weights and their outputs checked equal first.

    .venv/bin/python benchmarks/bench_models.py                 # writes benchmarks/results/models.json
    PYTHONPATH=/tmp/mmpeer .venv/bin/python benchmarks/bench_models.py   # with the mmaction2 column
    .venv/bin/python benchmarks/bench_models.py --quick         # seconds-long smoke run (tiny shapes), no file
    .venv/bin/python benchmarks/bench_models.py --models stgcn --shapes ntu --compile all

The peer directory: ``pip install --target /tmp/mmpeer mmengine==0.10.7 mmcv-lite==2.0.1 mmaction2==1.1.0
importlib_metadata``; pip resolves torch into it too (a CUDA build, with ``nvidia*``, ``triton``, ``torchgen``,
``sympy`` ...): delete those from ``/tmp/mmpeer`` so that this environment's torch is the one imported (the script
refuses to time a torch from a ``PYTHONPATH`` entry).

Per model and shape (NTU: N=8, M=2, T=100, V=25 ``nturgb+d``; Kinetics: V=18 ``openpose``, same N, M, T):

* **sides**: ``ours`` (``compat.load_pyskl`` of mmaction2's state dict, ``dense`` backend), ``mmaction2``
  (optional benchmark-only import: a clear line is printed and the column skipped when it is missing),
  ``reference`` (functional channels-first re-implementation of PYSKL's equations on our state dict:
  ``F.conv2d`` / ``einsum`` as in PYSKL, ``tests/backbone_reference.py`` plus the ST-GCN unit below), and
  ``ours_bf16`` (ours under ``torch.autocast('cpu', torch.bfloat16)``, only where the CPU has native bfloat16).
  Eval-mode logits of every side are checked equal to ours (and train-mode logits, batch statistics) before
  any timing. ``--compile`` adds ``torch.compile`` of each side (the first call's time is recorded as the
  compile time): ours through ``compile_model`` (inductor's layout pass off), a peer both with the defaults
  and through ``compile_model``; every side is reported eager, compiled and at its best.
* **timing**: every round runs each side once, in turn (interleaved), after one warm-up call each; median,
  min, max and spread ``(max - min) / median`` of ``--rounds`` rounds. Ratios are ``other / ours`` of the
  medians (and of the minima).
* **FLOPs**: ``torch.utils.flop_counter.FlopCounterMode`` over one inference and one training step of each side.
* **roofline**: the GEMMs ours lowers to (``mm``/``addmm``/``bmm`` and every convolution as its im2col GEMM,
  forward and both backward GEMMs) are recorded with their ``(M, K, N)`` shapes and replayed, every one as
  ``torch.mm`` / ``torch.bmm`` at its own shape and nothing else, as one more side of the interleaved rounds
  (:class:`GemmReplay`): the roofline time is the replay's median (every GEMM at the SGEMM rate of its own
  shape on the machine as it is in those rounds, everything else free), the roofline rate
  ``flops / roofline time``; a side's fraction of the roofline is its achieved ``flops / time`` over that
  rate (``fraction_of_roofline_per_round`` pairs each round's side with that round's replay).
* **peak memory** (``--memory train`` by default, ``all`` adds inference): a fresh subprocess per side and
  task, which builds only that side, then reports the resident-set high-water mark (``VmHWM``, reset
  through ``/proc/self/clear_refs``) minus the resident set just before the first call, over three
  training steps (or inferences).
  ``tracemalloc`` does not see torch's CPU allocator and ``torch.cuda.max_memory_allocated`` is CUDA only;
  the RSS sees every allocation of every library (oneDNN scratch pads included). glibc's dynamic mmap
  threshold is fixed at 64 KiB (``MALLOC_MMAP_THRESHOLD_``) in the child so that freed activations go back
  to the kernel instead of a heap cache, and the RSS follows the live memory.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import backbone_reference as ref  # noqa: E402
from _common import machine_info, shadowed_torch, time_interleaved, write_results  # noqa: E402

from pyg_sparse_stgcn.compat import load_pyskl  # noqa: E402
from pyg_sparse_stgcn.engine.trainer import cpu_bf16_flags  # noqa: E402
from pyg_sparse_stgcn.malloc import keep_freed_memory  # noqa: E402
from pyg_sparse_stgcn.nn import (  # noqa: E402
    AAGCN,
    CTRGCN,
    DGSTGCN,
    STGCN,
    GCNHead,
    SkeletonClassifier,
    STGCNPlusPlus,
    compile_model,
)
from pyg_sparse_stgcn.timing import synchronize  # noqa: E402

MODELS = ("stgcn", "stgcn++", "aagcn", "ctrgcn", "dgstgcn")
#: name -> (layout, N, M, T, num_classes)
SHAPES = {"ntu": ("nturgb+d", 8, 2, 100, 60), "kinetics": ("openpose", 8, 2, 100, 400)}
QUICK = dict(base_channels=8, num_stages=4, inflate_stages=(3,), down_stages=(3,))
COMPILE_CHOICES = ("none", "inference", "all")
DEVICES = ("cpu", "cuda")
MEMORY_CHOICES = ("train", "all", "none")
RTOL = 1e-4  # norm-wise relative difference of the logits (float32 sums in different orders), see check_equal


# ------------------------------------------------------------------------------------------------------
# The sides of one model
# ------------------------------------------------------------------------------------------------------
class _MMClassifier(torch.nn.Module):
    """mmaction2's ``STGCN`` backbone + ``GCNHead`` as one module (state-dict keys ``backbone.*``,
    ``cls_head.*`` as in an mmaction2 checkpoint)."""

    def __init__(self, backbone: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.backbone, self.cls_head = backbone, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cls_head(self.backbone(x))


def mmaction2_available() -> bool:
    try:
        import mmaction.models.backbones.stgcn  # noqa: F401
    except Exception:  # ImportError, or a broken mmcv/mmengine install
        return False
    return True


def _stgcn_kwargs(kind: str, quick: bool) -> tuple[str, dict[str, Any]]:
    mode, kw = ("stgcn_spatial", {}) if kind == "stgcn" else \
        ("spatial", dict(gcn_adaptive="init", gcn_with_res=True, tcn_type="mstcn"))
    return mode, {**kw, **(QUICK if quick else {})}


def build_mmaction2(kind: str, layout: str, classes: int, quick: bool) -> torch.nn.Module:
    from mmaction.models.backbones.stgcn import STGCN as MMSTGCN
    from mmaction.models.heads import GCNHead as MMGCNHead

    mode, kw = _stgcn_kwargs(kind, quick)
    kw = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}
    backbone = MMSTGCN(graph_cfg=dict(layout=layout, mode=mode), **kw)
    return _MMClassifier(backbone, MMGCNHead(num_classes=classes, in_channels=16 if quick else 256))


def build_ours(kind: str, layout: str, classes: int, quick: bool,
               mm: torch.nn.Module | None) -> SkeletonClassifier:
    """Ours: the mmaction2 model's weights through ``compat.load_pyskl`` (ST-GCN / ST-GCN++), else a seeded
    model with non-trivial gates (every data-dependent path runs)."""
    size = QUICK if quick else {}
    if kind in ("stgcn", "stgcn++"):
        mode, _ = _stgcn_kwargs(kind, quick)
        if mm is not None:
            state = {k: v.detach().clone() for k, v in mm.state_dict().items()}
            return load_pyskl(state, kind, layout=layout, mode=mode, num_classes=classes, backend="dense", **size)
        cls = STGCN if kind == "stgcn" else STGCNPlusPlus  # no peer: the same architecture, our own init
        backbone: torch.nn.Module = cls(dict(layout=layout, mode=mode), backend="dense", **size)
    elif kind == "aagcn":
        backbone = AAGCN(dict(layout=layout, mode="spatial"), backend="dense", **size)
    elif kind == "ctrgcn":
        backbone = CTRGCN(dict(layout=layout, mode="spatial"), backend="dense", **size)
    else:
        backbone = DGSTGCN(dict(layout=layout, mode="random", num_filter=8, init_off=0.04, init_std=0.02,
                                seed=0), backend="dense", gcn_ratio=0.125, gcn_ctr="T", gcn_ada="T", **size)
    net = SkeletonClassifier(backbone, GCNHead(classes, backbone.out_channels))  # type: ignore[arg-type]
    with torch.no_grad():  # non-trivial gates so that every path runs
        for name, p in net.named_parameters():
            if name.endswith(("alpha", "beta", "add_coeff")):
                p.fill_(0.1)
    return net


def stgcn_reference(P: dict[str, torch.Tensor], x: torch.Tensor, strides: list[int], mstcn: bool,
                    with_res: bool) -> torch.Tensor:
    """PYSKL's ST-GCN / ST-GCN++ backbone on ``(N M, C, T, V)`` tensors (``unit_gcn``: ``Conv2d`` to
    ``K C``, ``einsum('nkctv,kvw->nctw')`` with ``A`` (times ``PA``), BN, residual, ReLU; then ``unit_tcn``
    or ``mstcn``; block residual; ReLU), features ``(N, M, C', T', V)``."""
    N, M = x.shape[:2]
    h = ref.data_bn(x, P, mvc=False)
    for i, s in enumerate(strides):
        b = f"gcn.{i}"
        g = b + ".gcn"
        A = P[g + ".A"] * P[g + ".PA"] if g + ".PA" in P else P[g + ".A"]
        y = ref.conv(h, P, g + ".conv")
        n, kc, t, v = y.shape
        y = torch.einsum("nkctv,kvw->nctw", y.view(n, A.size(0), kc // A.size(0), t, v), A)
        res = ref.down(h, P, g) if with_res else 0
        y = F.relu(ref.bn(y, P, g + ".bn") + res)
        y = ref.mstcn(y, P, b + ".tcn", s) if mstcn else ref.unit_tcn(y, P, b + ".tcn", 9, s)
        r = ref.residual(h, P, b + ".residual", s, identity=h.size(1) == y.size(1) and s == 1 and i > 0)
        h = F.relu(y + r)
    _, C2, T2, V = h.shape
    return h.view(N, M, C2, T2, V)


def make_reference(kind: str, ours: SkeletonClassifier) -> tuple[dict[str, torch.Tensor], Callable]:
    """The functional reference's parameters (a copy of ours, PYSKL key names) and its forward."""
    P = {}
    for k, v in ours.state_dict().items():
        stat = k.endswith(("running_mean", "running_var", "num_batches_tracked"))
        P[k] = v.detach().clone().requires_grad_(v.is_floating_point() and not stat)
    strides = [int(b.stride) for b in ours.backbone.blocks]  # type: ignore[union-attr]
    fc_w, fc_b = "head.fc_cls.weight", "head.fc_cls.bias"
    sub = {k[len("backbone."):]: v for k, v in P.items() if k.startswith("backbone.")}  # the same tensors

    def forward(x: torch.Tensor) -> torch.Tensor:
        if kind in ("stgcn", "stgcn++"):
            feats = stgcn_reference(sub, x, strides, mstcn=kind == "stgcn++", with_res=kind == "stgcn++")
        else:
            feats = ref.backbone(kind, sub, x, strides)
        return F.linear(feats.mean(dim=(3, 4)).mean(1), P[fc_w], P[fc_b])

    return P, forward


class _Ref(torch.nn.Module):
    """The functional reference as a module (train/eval switches batch statistics; parameters for SGD)."""

    def __init__(self, P: dict[str, torch.Tensor], fn: Callable) -> None:
        super().__init__()
        self.P, self.fn = P, fn

    def parameters(self, recurse: bool = True):  # type: ignore[override]
        return iter([t for t in self.P.values() if t.requires_grad])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ref.TRAIN_BN[0] = self.training
        try:
            return self.fn(x)
        finally:
            ref.TRAIN_BN[0] = False


def build_sides(kind: str, shape: str, quick: bool, want: tuple[str, ...],
                device: torch.device | str = "cpu") -> dict[str, torch.nn.Module]:
    """The modules of the sides in ``want`` (``ours``, ``mmaction2``, ``reference``), with the same weights,
    on ``device``."""
    layout, *_, classes = SHAPES[shape]
    torch.manual_seed(0)
    mm = None
    if kind in ("stgcn", "stgcn++") and ("mmaction2" in want or mmaction2_available()):
        mm = build_mmaction2(kind, layout, classes, quick)
        _perturb(mm)
    ours = build_ours(kind, layout, classes, quick, mm)
    if mm is None:
        _perturb(ours)
    ours.to(device)
    sides: dict[str, torch.nn.Module] = {}
    if "ours" in want:
        sides["ours"] = ours
    if "mmaction2" in want and mm is not None:
        sides["mmaction2"] = mm.to(device)
    if "reference" in want:
        sides["reference"] = _Ref(*make_reference(kind, ours))
    return sides


@torch.no_grad()
def _perturb(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters and non-zero ``PA`` offsets, so that an equality check
    means something (a freshly initialised model has identity BNs)."""
    g = torch.Generator().manual_seed(1)
    for mod in model.modules():
        if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
            mod.running_mean.uniform_(-0.1, 0.1, generator=g)
            mod.running_var.uniform_(0.5, 1.5, generator=g)
            mod.weight.uniform_(0.5, 1.5, generator=g)
            mod.bias.uniform_(-0.1, 0.1, generator=g)
    for name, p in model.named_parameters():
        if name.endswith("PA"):
            p.add_(torch.rand(p.shape, generator=g) * 0.1)


# ------------------------------------------------------------------------------------------------------
# Tasks
# ------------------------------------------------------------------------------------------------------
#: The mixed-precision columns: name suffix -> autocast dtype (CPU: bfloat16 where the CPU has it natively;
#: CUDA: both, float16 with gradient scaling as the trainer's AMP does).
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, amp: torch.dtype | None = None,
               net: Callable | None = None) -> Callable[[], None]:
    """One SGD step (PYSKL's optimiser: momentum 0.9, Nesterov, weight decay 5e-4) of ``net`` (``model``,
    or its compiled form) on ``x``'s device; ``amp``: the forward under autocast to that dtype, the loss in
    float32, float16 with a gradient scaler."""
    opt = torch.optim.SGD(list(model.parameters()), lr=1e-3, momentum=0.9, nesterov=True, weight_decay=5e-4)
    fn = model if net is None else net
    dev = x.device.type
    scaler = torch.amp.GradScaler(dev, enabled=amp == torch.float16)

    def step() -> None:
        model.train()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev, dtype=amp or torch.float32, enabled=amp is not None):
            out = fn(x)
        scaler.scale(F.cross_entropy(out.float(), y)).backward()
        scaler.step(opt)
        scaler.update()
    return step


def inference(model: torch.nn.Module, x: torch.Tensor, amp: torch.dtype | None = None,
              net: Callable | None = None) -> Callable[[], None]:
    fn = model if net is None else net

    def run() -> None:
        model.eval()
        with torch.no_grad(), torch.autocast(x.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            fn(x)
    return run


def amp_dtypes(device: torch.device) -> dict[str, torch.dtype]:
    """The mixed-precision columns this device runs natively (:data:`AMP_DTYPES`)."""
    if device.type == "cuda":
        return {k: d for k, d in AMP_DTYPES.items() if d != torch.bfloat16 or torch.cuda.is_bf16_supported()}
    return {"bf16": torch.bfloat16} if cpu_bf16_flags() else {}


def check_equal(sides: dict[str, torch.nn.Module], x: torch.Tensor) -> dict[str, float]:
    """Norm-wise relative difference ``|a - b| / |b|`` of every side's logits from ours, eval mode and train mode
    (batch statistics; BN running statistics restored afterwards). The allowed difference is ``RTOL`` or, where
    float32 itself is worse on these weights, 4x our own float32 error against our float64 logits (untrained
    full-size CTR-GCN reaches logits of 1e6, where every float32 implementation is off by ~1e-4 relative).
    Raises when a side exceeds it."""
    import copy

    out: dict[str, float] = {}
    ours = sides["ours"]
    for mode in ("eval", "train"):
        saved = {n: _state(m) for n, m in sides.items()}
        with torch.no_grad():
            for m in sides.values():
                m.train(mode == "train")
            exact = copy.deepcopy(ours).double()(x.double())
            want = ours(x)
            noise = ((want.double() - exact).norm() / exact.norm()).item()
            out[f"ours_float32_vs_float64_{mode}"] = noise
            for name, m in sides.items():
                if name == "ours":
                    continue
                d = ((m(x) - want).norm() / want.norm()).item()
                out[f"{name}_{mode}"] = d
                if not d <= max(RTOL, 4 * noise):
                    raise AssertionError(f"{name} differs from ours by {d:.3g} ({mode} mode logits; our float32 "
                                         f"error against float64: {noise:.3g})")
        for name, m in sides.items():  # undo the running-statistics update of the train-mode forwards
            if isinstance(m, _Ref):
                with torch.no_grad():
                    for k, v in saved[name].items():
                        m.P[k].copy_(v)
            else:
                m.load_state_dict(saved[name])
    return out


@contextlib.contextmanager
def _tf32_off() -> Iterator[None]:
    """CUDA's float32 products in float32 (no TF32) inside the block."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _state(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    items = m.P.items() if isinstance(m, _Ref) else m.state_dict().items()
    return {k: v.detach().clone() for k, v in items}


def count_flops(fn: Callable[[], None]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


# ------------------------------------------------------------------------------------------------------
# Roofline: the GEMM shapes a model lowers to, and the sustained SGEMM rate at each
# ------------------------------------------------------------------------------------------------------
class GemmRecorder(TorchDispatchMode):
    """Records every GEMM an op stream lowers to as ``(kind, shape) -> flops``: ``('mm', (M, K, N))`` for
    ``mm``/``addmm``, ``('bmm', (B, M, K, N))`` for ``bmm``/``baddbmm`` and for convolutions (im2col:
    ``M = N·prod(out)``, ``K = C_in/g·prod(kernel)``, ``N = C_out/g``, ``B = groups``; the two backward GEMMs
    of ``convolution_backward`` likewise)."""

    def __init__(self) -> None:
        super().__init__()
        self.gemms: dict[tuple, int] = {}

    def _add(self, key: tuple) -> None:
        flops = 2 * math.prod(key[1])
        self.gemms[key] = self.gemms.get(key, 0) + flops

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name == "mm":
            self._add(("mm", (args[0].shape[0], args[0].shape[1], args[1].shape[1])))
        elif name == "addmm":
            self._add(("mm", (args[1].shape[0], args[1].shape[1], args[2].shape[1])))
        elif name in ("bmm", "baddbmm"):
            a, b = (args[0], args[1]) if name == "bmm" else (args[1], args[2])
            self._add(("bmm", (a.shape[0], a.shape[1], a.shape[2], b.shape[2])))
        elif name == "convolution":
            w, groups, y = args[1], int(args[8]), out
            m = y.shape[0] * math.prod(y.shape[2:])
            k = w.shape[1] * math.prod(w.shape[2:])
            self._add(("bmm", (groups, m, k, w.shape[0] // groups)))
        elif name == "convolution_backward":
            grad, w, groups, mask = args[0], args[2], int(args[9]), args[10]
            m = grad.shape[0] * math.prod(grad.shape[2:])
            k = w.shape[1] * math.prod(w.shape[2:])
            co = w.shape[0] // groups
            if mask[0]:
                self._add(("bmm", (groups, m, co, k)))
            if mask[1]:
                self._add(("bmm", (groups, co, m, k)))
        return out


def record_gemms(fn: Callable[[], None]) -> dict[tuple, int]:
    rec = GemmRecorder()
    with rec:
        fn()
    return rec.gemms


class GemmReplay:
    """Every GEMM of a recorded op stream (:func:`record_gemms`) run back to back as ``torch.mm`` /
    ``torch.bmm`` at its own shape, as often as it was recorded, with no other work: one call takes the
    model's roofline time. It is timed as one more side of the interleaved rounds, so that it sees the machine
    the models see (on this shared 2-vCPU machine the same SGEMM's rate moved by up to ×1.7 between runs
    minutes apart). The operands are views of three buffers allocated once (random normal values) and the
    products are written in place: no allocation is timed."""

    def __init__(self, gemms: dict[tuple, int], device: torch.device | str = "cpu") -> None:
        self.calls: list[tuple[str, tuple[int, int, int, int], int]] = []
        for (kind, shape), flops in gemms.items():
            b, m, k, n = shape if kind == "bmm" else (1, *shape)
            self.calls.append((kind, (b, m, k, n), round(flops / (2 * b * m * k * n))))
        self.flops = sum(gemms.values())
        size = [max((math.prod(s[i] for i in idx) for _, s, _ in self.calls), default=1)
                for idx in ((0, 1, 2), (0, 2, 3), (0, 1, 3))]
        gen = torch.Generator().manual_seed(0)
        self.a, self.b = (torch.randn(n, generator=gen).to(device) for n in size[:2])
        self.out = torch.empty(size[2], device=device)

    def __call__(self) -> None:
        for kind, (b, m, k, n), count in self.calls:
            lhs, rhs = self.a[:b * m * k].view(b, m, k), self.b[:b * k * n].view(b, k, n)
            out = self.out[:b * m * n].view(b, m, n)
            for _ in range(count):
                if kind == "mm":
                    torch.mm(lhs[0], rhs[0], out=out[0])
                else:
                    torch.bmm(lhs, rhs, out=out)


#: The name of the GEMM replay among the timed sides (not a model: its time is the roofline time).
ROOFLINE = "roofline_gemms"


def roofline(replay: GemmReplay, timing: dict[str, Any]) -> dict[str, Any]:
    """The roofline of one task from the interleaved times of its :class:`GemmReplay`."""
    t = timing["median_s"]
    return {"gemm_flops": replay.flops, "roofline_time_s": t, "roofline_gflops": replay.flops / t / 1e9,
            "distinct_gemm_shapes": len(replay.calls), "times_s": timing["times_s"]}


def _timed(fn: Callable[[], None], device: torch.device | str = "cpu") -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


# ------------------------------------------------------------------------------------------------------
# Peak memory in a fresh subprocess
# ------------------------------------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def side_task(spec: dict[str, Any]) -> Callable[[], None]:
    """The task of one side (``ours_bf16`` / ``ours_fp16``: ours under autocast) built alone, as in ``spec``."""
    side, amp = spec["side"], None
    for suffix, dtype in AMP_DTYPES.items():
        if side == f"ours_{suffix}":
            side, amp = "ours", dtype
    device = torch.device(spec.get("device", "cpu"))
    model = build_sides(spec["model"], spec["shape"], spec["quick"], (side,), device)[side]
    x, y = make_input(spec["shape"], spec["quick"], spec.get("batch"), device)
    return train_step(model, x, y, amp) if spec["task"] == "train" else inference(model, x, amp)


def cuda_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """In this process: the CUDA allocator's peak over three calls of one side's task, above what was allocated
    before the first call (the side's weights and input)."""
    fn = side_task(spec)
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    return {"peak_above_start_mib": (peak - before) / 2**20, "allocated_before_mib": before / 2**20,
            "max_memory_allocated_mib": peak / 2**20}


def memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: build one side, run its task three times, report the RSS high-water mark
    above the RSS before the first call."""
    torch.set_num_threads(spec["threads"])
    fn = side_task(spec)
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    before = _status_kib("VmRSS")
    for _ in range(3):
        fn()
    peak = _status_kib("VmHWM")
    return {"peak_above_start_mib": (peak - before) / 1024, "rss_before_mib": before / 1024,
            "vmhwm_mib": peak / 1024, "hwm_reset": reset}


def measure_memory(model: str, shape: str, side: str, task: str, quick: bool, threads: int,
                   batch: int | None = None, device: torch.device | str = "cpu") -> dict[str, Any]:
    spec = dict(model=model, shape=shape, side=side, task=task, quick=quick, threads=threads, batch=batch,
                device=str(device))
    if torch.device(device).type == "cuda":
        return cuda_memory(spec)
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    proc = subprocess.run([sys.executable, __file__, "--memory-child", json.dumps(spec)], capture_output=True,
                          text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------------
# One model at one shape
# ------------------------------------------------------------------------------------------------------
def make_input(shape: str, quick: bool, batch: int | None = None,
               device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    layout, N, M, T, classes = SHAPES[shape]
    V = 25 if layout == "nturgb+d" else 18
    if quick:
        N, T = 2, 16
    N = batch or N
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(N, M, T, V, 3, generator=g), torch.randint(0, classes, (N,), generator=g)
    return x.to(device), y.to(device)


def _summary(t: dict[str, Any]) -> dict[str, Any]:
    times = t["times_s"]
    med = statistics.median(times)
    return {"median_s": med, "min_s": min(times), "max_s": max(times),
            "spread": (max(times) - min(times)) / med, "times_s": times}


def bench_one(kind: str, shape: str, args: argparse.Namespace) -> dict[str, Any]:
    want = ("ours", "mmaction2", "reference") if kind in ("stgcn", "stgcn++") else ("ours", "reference")
    if kind in ("stgcn", "stgcn++") and not args.mmaction2:
        want = ("ours", "reference")
    device = torch.device(args.device)
    sides = build_sides(kind, shape, args.quick, want, device)
    x, y = make_input(shape, args.quick, args.batch, device)
    with _tf32_off():
        diffs = check_equal(sides, x)
    row: dict[str, Any] = {"sides": list(sides), "input": list(x.shape), "rel_logit_diff": diffs}
    amps = {} if args.no_amp else amp_dtypes(device)

    # FLOPs, and the GEMMs of ours (the roofline: replayed as one more side of the timed rounds)
    flops = {task: {name: count_flops(train_step(m, x, y) if task == "train" else inference(m, x))
                    for name, m in sides.items()} for task in ("train", "inference")}
    row["flops"] = flops
    print(f"  {kind} {shape}: outputs equal, FLOPs counted; roofline GEMMs recorded", flush=True)
    gemms = {task: record_gemms(train_step(sides["ours"], x, y) if task == "train" else inference(sides["ours"], x))
             for task in ("train", "inference")}
    roof: dict[str, Any] = {}
    row["roofline"] = roof

    for task in ("inference", "train"):
        print(f"  {kind} {shape}: timing {task}", flush=True)
        fns: dict[str, Callable[[], None]] = {}
        for name, m in sides.items():
            fns[name] = train_step(m, x, y) if task == "train" else inference(m, x)
        for suffix, dtype in amps.items():
            fns[f"ours_{suffix}"] = (train_step(sides["ours"], x, y, dtype) if task == "train"
                                     else inference(sides["ours"], x, dtype))
        compile_s: dict[str, float] = {}
        if args.compile == "all" or (args.compile == "inference" and task == "inference"):
            for name, m in sides.items():
                # ours as the library compiles it (compile_model); a peer both ways, keeping its faster
                ways = {"_compiled": compile_model} if name == "ours" else {
                    "_compiled": torch.compile, "_compiled_no_layout_opt": compile_model}
                for suffix, compiler in ways.items():
                    net = compiler(m)
                    fn = train_step(m, x, y, net=net) if task == "train" else inference(m, x, net=net)
                    compile_s[name + suffix] = _timed(fn, device)  # the first call compiles
                    fns[name + suffix] = fn
        replay = GemmReplay(gemms[task], device)  # its operand buffers live only while this task is timed
        fns[ROOFLINE] = replay
        timed = time_interleaved(fns, repeats=args.rounds, warmup=1, device=device)
        roof[task] = roofline(replay, timed.pop(ROOFLINE))
        del fns[ROOFLINE], replay
        res = {name: _summary(t) for name, t in timed.items()}
        best = {}
        for name in sides:
            cands = [n for n in res if n == name or n.startswith(name + "_compiled")]
            pick = min(cands, key=lambda n: res[n]["median_s"])
            best[name] = {"variant": pick, "median_s": res[pick]["median_s"], "min_s": res[pick]["min_s"]}
        out: dict[str, Any] = {"times": res, "best": best, "compile_first_call_s": compile_s}
        ours_b = best["ours"]
        out["ratio_other_over_ours"] = {
            name: {"median": b["median_s"] / ours_b["median_s"], "min": b["min_s"] / ours_b["min_s"]}
            for name, b in best.items() if name != "ours"}
        for suffix in amps:
            a = res[f"ours_{suffix}"]
            out[f"{suffix}_speedup_over_ours_fp32"] = {"median": res["ours"]["median_s"] / a["median_s"],
                                                       "min": res["ours"]["min_s"] / a["min_s"]}
        rate = roof[task]["roofline_gflops"]
        out["achieved_gflops"] = {name: flops[task][name] / b["median_s"] / 1e9 for name, b in best.items()}
        out["fraction_of_roofline"] = {name: g / rate for name, g in out["achieved_gflops"].items()}
        # per round: each side against the GEMMs timed in that same round
        out["fraction_of_roofline_per_round"] = {
            name: [flops[task][name] / t / (roof[task]["gemm_flops"] / r) for t, r in
                   zip(timed[b["variant"]]["times_s"], roof[task]["times_s"])]
            for name, b in best.items()}
        out["load_average_after"] = list(os.getloadavg())
        row[task] = out

    if args.memory != "none":
        print(f"  {kind} {shape}: peak memory ({args.memory})", flush=True)
        mem: dict[str, Any] = {}
        for task in ("train", "inference") if args.memory == "all" else ("train",):
            names = list(sides) + [f"ours_{suffix}" for suffix in amps]
            mem[task] = {n: measure_memory(kind, shape, n, task, args.quick, torch.get_num_threads(), args.batch,
                                           device) for n in names}
        row["peak_memory_mib"] = mem
    return row


def _print_row(kind: str, shape: str, row: dict[str, Any]) -> None:
    for task in ("train", "inference"):
        r = row[task]
        parts = [f"{n} {b['median_s'] * 1e3:.0f} ms ({b['variant']}, {r['fraction_of_roofline'][n]:.0%} roof)"
                 for n, b in r["best"].items()]
        ratios = ", ".join(f"{n}/ours {v['median']:.2f}" for n, v in r["ratio_other_over_ours"].items())
        extra = "".join(f", {k.split('_')[0]} x{v['median']:.2f}" for k, v in r.items()
                        if k.endswith("_speedup_over_ours_fp32"))
        print(f"{kind:8s} {shape:8s} {task:9s} " + "; ".join(parts) + f" | {ratios}{extra} | roofline "
              f"{row['roofline'][task]['roofline_gflops']:.0f} GFLOP/s", flush=True)
    if "peak_memory_mib" in row:
        m = row["peak_memory_mib"]["train"]
        print(f"{kind:8s} {shape:8s} train peak MiB above start: " +
              ", ".join(f"{n} {v.get('peak_above_start_mib', float('nan')):.0f}" for n, v in m.items()), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny shapes, one round, no memory, no result file")
    ap.add_argument("--models", default=None,
                    help=f"comma-separated subset of {', '.join(MODELS)}, or 'all' (default: stgcn,stgcn++; "
                         "--quick: stgcn)")
    ap.add_argument("--shapes", default=None,
                    help=f"comma-separated subset of {', '.join(SHAPES)} (default: both; --quick: ntu)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timed rounds (after one warm-up)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the roofline uses the same)")
    ap.add_argument("--compile", choices=COMPILE_CHOICES, default="none",
                    help="also time torch.compile of every side: for inference, or for both tasks (the first "
                         "call compiles: minutes per side and task on 2 cores)")
    ap.add_argument("--memory", choices=MEMORY_CHOICES, default="train",
                    help="peak memory (a fresh subprocess per side and task, ~10-60 s each): of the training step, "
                         "of both tasks, or none")
    ap.add_argument("--no-amp", "--no-bf16", dest="no_amp", action="store_true",
                    help="skip the mixed-precision columns (bfloat16 on CPU; bfloat16 and float16 on CUDA)")
    ap.add_argument("--device", choices=DEVICES, default="cpu",
                    help="where every side runs (cuda: the GPU path; TF32 as --tf32 says, recorded)")
    ap.add_argument("--tf32", choices=("off", "on"), default="off",
                    help="CUDA: TF32 for every side's float32 matrix products and convolutions alike (torch's "
                         "defaults differ: cuDNN on, cuBLAS off, which would favour convolution-based sides); the "
                         "equality check always runs with TF32 off")
    ap.add_argument("--batch", type=int, default=None,
                    help=f"batch size N (default: the shape's, {SHAPES['ntu'][1]}; a GPU wants more)")
    ap.add_argument("--no-mmaction2", dest="mmaction2", action="store_false", help="skip the mmaction2 column")
    ap.add_argument("--keep-freed-memory", action="store_true",
                    help="call pyg_sparse_stgcn.malloc.keep_freed_memory() first (as the CLI does by default): "
                         "every side in this process then reuses freed memory instead of faulting it in again")
    ap.add_argument("--out", default=None,
                    help="result file (default benchmarks/results/models.json, models_cuda.json with --device cuda)")
    ap.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return
    if args.models is None:
        args.models = "stgcn" if args.quick else "stgcn,stgcn++"
    if args.shapes is None:
        args.shapes = "ntu" if args.quick else ",".join(SHAPES)
    models = list(MODELS) if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    bad = [m for m in models if m not in MODELS] + [s for s in shapes if s not in SHAPES]
    if bad:
        ap.error(f"unknown model/shape {bad}; models: {', '.join(MODELS)}; shapes: {', '.join(SHAPES)}")
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    if args.batch is not None and args.batch < 1:
        ap.error("--batch must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available here")
    if args.out is None:
        args.out = str(ROOT / "benchmarks/results" / ("models_cuda.json" if args.device == "cuda" else "models.json"))
    torch.set_num_threads(args.threads)
    if args.quick:
        args.rounds, args.memory = 1, "none"
    if args.keep_freed_memory and not keep_freed_memory():
        ap.error("--keep-freed-memory: the C library is not glibc, there is nothing to keep")
    if (why := shadowed_torch()) is not None:
        ap.error(why)
    if args.mmaction2 and not mmaction2_available():
        print("mmaction2 is not importable (optional benchmark peer; e.g. PYTHONPATH=/tmp/mmpeer): the mmaction2 "
              "column is skipped", flush=True)
        args.mmaction2 = False
    if args.device == "cpu" and not cpu_bf16_flags():
        print("this CPU has no native bfloat16 (avx512_bf16 / amx_bf16): the bf16 column is skipped", flush=True)
    results: dict[str, Any] = {
        "machine": machine_info(args.device), "device": args.device, "threads": torch.get_num_threads(),
        "rounds": args.rounds, "batch": args.batch, "compile": args.compile,
        "amp": [] if args.no_amp else list(amp_dtypes(torch.device(args.device))),
        "bf16_cpu_flags": list(cpu_bf16_flags()), "mmaction2": args.mmaction2,
        "keep_freed_memory": args.keep_freed_memory,
        "shapes": {s: dict(zip(("layout", "N", "M", "T", "num_classes"), SHAPES[s]), **(
            {"N": args.batch} if args.batch else {})) for s in shapes},
        "models": {}}
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32 == "on"
        results["tf32"] = args.tf32
    start = time.perf_counter()
    for kind in models:
        for shape in shapes:
            row = bench_one(kind, shape, args)
            results["models"].setdefault(kind, {})[shape] = row
            _print_row(kind, shape, row)
            if not args.quick:  # after every row: a long run stopped early keeps what it measured
                results["complete"] = False
                write_results(args.out, results)
    results["wall_s"] = time.perf_counter() - start
    results["load_average_end"] = list(os.getloadavg())
    print(f"done in {results['wall_s']:.0f} s; load average {results['load_average_end']}")
    if not args.quick:
        results["complete"] = True
        write_results(args.out, results)
        print("wrote", args.out)


if __name__ == "__main__":
    main()
