"""Frames -> keypoints in frame pixels, in one jitted function.

    predict = make_predict_fn(model, bbox=(x0, x1, y0, y1), frame_shape=(H, W))
    keypoints = predict(frames)  # (B, H, W) uint8 -> (B, K, 3) x, y, likelihood
    keypoints = predict_frames(predict, frames, batch_size=8)   # any N, in fixed-size batches

preprocess (per-frame percentile normalisation, crop, pad, resize) ->
network in eval mode (by default its exact inference rewrite, fast_inference.py)
[-> for the frames it is unsure of, the mirrored frame too, averaged in: the
model's flip averaging] -> argmax + offset decoding (or the layout prior) ->
back to frame pixels, all inside one XLA program, so nothing waits on Python
between stages.

With more than one local device (GPUs, TPU cores, or forced CPU devices) a
batch is split across all of them (data parallel, `jax.sharding`): the
weights are replicated, every device tracks B / n frames, and the keypoints
equal a one-device run (each frame's result depends on that frame alone).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jfacemap.nets.unet import FacemapUNet
from jfacemap.track.decode import SIGMA, average_with_mirror, mean_likelihood
from jfacemap.track.shape_prior import decode_keypoints
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
    `n_devices`: how many devices share each batch; `flip_average`: whether frames' outputs
    are averaged with their mirror images'; `flip_average_below`: only frames whose mean
    likelihood is below it (None: all).
    """

    def __init__(self, fn: Callable, state, geometry: CropGeometry, n_devices: int = 1,
                 flip: tuple[bool, float | None] = (False, None)):
        self._fn, self._state, self.geometry, self.n_devices = fn, state, geometry, n_devices
        self.flip_average, self.flip_average_below = flip

    def __call__(self, frames: jax.Array) -> jax.Array:
        n = len(frames)
        pad = -n % self.n_devices
        if pad:  # each device takes an equal share: pad with copies of the last frame, drop their rows
            xp = np if isinstance(frames, np.ndarray) else jnp
            frames = xp.concatenate([frames, xp.repeat(frames[-1:], pad, axis=0)])
            return self._fn(self._state, frames)[:n]
        return self._fn(self._state, frames)

    def compiled(self, frames_shape: Sequence[int], dtype=np.uint8) -> Callable[[np.ndarray], jax.Array]:
        """The same function compiled now, ahead of time, for frames of exactly `frames_shape`
        (B, H, W) and `dtype`: calling it never traces or compiles (a live tracker's first real frame
        must not wait for XLA); other shapes or dtypes raise TypeError. B must be a multiple of
        `n_devices`."""
        if frames_shape[0] % self.n_devices:
            raise ValueError(f"batch {frames_shape[0]} is not a multiple of the {self.n_devices} devices")
        spec = jax.ShapeDtypeStruct(tuple(int(n) for n in frames_shape), np.dtype(dtype))
        run = self._fn.lower(self._state, spec).compile()
        state = self._state
        return lambda frames: run(state, frames)


