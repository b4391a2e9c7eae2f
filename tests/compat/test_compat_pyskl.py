"""PYSKL checkpoint loading against an independent channels-first reference written from PYSKL's equations.

The state dicts are built here with PYSKL's exact key names and shapes (``backbone.gcn.{i}.gcn.conv.weight``
of shape ``(K*out, in, 1, 1)``, ...), never from our model's ``state_dict()``; the reference forward below
uses only those tensors, ``F.conv2d``/``einsum``/``F.batch_norm`` and PYSKL's layout ``(N*M, C, T, V)``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pyg_sparse_stgcn.compat import load_pyskl_stgcn
from pyg_sparse_stgcn.compat.pyskl import load_checkpoint_state
from pyg_sparse_stgcn.graph import SkeletonGraph

MS_CFG = [(3, 1), (3, 2), (3, 3), (3, 4), ("max", 3), "1x1"]
SMALL = dict(base_channels=8, num_stages=4, inflate_stages=(3,), down_stages=(3,))


# ----------------------------------------------------------------------------------------------------------
# PYSKL-format state dict (names and shapes as PYSKL's modules register them)
# ----------------------------------------------------------------------------------------------------------
class _Gen:
    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)

    def conv(self, out: int, inp: int, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        w = torch.randn(out, inp, k, 1, generator=self.g) / np.sqrt(inp * k)
        return w, torch.randn(out, generator=self.g) * 0.1

    def bn(self, prefix: str, c: int, sd: dict) -> None:
        sd[prefix + "weight"] = 0.5 + torch.rand(c, generator=self.g)
        sd[prefix + "bias"] = torch.randn(c, generator=self.g) * 0.1
        sd[prefix + "running_mean"] = torch.randn(c, generator=self.g) * 0.1
        sd[prefix + "running_var"] = 0.5 + torch.rand(c, generator=self.g)
        sd[prefix + "num_batches_tracked"] = torch.tensor(7)


def _stage_plan(in_channels, base_channels, num_stages, inflate_stages, down_stages):
    """PYSKL's stage loop: list of (in, out, stride, residual)."""
    plan = []
    if in_channels != base_channels:
        plan.append((in_channels, base_channels, 1, False))
    inflate_times, cur = 0, base_channels
    for i in range(2, num_stages + 1):
        stride = 1 + (i in down_stages)
        if i in inflate_stages:
            inflate_times += 1
        out = int(base_channels * 2 ** inflate_times + 1e-4)
        plan.append((cur, out, stride, True))
        cur = out
    return plan


def make_pyskl_state(A: np.ndarray, kind: str, num_classes: int, seed: int = 0, in_channels: int = 3,
                     head_key: str = "fc_cls") -> dict:
    gen = _Gen(seed)
    K, V, _ = A.shape
    sd: dict[str, torch.Tensor] = {}
    gen.bn("backbone.data_bn.", V * in_channels, sd)
    plan = _stage_plan(in_channels, **SMALL)
    for j, (cin, cout, stride, residual) in enumerate(plan):
        p = f"backbone.gcn.{j}."
        A_t = torch.tensor(A, dtype=torch.float32)
        if kind == "stgcn":  # adaptive='importance': buffer A, parameter PA
            sd[p + "gcn.PA"] = 1.0 + 0.3 * torch.randn(K, V, V, generator=gen.g)
            sd[p + "gcn.A"] = A_t
        else:  # ST-GCN++: adaptive='init' (A learned everywhere), with_res, mstcn
            sd[p + "gcn.A"] = A_t + 0.05 * torch.randn(K, V, V, generator=gen.g)
        sd[p + "gcn.conv.weight"], sd[p + "gcn.conv.bias"] = gen.conv(cout * K, cin)
        gen.bn(p + "gcn.bn.", cout, sd)
        if kind == "stgcnpp" and cin != cout:
            sd[p + "gcn.down.0.weight"], sd[p + "gcn.down.0.bias"] = gen.conv(cout, cin)
            gen.bn(p + "gcn.down.1.", cout, sd)
        if kind == "stgcn":
            sd[p + "tcn.conv.weight"], sd[p + "tcn.conv.bias"] = gen.conv(cout, cout, 9)
            gen.bn(p + "tcn.bn.", cout, sd)
        else:
            nb = len(MS_CFG)
            mid = cout // nb
            rem = cout - mid * (nb - 1)
            for b, cfg in enumerate(MS_CFG):
                c = rem if b == 0 else mid
                q = p + f"tcn.branches.{b}."
                if cfg == "1x1":
                    sd[q + "weight"], sd[q + "bias"] = gen.conv(c, cout)
                    continue
                sd[q + "0.weight"], sd[q + "0.bias"] = gen.conv(c, cout)
                gen.bn(q + "1.", c, sd)
                if cfg[0] != "max":
                    sd[q + "3.conv.weight"], sd[q + "3.conv.bias"] = gen.conv(c, c, cfg[0])
            tin = mid * (nb - 1) + rem
            gen.bn(p + "tcn.transform.0.", tin, sd)
            sd[p + "tcn.transform.2.weight"], sd[p + "tcn.transform.2.bias"] = gen.conv(cout, tin)
            gen.bn(p + "tcn.bn.", cout, sd)
        if residual and not (cin == cout and stride == 1):
            sd[p + "residual.conv.weight"], sd[p + "residual.conv.bias"] = gen.conv(cout, cin)
            gen.bn(p + "residual.bn.", cout, sd)
    final = plan[-1][1]
    w, _ = gen.conv(num_classes, final)
    sd[f"cls_head.{head_key}.weight"] = w[:, :, 0, 0]
    sd[f"cls_head.{head_key}.bias"] = torch.randn(num_classes, generator=gen.g) * 0.1
    return sd


