r"""A native CPU kernel for the sparse weight products of exported models: :func:`spmm_shifted`.

PyTorch's CSR product on CPU (MKL sparse BLAS) reaches about 15 GFLOP/s of useful work on one core of the
development CPU, against 170 GFLOP/s of dense SGEMM: at 95 % sparsity it barely beats the dense product.
This kernel is output-stationary: for each output row and each block of up to 64 columns it keeps the
output in vector registers while it adds :math:`w_e \mathbf{x}_{\text{src}(e)}` for the row's non-zeros
:math:`e`, reading every source row as a *shifted* slice of one input buffer (and prefetching the source
rows of the non-zeros a few entries ahead). Columns go in blocks (:func:`column_block`), and within a block
the rows may run in an order (:func:`row_order`) in which rows reading the same source rows follow each
other, so that the sources stay in cache while those rows are summed over them.
The shift is what lets the :math:`k` taps of a temporal convolution be one sparse matrix over the
:math:`(C_{in}, T B V)` activation with no copies (tap :math:`j` of input channel :math:`c` is the row
:math:`c` shifted by :math:`j` frames). Bias, a residual and the ReLU are applied while the block is in
registers.

The C source below is compiled once per machine (:func:`pyg_sparse_stgcn.cbuild.load_library`: the system
C compiler, ``-O3 -march=native -fopenmp``, cached in ``$PYG_SPARSE_STGCN_CACHE``). Without a compiler, or
with ``PYG_SPARSE_STGCN_NATIVE=0``, :func:`available` is :obj:`False` and the exported models use PyTorch's
CSR products instead (same results, slower).
"""
from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...cbuild import load_library

__all__ = ["available", "spmm_shifted", "row_order", "split_phases", "sparse_rows", "int32_offsets",
           "column_block", "Recording", "record", "COLUMN_BLOCK"]

