r"""Batch norm, residual and ReLU of a channels-last activation in one native CPU pass: :func:`fused_batch_norm`.

Every unit ends in :math:`\mathrm{ReLU}(\mathrm{BN}(x) + r)` (or a part of it). PyTorch runs that as three
or four kernels, each reading and writing the whole activation, and its channels-last batch-norm kernels take
about 3x (forward) and 5.5x (backward) the time of a copy of their input on the development CPU. The kernel
here reads :math:`x` once for the statistics and once more to write
:math:`y = \max(0, (x - \mu)\,s + \beta + r)` (:math:`s = \gamma / \sqrt{\sigma^2 + \epsilon}`), and in the
backward pass reads :math:`x, y, \partial y` once for :math:`\sum g` and :math:`\sum g\,(x - \mu)`
(:math:`g = \partial y \cdot [y > 0]`) and once more to write
:math:`\partial x = s\,(g - \overline{g} - \hat{x}\,\overline{g \hat{x}})` (and :math:`\partial r = g`).
Statistics are summed in float32 over blocks of 256 rows, shifted by the first row (no cancellation when
:math:`|\mu| \gg \sigma`), and in float64 across blocks.

The channels may come, or be wanted, as consecutive groups held in separate tensors
(:func:`fused_batch_norm_groups`): the kernel addresses every group where it is (a base address and a row
stride each), so a multi-scale unit's branches get their channels as contiguous tensors of their own, and its
fusion layer normalises their outputs into one tensor, without the slicing copies and the concatenation either
way, forward and backward.

It runs for float32 and bfloat16 CPU activations (with float32 parameters and statistics, as under CPU
autocast) whose channels are the contiguous last dimension, outside ``torch.compile``, TorchScript and ONNX
tracing; anything else, and every case where the library is not built (see :mod:`pyg_sparse_stgcn.cbuild`),
runs PyTorch's operators, with the same results up to rounding (a bfloat16 output is rounded once, from the
float32 value of :math:`(x - \mu)\,s + \beta + r`). The backward pass is not differentiable again (no double
backward): set ``PYG_SPARSE_STGCN_NATIVE=0`` for higher-order gradients.
"""
from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..cbuild import load_library

__all__ = ["fused_batch_norm", "fused_batch_norm_groups", "on_channels", "native_ok", "available"]

_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <omp.h>
#define BLK 256

/* bfloat16 <-> float32: the upper half of the float's bits; rounding to nearest even, NaN kept a NaN */
static inline float bf2f(uint16_t h) { union { uint32_t u; float f; } v; v.u = (uint32_t)h << 16; return v.f; }
static inline uint16_t f2bf(float f) {
  union { uint32_t u; float f; } v; v.f = f;
  uint32_t rounded = (v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16, nan = (v.u >> 16) | 0x40u;
  return (uint16_t)((v.u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}
#define LD_f32(p, i) ((p)[i])
#define ST_f32(p, i, v) ((p)[i] = (v))
#define LD_bf16(p, i) bf2f((p)[i])
#define ST_bf16(p, i, v) ((p)[i] = f2bf(v))

/* With AVX-512 (F, BW, VL) every row of a group runs as 16-lane vectors, its last one masked: a group of 10 or
   46 channels costs one or three vector steps per row instead of a scalar tail (a compiler-vectorised loop
   does all of a 10-channel bfloat16 row in its scalar tail). The same formulas as the scalar bodies (with fused
   multiply-adds), the bfloat16 rounding included (integer operations, as f2bf). Elsewhere the scalar bodies run
   under omp simd. */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define VEC 1
#include <immintrin.h>
static inline __mmask16 tail(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u); }
static inline __m512 vld_f32(const float *p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
static inline void vst_f32(float *p, __mmask16 m, __m512 v) { _mm512_mask_storeu_ps(p, m, v); }
static inline __m512 vld_bf16(const uint16_t *p, __mmask16 m) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}
static inline void vst_bf16(uint16_t *p, __mmask16 m, __m512 v) {
  const __m512i u = _mm512_castps_si512(v), hi = _mm512_srli_epi32(u, 16);
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                                   _mm512_and_si512(hi, _mm512_set1_epi32(1))));
  r = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_srli_epi32(r, 16),
                              _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
  _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(r));
}
/* v < 0 -> 0, a NaN kept (as the scalar relu && v < 0 ? 0 : v) */
static inline __m512 vrelu(__m512 v) {
  return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ), v, _mm512_setzero_ps());
}
#define INNER(SBODY, VBODY) for (int64_t c = 0; c < w; c += 16) { const __mmask16 m = tail(w - c); VBODY }
/* a block's per-channel sums into f1, f2: 16 channels at a time down the rows, in registers a1, a2 */
#define BLOCK_SUMS(ROWS, SBODY, VBODY)                                                          \
  for (int64_t g = 0; g < G; ++g) {                                                             \
    const int64_t o = off[g], w = wid[g];                                                       \
    for (int64_t c = 0; c < w; c += 16) {                                                       \
      const __mmask16 m = tail(w - c);                                                          \
      __m512 a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps();                                \
      for (int64_t r = r0; r < r1; ++r) { ROWS VBODY }                                          \
      vst_f32(f1 + o + c, m, a1);                                                               \
      vst_f32(f2 + o + c, m, a2);                                                               \
    }                                                                                           \
  }
