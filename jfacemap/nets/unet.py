"""The Facemap tracker U-Net ("FMnet" in the original program), in Flax NNX.

Layout is NHWC (JAX's native one): input (B, 256, 256, 1) float32, outputs
(B, 64, 64, K) for K keypoints. Topology (matches the original's state_dict
one-to-one, see `jfacemap.nets.convert`):

- unit   = BatchNorm(c_in) -> ReLU -> 3x3 conv c_in -> c_out (no bias, 'same');
           the very first unit of the network has no ReLU (BN -> conv only).
- block  = 2 units: c_in -> c_out, then c_out -> c_out.
- encoder: blocks with `channels` (16, 32, 64, 128, 200); a 3x3 max-pool,
           stride 2, pad 1 between blocks (256 -> 128 -> 64 -> 32 -> 16).
- decoder: `n_upsample` blocks; each = nearest x2 upsample, concatenate
           [upsampled, skip of the same size] on channels, block with the
           skip's channel count (16 -> 32 -> 64 for the default 2).
- heads:   three 1x1 convs with bias: heatmap (ReLU), x-offset, y-offset.

Here "x" is the horizontal (column) axis and "y" the vertical (row) axis of
the image. (The original names its offset heads the other way round: its
"locx" is the row offset; the converter swaps them so that our names mean
what they say.)

Mode: BatchNorm uses running statistics in eval mode and batch statistics in
train mode; set it with `model.eval()` / `model.train()` (NNX convention) or
per call with `model(x, train=...)`. Models are built in eval mode (tracking
is the common use). In train mode the heatmap is also normalised to sum 10
per keypoint, as the original does (its targets are normalised that way).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jfacemap.nets.init import torch_default_init
from jfacemap.nets.layers import (
    batch_norm_train,
    conv3x3_of_upsampled,
    conv3x3_one_channel,
    conv_nhwc,
    max_pool_3x3_s2,
    subpixel_kernels,
)

DEFAULT_CHANNELS: tuple[int, ...] = (16, 32, 64, 128, 200)
HEATMAP_SUM = 10.0  # train-mode heatmaps are scaled to this sum per keypoint
_HEATMAP_EPS = 1e-4  # the original's epsilon in that normalisation
BN_MOMENTUM = 0.9  # flax convention: running = 0.9 running + 0.1 batch (torch momentum 0.1)
BN_EPSILON = 1e-5


class UNetOutput(NamedTuple):
    """Network outputs, each (B, G, G, K) float32 on the G x G output grid.

    heatmap: ReLU'd keypoint confidence; offset_x / offset_y: location
    refinement along columns / rows, in units of 2 * sigma grid cells
    (target = (cell - true) / (2 sigma), see `jfacemap.track.decode`).
    """

    heatmap: jax.Array
    offset_x: jax.Array
    offset_y: jax.Array




class BNConv(nnx.Module):
    """BatchNorm(c_in) -> [ReLU] -> kxk conv (no bias, 'same' padding)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, relu: bool, *, rngs: nnx.Rngs):
        self.relu = relu
        self.norm = nnx.BatchNorm(
            c_in,
            momentum=BN_MOMENTUM,
            epsilon=BN_EPSILON,
            use_running_average=True,
            use_fast_variance=False,  # two-pass variance, like torch
            rngs=rngs,
        )
        self.conv = nnx.Conv(
            c_in,
            c_out,
            (kernel, kernel),
            padding="SAME",
            use_bias=False,
            kernel_init=torch_default_init(c_in * kernel * kernel),
            rngs=rngs,
        )

    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        norm = self.norm
        use_ra = norm.use_running_average if use_running_average is None else use_running_average
        if use_ra:
            x = norm(x, use_running_average=True)
        else:
            # nnx.BatchNorm's train mode, with the hand-written gradient (see layers.py).
            x, mean, var = batch_norm_train(x, norm.scale[...], norm.bias[...], norm.epsilon, self.relu)
            self._update_running_stats(mean, var)
            if self.conv.in_features == 1 and tuple(self.conv.kernel_size) == (3, 3):
                return conv3x3_one_channel(x, self.conv.kernel[...])
            return self.conv(x)
        if self.relu:
            x = jax.nn.relu(x)
        return self.conv(x)

    def on_upsampled_train(self, low: jax.Array, skip: jax.Array) -> jax.Array:
        """Train mode on concat([nearest_upsample_x2(low), skip]) without
        building the upsampled or the concatenated map (3x3 kernel only).

        BN and ReLU act per channel, so they commute with the concatenation
        and with the upsample (which repeats each pixel 4 times: the batch
        statistics of `low` are those of its upsampled map). The conv splits
        into the skip's part and the upsampled part, computed at low
        resolution (`conv3x3_of_upsampled`: 16 instead of 36 taps per low
        pixel). The same function of the weights; a training step at
        256 x 256 is ~14 % faster on one CPU core.

        low: (B, h, w, C_low); skip: (B, 2h, 2w, C_in - C_low) -> (B, 2h, 2w, C_out)."""
        norm, c = self.norm, low.shape[-1]
        scale, bias = norm.scale[...], norm.bias[...]
        z, mean_low, var_low = batch_norm_train(low, scale[:c], bias[:c], norm.epsilon, self.relu)
        s, mean_skip, var_skip = batch_norm_train(skip, scale[c:], bias[c:], norm.epsilon, self.relu)
        self._update_running_stats(jnp.concatenate([mean_low, mean_skip]), jnp.concatenate([var_low, var_skip]))
        kernel = self.conv.kernel[...]
        return conv3x3_of_upsampled(z, subpixel_kernels(kernel[:, :, :c])) + conv_nhwc(s, kernel[:, :, c:])

    def _update_running_stats(self, mean: jax.Array, var: jax.Array) -> None:
        norm, m = self.norm, self.norm.momentum
        norm.mean[...] = jax.lax.stop_gradient(m * norm.mean[...] + (1 - m) * mean)
        norm.var[...] = jax.lax.stop_gradient(m * norm.var[...] + (1 - m) * var)


