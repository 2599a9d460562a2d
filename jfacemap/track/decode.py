"""Heatmaps + offsets <-> keypoints on the network's output grid.

Conventions (those of the original program, facemap 1.0.8):
- The grid is G x G (64) cells for a 256-pixel input: stride 4. Cell (r, c)
  sits at pixel (x, y) = (4c, 4r) of the network input: no half-cell shift.
- Offset targets are (cell - true) / (2 sigma) in grid cells, sigma = 3
  cells; so true = cell - 2 sigma * offset (the original multiplies the
  offset by -2 sigma and adds the cell index).
- Likelihood = sigmoid(heatmap peak). The eval-mode heatmap is a ReLU
  output, so likelihoods lie in [0.5, 1); sigmoid is monotone, so it ranks
  like the raw peak. No peak at all (an all-zero heatmap) is NaN with
  likelihood 0.
- Arrays are channels-last, (B, G, G, K) like the network outputs; x is the
  column axis, y the row axis. (The original's head and variable names have
  x and y swapped; the values are the same.)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

SIGMA = 3.0  # grid cells
HEATMAP_SUM = 10.0
_TARGET_EPS = 1e-3  # the original's epsilon when normalising target heatmaps


def cell_to_input(offset: jax.Array, cell: jax.Array, sigma: float = SIGMA, stride: float = 4.0) -> jax.Array:
    """Input pixels of a keypoint read at grid index `cell` (a column for x, a row for y) with
    the offset there: the original's order of operations, offset * (-2 sigma) + cell, then * stride."""
    return (offset * (-2.0 * sigma) + cell.astype(jnp.float32)) * stride