#else
#define INNER(SBODY, VBODY) _Pragma("omp simd") for (int64_t c = 0; c < w; ++c) { SBODY }
#define BLOCK_SUMS(ROWS, SBODY, VBODY)                                                          \
  memset(f1, 0, 2 * C * sizeof(float));                                                         \
  for (int64_t r = r0; r < r1; ++r)                                                             \
    for (int64_t g = 0; g < G; ++g) {                                                           \
      const int64_t o = off[g], w = wid[g];                                                     \
      ROWS                                                                                      \
      INNER(SBODY, VBODY)                                                                       \
    }
#endif

/* The C channels come in G consecutive groups: group g is channels off[g] .. off[g] + wid[g] - 1 of the
   per-channel arrays. An activation operand op holds, per group, a base address op[g] and a row stride
   op[G + g] (elements), element (r, c) of group g at base + r * stride + c: one (R, C) tensor is its groups at
   their column offsets with stride C, separate (R, wid[g]) tensors their own bases with stride wid[g]. ROW(T, op)
   is the row r of group g. */
#define ROW(T, op) ((T *)(intptr_t)(op)[g] + r * (op)[G + g])

/* per-channel sums over the rows, float32 within blocks of BLK rows, float64 across (into acc[0:C] and
   acc[C:2C]); the scalar body adds row r, channel o + c (group g) to f1[o + c] and f2[o + c], the vector body
   16 channels to the registers a1 and a2, after ROWS declared the row pointers */
#define REDUCE(ROWS, SBODY, VBODY)                                                              \
  double *acc = calloc((size_t)nt * 2 * C, sizeof(double));                                     \
  _Pragma("omp parallel num_threads(nt)") {                                                     \
    double *d1 = acc + (size_t)omp_get_thread_num() * 2 * C, *d2 = d1 + C;                      \
    float *f1 = malloc(2 * C * sizeof(float)), *f2 = f1 + C;                                     \
    _Pragma("omp for schedule(static)")                                                         \
    for (int64_t blk = 0; blk < (R + BLK - 1) / BLK; ++blk) {                                   \
      int64_t r0 = blk * BLK, r1 = r0 + BLK < R ? r0 + BLK : R;                                 \
      BLOCK_SUMS(ROWS, SBODY, VBODY)                                                            \
      for (int64_t c = 0; c < C; ++c) { d1[c] += f1[c]; d2[c] += f2[c]; }                       \
    }                                                                                           \
    free(f1);                                                                                   \
  }                                                                                             \
  for (int t = 1; t < nt; ++t)                                                                  \
    for (int64_t c = 0; c < 2 * C; ++c) acc[c] += acc[(size_t)t * 2 * C + c];

