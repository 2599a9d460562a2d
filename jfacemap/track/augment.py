"""Training augmentation: random crop box, pad to square, resize, flip, intensity.

Pure and jittable: every sample gets its own random box, so the crop / pad /
resize is done as a per-sample separable bilinear resample (two (S, H) and
(S, W) weight matrices, S = 256) rather than with static slicing.

    images, keypoints = augment_batch(key, frames, keypoints)            # random
    images, keypoints = augment_batch(key, frames, keypoints, IDENTITY)  # == preprocess

Geometry (see `jfacemap.track.preprocess` for the conventions):
- the base box is the user bbox (default: whole frame) as `crop_geometry`
  makes it; each of its four sides moves by a fraction U(lo, hi) of the box's
  width (left/right) or height (top/bottom), by default outwards only and
  stopping at the frame's edge, as the original does (so a whole-frame box
  is never jittered: real context is added around a user box, never zeros);
  `ZOOM` also moves sides inwards (crops) and past the frame (zero padding);
  rounded to whole pixels;
- the jittered box is zero-padded to a centred square with the same rule as
  `crop_geometry` (odd difference -> side + 1) and resized to S with the same
  half-pixel bilinear taps as `apply_geometry`; with no jitter the result
  equals `preprocess` (the test checks it);
- keypoints move with the image content. Their label convention is
  preprocess's (pure scale, no half-pixel shift): a label is the exact
  position of the point in the augmented image plus the constant
  0.5 * (1 - S / side_base) that `keypoints_to_network` implies at the base
  geometry, so the network learns one constant offset that inference's
  `keypoints_to_frame` undoes (zero for 256 x 256 frames);
- keypoints that fall outside the jittered box are not visible: NaN;
- horizontal flip mirrors the image and x of the keypoints; with
  `swap_pairs` it also swaps the labels of left/right pairs (`mirror`, from
  `skeleton.mirror_permutation`): a mirrored animal has its sides swapped.
  Facemap's face has no pairs;
- intensity: the original's (brightness in units of the image's maximum,
  contrast about its mean, clipped to [0, maximum]) or, with
  intensity="affine", x * contrast + brightness on the frame content
  (padding stays 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jfacemap.track.preprocess import NET_SIZE, context_side, crop_geometry


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (SPEC 1, Training); hashable, so jit-static.

    jitter: (lo, hi) fraction of the box size each side moves by.
    crop_prob: chance a sample's box is jittered at all (1 = always).
    inward_prob: chance that a side moves inwards (cropping the box) rather
      than outwards (0 = the original's: boxes only grow).
    clamp: outward moves stop at the frame's edge, as the original's do (no
      zero padding beyond the frame; a whole-frame box then never changes).
    flip_prob: chance of a horizontal flip. Off by default: a lab trains on
      labels from its own camera, where the animal faces one way, and tracks
      videos from that camera; flipped frames are then frames it never sees,
      and on mirror-mouse they cost accuracy (held-out mean over the seed 0/1/2
      splits 6.70 px with p = 0.5 against 5.88 px without; training frames 2.1
      against 1.27 px; `python -m bench.bench_train_real --seed S`). The
      original flips with p = 0.5. `ZOOM` (the shipped base model, which must
      work on faces pointing either way) and the `finetune` recipe flip.
    swap_pairs: a flip also swaps the labels of left/right bodypart pairs
      (`skeleton.mirror_permutation`): right when the animal may face either
      way; off by default, as the original: on mirror-mouse (animals that
      always face right) swapping raised the held-out mean error from 6.26 to
      8.44 px (seed-0 split; median 3.46 -> 3.17).
    contrast: (lo, hi) gain; brightness: max |offset| (normalised units);
    intensity_prob: chance that gain and offset are applied (together).
    intensity: "affine" = x * gain + offset on the frame's content (padding
      stays 0); "original" = the original program's: on the network image,
      brightness offset * its maximum, contrast about its mean, clipped to
      [0, maximum].
    size: output side S.
    """

    jitter: tuple[float, float] = (0.10, 0.30)
    crop_prob: float = 1.0
    inward_prob: float = 0.0
    clamp: bool = True
    flip_prob: float = 0.0
    swap_pairs: bool = False
    contrast: tuple[float, float] = (0.7, 1.3)
    brightness: float = 0.2
    intensity_prob: float = 0.5
    intensity: str = "original"
    size: int = NET_SIZE


IDENTITY = AugmentConfig(crop_prob=0.0, flip_prob=0.0, intensity_prob=0.0)
# Boxes that also shrink (crops that zoom in and cut keypoints) and grow past the frame
# (zero padding): scale augmentation, used for the shipped synthetic base model. On real
# labels with the paper's 36 epochs it does not fit the training frames (bench_train_real).
ZOOM = AugmentConfig(inward_prob=0.5, clamp=False, flip_prob=0.5, intensity="affine")