def decode_heatmaps(
    heatmap: jax.Array,
    offset_x: jax.Array,
    offset_y: jax.Array,
    sigma: float = SIGMA,
    stride: float = 4.0,
) -> jax.Array:
    """Network outputs -> keypoints in network-input pixels.

    Args:
      heatmap, offset_x, offset_y: (B, G, G, K) float.
      sigma: offset scale, grid cells (the training target's sigma).
      stride: input pixels per grid cell (256 / 64 = 4).
    Returns:
      (B, K, 3) float32: x, y (input pixels, 0..256) and likelihood.
      The peak is the first maximum in row-major order. A heatmap with no
      peak (all cells <= 0 after the ReLU: the network sees no such point)
      gives x = y = NaN and likelihood 0, never a point at cell (0, 0).
    """
    b, gh, gw, k = heatmap.shape
    flat = heatmap.reshape(b, gh * gw, k)
    index = jnp.argmax(flat, axis=1)  # (B, K), row-major cell index
    peak = jnp.take_along_axis(flat, index[:, None, :], axis=1)[:, 0]

    def at_peak(a: jax.Array) -> jax.Array:
        return jnp.take_along_axis(a.reshape(b, gh * gw, k), index[:, None, :], axis=1)[:, 0]

    x = cell_to_input(at_peak(offset_x), index % gw, sigma, stride)
    y = cell_to_input(at_peak(offset_y), index // gw, sigma, stride)
    found = peak > 0
    x, y = jnp.where(found, x, jnp.nan), jnp.where(found, y, jnp.nan)
    likelihood = jnp.where(found, jax.nn.sigmoid(peak), 0.0)
    return jnp.stack([x, y, likelihood], axis=-1).astype(jnp.float32)


def unmirror_outputs(heatmap: jax.Array, offset_x: jax.Array, offset_y: jax.Array, sigma: float = SIGMA,
                     stride: float = 4.0) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The network's outputs for a left-right mirrored input, mapped onto the grid of the input as is.

    Input column x' of the mirrored image is column (N - 1) - x of the original (N = G * stride).
    Its grid flipped back puts cell c at original pixel stride * c + (stride - 1), a fraction
    (stride - 1) / stride of a cell to the right of where cell c sits: the heatmap is resampled
    by that fraction (linear; the first column repeats) and the offsets are negated and shifted
    by the same amount, so that `decode_heatmaps` of the result reads original input pixels.
    Keypoints keep their channels (no left/right partner swap: a side view's keypoints are
    their own mirror images, as in the base model's flip augmentation).

    Args: (B, G, G, K) float each, the outputs for the mirrored input. Returns the same shapes.
    """
    shift = (stride - 1.0) / stride  # cells
    hm = heatmap[:, :, ::-1]
    left = jnp.concatenate([hm[:, :, :1], hm[:, :, :-1]], axis=2)  # cell c - 1
    hm = (1.0 - shift) * hm + shift * left
    ox = -offset_x[:, :, ::-1] - shift / (2.0 * sigma)
    return hm, ox, offset_y[:, :, ::-1]


def average_with_mirror(
    outputs: tuple[jax.Array, jax.Array, jax.Array],
    mirrored: tuple[jax.Array, jax.Array, jax.Array],
    sigma: float = SIGMA,
    stride: float = 4.0,
    below: float | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Test-time flip averaging: the mean of the outputs (heatmap, offset_x, offset_y; (B, G, G, K)
    each) for an input and those for its mirror image, mapped back (`unmirror_outputs`).

    below: average only the frames whose `mean_likelihood` (of `outputs`) is below it and keep
      the others' outputs as they are; None: every frame. Each frame's result depends on that
      frame alone.
    """
    back = unmirror_outputs(*mirrored, sigma=sigma, stride=stride)
    mean = tuple((a + b) / 2.0 for a, b in zip(outputs, back))
    if below is None:
        return mean
    unsure = (mean_likelihood(outputs[0]) < below)[:, None, None, None]
    return tuple(jnp.where(unsure, m, o) for m, o in zip(mean, outputs))


def mean_likelihood(heatmap: jax.Array) -> jax.Array:
    """(B,) each frame's likelihood (sigmoid of the heatmap peak) averaged over its K keypoints;
    heatmap (B, G, G, K)."""
    return jnp.mean(jax.nn.sigmoid(jnp.max(heatmap, axis=(1, 2))), axis=-1)


class HeatmapTargets(NamedTuple):
    """Training targets, (B, G, G, K) each (valid: (B, K)).

    heatmap: Gaussian, sum ~10 per labelled keypoint, 0 where unlabelled.
    offset_x, offset_y: (cell - true) / (2 sigma), 0 where unlabelled.
    mask: True within `sigma` cells of a labelled keypoint (where the offset
    loss applies); all False for unlabelled ones. valid: label present.
    """

    heatmap: jax.Array
    offset_x: jax.Array
    offset_y: jax.Array
    mask: jax.Array
    valid: jax.Array


def heatmap_targets(
    keypoints: jax.Array,
    grid: int = 64,
    sigma: float = SIGMA,
    stride: float = 4.0,
    total: float = HEATMAP_SUM,
) -> HeatmapTargets:
    """Targets for keypoints in network-input pixels.

    Args:
      keypoints: (B, K, 2) x, y in input pixels; NaN (either coordinate) =
        not labelled: masked out everywhere, never a target at 0.
      grid: output grid side G; sigma: Gaussian width and offset scale,
        grid cells; stride: input pixels per cell; total: heatmap sum.
    """
    keypoints = jnp.asarray(keypoints, jnp.float32)
    valid = jnp.all(jnp.isfinite(keypoints), axis=-1)  # (B, K)
    true = jnp.where(valid[..., None], keypoints, 0.0) / stride  # grid cells
    cells = jnp.arange(grid, dtype=jnp.float32)
    dx = cells[None, None, :, None] - true[:, None, None, :, 0]  # (B, 1, G, K): columns
    dy = cells[None, :, None, None] - true[:, None, None, :, 1]  # (B, G, 1, K): rows
    dx, dy = jnp.broadcast_arrays(dx, dy)
    gauss = jnp.exp(-(dx**2 + dy**2) / (2 * sigma**2))
    gauss = total * gauss / (_TARGET_EPS + jnp.sum(gauss, axis=(1, 2), keepdims=True))
    keep = valid[:, None, None, :]
    mask = (jnp.sqrt(dx**2 + dy**2) <= sigma) & keep
    zero = jnp.zeros_like(gauss)
    return HeatmapTargets(
        heatmap=jnp.where(keep, gauss, zero),
        offset_x=jnp.where(keep, dx / (2 * sigma), zero),
        offset_y=jnp.where(keep, dy / (2 * sigma), zero),
        mask=mask,
        valid=valid,
    )