/* an elementwise pass over every row and group */
#define ROWWISE(ROWS, SBODY, VBODY)                                                             \
  _Pragma("omp parallel for num_threads(nt) schedule(static)")                                  \
  for (int64_t r = 0; r < R; ++r)                                                               \
    for (int64_t g = 0; g < G; ++g) {                                                           \
      const int64_t o = off[g], w = wid[g];                                                     \
      ROWS                                                                                      \
      INNER(SBODY, VBODY)                                                                       \
    }

/* shorthands of the vector bodies: a float32 per-channel array at channels o + c, an activation of type SFX */
#define PC(a) vld_f32((a) + o + c, m)
#define AV(SFX, p) vld_##SFX((p) + c, m)

/* The kernels for activations of type T (float32 or bfloat16; statistics, weights, gradients of the weights
   always float32):
   bn_forward_train: batch mean and biased variance of x (R, C) into mean, var; invstd; then the transform
   y = (x - mean) * scale + b (+ res), then ReLU if relu (x - mean first: no cancellation when |mean| >> std;
   a NaN stays a NaN, as torch.relu); bn_forward_eval: the transform with given mean and scale;
   bn_backward: g = dy * [y > 0] (relu) or dy; dw = invstd * sum g (x - mean), db = sum g;
   dx = s g - s mean(g) - s invstd^2 (x - mean) mean(g (x - mean)) in training (batch statistics), s g in
   evaluation (fixed statistics), s = w invstd; dres = g when dres is given. res and dres may be NULL; the
   mask y is read only under relu. */