# ----------------------------------------------------------------------------------------------------------
# Independent reference: PYSKL's forward, channels-first, eval-mode BN
# ----------------------------------------------------------------------------------------------------------
def _bn(x, sd, p):
    return F.batch_norm(x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"],
                        False, 0.0, 1e-5)


def _unit_tcn(x, sd, p, k, stride, dilation=1, norm=True):
    pad = (k + (k - 1) * (dilation - 1) - 1) // 2
    x = F.conv2d(x, sd[p + "conv.weight"], sd[p + "conv.bias"], stride=(stride, 1), padding=(pad, 0),
                 dilation=(dilation, 1))
    return _bn(x, sd, p + "bn.") if norm else x


def _mstcn(x, sd, p, stride):
    outs = []
    for b, cfg in enumerate(MS_CFG):
        q = p + f"branches.{b}."
        if cfg == "1x1":
            outs.append(F.conv2d(x, sd[q + "weight"], sd[q + "bias"], stride=(stride, 1)))
            continue
        h = F.relu(_bn(F.conv2d(x, sd[q + "0.weight"], sd[q + "0.bias"]), sd, q + "1."))
        if cfg[0] == "max":
            h = F.max_pool2d(h, (cfg[1], 1), (stride, 1), (1, 0))
        else:
            h = _unit_tcn(h, sd, q + "3.", cfg[0], stride, cfg[1], norm=False)
        outs.append(h)
    h = torch.cat(outs, 1)
    h = F.relu(_bn(h, sd, p + "transform.0."))
    h = F.conv2d(h, sd[p + "transform.2.weight"], sd[p + "transform.2.bias"])
    return _bn(h, sd, p + "bn.")


def _unit_gcn(x, sd, p, kind):
    n, c, t, v = x.shape
    A = sd[p + "A"] * sd[p + "PA"] if kind == "stgcn" else sd[p + "A"]
    K = A.shape[0]
    res = 0
    if kind == "stgcnpp":
        res = _bn(F.conv2d(x, sd[p + "down.0.weight"], sd[p + "down.0.bias"]), sd, p + "down.1.") \
            if p + "down.0.weight" in sd else x
    y = F.conv2d(x, sd[p + "conv.weight"], sd[p + "conv.bias"])
    y = y.view(n, K, -1, t, v)
    y = torch.einsum("nkctv,kvw->nctw", y, A)
    return F.relu(_bn(y, sd, p + "bn.") + res)


def pyskl_reference(sd, x, kind):
    N, M, T, V, C = x.shape
    x = x.permute(0, 1, 3, 4, 2).contiguous()
    x = _bn(x.view(N * M, V * C, T), sd, "backbone.data_bn.")
    x = x.view(N, M, V, C, T).permute(0, 1, 3, 4, 2).contiguous().view(N * M, C, T, V)
    j = 0
    while f"backbone.gcn.{j}.gcn.conv.weight" in sd:
        p = f"backbone.gcn.{j}."
        cin = sd[p + "gcn.conv.weight"].shape[1]
        has_res_conv = p + "residual.conv.weight" in sd
        stride = _PLAN_STRIDES[j]  # read off PYSKL's stage loop
        if has_res_conv:
            res = _unit_tcn(x, sd, p + "residual.", 1, stride)
        elif _PLAN_RESIDUAL[j]:
            res = x
        else:
            res = 0
        h = _unit_gcn(x, sd, p + "gcn.", kind)
        h = _unit_tcn(h, sd, p + "tcn.", 9, stride) if kind == "stgcn" else _mstcn(h, sd, p + "tcn.", stride)
        x = F.relu(h + res)
        assert cin > 0
        j += 1
    feat = x.reshape((N, M) + x.shape[1:])
    pooled = feat.mean(dim=(3, 4)).mean(1)
    head = "cls_head.fc_cls." if "cls_head.fc_cls.weight" in sd else "cls_head.fc."
    return feat, pooled @ sd[head + "weight"].t() + sd[head + "bias"]


