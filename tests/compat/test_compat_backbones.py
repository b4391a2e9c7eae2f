"""compat.load_pyskl on AAGCN / CTR-GCN / DG-STGCN state dicts with PYSKL's exact key names and shapes."""
from __future__ import annotations

import backbone_reference as ref
import pytest
import torch
from backbone_reference import RANDOM, SPATIAL, TINY, build, randomise

from pyg_sparse_stgcn.compat import detect_backbone, load_pyskl, load_pyskl_stgcn


def pyskl_state(backbone: torch.nn.Module, num_classes: int = 5) -> dict[str, torch.Tensor]:
    """A PYSKL ``RecognizerGCN`` state dict: ``backbone.*`` with 1 x 1 convs as (out, in, 1, 1) (every Linear
    except AAGCN's fc1c/fc2c) and ``cls_head.fc_cls.*``."""
    linear = {n for n, m in backbone.named_modules() if isinstance(m, torch.nn.Linear)
              and not n.endswith(("fc1c", "fc2c"))}
    out = {}
    for k, v in backbone.state_dict().items():
        mod, _, leaf = k.rpartition(".")
        if leaf == "weight" and mod in linear:
            v = v[:, :, None, None]
        out["backbone." + k] = v.clone()
    g = torch.Generator().manual_seed(5)
    out["cls_head.fc_cls.weight"] = torch.randn(num_classes, backbone.out_channels, generator=g)
    out["cls_head.fc_cls.bias"] = torch.randn(num_classes, generator=g)
    return out


GRAPHS = {"aagcn": SPATIAL, "ctrgcn": SPATIAL, "dgstgcn": RANDOM}
KW = {"aagcn": {}, "ctrgcn": {}, "dgstgcn": dict(gcn_ratio=0.25, gcn_ctr="T", gcn_ada="T")}


@pytest.mark.parametrize("kind", ["aagcn", "ctrgcn", "dgstgcn"])
def test_load_reproduces_reference_logits(kind, tmp_path):
    src = build(kind)
    randomise(src, 7)
    state = pyskl_state(src)
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": state, "meta": {"epoch": 1}}, path)
    graph = dict(GRAPHS[kind])
    graph.pop("seed", None)
    model = load_pyskl(str(path), kind, graph_cfg=graph, num_classes=5, **TINY, **KW[kind])
    x = torch.randn(2, 2, 11, 25, 3)
    P = {k[len("backbone."):]: v.double() for k, v in state.items() if k.startswith("backbone.")}
    feat = ref.backbone(kind, P, x.double(), [b.stride for b in model.backbone.blocks])
    logits = torch.nn.functional.linear(feat.mean((3, 4)).mean(1), state["cls_head.fc_cls.weight"].double(),
                                        state["cls_head.fc_cls.bias"].double())
    for backend in ("dense", "sparse", "scatter"):
        model.backbone.set_backend(backend)
        with torch.no_grad():
            # randomised weights make large activations: tolerances relative to the output's scale
            fs, ls = float(feat.abs().max()), float(logits.abs().max())
            torch.testing.assert_close(model.backbone(x).double(), feat, rtol=1e-3, atol=1e-5 * fs)
            torch.testing.assert_close(model(x).double(), logits, rtol=1e-4, atol=1e-5 * ls)


def test_layout_mode_and_graph_cfg_are_equivalent():
    src = build("aagcn")
    state = pyskl_state(src)
    a = load_pyskl(state, "aagcn", layout="nturgb+d", num_classes=5, **TINY)
    b = load_pyskl(state, "aagcn", graph_cfg=dict(layout="nturgb+d", mode="spatial"), num_classes=5, **TINY)
    x = torch.randn(1, 2, 8, 25, 3)
    torch.testing.assert_close(a(x), b(x))