#define KERNELS(T, SFX)                                                                                       \
static void transform_##SFX(const int64_t *x, const int64_t *res, const int64_t *y, int64_t G,               \
                            const int64_t *off, const int64_t *wid, const float *mean, const float *scale,   \
                            const float *b, int64_t R, int relu, int nt) {                                    \
  ROWWISE(const T *xr = ROW(const T, x); const T *rr = res ? ROW(const T, res) : NULL; T *yr = ROW(T, y);,    \
          float v = (LD_##SFX(xr, c) - mean[o + c]) * scale[o + c] + b[o + c] + (rr ? LD_##SFX(rr, c) : 0.f); \
          ST_##SFX(yr, c, relu && v < 0.f ? 0.f : v);,                                                        \
          __m512 v = _mm512_fmadd_ps(_mm512_sub_ps(AV(SFX, xr), PC(mean)), PC(scale), PC(b));                 \
          if (rr) v = _mm512_add_ps(v, AV(SFX, rr));                                                          \
          vst_##SFX(yr + c, m, relu ? vrelu(v) : v);)                                                         \
}                                                                                                             \
void bn_forward_train_##SFX(const int64_t *x, const int64_t *res, const int64_t *y, int64_t G,               \
                            const int64_t *off, const int64_t *wid, const float *w, const float *b,           \
                            float *mean, float *var, float *invstd, int64_t R, int64_t C, double eps,         \
                            int relu, int nt) {                                                               \
  float *s0 = malloc(2 * C * sizeof(float)), *scale = s0 + C; /* shift: the first row */                    \
  for (int64_t g = 0, r = 0; g < G; ++g)                                                                      \
    for (int64_t c = 0; c < wid[g]; ++c) s0[off[g] + c] = LD_##SFX(ROW(const T, x), c);                       \
  REDUCE(const T *xr = ROW(const T, x);,                                                                      \
         float d = LD_##SFX(xr, c) - s0[o + c]; f1[o + c] += d; f2[o + c] += d * d;,                          \
         const __m512 d = _mm512_sub_ps(AV(SFX, xr), PC(s0));                                                 \
         a1 = _mm512_add_ps(a1, d); a2 = _mm512_fmadd_ps(d, d, a2);)                                           \
  for (int64_t c = 0; c < C; ++c) {                                                                           \
    double m1 = acc[c] / R, m2 = acc[C + c] / R, v = m2 - m1 * m1;                                            \
    if (v < 0) v = 0;                                                                                         \
    double is = 1.0 / sqrt(v + eps);                                                                          \
    mean[c] = (float)(s0[c] + m1); var[c] = (float)v; invstd[c] = (float)is;                                  \
    scale[c] = (float)(w[c] * is);                                                                            \
  }                                                                                                           \
  free(acc);                                                                                                  \
  transform_##SFX(x, res, y, G, off, wid, mean, scale, b, R, relu, nt);                                       \
  free(s0);                                                                                                   \
}                                                                                                             \
void bn_forward_eval_##SFX(const int64_t *x, const int64_t *res, const int64_t *y, int64_t G,                \
                           const int64_t *off, const int64_t *wid, const float *mean, const float *scale,    \
                           const float *b, int64_t R, int relu, int nt) {                                     \
  transform_##SFX(x, res, y, G, off, wid, mean, scale, b, R, relu, nt);                                       \
}                                                                                                             \
void bn_backward_##SFX(const int64_t *x, const int64_t *y, const int64_t *dy, const int64_t *dx,             \
                       const int64_t *dres, int64_t G, const int64_t *off, const int64_t *wid, const float *w, \
                       const float *mean, const float *invstd, float *dw, float *db, int64_t R, int64_t C,    \
                       int relu, int train, int nt) {                                                         \
  REDUCE(const T *xr = ROW(const T, x); const T *yr = ROW(const T, y); const T *gr = ROW(const T, dy);,       \
         float g_ = relu && !(LD_##SFX(yr, c) > 0.f) ? 0.f : LD_##SFX(gr, c);                                 \
         f1[o + c] += g_; f2[o + c] += g_ * (LD_##SFX(xr, c) - mean[o + c]);,                                 \
         __m512 g_ = AV(SFX, gr);                                                                             \
         if (relu) g_ = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(AV(SFX, yr), _mm512_setzero_ps(), _CMP_GT_OQ), g_); \
         a1 = _mm512_add_ps(a1, g_); a2 = _mm512_fmadd_ps(g_, _mm512_sub_ps(AV(SFX, xr), PC(mean)), a2);)     \
  float *k1 = malloc(3 * C * sizeof(float)), *k2 = k1 + C, *k3 = k2 + C;                                      \
  for (int64_t c = 0; c < C; ++c) {                                                                           \
    double sg = acc[c], sgx = acc[C + c], is = invstd[c], s = w[c] * is;                                      \
    db[c] = (float)sg; dw[c] = (float)(sgx * is);                                                             \
    k1[c] = (float)s;                                                                                         \
    k2[c] = train ? (float)(-s * sg / R) : 0.f;                                                               \
    k3[c] = train ? (float)(-s * is * is * sgx / R) : 0.f;                                                    \
  }                                                                                                           \
  free(acc);                                                                                                  \
  ROWWISE(const T *xr = ROW(const T, x); const T *yr = ROW(const T, y); const T *gr = ROW(const T, dy);       \
          T *dxr = ROW(T, dx); T *drr = dres ? ROW(T, dres) : NULL;,                                          \
          float g_ = relu && !(LD_##SFX(yr, c) > 0.f) ? 0.f : LD_##SFX(gr, c);                               \
          ST_##SFX(dxr, c, k1[o + c] * g_ + k2[o + c] + k3[o + c] * (LD_##SFX(xr, c) - mean[o + c]));         \
          if (drr) ST_##SFX(drr, c, g_);,                                                                    \
          __m512 g_ = AV(SFX, gr);                                                                            \
          if (relu) g_ = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(AV(SFX, yr), _mm512_setzero_ps(), _CMP_GT_OQ), g_); \
          const __m512 xc = _mm512_sub_ps(AV(SFX, xr), PC(mean));                                             \
          vst_##SFX(dxr + c, m, _mm512_fmadd_ps(PC(k3), xc, _mm512_fmadd_ps(PC(k1), g_, PC(k2))));            \
          if (drr) vst_##SFX(drr + c, m, g_);)                                                                \
  free(k1);                                                                                                   \
}

KERNELS(float, f32)
KERNELS(uint16_t, bf16)
"""


@functools.cache  # one lookup per process: the kernels' callers ask on every call
def _library() -> ctypes.CDLL | None:
    p, i64, i32, f64 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_double
    sigs: dict[str, list[Any]] = {}
    for sfx in _SUFFIX.values():
        sigs[f"bn_forward_train_{sfx}"] = [p, p, p, i64, p, p, p, p, p, p, p, i64, i64, f64, i32, i32]
        sigs[f"bn_forward_eval_{sfx}"] = [p, p, p, i64, p, p, p, p, p, i64, i32, i32]
        sigs[f"bn_backward_{sfx}"] = [p, p, p, p, p, i64, p, p, p, p, p, p, p, i64, i64, i32, i32, i32]
    return load_library("batch_norm", _SOURCE, sigs, "batch norm")


#: The activation dtypes the kernel takes, and their functions' suffixes.
_SUFFIX = {torch.float32: "f32", torch.bfloat16: "bf16"}


def available() -> bool:
    """Whether the native kernel is built (or can be built now) and usable on this machine."""
    return _library() is not None


@functools.lru_cache(maxsize=256)
def _groups(widths: tuple[int, ...]) -> _Groups:
    """The :class:`_Groups` of ``widths``, built once per process (its offsets tensor is read on every call)."""
    return _Groups(widths)


class _Groups:
    """The channel groups of one call: their widths, offsets and the kernel's operand descriptors (per group a
    base address and a row stride, see the C source) of activations given as one ``(R, C)`` tensor or as one
    ``(R, c_g)`` tensor per group."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        self.widths, self.G = widths, len(widths)
        offsets = [0]
        for w in widths[:-1]:
            offsets.append(offsets[-1] + w)
        self.offsets = offsets
        self.off_wid = torch.tensor([offsets, list(widths)], dtype=torch.int64)

    def operand(self, ts: Sequence[Tensor]) -> Tensor:
        if len(ts) == 1 and self.G > 1:
            t = ts[0]
            base, es = t.data_ptr(), t.element_size()
            ptrs, strides = [base + o * es for o in self.offsets], [t.stride(0)] * self.G
        else:
            ptrs, strides = [t.data_ptr() for t in ts], [t.stride(0) for t in ts]
        return torch.tensor(ptrs + strides, dtype=torch.int64)

    def new(self, like: Tensor, split: bool) -> list[Tensor]:
        R = like.size(0)
        if split:
            return [like.new_empty(R, w) for w in self.widths]
        return [like.new_empty(R, sum(self.widths))]


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class _FusedBatchNorm(torch.autograd.Function):
    """The native batch norm (+ residual) (+ ReLU) over ``(R, C)`` rows given as ``xs`` (one ``(R, C)`` tensor,
    or one ``(R, c_g)`` tensor per channel group of ``groups``); the output is one ``(R, C)`` tensor, or one
    per group when ``split``. Running statistics are updated in place in training."""

    @staticmethod
    def forward(ctx: Any, groups: _Groups, split: bool, residual: Tensor | None, weight: Tensor, bias: Tensor,
                running_mean: Tensor | None, running_var: Tensor | None, training: bool, momentum: float,
                eps: float, relu: bool, *xs: Tensor) -> Tensor | tuple[Tensor, ...]:
        lib = _library()
        assert lib is not None
        R, C = xs[0].size(0), sum(groups.widths)
        nt = torch.get_num_threads()
        sfx = _SUFFIX[xs[0].dtype]
        ys = groups.new(xs[0], split)
        xd, yd = groups.operand(xs), groups.operand(ys)
        rd = None if residual is None else groups.operand([residual])
        ow = groups.off_wid
        if training:
            mean, var, invstd = torch.empty(3, C).unbind(0)
            fn = getattr(lib, f"bn_forward_train_{sfx}")
            fn(xd.data_ptr(), _ptr(rd), yd.data_ptr(), groups.G, ow[0].data_ptr(), ow[1].data_ptr(),
               weight.data_ptr(), bias.data_ptr(), mean.data_ptr(), var.data_ptr(), invstd.data_ptr(), R, C, eps,
               int(relu), nt)
            if running_mean is not None and running_var is not None:
                running_mean.lerp_(mean, momentum)
                running_var.lerp_(var * (R / max(R - 1, 1)), momentum)  # the unbiased variance, as PyTorch
        else:
            assert running_mean is not None and running_var is not None
            mean, invstd = running_mean.clone(), (running_var + eps).rsqrt()
            scale = weight * invstd
            fn = getattr(lib, f"bn_forward_eval_{sfx}")
            fn(xd.data_ptr(), _ptr(rd), yd.data_ptr(), groups.G, ow[0].data_ptr(), ow[1].data_ptr(),
               mean.data_ptr(), scale.data_ptr(), bias.data_ptr(), R, int(relu), nt)
        ctx.save_for_backward(weight, mean, invstd, *xs, *(ys if relu else ()))  # y only for the ReLU's mask
        ctx.groups, ctx.flags = groups, (training, relu, residual is not None, len(xs))
        return tuple(ys) if split else ys[0]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *dys: Tensor) -> tuple[Tensor | None, ...]:
        weight, mean, invstd, *saved = ctx.saved_tensors
        training, relu, with_res, n_x = ctx.flags
        groups: _Groups = ctx.groups
        xs, ys = saved[:n_x], saved[n_x:]
        lib = _library()
        assert lib is not None
        R, C = xs[0].size(0), sum(groups.widths)
        dys = tuple(d.to(xs[0].dtype).contiguous() for d in dys)
        dxs = [torch.empty_like(x) for x in xs]
        dres = xs[0].new_empty(R, C) if with_res and relu else None
        dw, db = torch.empty(2, C).unbind(0)
        fn = getattr(lib, f"bn_backward_{_SUFFIX[xs[0].dtype]}")
        # the descriptors held in locals until the call returns (they hold the addresses the kernel reads)
        xd, gd, dxd = groups.operand(xs), groups.operand(dys), groups.operand(dxs)
        md = groups.operand(ys) if relu else xd  # the mask, read only under the ReLU
        drd = None if dres is None else groups.operand([dres])
        ow = groups.off_wid
        fn(xd.data_ptr(), md.data_ptr(), gd.data_ptr(), dxd.data_ptr(), _ptr(drd), groups.G, ow[0].data_ptr(),
           ow[1].data_ptr(), weight.data_ptr(), mean.data_ptr(), invstd.data_ptr(), dw.data_ptr(), db.data_ptr(),
           R, C, int(relu), int(training), torch.get_num_threads())
        if with_res and not relu:
            dres = dys[0]
        return (None, None, dres, dw, db, None, None, None, None, None, None, *dxs)


