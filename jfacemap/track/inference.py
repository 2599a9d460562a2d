"""Frames -> keypoints in frame pixels, in one jitted function.

    predict = make_predict_fn(model, bbox=(x0, x1, y0, y1), frame_shape=(H, W))
    keypoints = predict(frames)  # (B, H, W) uint8 -> (B, K, 3) x, y, likelihood

preprocess (per-frame percentile normalisation, crop, pad, resize) ->
network in eval mode -> argmax + offset decoding -> back to frame pixels,
all inside one XLA program, so nothing waits on Python between stages.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jfacemap.nets.unet import FacemapUNet
from jfacemap.track.decode import SIGMA, decode_heatmaps
from jfacemap.track.preprocess import (
    NET_SIZE,
    CropGeometry,
    apply_geometry,
    crop_geometry,
    keypoints_to_frame,
    normalize_percentile,
)


class PredictFn:
    """A jitted frames -> keypoints function, with the geometry it uses.

    Call with (B, H, W) frames (uint8 or float; any B, each new B compiles
    once) -> (B, K, 3) float32 x, y in frame pixels and likelihood.
    """

    def __init__(self, fn: Callable, state, geometry: CropGeometry):
        self._fn, self._state, self.geometry = fn, state, geometry

    def __call__(self, frames: jax.Array) -> jax.Array:
        return self._fn(self._state, frames)


def make_predict_fn(
    model: FacemapUNet,
    bbox: Sequence[float] | None,
    frame_shape: Sequence[int],
    *,
    sigma: float = SIGMA,
    low: float = 1.0,
    high: float = 99.0,
) -> PredictFn:
    """Build the tracking function for frames of `frame_shape` (H, W).

    The model's current weights are captured (later changes to `model` are
    not seen; call again after training). BatchNorm runs on running
    statistics whatever mode the model is in.
    """
    expected = tuple(int(n) for n in frame_shape)[-2:]
    geom = crop_geometry(expected, bbox, NET_SIZE)
    graphdef, state = nnx.split(model)
    stride = NET_SIZE / (NET_SIZE // model.downsample)

    def predict(state, frames: jax.Array) -> jax.Array:
        if frames.ndim != 3 or tuple(frames.shape[1:]) != expected:
            raise ValueError(f"frames must be (B, {expected[0]}, {expected[1]}), got {tuple(frames.shape)}")
        net = nnx.merge(graphdef, state)
        x = apply_geometry(normalize_percentile(frames, low, high), geom)[..., None]
        out = net(x, train=False)
        kp = decode_heatmaps(out.heatmap, out.offset_x, out.offset_y, sigma=sigma, stride=stride)
        xy = keypoints_to_frame(kp[..., :2], geom)
        return jnp.concatenate([xy, kp[..., 2:]], axis=-1)

    return PredictFn(jax.jit(predict), state, geom)