def test_bad_input():
    state = pyskl_state(build("ctrgcn"))
    assert detect_backbone(state) == "ctrgcn"
    with pytest.raises(ValueError, match="model.*valid choices"):
        load_pyskl(state, "msg3d", layout="nturgb+d", num_classes=5)
    with pytest.raises(ValueError, match="holds a 'ctrgcn' backbone"):
        load_pyskl(state, "aagcn", layout="nturgb+d", num_classes=5, **TINY)
    with pytest.raises(ValueError, match="gcn_ratio"):
        load_pyskl(state, "ctrgcn", layout="nturgb+d", num_classes=5, gcn_ratio=0.5, **TINY)
    broken = {k: v for k, v in state.items() if "net.1.gcn1.alpha" not in k}
    broken["backbone.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"(?s)missing keys \(1\).*net.1.gcn1.alpha.*unexpected keys"):
        load_pyskl(broken, "ctrgcn", layout="nturgb+d", num_classes=5, **TINY)
    with pytest.raises(ValueError, match="holds a .ctrgcn. backbone"):
        load_pyskl_stgcn(state, layout="nturgb+d", mode="spatial", num_classes=5)


# ----------------------------------------------------------------------------------------------------------
# Optional real peer: mmaction2 1.1.0's AAGCN (same keys as PYSKL's; head `cls_head.fc`). Not a dependency:
# skipped when not importable (e.g. PYTHONPATH=/tmp/mmpeer after `pip install --no-deps --target /tmp/mmpeer
# mmengine==0.10.7 mmcv-lite==2.0.1 mmaction2==1.1.0` and their small pure-Python dependencies).
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["dense", "sparse", "scatter"])
@pytest.mark.parametrize("graph_cfg", [dict(layout="nturgb+d", mode="spatial"), dict(layout="coco", mode="spatial")])
def test_matches_mmaction2_aagcn(graph_cfg, backend, perturb_off_init):
    pytest.importorskip("mmaction", reason="mmaction2 (optional test peer) is not installed")
    from mmaction.models.backbones.aagcn import AAGCN as MMAAGCN
    from mmaction.models.heads import GCNHead as MMGCNHead

    torch.manual_seed(13)
    backbone = MMAAGCN(graph_cfg=graph_cfg, base_channels=8, num_stages=4, inflate_stages=[3], down_stages=[3])
    head = MMGCNHead(num_classes=5, in_channels=16)
    gen = perturb_off_init((backbone, head), 14)  # alpha and zero-init BNs too
    backbone.eval()
    head.eval()
    state = {"backbone." + k: v for k, v in backbone.state_dict().items()}
    state.update({"cls_head." + k: v for k, v in head.state_dict().items()})
    assert any(k.startswith("cls_head.fc.") for k in state)  # mmaction2 1.x's head name
    V = 17 if graph_cfg["layout"] == "coco" else 25
    x = torch.randn(2, 2, 12, V, 3, generator=gen)
    with torch.no_grad():
        ref_feat = backbone(x)
        ref_logits = head(ref_feat)
    ours = load_pyskl({"state_dict": state}, "aagcn", graph_cfg=graph_cfg, num_classes=5, backend=backend,
                      base_channels=8, num_stages=4, inflate_stages=(3,), down_stages=(3,))
    ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours.backbone(x), ref_feat, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours(x), ref_logits, atol=1e-5, rtol=1e-4)
    assert ref_logits.abs().max() > 0.05


def test_load_dgstgcn_mstcn_checkpoint(tmp_path):
    """The paper's sparse DG-STGCN / Assemble expert (PYSKL's mstcn, no add_coeff): tcn_type='mstcn' given or
    inferred from the keys; a dgmstcn checkpoint does not load into it."""
    src = build("dgstgcn", tcn_type="mstcn")
    randomise(src, 9)
    state = pyskl_state(src)
    graph = {k: v for k, v in RANDOM.items() if k != "seed"}
    x = torch.randn(2, 2, 11, 25, 3)
    P = {k[len("backbone."):]: v.double() for k, v in state.items() if k.startswith("backbone.")}
    feat = ref.backbone("dgstgcn", P, x.double(), [b.stride for b in src.blocks], tcn="mstcn")
    for kw in ({"tcn_type": "mstcn"}, {}):
        model = load_pyskl(state, "dgstgcn", graph_cfg=graph, num_classes=5, **TINY, **KW["dgstgcn"], **kw)
        assert all(b.tcn_type == "mstcn" for b in model.backbone.blocks)
        with torch.no_grad():
            torch.testing.assert_close(model.backbone(x).double(), feat, rtol=1e-3,
                                       atol=1e-5 * float(feat.abs().max()))
    dense = pyskl_state(build("dgstgcn"))
    with pytest.raises(ValueError, match=r"(?s)unexpected keys.*tcn.add_coeff"):
        load_pyskl(dense, "dgstgcn", graph_cfg=graph, num_classes=5, tcn_type="mstcn", **TINY, **KW["dgstgcn"])


def test_load_pyskl_takes_pretrained(tmp_path):
    """PYSKL's pretrained= reaches the backbone (read with weights_only=True); the checkpoint then wins."""
    src, other = build("ctrgcn"), build("ctrgcn")
    randomise(src, 1)
    randomise(other, 2)
    torch.save(other.state_dict(), tmp_path / "pre.pth")
    model = load_pyskl(pyskl_state(src), "ctrgcn", layout="nturgb+d", num_classes=5,
                       pretrained=str(tmp_path / "pre.pth"), **TINY)
    assert model.backbone.pretrained == str(tmp_path / "pre.pth")
    x = torch.randn(1, 2, 8, 25, 3)
    torch.testing.assert_close(model.backbone(x), src.eval()(x))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_pyskl(pyskl_state(src), "ctrgcn", layout="nturgb+d", num_classes=5,
                   pretrained=str(tmp_path / "missing.pth"), **TINY)