class AugmentParams(NamedTuple):
    """Per-sample draws. box: (B, 4) int32 x0, x1, y0, y1 (half-open, frame
    pixels, may extend past the frame); flip: (B,) bool; gain, offset: (B,)."""

    box: jax.Array
    flip: jax.Array
    gain: jax.Array
    offset: jax.Array


def sample_params(
    key: jax.Array, batch: int, frame_shape: Sequence[int], config: AugmentConfig = AugmentConfig(), bbox=None
) -> AugmentParams:
    """Draw `batch` samples' augmentation parameters around the base bbox."""
    g = crop_geometry(frame_shape, bbox, config.size)
    k_amt, k_sign, k_crop, k_flip, k_on, k_gain, k_off = jax.random.split(key, 7)
    lo, hi = config.jitter
    amount = jax.random.uniform(k_amt, (batch, 4), minval=lo, maxval=hi)
    sign = jnp.where(jax.random.bernoulli(k_sign, config.inward_prob, (batch, 4)), 1.0, -1.0)  # +1 = inwards
    amount = amount * sign * jax.random.bernoulli(k_crop, config.crop_prob, (batch, 1))
    extent = jnp.array([g.width, g.width, g.height, g.height], jnp.float32)
    base = jnp.array([g.x0, g.x0 + g.width, g.y0, g.y0 + g.height], jnp.float32)
    box = jnp.round(base + amount * extent * jnp.array([1.0, -1.0, 1.0, -1.0])).astype(jnp.int32)
    if config.clamp:
        height, width = (int(n) for n in tuple(frame_shape)[-2:])
        box = jnp.clip(box, 0, jnp.array([width, width, height, height], jnp.int32))
    on = jax.random.bernoulli(k_on, config.intensity_prob, (batch,))
    c_lo, c_hi = config.contrast
    gain = jnp.where(on, jax.random.uniform(k_gain, (batch,), minval=c_lo, maxval=c_hi), 1.0)
    offset = jnp.where(on, jax.random.uniform(k_off, (batch,), minval=-1.0, maxval=1.0) * config.brightness, 0.0)
    flip = jax.random.bernoulli(k_flip, config.flip_prob, (batch,))
    return AugmentParams(box, flip, gain, offset)


def _square(box: jax.Array, context: float = 1.0):
    """Square side and centred pads of boxes, `crop_geometry`'s rule, traced."""
    w, h = box[:, 1] - box[:, 0], box[:, 3] - box[:, 2]
    side = jnp.maximum(w, h)
    side = context_side(side + ((w != h) & ((side - jnp.minimum(w, h)) % 2 == 1)), context)
    return side, (side - w) // 2, (side - h) // 2


def _axis_matrix(start, stop, pad, side, n_src: int, size: int) -> jax.Array:
    """(size, n_src) bilinear weights for one axis of one sample: output i
    reads square position (i + 0.5) * side / size - 0.5 (clamped at 0, like
    torch), two taps; taps on padding, outside the box or outside the frame
    weigh 0 (zeros)."""
    i = jnp.arange(size, dtype=jnp.float32)
    sidef = side.astype(jnp.float32)
    src = jnp.maximum((i + 0.5) * (sidef / size) - 0.5, 0.0)
    p0 = jnp.floor(src)
    p1 = jnp.minimum(p0 + 1, sidef - 1)
    w1 = src - p0
    out = jnp.zeros((size, n_src), jnp.float32)
    for p, w in ((p0, 1.0 - w1), (p1, w1)):
        pix = p.astype(jnp.int32) - pad + start  # frame pixel
        ok = (pix >= start) & (pix < stop) & (pix >= 0) & (pix < n_src)
        out = out + jax.nn.one_hot(jnp.where(ok, pix, -1), n_src) * jnp.where(ok, w, 0.0)[:, None]
    return out


