"""U-Net layers with hand-written gradients: the 3x3 / stride-2 max-pool,
train-mode BatchNorm (+ ReLU), and the first (one-channel) convolution.

Why: on XLA:CPU the automatic gradients of the first two cost more than
all the convolutions' gradients together. The max-pool's gradient is a
`select_and_scatter` (~0.5 s per batch of 8 256x256 frames for the four
pools, one thread) and BatchNorm's is a chain of broadcasts and reductions
XLA does not fuse. Written out as strided slices, pads and one reduction per
statistic they are 3-5x faster, with the same values: max-pool gradients are
identical (ties go to the first window element in row-major order, as
torch's and XLA's do); BatchNorm's agree to float32 rounding (tests in
`tests/test_layers.py`). A training step on one core went from ~1.9 to
~1.4 s (batch 8, 256 x 256); XLA's convolution weight gradients are most of
what remains (README, "Accuracy to expect on real data").
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
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
    zero = jnp.zeros((), g.dtype)
    # Window element (dy, dx) of output (i, j) sits at padded pixel (2i + dy,
    # 2j + dx). Collect the gradient per pixel parity (dy % 2, dx % 2) on
    # quarter-size grids, then interleave once: far cheaper than nine
    # full-size scatters.
    parity = [[None, None], [None, None]]
    for k in range(9):
        dy, dx = divmod(k, 3)
        part = jnp.where(arg == k, g, zero)
        part = jnp.pad(part, ((0, 0), (dy // 2, 1 - dy // 2), (dx // 2, 1 - dx // 2), (0, 0)))
        acc = parity[dy % 2][dx % 2]
        parity[dy % 2][dx % 2] = part if acc is None else acc + part
    rows = [jnp.stack(parity[py], axis=3) for py in range(2)]  # (B, Ho+1, Wo+1, 2, C)
    grid = jnp.stack(rows, axis=2).reshape(b, 2 * ho + 2, 2 * wo + 2, c)
    return (grid[:, 1 : h + 1, 1 : w + 1, :],)


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


def conv3x3_one_channel(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """'same' 3x3 convolution of a one-channel image, as a (B*H*W, 9) x (9, C)
    matrix product over the nine shifted copies of the image: equal to
    lax.conv with zero padding, and (forward and backward) several times
    faster on XLA:CPU than its generic convolution with one input channel.

    x: (B, H, W, 1); kernel: (3, 3, 1, C) HWIO -> (B, H, W, C)."""
    _, h, w, _ = x.shape
    xp = jnp.pad(x[..., 0], ((0, 0), (1, 1), (1, 1)))
    patches = jnp.stack([xp[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=-1)
    return jnp.dot(patches, kernel.reshape(9, kernel.shape[-1]), precision=lax.Precision.HIGHEST)