_SOURCE = r"""
#include <stdint.h>
#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

/* out[0:w] = b + sum_e v[e] * x[off[e] + 0:w]  (+ res[0:w]), then ReLU if relu; w <= 64 */
#ifdef __AVX512F__
static inline __mmask16 tail(int64_t k) {
  return k >= 16 ? (__mmask16)0xFFFF : k <= 0 ? (__mmask16)0 : (__mmask16)((1u << k) - 1u);
}
static inline __m512 epi(__m512 a, __mmask16 m, const float *res, int relu) {
  if (res) a = _mm512_add_ps(a, _mm512_maskz_loadu_ps(m, res));
  if (relu) a = _mm512_max_ps(a, _mm512_setzero_ps());
  return a;
}
#define LD(M, P) _mm512_maskz_loadu_ps(M, P)
/* the source rows of the non-zeros PF ahead are fetched into L1 while this one is summed: each non-zero
   reads a different row, which the hardware prefetcher cannot predict */
#define PF 8
static inline void fetch(const float *s, int lines) {
  for (int i = 0; i < lines; ++i) _mm_prefetch((const char *)(s + 16 * i), _MM_HINT_T0);
}
static inline void row64(const float *x, const int32_t *off, const float *v, int64_t e0, int64_t e1,
                         int64_t w, float b, float *out, const float *res, int relu) {
  const __mmask16 m0 = tail(w), m1 = tail(w - 16), m2 = tail(w - 32), m3 = tail(w - 48);
  /* two sets of 4 accumulators (even / odd non-zeros) hide the FMA latency */
  __m512 a0 = _mm512_set1_ps(b), a1 = a0, a2 = a0, a3 = a0;
  __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
  int64_t e = e0;
  for (; e + 1 < e1; e += 2) {
    const float *s = x + off[e], *t = x + off[e + 1];
    if (e + PF + 1 < e1) { fetch(x + off[e + PF], 4); fetch(x + off[e + PF + 1], 4); }
    const __m512 p = _mm512_set1_ps(v[e]), q = _mm512_set1_ps(v[e + 1]);
    a0 = _mm512_fmadd_ps(p, LD(m0, s), a0); a1 = _mm512_fmadd_ps(p, LD(m1, s + 16), a1);
    a2 = _mm512_fmadd_ps(p, LD(m2, s + 32), a2); a3 = _mm512_fmadd_ps(p, LD(m3, s + 48), a3);
    c0 = _mm512_fmadd_ps(q, LD(m0, t), c0); c1 = _mm512_fmadd_ps(q, LD(m1, t + 16), c1);
    c2 = _mm512_fmadd_ps(q, LD(m2, t + 32), c2); c3 = _mm512_fmadd_ps(q, LD(m3, t + 48), c3);
  }
  if (e < e1) {
    const float *s = x + off[e]; const __m512 p = _mm512_set1_ps(v[e]);
    a0 = _mm512_fmadd_ps(p, LD(m0, s), a0); a1 = _mm512_fmadd_ps(p, LD(m1, s + 16), a1);
    a2 = _mm512_fmadd_ps(p, LD(m2, s + 32), a2); a3 = _mm512_fmadd_ps(p, LD(m3, s + 48), a3);
  }
  _mm512_mask_storeu_ps(out, m0, epi(_mm512_add_ps(a0, c0), m0, res, relu));
  _mm512_mask_storeu_ps(out + 16, m1, epi(_mm512_add_ps(a1, c1), m1, res ? res + 16 : 0, relu));
  _mm512_mask_storeu_ps(out + 32, m2, epi(_mm512_add_ps(a2, c2), m2, res ? res + 32 : 0, relu));
  _mm512_mask_storeu_ps(out + 48, m3, epi(_mm512_add_ps(a3, c3), m3, res ? res + 48 : 0, relu));
}
/* the same for a block of 32 < w <= 48 columns: three loads per non-zero, not four */
static inline void row48(const float *x, const int32_t *off, const float *v, int64_t e0, int64_t e1,
                         int64_t w, float b, float *out, const float *res, int relu) {
  const __mmask16 m2 = tail(w - 32);
  __m512 a0 = _mm512_set1_ps(b), a1 = a0, a2 = a0;
  __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0;
  int64_t e = e0;
  for (; e + 1 < e1; e += 2) {
    const float *s = x + off[e], *t = x + off[e + 1];
    if (e + PF + 1 < e1) { fetch(x + off[e + PF], 3); fetch(x + off[e + PF + 1], 3); }
    const __m512 p = _mm512_set1_ps(v[e]), q = _mm512_set1_ps(v[e + 1]);
    a0 = _mm512_fmadd_ps(p, _mm512_loadu_ps(s), a0); a1 = _mm512_fmadd_ps(p, _mm512_loadu_ps(s + 16), a1);
    a2 = _mm512_fmadd_ps(p, LD(m2, s + 32), a2);
    c0 = _mm512_fmadd_ps(q, _mm512_loadu_ps(t), c0); c1 = _mm512_fmadd_ps(q, _mm512_loadu_ps(t + 16), c1);
    c2 = _mm512_fmadd_ps(q, LD(m2, t + 32), c2);
  }
  if (e < e1) {
    const float *s = x + off[e]; const __m512 p = _mm512_set1_ps(v[e]);
    a0 = _mm512_fmadd_ps(p, _mm512_loadu_ps(s), a0); a1 = _mm512_fmadd_ps(p, _mm512_loadu_ps(s + 16), a1);
    a2 = _mm512_fmadd_ps(p, LD(m2, s + 32), a2);
  }
  const __mmask16 all = (__mmask16)0xFFFF;
  _mm512_storeu_ps(out, epi(_mm512_add_ps(a0, c0), all, res, relu));
  _mm512_storeu_ps(out + 16, epi(_mm512_add_ps(a1, c1), all, res ? res + 16 : 0, relu));
  _mm512_mask_storeu_ps(out + 32, m2, epi(_mm512_add_ps(a2, c2), m2, res ? res + 32 : 0, relu));
}
/* the same for a block of w <= 16 columns (a row's tail): one load and one FMA per non-zero, not four */
static inline void row16(const float *x, const int32_t *off, const float *v, int64_t e0, int64_t e1,
                         int64_t w, float b, float *out, const float *res, int relu) {
  const __mmask16 m0 = tail(w);
  __m512 a0 = _mm512_set1_ps(b), c0 = _mm512_setzero_ps(), a1 = c0, c1 = c0;
  int64_t e = e0;
  for (; e + 3 < e1; e += 4) {
    a0 = _mm512_fmadd_ps(_mm512_set1_ps(v[e]), LD(m0, x + off[e]), a0);
    c0 = _mm512_fmadd_ps(_mm512_set1_ps(v[e + 1]), LD(m0, x + off[e + 1]), c0);
    a1 = _mm512_fmadd_ps(_mm512_set1_ps(v[e + 2]), LD(m0, x + off[e + 2]), a1);
    c1 = _mm512_fmadd_ps(_mm512_set1_ps(v[e + 3]), LD(m0, x + off[e + 3]), c1);
  }
  for (; e < e1; ++e) a0 = _mm512_fmadd_ps(_mm512_set1_ps(v[e]), LD(m0, x + off[e]), a0);
  _mm512_mask_storeu_ps(out, m0, epi(_mm512_add_ps(_mm512_add_ps(a0, c0), _mm512_add_ps(a1, c1)), m0, res, relu));
}
#else
static inline void row64(const float *x, const int32_t *off, const float *v, int64_t e0, int64_t e1,
                         int64_t w, float b, float *out, const float *res, int relu) {
  float acc[64];
  for (int64_t i = 0; i < w; ++i) acc[i] = b;
  for (int64_t e = e0; e < e1; ++e) {
    const float *s = x + off[e]; const float a = v[e];
    for (int64_t i = 0; i < w; ++i) acc[i] += a * s[i];
  }
  if (res) for (int64_t i = 0; i < w; ++i) acc[i] += res[i];
  if (relu) for (int64_t i = 0; i < w; ++i) acc[i] = acc[i] > 0.f ? acc[i] : 0.f;
  memcpy(out, acc, (size_t)w * sizeof(float));
}
#endif
#ifndef __AVX512F__
#define row16 row64  /* the portable row64 already loops over w columns only */
#define row48 row64
#endif

/* dst[q, o, i, :] = src[o, i * s + q, :] (rows of `inner` floats) for q < s, i < min(steps, ceil((len - q) / s)):
   the s phases of every outer row of `len` frames (a strided temporal convolution reads each phase as shifts) */
void split_phases(float *dst, const float *src, int64_t outer, int64_t len, int64_t steps, int64_t s,
                  int64_t inner, int threads) {
  int64_t nt = threads < 1 ? 1 : threads;
  #pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t q = 0; q < s; ++q) {
      float *d = dst + (q * outer + o) * steps * inner;
      const float *f = src + (o * len + q) * inner;
      const int64_t m = steps < (len - q + s - 1) / s ? steps : (len - q + s - 1) / s;
      if (inner == 2) {  /* a batch of one: two persons per frame, one 64-bit word */
        uint64_t *d2 = (uint64_t *)d; const uint64_t *f2 = (const uint64_t *)f;
        for (int64_t i = 0; i < m; ++i) memcpy(d2 + i, f2 + i * s, 8);
      } else if (inner == 1) {
        for (int64_t i = 0; i < m; ++i) d[i] = f[i * s];
      } else {
        for (int64_t i = 0; i < m; ++i) memcpy(d + i * inner, f + i * s * inner, (size_t)inner * sizeof(float));
      }
    }
}

/* The first step of thread t of nt: the rows are split so that every thread gets about the same work, a row
   costing its non-zeros plus one (its epilogue); work[k] is the cost of the rows before step k, or, without
   `work` (rows in their own order), rowptr[k] - rowptr[0] + k. */
static int64_t cost(const int64_t *rowptr, const int64_t *work, int64_t k) {
  return work ? work[k] : rowptr[k] - rowptr[0] + k;
}
static int64_t split(const int64_t *rowptr, const int64_t *work, int64_t rows, int64_t t, int64_t nt) {
  if (t >= nt) return rows;
  const int64_t goal = cost(rowptr, work, rows) * t / nt;
  int64_t lo = 0, hi = rows;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (cost(rowptr, work, mid) < goal) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/* For every row r < rows, group g < groups and column j < n:
     y[r*ldy + g*gy + j] = bias[r] + sum_{e in row r} vals[e] * x[off[e] + g*gx + j]
                           (+ res[r*ldr + g*gy + j]), then ReLU if relu;
   and y[r*ldy + g*gy + j] = 0 for the `pad` columns on each side (-pad <= j < 0, n <= j < n + pad).
   Rows are split over `threads` OpenMP threads; columns go in blocks of `cb` (the input block in cache);
   within a block the rows run in the order `order` (row order[k] at step k; NULL: 0, 1, ...), so that rows
   reading the same source rows run one after another while those stay in cache. */
void spmm_shifted(float *y, int64_t ldy, int64_t gy, int64_t rows, int64_t groups, int64_t n,
                  const float *x, int64_t gx, const int64_t *rowptr, const int32_t *off, const float *vals,
                  const float *bias, const float *res, int64_t ldr, int relu, int64_t cb, int64_t pad,
                  const int64_t *order, const int64_t *work, int threads) {
  int64_t nt = threads < 1 ? 1 : threads;
  if (nt > rows) nt = rows < 1 ? 1 : rows;
  #pragma omp parallel for num_threads(nt) schedule(static, 1)
  for (int64_t t = 0; t < nt; ++t) {
    const int64_t k0 = split(rowptr, work, rows, t, nt), k1 = split(rowptr, work, rows, t + 1, nt);
    if (pad > 0)
      for (int64_t k = k0; k < k1; ++k)
        for (int64_t g = 0; g < groups; ++g) {
          float *row = y + (order ? order[k] : k) * ldy + g * gy;
          memset(row - pad, 0, (size_t)pad * sizeof(float));
          memset(row + n, 0, (size_t)pad * sizeof(float));
        }
    for (int64_t g = 0; g < groups; ++g) {
      const float *xg = x + g * gx;
      for (int64_t c0 = 0; c0 < n; c0 += cb) {
        const int64_t c1 = c0 + cb < n ? c0 + cb : n;
        for (int64_t k = k0; k < k1; ++k) {
          const int64_t r = order ? order[k] : k;
          float *out = y + r * ldy + g * gy;
          const float *rr = res ? res + r * ldr + g * gy : 0;
          const int64_t e0 = rowptr[r], e1 = rowptr[r + 1];
          for (int64_t j = c0; j < c1; j += 64) {
            const int64_t w = c1 - j < 64 ? c1 - j : 64;
            const float *rj = rr ? rr + j : 0;
            if (w <= 16) row16(xg + j, off, vals, e0, e1, w, bias[r], out + j, rj, relu);
            else if (w > 32 && w <= 48) row48(xg + j, off, vals, e0, e1, w, bias[r], out + j, rj, relu);
            else row64(xg + j, off, vals, e0, e1, w, bias[r], out + j, rj, relu);
          }
        }
      }
    }
  }
}
"""

