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
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..cbuild import load_library

__all__ = ["fused_batch_norm", "on_channels", "native_ok", "available"]

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
  if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u);
  return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
#define LD_f32(p, i) ((p)[i])
#define ST_f32(p, i, v) ((p)[i] = (v))
#define LD_bf16(p, i) bf2f((p)[i])
#define ST_bf16(p, i, v) ((p)[i] = f2bf(v))

/* per-channel sums over the rows, float32 within blocks of BLK rows, float64 across (into acc[0:C] and
   acc[C:2C]); BODY adds row r, channel c to f1[c] and f2[c] */
#define REDUCE(BODY)                                                                            \
  double *acc = calloc((size_t)nt * 2 * C, sizeof(double));                                     \
  _Pragma("omp parallel num_threads(nt)") {                                                     \
    double *d1 = acc + (size_t)omp_get_thread_num() * 2 * C, *d2 = d1 + C;                      \
    float *f1 = malloc(2 * C * sizeof(float)), *f2 = f1 + C;                                     \
    _Pragma("omp for schedule(static)")                                                         \
    for (int64_t blk = 0; blk < (R + BLK - 1) / BLK; ++blk) {                                   \
      int64_t r0 = blk * BLK, r1 = r0 + BLK < R ? r0 + BLK : R;                                 \
      memset(f1, 0, 2 * C * sizeof(float));                                                     \
      for (int64_t r = r0; r < r1; ++r) {                                                       \
        _Pragma("omp simd")                                                                     \
        for (int64_t c = 0; c < C; ++c) { BODY }                                                \
      }                                                                                         \
      for (int64_t c = 0; c < C; ++c) { d1[c] += f1[c]; d2[c] += f2[c]; }                       \
    }                                                                                           \
    free(f1);                                                                                   \
  }                                                                                             \
  for (int t = 1; t < nt; ++t)                                                                  \
    for (int64_t c = 0; c < 2 * C; ++c) acc[c] += acc[(size_t)t * 2 * C + c];

/* The kernels for activations of type T (float32 or bfloat16; statistics, weights, gradients of the weights
   always float32):
   bn_forward_train: batch mean and biased variance of x (R, C) into mean, var; invstd; then the transform
   y = (x - mean) * scale + b (+ res), then ReLU if relu (x - mean first: no cancellation when |mean| >> std;
   a NaN stays a NaN, as torch.relu); bn_forward_eval: the transform with given mean and scale;
   bn_backward: g = dy * [y > 0] (relu) or dy; dw = invstd * sum g (x - mean), db = sum g;
   dx = s g - s mean(g) - s invstd^2 (x - mean) mean(g (x - mean)) in training (batch statistics), s g in
   evaluation (fixed statistics), s = w invstd; dres = g when dres is given */
