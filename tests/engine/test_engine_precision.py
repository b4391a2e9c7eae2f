"""train.precision: bfloat16 autocast reaches the training step (CPU with native bf16), a clear error without it,
float32 batch-norm statistics / loss / masks / scores / thresholds, and the CLI option on the tiny recipe."""
from __future__ import annotations

import copy
import tomllib

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from pyg_sparse_stgcn.engine import trainer as trainer_mod
from pyg_sparse_stgcn.engine.config import DEFAULTS, ConfigError, apply_sets, validate_config
from pyg_sparse_stgcn.engine.trainer import PRECISIONS, Trainer, autocast_dtype, cpu_bf16_flags
from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier
from pyg_sparse_stgcn.sparsity import SparseGenerator

HAS_BF16 = bool(cpu_bf16_flags())


class Blobs(Dataset):
    def __init__(self, n: int = 32) -> None:
        g = torch.Generator().manual_seed(0)
        self.y = torch.arange(n) % 3
        self.x = torch.randn(3, 1, 4, 3, 2, generator=g)[self.y] * 2 + 0.5 * torch.randn(n, 1, 4, 3, 2, generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(24, 16)
        self.bn = nn.BatchNorm1d(16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x.flatten(1)))))


def _trainer(precision: str) -> Trainer:
    torch.manual_seed(0)
    return Trainer(Net(), Blobs(), epochs=1, batch_size=8, test_data=Blobs(8), collate_fn=default_collate,
                   progress=False, precision=precision)


@pytest.fixture
def bf16_cpu(monkeypatch):
    """Pretend the CPU has native bfloat16 (autocast itself runs on any CPU), so the test runs everywhere."""
    monkeypatch.setattr(trainer_mod, "cpu_bf16_flags", lambda *a, **k: ("avx512_bf16",))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_precision_reaches_autocast(bf16_cpu, precision):
    t = _trainer(precision)
    seen: dict[str, set] = {"fc1": set(), "bn_in": set(), "logits": set()}
    t.model.fc1.register_forward_hook(lambda m, a, out: seen["fc1"].add(out.dtype))
    t.model.bn.register_forward_pre_hook(lambda m, a: seen["bn_in"].add(a[0].dtype))
    t.model.register_forward_hook(lambda m, a, out: seen["logits"].add(out.dtype))
    losses = []
    orig = t._loss
    t._loss = lambda out, y: losses.append(orig(out, y)) or losses[-1]  # type: ignore[method-assign]
    t.train_epoch(0)
    want = torch.bfloat16 if precision == "bf16" else torch.float32
    assert seen["fc1"] == {want} and seen["logits"] == {want}
    # batch norm: float32 parameters and running statistics (its float32-accumulating kernel takes bf16 input)
    assert seen["bn_in"] == {want}
    assert t.model.bn.running_mean.dtype == t.model.bn.running_var.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in t.model.parameters())
    assert losses and all(loss.dtype == torch.float32 and torch.isfinite(loss) for loss in losses)
    assert not t.use_amp and t.scaler.is_enabled() is False


def test_bf16_float16_and_none_dtypes(bf16_cpu):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert trainer_mod.autocast_dtype("bf16", cpu) == torch.bfloat16
    assert trainer_mod.autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("fp32", cuda, amp=True) == torch.float16  # CUDA keeps the existing AMP
    assert autocast_dtype("fp32", cuda, amp=False) is None
    assert autocast_dtype("bf16", cuda) == torch.bfloat16
    with pytest.raises(ValueError, match="train.precision must be one of fp32, bf16, got 'fp16'"):
        autocast_dtype("fp16", cpu)


def test_bf16_without_native_support_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(trainer_mod, "cpu_bf16_flags", lambda *a, **k: ())
    with pytest.raises(ValueError, match=r"train.precision='bf16'.*avx512_bf16, amx_bf16.*train.precision='fp32'"):
        _trainer("bf16")
    cfg = copy.deepcopy(DEFAULTS)
    apply_sets(cfg, ["train.precision=bf16", "run.device=cpu"])
    with pytest.raises(ConfigError, match="avx512_bf16"):
        validate_config(cfg)
    _trainer("fp32")  # float32 needs nothing


def test_cpu_bf16_flags_reads_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile amx_bf16\n\n"
                   "processor\t: 1\nflags\t\t: fpu sse avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert cpu_bf16_flags(x86) == ("avx512_bf16", "amx_bf16")
    old = tmp_path / "old"
    old.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw\n")
    assert cpu_bf16_flags(old) == ()
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert cpu_bf16_flags(arm) == ("bf16",)
    assert cpu_bf16_flags(tmp_path / "missing") == ()