_PLAN = _stage_plan(3, **SMALL)
_PLAN_STRIDES = [s for _, _, s, _ in _PLAN]
_PLAN_RESIDUAL = [r for _, _, _, r in _PLAN]

CASES = {
    "stgcn": dict(layout="nturgb+d", mode="stgcn_spatial", adaptive="importance"),
    "stgcnpp": dict(layout="coco", mode="spatial", adaptive="init"),
}


def _case(kind, seed=0, head_key="fc_cls"):
    cfg = CASES[kind]
    A = SkeletonGraph(cfg["layout"], cfg["mode"]).A
    sd = make_pyskl_state(A, kind, num_classes=5, seed=seed, head_key=head_key)
    V = A.shape[-1]
    x = torch.randn(2, 2, 12, V, 3, generator=torch.Generator().manual_seed(seed + 100))
    return cfg, sd, x


@pytest.mark.parametrize("backend", ["dense", "sparse", "scatter", "auto"])
@pytest.mark.parametrize("kind", ["stgcn", "stgcnpp"])
def test_logits_and_features_match_pyskl_reference(kind, backend):
    cfg, sd, x = _case(kind)
    model = load_pyskl_stgcn(sd, num_classes=5, backend=backend, **cfg, **SMALL)
    assert not model.training
    assert all(conv.backend == backend for conv in model.backbone.convs())
    ref_feat, ref_logits = pyskl_reference(sd, x, kind)
    with torch.no_grad():
        feat = model.backbone(x)
        logits = model(x)
    assert feat.shape == ref_feat.shape
    assert ref_logits.abs().max() > 0.05  # the comparison is not trivially between zeros
    torch.testing.assert_close(feat, ref_feat, atol=1e-5, rtol=0)
    torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("backend", ["sparse", "scatter"])
def test_without_torch_sparse(monkeypatch, backend):
    import torch_geometric.typing as pyg_typing

    monkeypatch.setattr(pyg_typing, "WITH_TORCH_SPARSE", False)
    cfg, sd, x = _case("stgcn", seed=3)
    model = load_pyskl_stgcn(sd, num_classes=5, backend=backend, **cfg, **SMALL)
    with torch.no_grad():
        torch.testing.assert_close(model(x), pyskl_reference(sd, x, "stgcn")[1], atol=1e-5, rtol=0)


def test_wrappers_paths_and_mmaction2_keys(tmp_path):
    cfg, sd, x = _case("stgcn", seed=1, head_key="fc")  # mmaction2 1.x head name
    ref = pyskl_reference(sd, x, "stgcn")[1]
    path = tmp_path / "ckpt.pth"
    torch.save({"meta": {"epoch": 3}, "state_dict": {"module." + k: v for k, v in sd.items()}}, path)
    for ckpt in (sd, {"state_dict": sd}, path, str(path)):
        model = load_pyskl_stgcn(ckpt, num_classes=5, backend="dense", **cfg, **SMALL)
        with torch.no_grad():
            torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=0)


def test_stgcnpp_options_are_inferred_from_keys():
    cfg, sd, _ = _case("stgcnpp", seed=2)
    model = load_pyskl_stgcn(sd, num_classes=5, backend="dense", **cfg, **SMALL)
    assert type(model.backbone.gcn[1].tcn).__name__ == "MultiScaleTemporalConv"
    assert model.backbone.gcn[1].gcn.with_res


def test_missing_and_unexpected_keys_are_listed():
    cfg, sd, _ = _case("stgcn", seed=4)
    broken = dict(sd)
    del broken["backbone.gcn.1.tcn.conv.weight"]
    broken["backbone.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys.*backbone\.gcn\.1\.tcn\.conv\.weight") as err:
        load_pyskl_stgcn(broken, num_classes=5, **cfg, **SMALL)
    assert "backbone.extra.weight" in str(err.value)
    with pytest.raises(ValueError, match="shape mismatches"):
        load_pyskl_stgcn(sd, num_classes=5, **cfg, base_channels=16, num_stages=4, inflate_stages=(3,),
                         down_stages=(3,))


