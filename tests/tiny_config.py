"""The tiny demo recipe shared by the CLI and DDP tests (seconds per mode); its one text is
:mod:`pyg_sparse_stgcn.engine.tiny_demo` (also used by scripts/make_analysis_figures.py)."""
from pathlib import Path

from click.testing import CliRunner

from pyg_sparse_stgcn.cli import main
from pyg_sparse_stgcn.engine.tiny_demo import TINY_DEMO, TINY_MODEL

__all__ = ["TINY_DEMO", "TINY_MODEL", "run_tiny", "to_pyskl_state"]


def run_tiny(env: Path, *args: str, ok: bool = True):
    """Run the CLI on the tiny recipe ``env/tiny.toml`` (data under ``env/demo``, runs under ``env/runs``);
    with ``ok``, assert it succeeded. Returns ``(run directory, CliRunner result)``; the directory is
    :obj:`None` when none was reported (a failure, or a run stopped early to be resumed)."""
    res = CliRunner().invoke(main, ["--config", str(env / "tiny.toml"), "--root", str(env / "demo"),
                                    "--out", str(env / "runs"), *args], catch_exceptions=False)
    if ok:
        assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("run directory: ")]
    return (Path(lines[-1].split(": ", 1)[1]) if lines else None), res


def to_pyskl_state(ours: dict) -> dict:
    """Our ST-GCN state dict in PYSKL's naming and shapes: ``cls_head.fc_cls.*`` for ``head.fc_cls.*`` and
    (out, in, 1, 1) 1x1-conv weights for the backbone's 2-D ones."""
    pyskl = {}
    for k, v in ours.items():
        if k.startswith("head.fc_cls."):
            pyskl["cls_head.fc_cls." + k[len("head.fc_cls."):]] = v
        elif k.startswith("backbone.") and k.endswith(".weight") and v.dim() == 2:
            pyskl[k] = v[:, :, None, None]  # PYSKL's 1x1 Conv2d
        else:
            pyskl[k] = v
    return pyskl
