"""Frames -> keypoints in frame pixels, in one jitted function.

    predict = make_predict_fn(model, bbox=(x0, x1, y0, y1), frame_shape=(H, W))
    keypoints = predict(frames)  # (B, H, W) uint8 -> (B, K, 3) x, y, likelihood

preprocess (per-frame percentile normalisation, crop, pad, resize) ->
network in eval mode (by default its exact inference rewrite, fast_inference.py)
-> argmax + offset decoding -> back to frame pixels,
all inside one XLA program, so nothing waits on Python between stages.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jfacemap.nets.unet import FacemapUNet
from jfacemap.track.decode import SIGMA, decode_heatmaps
from jfacemap.track.fast_inference import fast_forward, inference_params
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
    fast: bool | None = None,
    compiler_options: dict | None = None,
) -> PredictFn:
    """Build the tracking function for frames of `frame_shape` (H, W).

    The model's current weights are captured (later changes to `model` are
    not seen; call again after training). BatchNorm runs on running
    statistics whatever mode the model is in.

    fast: run the inference rewrite of the network (`fast_inference.py`,
      equal up to float32 rounding, ~25 % faster on CPU); default: whenever
      the model allows it (grayscale, 3x3 kernels). False runs the Flax
      module itself.
    compiler_options: XLA options for the jit (e.g. fast_inference.EIGEN_CONV_OPTIONS).
    """
    expected = tuple(int(n) for n in frame_shape)[-2:]
    geom = crop_geometry(expected, bbox, NET_SIZE)
    # A full 256 x 256 frame needs no crop, pad or resize (the bilinear weights are exactly 1 and 0).
    identity_geometry = (geom.x0, geom.y0, geom.width, geom.height, geom.side) == (0, 0, NET_SIZE, NET_SIZE, NET_SIZE)
    stride = NET_SIZE / (NET_SIZE // model.downsample)
    if fast is None:
        fast = model.in_channels == 1 and model.kernel == 3
    if fast:
        state = jax.tree_util.tree_map(jnp.asarray, inference_params(model))
        forward = fast_forward
    else:
        graphdef, state = nnx.split(model)

        def forward(state, x):
            return nnx.merge(graphdef, state)(x, train=False)

    def predict(state, frames: jax.Array) -> jax.Array:
        if frames.ndim != 3 or tuple(frames.shape[1:]) != expected:
            raise ValueError(f"frames must be (B, {expected[0]}, {expected[1]}), got {tuple(frames.shape)}")
        x = normalize_percentile(frames, low, high)
        if not identity_geometry:
            x = apply_geometry(x, geom)
        heatmap, offset_x, offset_y = forward(state, x[..., None])
        kp = decode_heatmaps(heatmap, offset_x, offset_y, sigma=sigma, stride=stride)
        xy = keypoints_to_frame(kp[..., :2], geom)
        return jnp.concatenate([xy, kp[..., 2:]], axis=-1)

    return PredictFn(jax.jit(predict, compiler_options=compiler_options or None), state, geom)