def native_ok(x: Tensor | Sequence[Tensor], residual: Tensor | None = None, weight: Tensor | None = None) -> bool:
    """Whether :func:`fused_batch_norm` (or :func:`fused_batch_norm_groups`, ``x`` a sequence of groups) runs
    the native kernel on these tensors (float32 or bfloat16 on the CPU, contiguous, one leading shape, float32
    parameters, not tracing or compiling, the library built)."""
    if torch.compiler.is_compiling() or torch.jit.is_scripting() or torch.jit.is_tracing():
        return False
    if torch.onnx.is_in_onnx_export():
        return False
    xs = [x] if isinstance(x, Tensor) else list(x)
    x0 = xs[0]
    if x0.dtype not in _SUFFIX or x0.device.type != "cpu" or x0.dim() < 2 or x0.numel() == 0:
        return False
    lead = x0.shape[:-1]
    if any(not t.is_contiguous() or t.dtype != x0.dtype or t.device != x0.device or t.shape[:-1] != lead
           or t.size(-1) == 0 for t in xs):
        return False
    if residual is not None and (residual.shape != x0.shape or residual.dtype != x0.dtype
                                 or not residual.is_contiguous()):
        return False
    if weight is not None and (weight.dtype != torch.float32 or weight.device.type != "cpu"):
        return False
    return _library() is not None