def test_masks_scores_and_thresholds_stay_float32_under_autocast():
    torch.manual_seed(0)
    backbone = STGCN({"layout": "coco", "mode": "stgcn_spatial"}, base_channels=8, num_stages=2,
                     inflate_stages=(), down_stages=(), backend="dense")
    model = SkeletonClassifier(backbone, GCNHead(4, 8))
    gen = SparseGenerator(model, 0.7, kinds=("weight", "edge"), scope="layer")
    gen.train()
    x = torch.randn(2, 1, 8, 17, 3)
    gen(x)  # float32 thresholds
    want_tau = {k: v.clone() for k, v in gen.thresholds().items()}
    want_masks = [m.current().clone() for m in gen._masks]
    conv = backbone.blocks[0].gcn
    want_w, want_gate = conv.conv.weight.clone(), conv.edge_gate.clone()
    with torch.no_grad():  # move the scores so that the thresholds must be recomputed under autocast
        for m in gen._masks:
            m.score.mul_(1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gen(x)
        w, gate = conv.conv.weight, conv.edge_gate
    assert out.dtype == torch.bfloat16  # autocast is on
    assert w.dtype == gate.dtype == torch.float32
    assert torch.equal(w, want_w) and torch.equal(gate, want_gate)
    for k, tau in gen.thresholds().items():
        assert tau.dtype == torch.float32 and torch.equal(tau, want_tau[k]), k
    for m, want in zip(gen._masks, want_masks):
        assert m.score.dtype == torch.float32 and torch.equal(m.current(), want)
    out.float().sum().backward()
    assert all(m.score.grad is not None and m.score.grad.dtype == torch.float32 for m in gen._masks)


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no native bfloat16 (avx512_bf16 / amx_bf16)")
def test_cli_precision_bf16_on_the_tiny_recipe(tmp_path):
    from tiny_config import TINY_DEMO, run_tiny

    (tmp_path / "tiny.toml").write_text(TINY_DEMO)
    run, res = run_tiny(tmp_path, "--data", "demo", "--mode", "train", "--set", "train.precision=bf16",
                        "--set", "train.epochs=1")
    assert run is not None
    cfg = tomllib.loads((run / "config.toml").read_text())
    assert cfg["train"]["precision"] == "bf16"


@pytest.mark.cuda
@pytest.mark.parametrize("precision,amp,dtype", [("fp32", True, torch.float16), ("bf16", False, torch.bfloat16)])
def test_cuda_mixed_precision_trains_a_sparse_generator(precision, amp, dtype):
    """CUDA AMP: float16 with gradient scaling, or bfloat16; the step runs in that dtype, parameters, BN
    statistics, masks and thresholds stay float32 on the GPU, the loss is finite and the weights move."""
    torch.manual_seed(0)
    backbone = STGCN({"layout": "coco", "mode": "stgcn_spatial"}, base_channels=8, num_stages=2,
                     inflate_stages=(), down_stages=(), backend="auto")
    gen = SparseGenerator(SkeletonClassifier(backbone, GCNHead(3, 8)), 0.7, kinds=("weight", "edge"), scope="layer")
    data = [(torch.randn(1, 8, 17, 3), torch.tensor(i % 3)) for i in range(16)]
    t = Trainer(gen, data, epochs=2, batch_size=8, collate_fn=default_collate, progress=False, amp=amp,
                precision=precision, device="cuda", lr=0.05)
    assert t.use_amp is amp and t.scaler.is_enabled() is amp
    seen: set = set()
    backbone.blocks[0].register_forward_hook(lambda m, a, out: seen.add(out.dtype))
    before = copy.deepcopy(gen.state_dict())
    t.fit()
    assert seen == {dtype}
    after = gen.state_dict()
    assert all(v.is_cuda for v in after.values())
    assert all(v.dtype == before[k].dtype for k, v in after.items())  # nothing left in half precision
    assert any(not torch.equal(v, before[k]) for k, v in after.items() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    for tau in gen.thresholds().values():
        assert tau.dtype == torch.float32 and tau.is_cuda
    gen.eval()
    for m in gen._masks:
        assert m.score.dtype == torch.float32 and m.score.is_cuda
        kept = m.current()[m.mask].float().mean().item()  # of the real (maskable) entries
        assert kept == pytest.approx(0.3, abs=0.05)


@pytest.mark.cuda
@pytest.mark.slow
@pytest.mark.parametrize("mode,sparsity", [("generate", 0.95), ("ensemble", (0.5 + 0.9) / 2)])
def test_cli_on_cuda_with_amp(tmp_path, mode, sparsity):
    """The tiny recipe end to end on the GPU (float16 AMP, the default there): the masks reach their sparsity
    and the test accuracy is reported."""
    import json

    from tiny_config import TINY_DEMO, run_tiny

    (tmp_path / "tiny.toml").write_text(TINY_DEMO)
    run, _ = run_tiny(tmp_path, "--data", "demo", "--mode", mode, "--device", "cuda", "--set", "dense.baseline=false")
    assert run is not None
    s = json.loads((run / "summary.json").read_text())
    assert s["weight_sparsity"] == pytest.approx(sparsity, abs=1e-2)
    assert 0.0 <= s["top1"] <= 1.0
