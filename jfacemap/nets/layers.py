"""U-Net layers with hand-written gradients or rewritten for XLA:CPU: the
3x3 / stride-2 max-pool, train-mode BatchNorm (+ ReLU), the first
(one-channel) convolution, and the 3x3 convolution of a x2-upsampled map.

Why: on XLA:CPU the automatic gradients of the first two cost more than
all the convolutions' gradients together. The max-pool's gradient is a
`select_and_scatter` (~0.5 s per batch of 8 256x256 frames for the four
pools, one thread) and BatchNorm's is a chain of broadcasts and reductions
XLA does not fuse. Written out as strided slices, pads, broadcasts and one
reduction per statistic they are 3-5x faster, with the same values:
max-pool gradients go to the first window element in row-major order on a
tie, as torch's and XLA's do (a pixel that wins several windows sums their
gradients in another order, so equal to float32 rounding); BatchNorm's
agree to float32 rounding. The decoder's conv after a nearest upsample is
computed at low resolution (16 instead of 36 taps per low pixel), the
identity `jfacemap.track.fast_inference` uses for tracking. Tests:
`tests/test_layers.py`. A training step (batch 8, 256 x 256, one core)
went from ~1.9 s with XLA's own gradients to ~1.45 s; the 16-channel
convolutions at 256 x 256, which XLA runs on Eigen rather than YNNPACK,
are the largest remaining cost.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# ---------------------------------------------------------------- max-pool ---


def _pool_taps(x: jax.Array) -> list[jax.Array]:
    """The nine (B, Ho, Wo, C) strided views of x padded with -inf, one per
    3x3 window element, row-major; Ho = ceil(H / 2)."""
    _, h, w, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-jnp.inf)
    return [xp[:, dy : dy + h : 2, dx : dx + w : 2, :] for dy in range(3) for dx in range(3)]


@jax.custom_vjp
def max_pool_3x3_s2(x: jax.Array) -> jax.Array:
    """3x3 max-pool, stride 2, pad 1 with -inf (as torch's max_pool2d and
    nnx.max_pool): (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), C)."""
    taps = _pool_taps(x)
    out = taps[0]
    for tap in taps[1:]:
        out = jnp.maximum(out, tap)
    return out


def _max_pool_fwd(x):
    taps = _pool_taps(x)
    out, arg = taps[0], jnp.zeros(taps[0].shape, jnp.int8)
    for k, tap in enumerate(taps[1:], 1):
        better = tap > out  # strict: ties keep the earlier element
        out = jnp.where(better, tap, out)
        arg = jnp.where(better, jnp.int8(k), arg)
    return out, (arg, x.shape)


def _max_pool_bwd(res, g):
    arg, (b, h, w, c) = res
    ho, wo = g.shape[1:3]
    # Input row y = 2a + r lies in the windows of output rows a (window row
    # dy = r + 1) and, when r = 1, a + 1 (dy = 0); columns likewise. So the
    # gradient is, per 2x2 output-resolution block, a sum over the four
    # candidate windows (a + ci, b + cj) of g where the window's argmax is
    # this pixel. Written as broadcasts over (B, Ho, 2, Wo, 2, C) it is one
    # elementwise fusion that XLA merges with its consumers: ~4 % of a
    # training step faster than gathering per-parity grids and interleaving
    # them with a concatenate.
    g_next = jnp.pad(g, ((0, 0), (0, 1), (0, 1), (0, 0)))
    arg_next = jnp.pad(arg, ((0, 0), (0, 1), (0, 1), (0, 0)), constant_values=9)  # 9: no window element
    r = np.arange(2)
    zero = jnp.zeros((), g.dtype)
    out = None
    for ci in range(2):
        for cj in range(2):
            dy, dx = r[:, None] + 1 - 2 * ci, r[None, :] + 1 - 2 * cj
            element = np.where((dy >= 0) & (dx >= 0), 3 * dy + dx, -1).astype(np.int8)  # -1: not in this window
            window_g = g_next[:, ci : ci + ho, cj : cj + wo, :][:, :, None, :, None, :]
            window_arg = arg_next[:, ci : ci + ho, cj : cj + wo, :][:, :, None, :, None, :]
            part = jnp.where(window_arg == element.reshape(1, 1, 2, 1, 2, 1), window_g, zero)
            out = part if out is None else out + part
    return (out.reshape(b, 2 * ho, 2 * wo, c)[:, :h, :w, :],)


max_pool_3x3_s2.defvjp(_max_pool_fwd, _max_pool_bwd)

# -------------------------------------------------------------- batch norm ---


def _channel_sum(x: jax.Array) -> jax.Array:
    return jnp.sum(x, axis=tuple(range(x.ndim - 1)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_norm_train(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float, relu: bool = False):
    """Train-mode BatchNorm over all axes but the last (channels), optionally
    followed by a ReLU (fused: one pass forward, one backward).

    Args:
      x: (..., C) activations; scale, bias: (C,); epsilon: added to the
        variance; relu: apply max(., 0) to the output.
    Returns:
      (y, mean, var): y = [relu]((x - mean) / sqrt(var + epsilon) * scale +
      bias), and the batch mean and biased variance (C,) for the running
      statistics. Only y is differentiated: the cotangents of mean and var
      are ignored (running statistics are not trained).
    """
    return _batch_norm(x, scale, bias, epsilon, relu)[0]


def _batch_norm(x, scale, bias, epsilon, relu):
    n = x.size // x.shape[-1]
    mean = _channel_sum(x) / n
    centred = x - mean
    var = _channel_sum(centred * centred) / n  # two-pass variance, like torch
    inv_std = lax.rsqrt(var + epsilon)
    y = centred * (inv_std * scale) + bias
    if relu:
        y = jnp.maximum(y, 0)
    return (y, mean, var), (centred, inv_std, scale, y if relu else None)


def _batch_norm_bwd(epsilon, relu, res, cotangents):
    centred, inv_std, scale, y = res
    g = cotangents[0]
    if relu:
        g = jnp.where(y > 0, g, jnp.zeros((), g.dtype))
    n = centred.size // centred.shape[-1]
    d_bias = _channel_sum(g)
    d_scale = _channel_sum(g * centred) * inv_std
    # d/dx of the normalised output, with the batch statistics' own dependence on x.
    dx = (scale * inv_std / n) * (n * g - d_bias - centred * (inv_std * d_scale))
    return dx, d_scale, d_bias


batch_norm_train.defvjp(_batch_norm, _batch_norm_bwd)  # _batch_norm returns (outputs, residuals)

# ------------------------------------------------------ single-channel conv ---


def _shifted_images(x: jax.Array) -> jax.Array:
    """(9, B*H*W): the nine 3x3-window shifts of a (B, H, W) image, zero
    padded, in row-major window order."""
    _, h, w = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1)))
    return jnp.stack([xp[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]).reshape(9, -1)


@jax.custom_vjp
def conv3x3_one_channel(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """'same' 3x3 convolution of a one-channel image, as a matrix product of
    the nine shifted copies of the image (9, B*H*W) with the kernel (9, C):
    equal to lax.conv with zero padding, and (forward and backward) several
    times faster on XLA:CPU than its generic convolution with one input
    channel. The shifts are stacked first so that the kernel gradient,
    shifts (9, M) x output gradient (M, C), needs no transpose of the
    (M, C) gradient (which cost as much as the product itself).

    x: (B, H, W, 1); kernel: (3, 3, 1, C) HWIO -> (B, H, W, C)."""
    b, h, w, _ = x.shape
    shifts = _shifted_images(x[..., 0])
    out = lax.dot_general(shifts, kernel.reshape(9, -1), (((0,), (0,)), ((), ())), precision=lax.Precision.HIGHEST)
    return out.reshape(b, h, w, -1)


def _conv_one_fwd(x, kernel):
    return conv3x3_one_channel(x, kernel), (x, kernel)


def _conv_one_bwd(res, g):
    x, kernel = res
    b, h, w, _ = x.shape
    c = kernel.shape[-1]
    g = g.reshape(-1, c)
    d_kernel = jnp.dot(_shifted_images(x[..., 0]), g, precision=lax.Precision.HIGHEST).reshape(kernel.shape)
    d_shifts = jnp.dot(g, kernel.reshape(9, c).T, precision=lax.Precision.HIGHEST).reshape(b, h, w, 9)
    d_padded = None
    for k in range(9):  # each shift's gradient goes back to where that shift read
        dy, dx = divmod(k, 3)
        part = jnp.pad(d_shifts[..., k], ((0, 0), (dy, 2 - dy), (dx, 2 - dx)))
        d_padded = part if d_padded is None else d_padded + part
    return d_padded[:, 1 : h + 1, 1 : w + 1, None], d_kernel


conv3x3_one_channel.defvjp(_conv_one_fwd, _conv_one_bwd)

# ---------------------------------------------- 3x3 conv of an upsampled map ---

_DN = ("NHWC", "HWIO", "NHWC")


def conv_nhwc(x: jax.Array, w: jax.Array, padding="SAME") -> jax.Array:
    """Stride-1 convolution, x (B, H, W, C) NHWC, w HWIO (default precision, as nnx.Conv)."""
    return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_DN)


def subpixel_kernels(w: jax.Array) -> list[list[jax.Array]]:
    """3x3 HWIO kernel applied after a nearest x2 upsample -> four 2x2
    kernels on the low-resolution input, [row phase][column phase].

    Output row 2i+a reads upsampled rows 2i+a-1 .. 2i+a+1, i.e. low rows
    (i-1, i, i) for a = 0 and (i, i, i+1) for a = 1: taps on the same low
    row are summed. Phase 0 pairs with low rows (i-1, i) (pad 1 before),
    phase 1 with (i, i+1) (pad 1 after); the same along columns.
    Differentiable (jnp), so training can use it on the live kernel."""
    w = jnp.asarray(w, jnp.float32)

    def fold(k, axis: int, phase: int):
        t = [jnp.take(k, i, axis=axis) for i in range(3)]
        pair = (t[0], t[1] + t[2]) if phase == 0 else (t[0] + t[1], t[2])
        return jnp.stack(pair, axis=axis)

    return [[fold(fold(w, 0, a), 1, b) for b in range(2)] for a in range(2)]


def conv3x3_of_upsampled(z: jax.Array, sub) -> jax.Array:
    """'same' 3x3 conv of nearest_upsample_x2(z), computed at z's resolution.

    z: (B, h, w, C); sub: `subpixel_kernels` of the (3, 3, C, O) kernel
    -> (B, 2h, 2w, O). Four 2x2 convolutions, one per output phase: 16
    instead of 36 taps per low-resolution pixel, and the upsampled map is
    never built. Equal to the direct form up to float32 rounding."""
    pads = ((1, 0), (0, 1))  # phase 0: low pixels (i-1, i); phase 1: (i, i+1)
    phases = [[conv_nhwc(z, sub[a][b], (pads[a], pads[b])) for b in range(2)] for a in range(2)]
    bsz, h, w, c = phases[0][0].shape
    # (a, b, B, h, w, O) -> (B, h, a, w, b, O) -> (B, 2h, 2w, O)
    return jnp.stack([jnp.stack(row) for row in phases]).transpose(2, 3, 0, 4, 1, 5).reshape(bsz, 2 * h, 2 * w, c)