def fused_batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                     weight: Tensor | None, bias: Tensor | None, training: bool, momentum: float, eps: float,
                     residual: Tensor | None = None, relu: bool = False) -> Tensor:
    r""":math:`\mathrm{ReLU}(\mathrm{BN}(x) + r)` over the last dimension of ``x`` (every leading position a
    sample), like :func:`torch.nn.functional.batch_norm` on the channels-first view followed by ``+ residual``
    and ``relu``; the running statistics are updated in place when ``training`` and given. The native kernel
    runs where it can (see the module docstring), PyTorch's operators otherwise (:func:`on_channels`).

    Args:
        x (torch.Tensor): :math:`(*, C)`.
        running_mean (torch.Tensor, optional): :math:`(C,)`, or :obj:`None` (batch statistics only).
        running_var (torch.Tensor, optional): :math:`(C,)`, or :obj:`None`.
        weight (torch.Tensor, optional): :math:`(C,)` scale :math:`\gamma` (:obj:`None`: 1).
        bias (torch.Tensor, optional): :math:`(C,)` shift :math:`\beta` (:obj:`None`: 0).
        training (bool): Normalise with the batch statistics (and update the running ones).
        momentum (float): The running statistics' update factor.
        eps (float): Added to the variance.
        residual (torch.Tensor, optional): Added after the normalisation, shaped like ``x``. (default:
            :obj:`None`)
        relu (bool, optional): Apply a ReLU last. (default: :obj:`False`)

    Shapes:
        - **input:** :math:`(*, C)`
        - **output:** :math:`(*, C)`
    """
    C = x.size(-1)
    if not training and (running_mean is None or running_var is None):
        training = True  # no running statistics: batch statistics, as torch.nn.functional.batch_norm
    if not native_ok(x, residual, weight):
        def norm(v: Tensor) -> Tensor:
            out = F.batch_norm(v, running_mean, running_var, weight, bias, training, momentum, eps)
            return out.relu_() if relu and residual is None else out  # in place on the fresh output

        y = on_channels(x, norm)
        if residual is None:
            return y
        y = y + residual
        return y.relu_() if relu else y
    # Where the residual needs a gradient, the fused ReLU's masked gradient is written for it as a buffer of its
    # own: one more activation-sized buffer at once in the backward pass than a separate ReLU after the kernel
    # (measured: +5-10 MiB at the ST-GCN / ST-GCN++ steps), for one pass less each way (ST-GCN NTU step x1.03).
    res = None if residual is None else residual.reshape(-1, C)
    out = _native([x], (C,), False, res, running_mean, running_var, weight, bias, training, momentum, eps, relu)
    return cast(Tensor, out).view(x.shape)


