"""Independent channels-first references of PYSKL's AAGCN, CTR-GCN and DG-STGCN (eval-mode BN), written from
``reference/backbones.md``'s equations. They run on a state dict with PYSKL's key names (1 x 1 weights may be
(out, in) or (out, in, 1, 1)), and the tiny models and randomisation the backbone, compat and compile tests share.
Not a test module: imported by those tests and by ``benchmarks/bench_models.py``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pyg_sparse_stgcn.nn import AAGCN, CTRGCN, DGSTGCN

DEFAULT_MS = [(3, 1), (3, 2), (3, 3), (3, 4), ("max", 3), "1x1"]


def conv(x, P, key, stride=1, k_pad=0, dil=1):
    w = P[key + ".weight"]
    if w.dim() == 2:
        w = w[:, :, None, None]
    return F.conv2d(x, w, P[key + ".bias"], stride=(stride, 1), padding=(k_pad, 0), dilation=(dil, 1))


#: set TRAIN_BN[0] = True for batch statistics (training-step benchmarks); eval-mode BN otherwise
TRAIN_BN = [False]


def bn(x, P, key):
    if TRAIN_BN[0]:
        return F.batch_norm(x, P[key + ".running_mean"], P[key + ".running_var"], P[key + ".weight"],
                            P[key + ".bias"], training=True)
    shape = [1, -1] + [1] * (x.dim() - 2)
    rm, rv = P[key + ".running_mean"].view(shape), P[key + ".running_var"].view(shape)
    return (x - rm) / torch.sqrt(rv + 1e-5) * P[key + ".weight"].view(shape) + P[key + ".bias"].view(shape)


def unit_tcn(x, P, key, k, stride=1, dil=1, norm=True):
    x = conv(x, P, key + ".conv", stride, dil * (k - 1) // 2, dil)
    return bn(x, P, key + ".bn") if norm else x


def maxpool(x, stride):
    return F.max_pool2d(x, (3, 1), (stride, 1), (1, 0))


def mstcn(x, P, key, stride, ms_cfg=DEFAULT_MS, global_joint=False, num_joints=25):
    V = x.size(-1)
    if global_joint:
        x = torch.cat([x, x.mean(-1, keepdim=True)], -1)
    outs = []
    for j, cfg in enumerate(ms_cfg):
        b = f"{key}.branches.{j}"
        if cfg == "1x1":
            outs.append(conv(x, P, b, stride))
            continue
        h = F.relu(bn(conv(x, P, b + ".0"), P, b + ".1"))
        if cfg[0] == "max":
            outs.append(maxpool(h, stride))
        else:
            outs.append(unit_tcn(h, P, b + ".3", cfg[0], stride, cfg[1], norm=False))
    o = torch.cat(outs, 1)
    if global_joint:
        o = o[..., :V] + o[..., V:] * P[key + ".add_coeff"][:V]
    o = conv(F.relu(bn(o, P, key + ".transform.0")), P, key + ".transform.2")
    return bn(o, P, key + ".bn")


def ctr_mstcn(x, P, key, stride, k=5, dilations=(1, 2)):
    outs = []
    for j, d in enumerate(dilations):
        b = f"{key}.branches.{j}"
        h = F.relu(bn(conv(x, P, b + ".0"), P, b + ".1"))
        outs.append(unit_tcn(h, P, b + ".3", k, stride, d))
    b = f"{key}.branches.{len(dilations)}"
    h = F.relu(bn(conv(x, P, b + ".0"), P, b + ".1"))
    outs.append(bn(maxpool(h, stride), P, b + ".4"))
    b = f"{key}.branches.{len(dilations) + 1}"
    outs.append(bn(conv(x, P, b + ".0", stride), P, b + ".1"))
    return F.relu(torch.cat(outs, 1))


def down(x, P, key):
    if key + ".down.0.weight" in P:
        return bn(conv(x, P, key + ".down.0"), P, key + ".down.1")
    return x


def unit_aagcn(x, P, key, attention=True):
    A = P[key + ".A"]
    K = A.size(0)
    N, C, T, V = x.shape
    y = 0
    for k in range(K):
        Ak = A[k]
        if key + ".alpha" in P:
            a = conv(x, P, f"{key}.conv_a.{k}")
            b = conv(x, P, f"{key}.conv_b.{k}")
            Ce = a.size(1)
            a1 = a.permute(0, 3, 1, 2).reshape(N, V, Ce * T)
            b1 = b.reshape(N, Ce * T, V)
            Ak = Ak + P[key + ".alpha"] * torch.tanh(torch.matmul(a1, b1) / (Ce * T))
        xa = torch.matmul(x.reshape(N, C * T, V), Ak).view(N, C, T, V)
        y = y + conv(xa, P, f"{key}.conv_d.{k}")
    h = F.relu(bn(y, P, key + ".bn") + down(x, P, key))
    if not attention:
        return h
    ws = P[key + ".conv_sa.weight"]
    s = torch.sigmoid(F.conv1d(h.mean(-2), ws, P[key + ".conv_sa.bias"], padding=(ws.size(-1) - 1) // 2))
    h = h * s.unsqueeze(-2) + h
    s = torch.sigmoid(F.conv1d(h.mean(-1), P[key + ".conv_ta.weight"], P[key + ".conv_ta.bias"], padding=4))
    h = h * s.unsqueeze(-1) + h
    g = h.mean(-1).mean(-1)
    s = torch.sigmoid(F.linear(F.relu(F.linear(g, P[key + ".fc1c.weight"], P[key + ".fc1c.bias"])),
                               P[key + ".fc2c.weight"], P[key + ".fc2c.bias"]))
    return h * s[..., None, None] + h


def unit_ctrgcn(x, P, key):
    A = P[key + ".A"]
    y = 0
    for k in range(A.size(0)):
        c = f"{key}.convs.{k}"
        p = conv(x, P, c + ".conv1").mean(-2)
        q = conv(x, P, c + ".conv2").mean(-2)
        x3 = conv(x, P, c + ".conv3")
        E = torch.tanh(p.unsqueeze(-1) - q.unsqueeze(-2))  # (N, R, U, V)
        M = conv(E, P, c + ".conv4") * P[key + ".alpha"] + A[k]
        y = y + torch.einsum("ncuv,nctu->nctv", M, x3)
    return F.relu(bn(y, P, key + ".bn") + down(x, P, key))


def unit_dggcn(x, P, key):
    A = P[key + ".A"]
    K = A.size(0)
    N, C, T, V = x.shape
    r = down(x, P, key)
    pre = F.relu(bn(conv(x, P, key + ".pre.0"), P, key + ".pre.1"))
    m = pre.size(1) // K
    pre = pre.view(N, K, m, T, V)
    xm = x.mean(-2, keepdim=True)
    q1 = conv(xm, P, key + ".conv1").view(N, K, m, V)
    q2 = conv(xm, P, key + ".conv2").view(N, K, m, V)
    ctr = torch.tanh(q1.unsqueeze(-1) - q2.unsqueeze(-2))  # (N, K, m, U, V)
    ada = torch.softmax(torch.einsum("nkiu,nkiv->nkuv", q1, q2), dim=-2)
    G = A[None, :, None] + P[key + ".alpha"][0] * ctr + P[key + ".beta"][0] * ada[:, :, None]
    Y = torch.einsum("nkitu,nkiuv->nkitv", pre, G).reshape(N, K * m, T, V)
    return F.relu(bn(conv(Y, P, key + ".post"), P, key + ".bn") + r)


def residual(x, P, key, stride, identity):
    if key + ".conv.weight" in P:
        return bn(conv(x, P, key + ".conv", stride), P, key + ".bn")
    return x if identity else 0


def data_bn(x, P, mvc):
    N, M, T, V, C = x.shape
    x = x.permute(0, 1, 3, 4, 2).contiguous()
    if mvc:
        x = bn(x.view(N, M * V * C, T), P, "data_bn")
    else:
        x = bn(x.view(N * M, V * C, T), P, "data_bn")
    return x.view(N, M, V, C, T).permute(0, 1, 3, 4, 2).reshape(N * M, C, T, V)


def backbone(kind, P, x, strides, tcn=None, ms_cfg=DEFAULT_MS):
    """Features (N, M, C', T', V) of ``kind`` in {'aagcn', 'ctrgcn', 'dgstgcn'} with state ``P`` (no prefix).

    ``tcn``: the temporal unit, the backbone's own by default (AAGCN ``'unit_tcn'``, DG-STGCN ``'dgmstcn'``);
    ``'mstcn'`` is PYSKL's plain multi-scale TCN with branches ``ms_cfg`` (AAGCN's option; the paper's sparse
    DG-STGCN, whose blocks are then ``ReLU(mstcn(dggcn(x)) + R(x))`` without the global joint).

    ``strides``: one temporal stride per block; the first block has no residual when its input channels
    differ (``'stage1'`` in the state decides: a block without ``residual.*`` keys and different channels).
    """
    N, M = x.shape[:2]
    h = data_bn(x, P, kind != "dgstgcn")
    root = "net" if kind == "ctrgcn" else "gcn"
    for i, s in enumerate(strides):
        b = f"{root}.{i}"
        unit = b + (".gcn1" if kind == "ctrgcn" else ".gcn")
        identity = i > 0 or (kind == "ctrgcn" and False)
        cin = h.size(1)
        if kind == "aagcn":
            g = unit_aagcn(h, P, unit, attention=unit + ".conv_sa.weight" in P)
            t = unit_tcn(g, P, b + ".tcn", 9, s) if tcn in (None, "unit_tcn") else mstcn(g, P, b + ".tcn", s, ms_cfg)
        elif kind == "ctrgcn":
            t = ctr_mstcn(unit_ctrgcn(h, P, unit), P, b + ".tcn1", s)
        else:
            t = mstcn(unit_dggcn(h, P, unit), P, b + ".tcn", s, ms_cfg, global_joint=tcn != "mstcn")
        first = i == 0 and (kind == "ctrgcn" or cin != t.size(1))
        h = F.relu(t + (0 if first else residual(h, P, b + ".residual", s, identity)))
    _, C2, T2, V = h.shape
    return h.view(N, M, C2, T2, V)


# --- tiny models shared by the tests ------------------------------------------------------------------
SPATIAL = dict(layout="nturgb+d", mode="spatial")
RANDOM = dict(layout="nturgb+d", mode="random", num_filter=3, init_off=0.04, init_std=0.02, seed=0)
TINY = dict(base_channels=8, num_stages=4, inflate_stages=(3,), down_stages=(3,))


def build(kind: str, backend: str = "dense", **kw):
    if kind == "aagcn":
        return AAGCN(SPATIAL, backend=backend, **TINY, **kw)
    if kind == "ctrgcn":
        return CTRGCN(SPATIAL, backend=backend, **TINY, **kw)
    return DGSTGCN(RANDOM, backend=backend, gcn_ratio=0.25, gcn_ctr="T", gcn_ada="T", **TINY, **kw)


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Every parameter and BN statistic random (gates included) so that every path is exercised."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 0.2)
                + (1.0 if name.endswith("bn.weight") or ".1.weight" in name else 0.0))
    for name, b in model.named_buffers():
        if name.endswith("running_mean"):
            b.copy_(torch.randn(b.shape, generator=g) * 0.1)
        elif name.endswith("running_var"):
            b.copy_(torch.rand(b.shape, generator=g) + 0.5)


def live_classifier(kind: str, backend: str = "auto"):
    """A tiny classifier whose data-dependent terms matter: gates alpha / beta non-zero, attention layers not zero,
    non-trivial batch-norm statistics, logits of order 1 (so that an absolute 1e-4 means something)."""
    from torch import nn

    from pyg_sparse_stgcn.nn import GCNHead, SkeletonClassifier

    torch.manual_seed(0)
    bb = build(kind, backend=backend)
    m = SkeletonClassifier(bb, GCNHead(5, bb.out_channels))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
            if name.endswith(("alpha", "beta")):
                p.fill_(1.0)
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.running_mean.uniform_(-0.1, 0.1, generator=g)
                mod.running_var.uniform_(0.5, 1.5, generator=g)
                mod.weight.uniform_(0.2, 0.4, generator=g)
        m.head.fc_cls.weight.mul_(20.0)
    return m