class ConvBlock(nnx.Module):
    """Two BNConv units: c_in -> c_out -> c_out."""

    def __init__(self, c_in: int, c_out: int, kernel: int, first: bool = False, *, rngs: nnx.Rngs):
        self.unit0 = BNConv(c_in, c_out, kernel, relu=not first, rngs=rngs)
        self.unit1 = BNConv(c_out, c_out, kernel, relu=True, rngs=rngs)

    def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
        return self.unit1(self.unit0(x, use_running_average), use_running_average)


class FacemapUNet(nnx.Module):
    """The Facemap keypoint U-Net for `n_keypoints` keypoints.

    Args:
      n_keypoints: K, the number of output channels of each head.
      channels: encoder block widths; the input goes through len(channels)-1
        max-pools (default 256 -> 16).
      n_upsample: decoder blocks; the output grid is input / 2**(len(channels)
        - 1 - n_upsample) (default 64 for a 256 input).
      kernel: conv kernel size of the blocks.
      in_channels: image channels (1, grayscale).
      context: the input convention, not the network: the crop box is
        zero-padded to a square `context` times its side before the resize
        to 256 (`preprocess.crop_geometry`), so the face appears smaller
        with room around it. 1 = the original's. Tracking and training
        read it from the model, so a fine-tuned model keeps it.
      rngs: NNX random streams for the initial weights.
    """

    def __init__(
        self,
        n_keypoints: int,
        channels: tuple[int, ...] = DEFAULT_CHANNELS,
        n_upsample: int = 2,
        kernel: int = 3,
        in_channels: int = 1,
        *,
        context: float = 1.0,
        rngs: nnx.Rngs,
    ):
        channels = tuple(int(c) for c in channels)
        if n_keypoints < 1:
            raise ValueError(f"n_keypoints must be >= 1, got {n_keypoints}")
        if not 1 <= n_upsample < len(channels):
            raise ValueError(f"n_upsample must be in [1, {len(channels) - 1}], got {n_upsample}")
        self.n_keypoints = int(n_keypoints)
        self.channels = channels
        self.n_upsample = int(n_upsample)
        self.kernel = int(kernel)
        self.in_channels = int(in_channels)
        self.context = float(context)
        # The decoder's keypoint-layout prior (jfacemap.track.shape_prior.ShapePrior, tuples:
        # static like context) or None; set by model_store / training, never by the network.
        self.shape_prior = None
        # Whether tracking averages frames' outputs with their mirror images' by default, and
        # only those whose mean likelihood is below flip_average_below (None: every frame)
        # (inference.make_predict_fn); properties of the weights, kept in model.json.
        self.flip_average = False
        self.flip_average_below = None
        # Read and set by nnx's model.train() / model.eval().
        self.use_running_average = True

        c_in = [in_channels, *channels[:-1]]
        self.encoder = nnx.List(
            [ConvBlock(c_in[k], channels[k], kernel, first=(k == 0), rngs=rngs) for k in range(len(channels))]
        )
        self.decoder = nnx.List(
            [
                ConvBlock(channels[-1 - k] + channels[-2 - k], channels[-2 - k], kernel, rngs=rngs)
                for k in range(n_upsample)
            ]
        )
        c_head = channels[-1 - n_upsample]
        head = dict(kernel_init=torch_default_init(c_head), bias_init=torch_default_init(c_head), rngs=rngs)
        self.heatmap_head = nnx.Conv(c_head, n_keypoints, (1, 1), **head)
        self.offset_y_head = nnx.Conv(c_head, n_keypoints, (1, 1), **head)
        self.offset_x_head = nnx.Conv(c_head, n_keypoints, (1, 1), **head)

    @property
    def downsample(self) -> int:
        """Input pixels per output grid cell (4 for the default network)."""
        return 2 ** (len(self.channels) - 1 - self.n_upsample)

    def __call__(self, x: jax.Array, train: bool | None = None) -> UNetOutput:
        """Run the network.

        Args:
          x: (B, H, W, in_channels) float32 images, H and W divisible by
            2**(len(channels) - 1) (256 x 256 normally).
          train: None -> the module's mode (model.train() / model.eval());
            True -> batch statistics (and running-stat updates) in BatchNorm
            plus heatmap normalisation; False -> running statistics.
        Returns:
          UNetOutput of three (B, H/d, W/d, K) arrays, d = self.downsample.
        """
        use_ra = self.use_running_average if train is None else not train
        skips = []
        for k, block in enumerate(self.encoder):
            if k > 0:
                x = max_pool_3x3_s2(x)  # pads with -inf, as torch's max_pool2d
            x = block(x, use_ra)
            skips.append(x)
        for k, block in enumerate(self.decoder):
            skip = skips[-2 - k]
            if not use_ra and self.kernel == 3:
                x = block.unit1(block.unit0.on_upsampled_train(x, skip), use_ra)
            else:
                x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)  # nearest x2
                x = block(jnp.concatenate([x, skip], axis=-1), use_ra)
        heatmap = jax.nn.relu(self.heatmap_head(x))
        if not use_ra:
            total = jnp.sum(heatmap, axis=(1, 2), keepdims=True)
            heatmap = HEATMAP_SUM * heatmap / (_HEATMAP_EPS + total)
        return UNetOutput(heatmap, self.offset_x_head(x), self.offset_y_head(x))


