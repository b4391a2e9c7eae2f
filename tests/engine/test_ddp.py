"""DDP through torchrun: 2 CPU processes (gloo) give the same weights as one process on the same global batch.

The worker half of this file runs under ``python -m torch.distributed.run`` (``__main__`` below).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from tiny_config import TINY_DEMO
from torch.utils.data import Dataset, default_collate

REPO = Path(__file__).resolve().parents[2]


class Skeletons(Dataset):
    """Deterministic 3-class skeleton clips (N, M=2, T=8, V=18, C=3) on the OpenPose layout."""

    def __init__(self, n: int = 32) -> None:
        g = torch.Generator().manual_seed(7)
        self.y = torch.arange(n) % 3
        base = torch.randn(3, 2, 8, 18, 3, generator=g)
        self.x = base[self.y] + 0.5 * torch.randn(n, 2, 8, 18, 3, generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def train_once(out: str, sync_bn: bool = True) -> None:
    """Train a tiny ST-GCN for 2 epochs (global batch 8) and save the final state dict (rank 0)."""
    from pyg_sparse_stgcn.engine import distributed as D
    from pyg_sparse_stgcn.engine.trainer import Trainer
    from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier

    D.init_distributed("cpu")
    torch.manual_seed(0)
    backbone = STGCN({"layout": "openpose", "mode": "spatial"}, in_channels=3, base_channels=8, num_stages=3,
                     inflate_stages=(3,), down_stages=(3,), backend="dense")
    model = SkeletonClassifier(backbone, GCNHead(3, backbone.out_channels))
    t = Trainer(model, Skeletons(), epochs=2, batch_size=8, collate_fn=default_collate, progress=False,
                sync_bn=sync_bn, lr=0.05, seed=3)
    t.fit()
    if D.is_main():
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, out)
    D.cleanup_distributed()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group with its output in files, and wait for ``cmd`` itself, not for
    every process holding its output open: a worker that outlives torchrun (it sits in a session of its own)
    cannot hold the test. On a timeout, and afterwards, every process still running this command line is
    killed (torchrun's workers too)."""
    with open(os.devnull, "rb") as stdin, tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(cmd, env=_env(), stdin=stdin, stdout=out, stderr=err, text=True,
                             start_new_session=True)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        finally:
            _kill_leftovers(cmd[-1])
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if p.returncode == -signal.SIGKILL:
        pytest.fail(f"timed out after {timeout} s: {' '.join(cmd)}\n{stderr[-2000:]}")
    return subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr)


def _kill_leftovers(marker: str) -> None:
    """SIGKILL every process whose command line holds ``marker`` (the run's unique output path)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    # the worker runs this file as a script: the repository and tests/ (tiny_config) on its path
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.slow
def test_two_cpu_processes_match_one_process(tmp_path):
    single, ddp = tmp_path / "single.pt", tmp_path / "ddp.pt"
    r = _run([sys.executable, __file__, "--worker", str(single)])
    assert r.returncode == 0, r.stderr[-3000:]
    r = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
              "127.0.0.1", "--master_port", str(_free_port()), __file__, "--worker", str(ddp)])
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    a = torch.load(single, weights_only=True)
    b = torch.load(ddp, weights_only=True)
    assert a.keys() == b.keys()
    moved = 0
    init = _init_state()
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=2e-5, msg=k)
            moved += int(not torch.allclose(a[k], init[k]))
        else:
            assert torch.equal(a[k], b[k]), k
    assert moved > 10  # training really changed the weights


def _init_state() -> dict[str, torch.Tensor]:
    from pyg_sparse_stgcn.nn import STGCN, GCNHead, SkeletonClassifier

    torch.manual_seed(0)
    backbone = STGCN({"layout": "openpose", "mode": "spatial"}, in_channels=3, base_channels=8, num_stages=3,
                     inflate_stages=(3,), down_stages=(3,), backend="dense")
    return SkeletonClassifier(backbone, GCNHead(3, backbone.out_channels)).state_dict()


def test_distributed_batchnorm_single_process_is_plain_batchnorm():
    from pyg_sparse_stgcn.engine.distributed import DistributedBatchNorm, convert_sync_batchnorm
    from pyg_sparse_stgcn.nn._utils import BatchNormLast

    torch.manual_seed(0)
    mods = torch.nn.ModuleList([BatchNormLast(4), torch.nn.BatchNorm2d(4)])
    ref = [torch.nn.BatchNorm1d(4), torch.nn.BatchNorm2d(4)]
    convert_sync_batchnorm(mods)
    assert all(isinstance(m, DistributedBatchNorm) for m in mods)
    assert type(mods[0]).__name__ == "DistributedBatchNormLast"
    x_last, x_first = torch.randn(2, 3, 5, 4), torch.randn(2, 4, 3, 5)
    torch.testing.assert_close(mods[0](x_last), ref[0](x_last.reshape(-1, 4)).view(2, 3, 5, 4))
    torch.testing.assert_close(mods[1](x_first), ref[1](x_first))
    assert list(mods.state_dict()) == [f"{i}.{k}" for i, r in enumerate(ref) for k in r.state_dict()]


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        train_once(sys.argv[2])


# the CLI tests' tiny recipe, one epoch, with BatchNorm synchronised across the processes
TINY = TINY_DEMO.replace("epochs = 2\n", "epochs = 1\nsync_bn = true\n")


def _torchrun_tiny(tmp_path, mode: str):
    """``--mode mode`` of the tiny recipe through scripts/run.py under 2 gloo processes: its one run directory."""
    (tmp_path / "tiny.toml").write_text(TINY)
    r = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
              "127.0.0.1", "--master_port", str(_free_port()), str(REPO / "scripts" / "run.py"), "--config",
              str(tmp_path / "tiny.toml"), "--data", "demo", "--root", str(tmp_path / "demo"), "--out",
              str(tmp_path / "runs"), "--mode", mode, "--device", "cpu"])
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-3000:])
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and r.stdout.count("run directory:") == 1
    return runs[0]


@pytest.mark.slow
def test_cli_under_torchrun_writes_one_run_directory(tmp_path):
    """2 gloo processes through scripts/run.py: rank 0 generates the data first, one run directory."""
    import json

    runs = [_torchrun_tiny(tmp_path, "generate")]
    s = json.loads((runs[0] / "summary.json").read_text())
    assert s["weight_sparsity"] == pytest.approx(0.95, abs=1e-3) and "dense" in s


@pytest.mark.slow
def test_lottery_under_torchrun_reports_the_accuracy_of_every_level(tmp_path):
    """IMP under 2 gloo processes: every level's metrics (written by rank 0) carry the test accuracy, which
    every rank's training function returns (it used to be None on rank 1, which also wrote the files)."""
    import json

    runs = [_torchrun_tiny(tmp_path, "lottery")]
    for level in (0, 1):
        m = json.loads((runs[0] / "lottery" / f"level_{level}" / "metrics.json").read_text())
        assert m["top1"] is not None and 0.0 <= m["top1"] <= 1.0, m
    s = json.loads((runs[0] / "summary.json").read_text())
    assert s["top1"] is not None and s["weight_sparsity"] == pytest.approx(0.2, abs=1e-3)