def flip_setting(model: FacemapUNet, flip_average: bool | None = None) -> tuple[bool, float | None]:
    """(average with the mirror image?, only frames whose mean likelihood is below this; None: all).

    flip_average None: the model's own setting (`model.flip_average`, `model.flip_average_below`,
    from model.json); True: every frame; False: none.
    """
    if flip_average is None and getattr(model, "flip_average", False):
        return True, getattr(model, "flip_average_below", None)
    return bool(flip_average), None


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
    devices: Sequence[jax.Device] | None = None,
    shape_prior: bool = True,
    flip_average: bool | None = None,
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
    devices: the devices that share each batch (data parallel); default: every local device.
    shape_prior: decode with the model's keypoint-layout prior (`model.shape_prior`,
      `shape_prior.py`) when it has one; False: each heatmap's argmax, as the original.
    flip_average: True: also run every frame mirrored left-right and average the two outputs
      before decoding (`decode.average_with_mirror`; twice the network compute); False: never.
      None (default): the model's setting, `flip_average` and `flip_average_below` (model.json):
      for the shipped base, frames whose mean keypoint likelihood is below 0.85 (unfamiliar
      faces) are averaged and confident ones are not, so a batch of confident frames costs one
      pass (both picked on held-out styles); a model trained from scratch has it off.
    """
    expected = tuple(int(n) for n in frame_shape)[-2:]
    geom = crop_geometry(expected, bbox, NET_SIZE, model.context)
    # A full 256 x 256 frame needs no crop, pad or resize (the bilinear weights are exactly 1 and 0).
    identity_geometry = (geom.x0, geom.y0, geom.width, geom.height, geom.side) == (0, 0, NET_SIZE, NET_SIZE, NET_SIZE)
    stride = NET_SIZE / (NET_SIZE // model.downsample)
    prior = getattr(model, "shape_prior", None) if shape_prior else None
    flip_average, below = flip_setting(model, flip_average)
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
        own = tuple(forward(state, x[..., None]))
        if flip_average:
            def with_mirror(_):
                mirrored = forward(state, x[:, :, ::-1][..., None])
                return average_with_mirror(own, tuple(mirrored), sigma=sigma, stride=stride, below=below)

            if below is None:
                own = with_mirror(None)
            else:  # the mirrored pass only runs for a batch with a frame that needs it
                own = jax.lax.cond(jnp.any(mean_likelihood(own[0]) < below), with_mirror, lambda _: own, None)
        heatmap, offset_x, offset_y = own
        kp = decode_keypoints(heatmap, offset_x, offset_y, prior, sigma=sigma, stride=stride)
        xy = keypoints_to_frame(kp[..., :2], geom)
        return jnp.concatenate([xy, kp[..., 2:]], axis=-1)

    devices = list(jax.local_devices() if devices is None else devices)
    if len(devices) > 1:
        mesh = Mesh(np.array(devices), ("batch",))
        whole, split = NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("batch"))
        state = jax.device_put(state, whole)  # the weights on every device
        fn = jax.jit(predict, in_shardings=(whole, split), out_shardings=split,
                     compiler_options=compiler_options or None)
        return PredictFn(fn, state, geom, len(devices), (flip_average, below))
    if devices[0] != jax.local_devices()[0]:
        state = jax.device_put(state, devices[0])  # committed weights take the computation there
    return PredictFn(jax.jit(predict, compiler_options=compiler_options or None), state, geom, 1,
                     (flip_average, below))


# ------------------------------------------------------------ batches ---
# Every caller runs a predictor on fixed-size batches, the last one padded with copies of its final
# frame: each new batch size would compile the whole network again (seconds), a padded frame costs
# one frame's compute, and no frame's result depends on the others in its batch.


def dispatch_batches(predict: Callable, frames: np.ndarray, batch_size: int) -> list[jax.Array]:
    """Start `predict` on every batch of `batch_size` frames of (N, H, W) `frames`; JAX returns
    before the device is done, so a caller can queue more work before it waits. The outputs keep
    the padding: `gather_batches` drops it."""
    outs = []
    for s in range(0, len(frames), batch_size):
        batch = frames[s : s + batch_size]
        if len(batch) < batch_size:
            batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - len(batch), axis=0)])
        outs.append(predict(batch))
    return outs


def gather_batches(outs: Sequence[jax.Array], n: int) -> np.ndarray:
    """(n, K, 3) float32: the first n rows of `dispatch_batches`' outputs (waits for them)."""
    return np.concatenate([np.asarray(o, np.float32) for o in outs])[:n]


def predict_frames(predict: Callable, frames: np.ndarray, batch_size: int) -> np.ndarray:
    """(N, K, 3) float32 keypoints of (N, H, W) frames, `batch_size` at a time (padded)."""
    if len(frames) == 0:
        raise ValueError("predict_frames: no frames")
    return gather_batches(dispatch_batches(predict, frames, batch_size), len(frames))


def predict_images(predictor: Callable[[tuple[int, int]], Callable], images: Sequence[np.ndarray],
                   batch_size: int) -> list[np.ndarray]:
    """(K, 3) float32 keypoints of each of a list of (H_i, W_i) frames whose sizes may differ:
    grouped by size, `predictor((H, W))` (one compiled function per size) on each group's batches."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(np.shape(image)), []).append(i)
    out: list[np.ndarray] = [np.zeros(0, np.float32)] * len(images)
    for shape, idx in groups.items():
        # One size in an array (maybe memory-mapped): batches are cut from it, never all copied at once.
        frames = images if isinstance(images, np.ndarray) and len(groups) == 1 else \
            np.stack([np.asarray(images[i]) for i in idx])
        keypoints = predict_frames(predictor(shape), frames, batch_size)
        for i, kp in zip(idx, keypoints):
            out[i] = kp
    return out