def fused_batch_norm_groups(x: Tensor | Sequence[Tensor], sizes: Sequence[int], running_mean: Tensor | None,
                            running_var: Tensor | None, weight: Tensor | None, bias: Tensor | None,
                            training: bool, momentum: float, eps: float, relu: bool = False,
                            split: bool = False) -> Tensor | list[Tensor]:
    r""":func:`fused_batch_norm` (no residual) of channels that come, or are wanted, as consecutive groups of
    ``sizes`` channels: ``x`` is one :math:`(*, C)` tensor or the groups :math:`(*, c_g)`; the output is one
    :math:`(*, C)` tensor, or the groups as separate contiguous tensors when ``split``. The same values,
    gradients and statistics as ``fused_batch_norm(torch.cat(x, -1), ...)`` (then ``.split(sizes, -1)``),
    without the concatenation or the copies: the kernel reads and writes every group where it is, and the
    gradients come back the same way (each group's its own contiguous tensor where ``x`` was split).

    Shapes:
        - **input:** :math:`(*, C)` or the groups :math:`(*, c_g)`
        - **output:** :math:`(*, C)` or the groups :math:`(*, c_g)`
    """
    sizes = tuple(int(s) for s in sizes)
    xs = [x] if isinstance(x, Tensor) else list(x)
    C = sum(sizes)
    if len(xs) > 1 and tuple(t.size(-1) for t in xs) != sizes:
        raise ValueError(f"fused_batch_norm_groups: the groups have {[t.size(-1) for t in xs]} channels, "
                         f"sizes says {list(sizes)}")
    if len(xs) == 1 and xs[0].size(-1) != C:
        raise ValueError(f"fused_batch_norm_groups: x has {xs[0].size(-1)} channels, sizes sum to {C}")
    if not training and (running_mean is None or running_var is None):
        training = True
    if not native_ok(xs, None, weight):
        y = fused_batch_norm(xs[0] if len(xs) == 1 else torch.cat(xs, -1), running_mean, running_var, weight,
                             bias, training, momentum, eps, relu=relu)
        return list(y.split(sizes, -1)) if split else y
    lead = xs[0].shape[:-1]
    out = _native(xs, sizes, split, None, running_mean, running_var, weight, bias, training, momentum, eps, relu)
    if split:
        return [y.view(*lead, y.size(-1)) for y in out]
    return cast(Tensor, out).view(*lead, C)