#define KERNELS(T, SFX)                                                                                       \
static void transform_##SFX(const T *x, const T *res, T *y, const float *mean, const float *scale,           \
                            const float *b, int64_t R, int64_t C, int relu, int nt) {                         \
  _Pragma("omp parallel for num_threads(nt) schedule(static)")                                              \
  for (int64_t r = 0; r < R; ++r) {                                                                           \
    _Pragma("omp simd")                                                                                       \
    for (int64_t c = 0; c < C; ++c) {                                                                         \
      float v = (LD_##SFX(x, r * C + c) - mean[c]) * scale[c] + b[c] + (res ? LD_##SFX(res, r * C + c) : 0.f); \
      ST_##SFX(y, r * C + c, relu && v < 0.f ? 0.f : v);                                                     \
    }                                                                                                         \
  }                                                                                                           \
}                                                                                                             \
void bn_forward_train_##SFX(const T *x, const T *res, T *y, const float *w, const float *b, float *mean,      \
                            float *var, float *invstd, int64_t R, int64_t C, double eps, int relu, int nt) {  \
  float *s0 = malloc(2 * C * sizeof(float)), *scale = s0 + C; /* shift: the first row */                    \
  for (int64_t c = 0; c < C; ++c) s0[c] = LD_##SFX(x, c);                                                    \
  REDUCE(float d = LD_##SFX(x, r * C + c) - s0[c]; f1[c] += d; f2[c] += d * d;)                              \
  for (int64_t c = 0; c < C; ++c) {                                                                           \
    double m1 = acc[c] / R, m2 = acc[C + c] / R, v = m2 - m1 * m1;                                            \
    if (v < 0) v = 0;                                                                                         \
    double is = 1.0 / sqrt(v + eps);                                                                          \
    mean[c] = (float)(s0[c] + m1); var[c] = (float)v; invstd[c] = (float)is;                                  \
    scale[c] = (float)(w[c] * is);                                                                            \
  }                                                                                                           \
  free(acc);                                                                                                  \
  transform_##SFX(x, res, y, mean, scale, b, R, C, relu, nt);                                                 \
  free(s0);                                                                                                   \
}                                                                                                             \
void bn_forward_eval_##SFX(const T *x, const T *res, T *y, const float *mean, const float *scale,            \
                           const float *b, int64_t R, int64_t C, int relu, int nt) {                          \
  transform_##SFX(x, res, y, mean, scale, b, R, C, relu, nt);                                                 \
}                                                                                                             \
void bn_backward_##SFX(const T *x, const T *y, const T *dy, T *dx, T *dres, const float *w, const float *mean, \
                       const float *invstd, float *dw, float *db, int64_t R, int64_t C, int relu, int train,  \
                       int nt) {                                                                              \
  REDUCE(float g = relu && !(LD_##SFX(y, r * C + c) > 0.f) ? 0.f : LD_##SFX(dy, r * C + c);                 \
         f1[c] += g; f2[c] += g * (LD_##SFX(x, r * C + c) - mean[c]);)                                        \
  float *k1 = malloc(3 * C * sizeof(float)), *k2 = k1 + C, *k3 = k2 + C;                                      \
  for (int64_t c = 0; c < C; ++c) {                                                                           \
    double sg = acc[c], sgx = acc[C + c], is = invstd[c], s = w[c] * is;                                      \
    db[c] = (float)sg; dw[c] = (float)(sgx * is);                                                             \
    k1[c] = (float)s;                                                                                         \
    k2[c] = train ? (float)(-s * sg / R) : 0.f;                                                               \
    k3[c] = train ? (float)(-s * is * is * sgx / R) : 0.f;                                                    \
  }                                                                                                           \
  free(acc);                                                                                                  \
  _Pragma("omp parallel for num_threads(nt) schedule(static)")                                              \
  for (int64_t r = 0; r < R; ++r) {                                                                           \
    _Pragma("omp simd")                                                                                       \
    for (int64_t c = 0; c < C; ++c) {                                                                         \
      float g = relu && !(LD_##SFX(y, r * C + c) > 0.f) ? 0.f : LD_##SFX(dy, r * C + c);                     \
      ST_##SFX(dx, r * C + c, k1[c] * g + k2[c] + k3[c] * (LD_##SFX(x, r * C + c) - mean[c]));               \
      if (dres) ST_##SFX(dres, r * C + c, g);                                                                \
    }                                                                                                         \
  }                                                                                                           \
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
        sigs[f"bn_forward_train_{sfx}"] = [p, p, p, p, p, p, p, p, i64, i64, f64, i32, i32]
        sigs[f"bn_forward_eval_{sfx}"] = [p, p, p, p, p, p, i64, i64, i32, i32]
        sigs[f"bn_backward_{sfx}"] = [p, p, p, p, p, p, p, p, p, p, i64, i64, i32, i32, i32]
    return load_library("batch_norm", _SOURCE, sigs, "batch norm")


#: The activation dtypes the kernel takes, and their functions' suffixes.
_SUFFIX = {torch.float32: "f32", torch.bfloat16: "bf16"}


def available() -> bool:
    """Whether the native kernel is built (or can be built now) and usable on this machine."""
    return _library() is not None


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


class _FusedBatchNorm(torch.autograd.Function):
    """The native batch norm (+ residual) (+ ReLU) on ``(R, C)`` float32 rows; running statistics updated in
    place in training."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, residual: Tensor | None, weight: Tensor, bias: Tensor,
                running_mean: Tensor | None, running_var: Tensor | None, training: bool, momentum: float,
                eps: float, relu: bool) -> Tensor:
        lib = _library()
        assert lib is not None
        R, C = x.shape
        nt = torch.get_num_threads()
        sfx = _SUFFIX[x.dtype]
        y = torch.empty_like(x)
        if training:
            mean, var, invstd = torch.empty(3, C).unbind(0)
            fn = getattr(lib, f"bn_forward_train_{sfx}")
            fn(x.data_ptr(), _ptr(residual), y.data_ptr(), weight.data_ptr(), bias.data_ptr(), mean.data_ptr(),
               var.data_ptr(), invstd.data_ptr(), R, C, eps, int(relu), nt)
            if running_mean is not None and running_var is not None:
                running_mean.lerp_(mean, momentum)
                running_var.lerp_(var * (R / max(R - 1, 1)), momentum)  # the unbiased variance, as PyTorch
        else:
            assert running_mean is not None and running_var is not None
            mean, invstd = running_mean.clone(), (running_var + eps).rsqrt()
            scale = weight * invstd
            fn = getattr(lib, f"bn_forward_eval_{sfx}")
            fn(x.data_ptr(), _ptr(residual), y.data_ptr(), mean.data_ptr(), scale.data_ptr(), bias.data_ptr(), R, C,
               int(relu), nt)
        ctx.save_for_backward(x, y if relu else None, weight, mean, invstd)  # y only for the ReLU's mask
        ctx.flags = (training, relu, residual is not None)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, ...]:
        x, y, weight, mean, invstd = ctx.saved_tensors
        training, relu, with_res = ctx.flags
        lib = _library()
        assert lib is not None
        R, C = x.shape
        dy = dy.to(x.dtype).contiguous()
        dx = torch.empty_like(x)
        dres = torch.empty_like(x) if with_res and relu else None
        dw, db = torch.empty(2, C).unbind(0)
        fn = getattr(lib, f"bn_backward_{_SUFFIX[x.dtype]}")
        mask = y if relu else x  # read only under the ReLU
        fn(x.data_ptr(), mask.data_ptr(), dy.data_ptr(), dx.data_ptr(), _ptr(dres), weight.data_ptr(), mean.data_ptr(),
           invstd.data_ptr(), dw.data_ptr(), db.data_ptr(), R, C, int(relu), int(training), torch.get_num_threads())
        if with_res and not relu:
            dres = dy
        return dx, dres, dw, db, None, None, None, None, None, None


def native_ok(x: Tensor, residual: Tensor | None = None, weight: Tensor | None = None) -> bool:
    """Whether :func:`fused_batch_norm` runs the native kernel on these tensors (float32 or bfloat16 on the CPU,
    contiguous, float32 parameters, not tracing or compiling, the library built)."""
    if torch.compiler.is_compiling() or torch.jit.is_scripting() or torch.jit.is_tracing():
        return False
    if torch.onnx.is_in_onnx_export():
        return False
    if x.dtype not in _SUFFIX or x.device.type != "cpu" or x.dim() < 2 or not x.is_contiguous() or x.numel() == 0:
        return False
    if residual is not None and (residual.shape != x.shape or residual.dtype != x.dtype
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
    if training and x.numel() == C:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {tuple(x.shape)}")
    # Where the residual needs a gradient, a fused ReLU's masked gradient would be needed by both branches: one
    # more activation-sized buffer at once in the backward pass (measured: +10 MiB at ST-GCN's NTU step, above
    # the unfused operators' peak). The ReLU then runs after the fused norm and residual.
    late_relu = relu and residual is not None and residual.requires_grad and torch.is_grad_enabled()
    w = weight if weight is not None else torch.ones(C)
    b = bias if bias is not None else torch.zeros(C)
    res = None if residual is None else residual.reshape(-1, C)
    y = _FusedBatchNorm.apply(x.reshape(-1, C), res, w, b, running_mean, running_var, training, momentum, eps,
                              relu and not late_relu).view(x.shape)
    return F.relu(y) if late_relu else y


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