def test_bad_arguments():
    cfg, sd, _ = _case("stgcn", seed=5)
    with pytest.raises(ValueError, match="num_classes=7"):
        load_pyskl_stgcn(sd, num_classes=7, **cfg, **SMALL)
    wrong_graph = dict(sd)
    wrong_graph["backbone.gcn.2.gcn.A"] = sd["backbone.gcn.2.gcn.A"].clone()
    wrong_graph["backbone.gcn.2.gcn.A"][1, 3, 17] = 0.5  # joints 4 and 18 are not connected
    with pytest.raises(ValueError, match=r"gcn\.2\.gcn\.A .*outside the edges"):
        load_pyskl_stgcn(wrong_graph, num_classes=5, **cfg, **SMALL)
    with pytest.raises(ValueError, match="shape mismatches"):
        load_pyskl_stgcn(sd, num_classes=5, layout="coco", mode="stgcn_spatial", **SMALL)
    with pytest.raises(ValueError, match="unknown layout"):
        load_pyskl_stgcn(sd, num_classes=5, layout="nope", mode="spatial", **SMALL)
    with pytest.raises(ValueError, match="backend"):
        load_pyskl_stgcn(sd, num_classes=5, backend="fast", **cfg, **SMALL)
    with pytest.raises(FileNotFoundError):
        load_checkpoint_state("/nonexistent/ckpt.pth")
    with pytest.raises(ValueError, match="not a tensor"):
        load_checkpoint_state({"state_dict": {"a": torch.zeros(1), "b": "x"}})


# ----------------------------------------------------------------------------------------------------------
# Optional real peer: mmaction2 1.x (same design as PYSKL). Not a dependency: skipped when not importable.
# ----------------------------------------------------------------------------------------------------------
MM_CASES = {
    "stgcn": (dict(layout="coco", mode="stgcn_spatial"), dict(), "importance"),
    "stgcnpp": (dict(layout="nturgb+d", mode="spatial"),
                dict(gcn_adaptive="init", gcn_with_res=True, tcn_type="mstcn"), "init"),
}


@pytest.mark.parametrize("backend", ["dense", "sparse", "scatter"])
@pytest.mark.parametrize("kind", list(MM_CASES))
def test_matches_mmaction2_stgcn(kind, backend, perturb_off_init):
    pytest.importorskip("mmaction", reason="mmaction2 (optional test peer) is not installed")
    from mmaction.models.backbones.stgcn import STGCN as MMSTGCN
    from mmaction.models.heads import GCNHead as MMGCNHead

    graph_cfg, kwargs, adaptive = MM_CASES[kind]
    torch.manual_seed(11)
    backbone = MMSTGCN(graph_cfg=graph_cfg, base_channels=8, num_stages=4, inflate_stages=[3],
                       down_stages=[3], **kwargs)
    head = MMGCNHead(num_classes=5, in_channels=16)
    gen = perturb_off_init((backbone, head), 12)
    backbone.eval()
    head.eval()
    state = {"backbone." + k: v for k, v in backbone.state_dict().items()}
    state.update({"cls_head." + k: v for k, v in head.state_dict().items()})
    V = 17 if graph_cfg["layout"] == "coco" else 25
    x = torch.randn(2, 2, 12, V, 3, generator=gen)
    with torch.no_grad():
        ref_feat = backbone(x)
        ref_logits = head(ref_feat)
    ours = load_pyskl_stgcn({"state_dict": state}, num_classes=5, adaptive=adaptive, backend=backend,
                            **graph_cfg, **SMALL)
    with torch.no_grad():
        torch.testing.assert_close(ours.backbone(x), ref_feat, atol=1e-5, rtol=0)
        torch.testing.assert_close(ours(x), ref_logits, atol=1e-5, rtol=0)
    assert ref_logits.abs().max() > 0.05


def test_adaptive_none_builds_a_fixed_graph():
    cfg, sd, x = _case("stgcn", seed=5)
    sd = {k: v for k, v in sd.items() if not k.endswith(".PA")}
    model = load_pyskl_stgcn(sd, num_classes=5, backend="dense", **{**cfg, "adaptive": None}, **SMALL)
    assert all(conv.adaptive is None and not hasattr(conv, "PA") for conv in model.backbone.convs())