def _native(xs: Sequence[Tensor], sizes: tuple[int, ...], split: bool, residual: Tensor | None,
            running_mean: Tensor | None, running_var: Tensor | None, weight: Tensor | None, bias: Tensor | None,
            training: bool, momentum: float, eps: float, relu: bool) -> Tensor | tuple[Tensor, ...]:
    """The kernel on rows ``xs`` (each flattened to ``(R, c)``), after the checks both entry points share."""
    if training and xs[0].numel() == xs[0].size(-1):
        raise ValueError(f"Expected more than 1 value per channel when training, got input size "
                         f"{tuple(xs[0].shape)}")
    C = sum(sizes)
    w = weight if weight is not None else torch.ones(C)
    b = bias if bias is not None else torch.zeros(C)
    return _FusedBatchNorm.apply(_groups(sizes), split, residual, w, b, running_mean, running_var, training,
                                 momentum, eps, relu, *(t.reshape(-1, t.size(-1)) for t in xs))


def on_channels(x: Tensor, norm: Callable[[Tensor], Tensor]) -> Tensor:
    """Run a channels-first batch norm ``norm`` on the channels-last ``x``: a 4-D ``(B, T, V, C)`` as its
    channels-first view ``(B, C, T, V)`` (a ``permute``, no copy), so that PyTorch's 4-D kernels read it in
    the memory layout it has, with the gradient handed back in that same layout (the CPU kernel is several
    times slower on mixed layouts); other shapes as ``(-1, C)``."""
    if x.dim() == 4:
        channels_last = x.is_contiguous()
        if not channels_last and not x.permute(0, 3, 1, 2).is_contiguous():
            x, channels_last = x.contiguous(), True
        y = norm(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return _GradLayout.apply(y, channels_last)
    shape = x.shape
    return norm(x.reshape(-1, shape[-1])).view(shape)


class _GradLayout(torch.autograd.Function):
    """Identity on :math:`(B, T, V, C)` whose gradient is made contiguous channels-last (``channels_last``) or
    channels-first (a copy only when it is not already)."""

    @staticmethod
    def forward(ctx, y: Tensor, channels_last: bool) -> Tensor:  # type: ignore[override]
        ctx.channels_last = channels_last
        return y.view_as(y)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        if ctx.channels_last:
            return grad.contiguous(), None
        return grad.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1), None
