"""Layer benchmark: ``STGCNConv`` per backend vs a PYSKL-style channels-first ``Conv2d`` + ``einsum`` unit.

For every channel setting the reference module gets the same weights as our layer and the outputs are
checked equal first (train-mode forward, ≤ 1e-4 abs after batch norm). Then each is timed, the reference and
the backends round-robin (one run of each per round, so that a changing load on a shared machine hits all
alike; ``scatter``, far slower, is timed separately with fewer runs):

* ``fwd``: inference forward (eval mode, ``torch.no_grad``);
* ``fwd+bwd``: training forward and backward (train mode, ``out.backward(grad)``).

Our layer runs on channels-last ``(B, T, V, C)`` input, the reference on PYSKL's channels-first
``(B, C, T, V)`` — each in the layout its network keeps between layers. The reference is PYSKL's code path
(``Conv2d(C, K C, 1)`` → ``view`` → ``einsum('nkctv,kvw->nctw')`` → ``contiguous`` → BN → ReLU) and is never
modified to be slower. ``speedup`` = reference median / backend median (> 1 means ours is faster). When
mmaction2 is importable (not a dependency), its real ``unit_gcn`` with the same weights is checked and timed
too, as ``mmaction2_unit_gcn``.

Usage (from the repository root)::

    python benchmarks/bench_layers.py            # B=64, T=100, V=25; 64->64 and 256->256; CPU (+ CUDA)
    python benchmarks/bench_layers.py --small    # quick run on small shapes (the Makefile demo)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, machine_info, time_fn, time_interleaved, write_results  # noqa: E402

from pyg_sparse_stgcn.graph import SkeletonGraph  # noqa: E402
from pyg_sparse_stgcn.nn import STGCNConv  # noqa: E402
from pyg_sparse_stgcn.nn.conv import auto_choices, clear_auto_cache  # noqa: E402


class PYSKLReferenceGCN(nn.Module):
    """PYSKL ``unit_gcn`` (adaptive='importance', conv_pos='pre') on channels-first ``(B, C, T, V)``."""

    def __init__(self, conv: STGCNConv) -> None:
        super().__init__()
        K = conv.num_subsets
        self.K = K
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels * K, 1)
        self.bn = nn.BatchNorm2d(conv.out_channels)
        self.act = nn.ReLU()
        with torch.no_grad():
            self.conv.weight.copy_(conv.conv.weight[:, :, None, None])
            self.conv.bias.copy_(conv.conv.bias)
            self.bn.weight.copy_(conv.bn.weight)
            self.bn.bias.copy_(conv.bn.bias)
        self.register_buffer("A", conv.A.detach().clone())
        self.PA = nn.Parameter(conv.PA.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, v = x.shape
        x = self.conv(x)
        x = x.view(n, self.K, -1, t, v)
        x = torch.einsum("nkctv,kvw->nctw", (x, self.A * self.PA)).contiguous()
        return self.act(self.bn(x))


def mmaction2_unit_gcn(conv: STGCNConv) -> nn.Module | None:
    """mmaction2 1.x's ``unit_gcn`` with our layer's weights (optional real peer; None if not installed)."""
    try:
        from mmaction.models.utils.gcn_utils import unit_gcn
    except ImportError:
        return None
    peer = unit_gcn(conv.in_channels, conv.out_channels, conv.A.detach().cpu().clone(),
                    adaptive=conv.adaptive, conv_pos=conv.conv_pos)
    state = {k: v.detach().cpu() for k, v in conv.state_dict().items()}
    state["conv.weight"] = state["conv.weight"][:, :, None, None]
    peer.load_state_dict(state)
    return peer


def _fwd(module: nn.Module, x: torch.Tensor):
    def run():
        with torch.no_grad():
            module(x)
    return run


def _with_backend(conv: STGCNConv, backend: str, x: torch.Tensor, grad: torch.Tensor | None):
    def run():
        conv.backend = backend
        if grad is None:
            with torch.no_grad():
                conv(x)
        else:
            conv.zero_grad(set_to_none=True)
            x.grad = None
            conv(x).backward(grad)
    return run


def _fwd_bwd(module: nn.Module, x: torch.Tensor, grad: torch.Tensor):
    def run():
        module.zero_grad(set_to_none=True)
        x.grad = None
        out = module(x)
        out.backward(grad)
    return run


def bench_device(device: torch.device, B: int, T: int, channels: list[int], backends: list[str], repeats: int,
                 scatter_repeats: int, edge_sparsity: float, use_peer: bool) -> tuple[list[dict], list[dict]]:
    graph = SkeletonGraph("nturgb+d", "stgcn_spatial")
    V = graph.num_nodes
    results, checks = [], []
    for C in channels:
        torch.manual_seed(0)
        conv = STGCNConv(C, C, graph, adaptive="importance", conv_pos="pre", backend="dense").to(device)
        with torch.no_grad():
            conv.PA.uniform_(0.5, 1.5)  # a trained-looking importance, identical in both modules
        ref = PYSKLReferenceGCN(conv).to(device)
        # inputs require grad, as for every layer but the first in a network
        x_last = torch.randn(B, T, V, C, device=device).requires_grad_()
        x_first = x_last.detach().permute(0, 3, 1, 2).contiguous().requires_grad_()
        grad_last = torch.randn(B, T, V, C, device=device)
        grad_first = grad_last.permute(0, 3, 1, 2).contiguous()

        # equality first (train mode: batch statistics in both)
        conv.train()
        ref.train()
        with torch.no_grad():
            ours = conv(x_last)
            theirs = ref(x_first).permute(0, 2, 3, 1)
        diff = float((ours - theirs).abs().max())
        check = {"device": str(device), "channels": C, "max_abs_diff_vs_reference": diff}
        if diff > 1e-4:
            raise SystemExit(f"outputs differ from the PYSKL-style reference by {diff:.3g} (C={C}); "
                             "not timing")
        peer = mmaction2_unit_gcn(conv) if use_peer else None
        if peer is not None:
            peer = peer.to(device).train()
            with torch.no_grad():
                check["max_abs_diff_vs_mmaction2_unit_gcn"] = float((peer(x_first).permute(0, 2, 3, 1) - ours)
                                                                    .abs().max())
            if check["max_abs_diff_vs_mmaction2_unit_gcn"] > 1e-4:
                raise SystemExit("outputs differ from mmaction2's unit_gcn; not timing")
        checks.append(check)

        def record(name: str, mode: str, timing: dict, ref_median: float | None, extra: dict | None = None,
                   C: int = C):
            row = {"device": str(device), "B": B, "T": T, "V": V, "in_channels": C, "out_channels": C,
                   "impl": name, "mode": mode, "median_ms": round(timing["median_s"] * 1e3, 3),
                   "min_ms": round(timing["min_s"] * 1e3, 3),
                   "times_ms": [round(t * 1e3, 3) for t in timing["times_s"]]}
            if ref_median is not None:
                row["speedup_vs_reference"] = round(ref_median / timing["median_s"], 3)
            row.update(extra or {})
            results.append(row)
            print(f"[{device}] C={C:4d} {mode:8s} {name:28s} {row['median_ms']:10.1f} ms"
                  + (f"  x{row['speedup_vs_reference']:.2f}" if ref_median is not None else ""), flush=True)

        for mode in ("fwd", "fwd+bwd"):
            train = mode == "fwd+bwd"
            ref.train(train)
            conv.train(train)
            fns = {"pyskl_reference": _fwd(ref, x_first) if not train else _fwd_bwd(ref, x_first, grad_first)}
            if peer is not None:
                peer.train(train)
                fns["mmaction2_unit_gcn"] = _fwd(peer, x_first) if not train else _fwd_bwd(peer, x_first,
                                                                                          grad_first)
            for backend in [b for b in backends if b != "scatter"]:
                fns[backend] = _with_backend(conv, backend, x_last, grad_last if train else None)
            before = set(auto_choices())
            timings = time_interleaved(fns, repeats=repeats, warmup=1, device=device)
            picked = sorted({v for k, v in auto_choices().items() if k not in before})
            ref_median = timings["pyskl_reference"]["median_s"]
            for name, timing in timings.items():
                extra = {"auto_picked": picked} if name == "auto" else None
                if name == "mmaction2_unit_gcn":
                    extra = {"note": "real peer: mmaction2 1.1.0 unit_gcn, same weights"}
                record(name, mode, timing, None if name == "pyskl_reference" else ref_median, extra)
            if "scatter" in backends:  # far slower: timed on its own, fewer runs
                fn = _with_backend(conv, "scatter", x_last, grad_last if train else None)
                timing = time_fn(fn, repeats=scatter_repeats, warmup=1, device=device)
                record("scatter", mode, timing, ref_median)

            if edge_sparsity > 0:
                # a fixed edge mask gating this fraction of the edges off: only the sparse operator shrinks
                gate = conv.enable_edge_gate()
                gen = torch.Generator().manual_seed(1)
                with torch.no_grad():
                    gate.copy_((torch.rand(gate.shape, generator=gen) >= edge_sparsity).float().to(device))
                fns = {"pyskl_reference": fns["pyskl_reference"]}
                for backend in ("dense", "sparse", "auto"):
                    fns[backend] = _with_backend(conv, backend, x_last, grad_last if train else None)
                before = set(auto_choices())
                timings = time_interleaved(fns, repeats=repeats, warmup=1, device=device)
                picked = sorted({v for k, v in auto_choices().items() if k not in before})
                ref_median = timings["pyskl_reference"]["median_s"]
                for name, timing in timings.items():
                    if name == "pyskl_reference":
                        continue
                    extra = {"edge_sparsity": edge_sparsity,
                             "reference_median_ms": round(ref_median * 1e3, 3)}
                    if name == "auto":
                        extra["auto_picked"] = picked
                    record(f"{name}@edge_sparsity={edge_sparsity}", mode, timing, ref_median, extra)
                del conv.edge_gate
                conv._edge_gate_enabled = False
    return results, checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="small shapes (B=8, T=20) for a quick run")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 5; 3 small)")
    parser.add_argument("--channels", type=int, nargs="+", default=[64, 256], help="C_in = C_out values")
    parser.add_argument("--backends", nargs="+", default=["dense", "sparse", "scatter", "auto"],
                        choices=["dense", "sparse", "scatter", "auto"])
    parser.add_argument("--devices", nargs="+", default=None,
                        help="cpu and/or cuda (default: cpu, plus cuda when available)")
    parser.add_argument("--edge-sparsity", type=float, default=0.9,
                        help="also time dense/sparse/auto with this fraction of edges gated off (0 = skip)")
    parser.add_argument("--out", type=Path, default=None, help="output JSON (default: results/layers.json, "
                        "results/layers_small.json with --small)")
    parser.add_argument("--no-peer", action="store_true",
                        help="do not time mmaction2's unit_gcn even when mmaction2 is importable")
    parser.add_argument("--note", default="", help="free-text note stored in the JSON (e.g. machine load)")
    args = parser.parse_args(argv)

    B, T = (8, 20) if args.small else (64, 100)
    repeats = args.repeats or (3 if args.small else 5)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    out = args.out or RESULTS_DIR / ("layers_small.json" if args.small else "layers.json")
    clear_auto_cache()
    payload = {"benchmark": "bench_layers", "meta": machine_info(),
               "config": {"B": B, "T": T, "V": 25, "layout": "nturgb+d", "graph_mode": "stgcn_spatial",
                          "adaptive": "importance", "conv_pos": "pre", "channels": args.channels,
                          "repeats": repeats, "statistic": "median",
                          "fwd": "eval mode, torch.no_grad",
                          "fwd+bwd": "train mode, forward + backward (input, weight and edge gradients)",
                          "edge_sparsity_extra": args.edge_sparsity},
               "note": args.note, "results": [], "checks": []}
    for dev in devices:
        device = torch.device(dev)
        if device.type == "cuda" and not torch.cuda.is_available():
            print("CUDA requested but not available; skipped", file=sys.stderr)
            continue
        res, chk = bench_device(device, B, T, args.channels, args.backends, repeats, max(1, min(2, repeats)),
                                args.edge_sparsity, not args.no_peer)
        payload["results"] += res
        payload["checks"] += chk
    try:
        import mmaction

        payload["meta"]["mmaction2"] = mmaction.__version__
    except ImportError:
        payload["meta"]["mmaction2"] = None
    payload["auto_choices"] = [{"key": [str(k) for k in key], "backend": v}
                               for key, v in auto_choices().items()]
    payload["meta"]["load_average_at_end"] = machine_info()["load_average_1_5_15"]
    write_results(out, payload)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