def count_parameters(model: nnx.Module) -> int:
    """Trainable parameters (what PyTorch counts: conv kernels, biases, BN
    scale and bias), not BatchNorm running statistics."""
    return int(sum(p.size for p in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param))))


def with_new_heads(model: FacemapUNet, old_bodyparts, new_bodyparts, seed: int = 0) -> FacemapUNet:
    """A copy of `model` whose output heads predict `new_bodyparts`.

    The encoder and decoder (everything a new skeleton can reuse) are copied;
    a bodypart in both lists keeps its head weights, a new one gets a freshly
    initialised head channel (from `seed`). This is how a model for one
    skeleton is fine-tuned on labels of another. `model` is not modified.
    """
    old = list(old_bodyparts)
    if len(old) != model.n_keypoints:
        raise ValueError(f"model has {model.n_keypoints} keypoints, {len(old)} bodyparts given")
    fresh = FacemapUNet(len(new_bodyparts), model.channels, model.n_upsample, model.kernel,
                        model.in_channels, context=model.context, rngs=nnx.Rngs(seed))
    nnx.update(fresh.encoder, nnx.state(model.encoder))
    nnx.update(fresh.decoder, nnx.state(model.decoder))
    for name in ("heatmap_head", "offset_x_head", "offset_y_head"):
        src, dst = getattr(model, name), getattr(fresh, name)
        for j, part in enumerate(new_bodyparts):
            if part in old:
                i = old.index(part)
                dst.kernel.set_value(dst.kernel.get_value().at[..., j].set(src.kernel.get_value()[..., i]))
                dst.bias.set_value(dst.bias.get_value().at[j].set(src.bias.get_value()[i]))
    fresh.use_running_average = model.use_running_average
    # The layout prior carries over when every new bodypart has one (a selection or reordering).
    if model.shape_prior is not None and all(p in old for p in new_bodyparts):
        fresh.shape_prior = model.shape_prior.subset([old.index(p) for p in new_bodyparts])
    fresh.flip_average, fresh.flip_average_below = model.flip_average, model.flip_average_below
    return fresh