#: The most output columns per block (:func:`column_block` picks fewer when the sources would not fit in L2).
COLUMN_BLOCK = 256


def _l2_bytes() -> int:
    """The L2 cache of one core (sysfs; 1 MiB when it cannot be read)."""
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for index in sorted(root.glob("index*")):
            if (index / "level").read_text().strip() == "2":
                size = (index / "size").read_text().strip().upper()
                scale = {"K": 2**10, "M": 2**20}.get(size[-1:], 1)
                return int(size.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return 2**20


#: The L2 cache of one core, in bytes.
L2_BYTES = _l2_bytes()
#: Bytes of source rows one column block may touch (half of the L2, the other half for outputs and indices).
SOURCE_BUDGET = L2_BYTES // 2
#: Inputs up to this size stay in the last-level cache between column blocks, so that blocks sized for L2
#: pay: measured on the development CPU (2 MiB L2), with the rows in row order, an NTU batch of 8 (10-13 MiB
#: per graph convolution's input) ran its graph convolutions 10-28 % faster in blocks of 64-128 columns than
#: of 256, a batch of 64 (84-103 MiB) 8-31 % slower (every block streams the operator's indices again).
RESIDENT_INPUT = 32 * 2**20


def column_block(source_rows: int, input_bytes: int) -> int:
    """Output columns per block for an operator reading ``source_rows`` distinct rows of an input of
    ``input_bytes``: :data:`COLUMN_BLOCK`, unless the input is larger than :data:`SOURCE_BUDGET` but stays in
    the last-level cache (:data:`RESIDENT_INPUT`): then the most columns (a multiple of 64, at least 64)
    whose slices of every source row fit in :data:`SOURCE_BUDGET`, so that every output row of a block reads
    its sources from L2."""
    if not SOURCE_BUDGET < input_bytes <= RESIDENT_INPUT:
        return COLUMN_BLOCK
    fit = SOURCE_BUDGET // (4 * max(source_rows, 1)) // 64 * 64
    return max(64, min(COLUMN_BLOCK, fit))


@functools.cache  # one lookup per process: the kernels' callers ask on every call
def _library() -> ctypes.CDLL | None:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    return load_library("spmm", _SOURCE, {
        "spmm_shifted": [p, i64, i64, i64, i64, i64, p, i64, p, p, p, p, p, i64, i32, i64, i64, p, p, i32],
        "split_phases": [p, p, i64, i64, i64, i64, i64, i32]}, "sparse export")


def available() -> bool:
    """Whether the native kernel is built (or can be built now) and usable on this machine."""
    return _library() is not None


class Recording:
    """The native calls of a sequence of :func:`spmm_shifted` / :func:`split_phases` calls, with their
    arguments (raw pointers, sizes, the thread count), to run again without Python in between: the tensors
    they point into are held (``tensors``), and must still hold what a replay should read and be where it
    should write (the caller's contract, e.g. buffers that are kept between calls)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self.tensors: list[Tensor] = []

    def replay(self) -> None:
        """Run every recorded native call again, in order."""
        for fn, args in self.calls:
            fn(*args)


_recording: contextvars.ContextVar[Recording | None] = contextvars.ContextVar("native_recording", default=None)


@contextlib.contextmanager
def record() -> Iterator[Recording]:
    """Within the block, every native call is run and also appended to the yielded :class:`Recording`."""
    rec = Recording()
    token = _recording.set(rec)
    try:
        yield rec
    finally:
        _recording.reset(token)


def _run(fn: Callable[..., None], args: tuple[Any, ...], *tensors: Tensor | None) -> None:
    fn(*args)
    rec = _recording.get()
    if rec is not None:
        rec.calls.append((fn, args))
        rec.tensors.extend(t for t in tensors if t is not None)


def spmm_shifted(y: Tensor, x: Tensor, rowptr: Tensor, offsets: Tensor, values: Tensor, bias: Tensor,
                 residual: Tensor | None = None, relu: bool = False, groups: int = 1, group_stride_y: int = 0,
                 group_stride_x: int = 0, pad: int = 0, block: int = COLUMN_BLOCK,
                 order: Tensor | None = None) -> Tensor:
    r"""A sparse matrix times shifted rows of one buffer, for every group:

    .. math::
        y_{r, g, j} = b_r + \sum_{e \in \text{row } r} v_e\, x[o_e + g\, s_x + j] \;(+\, \text{res}_{r, g, j}),
        \quad \text{then ReLU if } \texttt{relu},

    for :math:`0 \le j < n` (``y.size(1)``), :math:`0 \le g <` ``groups``, with ``y[r, g, j]`` at
    ``y[r, g * group_stride_y + j]`` (a view of a larger buffer: the columns of group :math:`g` start
    ``group_stride_y`` elements after those of group :math:`g - 1`), ``residual`` indexed like ``y``; and
    :math:`y_{r, g, j} = 0` for the ``pad`` columns on each side of every group
    (:math:`-\text{pad} \le j < 0` and :math:`n \le j < n + \text{pad}`: the zero padding frames of a
    joint-major activation, written with the output instead of by a separate pass).

    Args:
        y (torch.Tensor): Output :math:`(R, n)` (``stride(1) == 1``), float32 on CPU.
        x (torch.Tensor): Float32 buffer (a view is fine: offsets count from ``x.data_ptr()``); every
            ``offsets[e] + g * group_stride_x + [0, n)`` must lie inside its storage.
        rowptr (torch.Tensor): int64 :math:`(R + 1,)`, CSR row pointers.
        offsets (torch.Tensor): int64 :math:`(\text{nnz},)`, start of each non-zero's source row in ``x``.
        values (torch.Tensor): float32 :math:`(\text{nnz},)`.
        bias (torch.Tensor): float32 :math:`(R,)`.
        residual (torch.Tensor, optional): Indexed like ``y``. (default: :obj:`None`)
        relu (bool, optional): Apply ReLU. (default: :obj:`False`)
        groups (int, optional): Column groups. (default: :obj:`1`)
        group_stride_y (int, optional): Elements between the groups of ``y`` (and ``residual``).
            (default: :obj:`0`)
        group_stride_x (int, optional): Elements between the groups of ``x``. (default: :obj:`0`)
        pad (int, optional): Columns zeroed on each side of every group of ``y``; they must lie inside
            ``y``'s storage. (default: :obj:`0`)
        block (int, optional): Output columns per block (every row's non-zeros are summed over one block of
            columns before the next; see :func:`column_block`). (default: :data:`COLUMN_BLOCK`)
        order (torch.Tensor, optional): The order the rows run in within a block, a permutation of
            :math:`0 .. R - 1` (int64, with :func:`row_order`'s work prefix appended: :math:`(2R + 1,)`), so
            that rows reading the same source rows run one after another; :obj:`None`: row order.
            (default: :obj:`None`)

    Returns:
        torch.Tensor: ``y``.
    """
    lib = _library()
    if lib is None:
        raise RuntimeError("spmm_shifted: the native kernel is not available (see native.available())")
    R, n = y.shape
    if y.stride(1) != 1 or not (y.dtype == x.dtype == values.dtype == bias.dtype == torch.float32):
        raise ValueError("spmm_shifted: float32 tensors, output columns contiguous, expected")
    if offsets.dtype != torch.int32 or rowptr.dtype != torch.int64:
        raise ValueError(f"spmm_shifted: int64 rowptr and int32 offsets expected, got {rowptr.dtype} and "
                         f"{offsets.dtype}")
    if residual is not None and (residual.stride(1) != 1 or residual.stride(0) <= 0):
        raise ValueError("spmm_shifted: residual columns must be contiguous")
    if block < 1:
        raise ValueError(f"spmm_shifted: block must be positive, got {block}")
    if order is not None and (order.dtype != torch.int64 or order.shape != (2 * R + 1,)
                              or not order.is_contiguous()):
        raise ValueError(f"spmm_shifted: order must be row_order(rowptr) for the {R} rows, got "
                         f"{order.dtype} {tuple(order.shape)}")
    if pad:
        base = y.storage_offset()
        last = base + (R - 1) * y.stride(0) + (groups - 1) * group_stride_y + n + pad
        if pad < 0 or base < pad or last > y.untyped_storage().nbytes() // y.element_size():
            raise ValueError(f"spmm_shifted: pad={pad} columns around the groups of y fall outside its storage")
    _run(lib.spmm_shifted, (y.data_ptr(), y.stride(0), group_stride_y, R, groups, n, x.data_ptr(), group_stride_x,
                            rowptr.data_ptr(), offsets.data_ptr(), values.data_ptr(), bias.data_ptr(),
                            None if residual is None else residual.data_ptr(),
                            0 if residual is None else residual.stride(0), int(relu), block, pad,
                            None if order is None else order.data_ptr(),
                            None if order is None else order.data_ptr() + 8 * R,
                            torch.get_num_threads()),
         y, x, rowptr, offsets, values, bias, residual, order)
    return y


def row_order(rowptr: Tensor, order: Tensor) -> Tensor:
    """The ``order`` argument of :func:`spmm_shifted`: the permutation ``order`` of the rows, then the work
    before each step (the non-zeros plus one of the rows before it, in that order), in one int64 tensor."""
    R = rowptr.numel() - 1
    if order.shape != (R,) or not torch.equal(torch.sort(order).values, torch.arange(R, device=order.device)):
        raise ValueError(f"row_order: a permutation of the {R} rows expected")
    cost = (rowptr[1:] - rowptr[:-1] + 1)[order]
    work = torch.zeros(R + 1, dtype=torch.int64, device=rowptr.device)
    work[1:] = torch.cumsum(cost, 0)
    return torch.cat([order.to(torch.int64), work]).contiguous()


def split_phases(dst: Tensor, src: Tensor) -> Tensor:
    r"""``dst[q, o, i] = src[o, i s + q]`` for the :math:`s` phases of ``src`` :math:`(O, L, *)` into ``dst``
    :math:`(s, O, \lceil L / s \rceil, *)` (both contiguous float32 on CPU; entries past the end of a phase
    are left as they are)."""
    lib = _library()
    if lib is None:
        raise RuntimeError("split_phases: the native kernel is not available (see native.available())")
    s, O, steps = dst.shape[:3]
    if not (dst.is_contiguous() and src.is_contiguous() and src.shape[0] == O
            and dst.shape[3:] == src.shape[2:] and dst.dtype == src.dtype == torch.float32):
        raise ValueError(f"split_phases: contiguous float32 (s, O, steps, *) and (O, L, *) expected, got "
                         f"{tuple(dst.shape)} and {tuple(src.shape)}")
    inner = src[0, 0].numel() if src.dim() > 2 else 1
    _run(lib.split_phases, (dst.data_ptr(), src.data_ptr(), O, src.size(1), steps, s, inner,
                            torch.get_num_threads()), dst, src)
    return dst


def int32_offsets(offsets: Tensor) -> Tensor:
    """``offsets`` as the int32 the kernel reads (a :class:`ValueError` if an activation is too large)."""
    if offsets.numel() and int(offsets.max()) >= 2**31 - 2**24:
        raise ValueError("native sparse kernel: activation buffer too large for 32-bit offsets; run a smaller "
                         "batch, or export with layout='channel_major'")
    return offsets.to(torch.int32)


def sparse_rows(weight: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""The non-zeros of the taps ``weight`` :math:`(k, R, C)` by output row: ``(rowptr, taps, columns,
    values)`` (int64 :math:`(R + 1,)`, int64, int64 and ``weight.dtype`` :math:`(\text{nnz},)`), each row's
    entries by tap, then column. Rows and columns without a non-zero cost nothing in
    :func:`spmm_shifted`."""
    k, R, C = weight.shape
    j, r, c = (weight != 0).nonzero(as_tuple=True)
    order = torch.argsort((r * k + j) * C + c)
    j, r, c = j[order], r[order], c[order]
    rowptr = torch.zeros(R + 1, dtype=torch.int64, device=weight.device)
    rowptr[1:] = torch.cumsum(torch.bincount(r, minlength=R), 0)
    return rowptr, j.contiguous(), c.contiguous(), weight[j, r, c].contiguous()