def apply_params(
    frames: jax.Array, keypoints: jax.Array, params: AugmentParams, base_side: int, size: int = NET_SIZE,
    intensity: str = "affine", mirror: Sequence[int] | None = None, context: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """Apply drawn parameters.

    Args:
      frames: (B, H, W) float, percentile-normalised.
      keypoints: (B, K, 2+) x, y in frame pixels (extra columns ignored), NaN = missing.
      params: from `sample_params`.
      base_side: square side of the base (un-jittered) geometry, for the
        label convention (see module docstring).
      mirror: (K,) partner of each keypoint, whose label a flipped sample
        takes (left/right pairs); None = no pairs.
      context: each box's square is this many times wider (`crop_geometry`).
    Returns:
      images (B, size, size, 1) float32; keypoints (B, K, 2) float32 in
      network pixels, NaN where missing or outside the box.
    """
    _, height, width = frames.shape
    box = params.box
    side, pad_x, pad_y = _square(box, context)
    rows = jax.vmap(lambda a, b, p, s: _axis_matrix(a, b, p, s, height, size))(box[:, 2], box[:, 3], pad_y, side)
    cols = jax.vmap(lambda a, b, p, s: _axis_matrix(a, b, p, s, width, size))(box[:, 0], box[:, 1], pad_x, side)
    x = frames.astype(jnp.float32)
    if intensity == "affine":
        x = x * params.gain[:, None, None] + params.offset[:, None, None]
    img = jnp.einsum("bih,bhw,bjw->bij", rows, x, cols, precision=jax.lax.Precision.HIGHEST)
    if intensity == "original":
        img = _original_intensity(img, params.gain, params.offset)
    elif intensity != "affine":
        raise ValueError(f"unknown intensity augmentation {intensity!r}; choose affine or original")
    img = jnp.where(params.flip[:, None, None], img[:, :, ::-1], img)

    kp = jnp.asarray(keypoints, jnp.float32)[..., :2]
    scale = size / side.astype(jnp.float32)  # (B,)
    lo = jnp.stack([box[:, 0], box[:, 2]], -1).astype(jnp.float32)  # (B, 2) box origin x, y
    hi = jnp.stack([box[:, 1], box[:, 3]], -1).astype(jnp.float32)
    pad = jnp.stack([pad_x, pad_y], -1).astype(jnp.float32)
    # Exact position in the output image (inverse of the resample's map).
    pos = (kp - lo[:, None] + pad[:, None] + 0.5) * scale[:, None, None] - 0.5
    pos_x = jnp.where(params.flip[:, None], (size - 1) - pos[..., 0], pos[..., 0])
    pos = jnp.stack([pos_x, pos[..., 1]], -1) + 0.5 * (1.0 - size / base_side)
    # Pixel k covers [k - 0.5, k + 0.5): the box [x0, x1) spans [x0 - 0.5, x1 - 0.5).
    inside = jnp.all((kp >= lo[:, None] - 0.5) & (kp < hi[:, None] - 0.5), axis=-1, keepdims=True)
    pos = jnp.where(inside, pos, jnp.nan)
    if mirror is not None and tuple(mirror) != tuple(range(kp.shape[1])):
        pos = jnp.where(params.flip[:, None, None], pos[:, jnp.asarray(mirror)], pos)
    return img[..., None], pos


def _original_intensity(img: jax.Array, gain: jax.Array, offset: jax.Array) -> jax.Array:
    """The original's `randomly_adjust_contrast` on (B, S, S) images, where drawn (gain != 1 or offset != 0)."""
    top = jnp.max(img, axis=(1, 2), keepdims=True)
    mean = jnp.mean(img, axis=(1, 2), keepdims=True)
    out = img + offset[:, None, None] * top
    out = jnp.clip(jnp.minimum(top, (out - mean) * gain[:, None, None] + mean), 0.0, top)
    drawn = (gain != 1.0) | (offset != 0.0)
    return jnp.where(drawn[:, None, None], out, img)


@partial(jax.jit, static_argnames=("config", "bbox", "mirror", "context"))
def augment_batch(
    key: jax.Array,
    frames: jax.Array,
    keypoints: jax.Array,
    config: AugmentConfig = AugmentConfig(),
    bbox: tuple[int, int, int, int] | None = None,
    mirror: Sequence[int] | None = None,
    context: float = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """Randomly augment a batch of frames of one size.

    Args:
      key: PRNG key.
      frames: (B, H, W) float, percentile-normalised (`normalize_percentile`).
      keypoints: (B, K, 2 or 3) x, y[, likelihood] in frame pixels, NaN = missing.
      config: settings (static); `IDENTITY` reproduces `preprocess`.
      bbox: (x0, x1, y0, y1) base box in frame pixels (static tuple), None = frame.
      mirror: (K,) partner of each keypoint, swapped on a flip (static);
        None = no pairs.
      context: the model's input context (static; `crop_geometry`).
    Returns:
      images (B, S, S, 1) float32 and keypoints (B, K, 2) float32 in network
      pixels (NaN preserved, and NaN for points cropped away).
    """
    base = crop_geometry(frames.shape, bbox, config.size, context)
    params = sample_params(key, frames.shape[0], frames.shape, config, bbox)
    return apply_params(frames, keypoints, params, base.side, config.size, config.intensity, mirror, context)
