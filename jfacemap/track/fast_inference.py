"""The tracker network rewritten for inference: `fast_forward(inference_params(model), x)`.

`jfacemap.track.inference.make_predict_fn` uses it by default (`fast=False`
runs the Flax module itself, the reference). Every change is an exact
algebraic identity, so
the outputs differ only by float32 rounding (measured: < 1e-4 px and
< 1e-6 in likelihood on random weights; see bench/bench_tracker_speed.py):

1. Eval-mode BatchNorm pre-computed as one per-channel scale and shift
   (gamma / sqrt(var + eps), beta - mean * scale): the network's BN comes
   BEFORE the ReLU and the conv, so it cannot be folded into conv weights,
   but the rsqrt work leaves the per-call program.
2. First unit (BN on the single input channel -> 3x3 conv 1 -> 16): as nine
   shifted multiply-adds (an elementwise loop XLA fuses), instead of a
   convolution with one input channel, which the conv libraries run at a
   few GFLOP/s.
3. Decoder, nearest x2 upsample -> concat skip -> BN -> ReLU -> 3x3 conv:
   BN and ReLU act per channel, so they commute with the upsample and the
   concatenation; the conv splits into (upsampled part) + (skip part). The
   upsampled part is computed at LOW resolution as four 2x2 "sub-pixel"
   convolutions (one per output phase, with the 3x3 taps that land on the
   same low-resolution pixel summed), 16 instead of 36 taps per
   low-resolution pixel, and the upsampled and concatenated tensors are
   never built. (~14 % fewer FLOPs for the whole network.)
4. Encoder 3x3 / stride-2 max-pools as the max of nine strided slices
   (one fused loop with the BN + ReLU after it) instead of a reduce-window.
5. The three 1x1 heads as one matmul.

Measured on 2 shared Sapphire Rapids cores, batch 1, one thread (steady):
43 -> 31 ms per frame (items 3: -4.8 ms, 2: -3 ms, 4: -2.2 ms). XLA:CPU
options were tried too (`EIGEN_CONV_OPTIONS`: Eigen instead of YNNPACK
convolutions; oneDNN; XNN graph fusion; 512-bit vectors): Eigen convolutions
were ~15 % faster on an idle machine but 10-25 % slower whenever another
process shares the cores, so the default keeps XLA's own choice; pass
`compiler_options=EIGEN_CONV_OPTIONS` to try it on a dedicated machine.

Nothing here changes the weights. Training uses the same sub-pixel identity
(item 3) in train mode: `FacemapUNet` -> `BNConv.on_upsampled_train`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jfacemap.nets.layers import conv3x3_of_upsampled, conv_nhwc, max_pool_3x3_s2, subpixel_kernels
from jfacemap.nets.unet import FacemapUNet

_LIB = "LIBRARY_FUSION_TYPE_"
# XLA:CPU debug options (jax.jit(compiler_options=...)): overwrite XLA's
# default YNNPACK fusion list (individual convolutions and dots) with dots
# only, so that convolutions run on XLA's Eigen kernels. Not the default
# (see the module docstring).
EIGEN_CONV_OPTIONS: dict[str, str] = {"xla_cpu_experimental_ynn_fusion_type": _LIB + "INDIVIDUAL_DOT"}

def _bn_affine(norm) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as y = x * scale + shift (float32, numpy)."""
    mean = np.asarray(norm.mean.get_value(), np.float64)
    var = np.asarray(norm.var.get_value(), np.float64)
    gamma = np.asarray(norm.scale.get_value(), np.float64)
    beta = np.asarray(norm.bias.get_value(), np.float64)
    scale = gamma / np.sqrt(var + float(norm.epsilon))
    return scale.astype(np.float32), (beta - mean * scale).astype(np.float32)


def _unit_params(unit) -> dict:
    scale, shift = _bn_affine(unit.norm)
    return {"scale": scale, "shift": shift, "kernel": np.asarray(unit.conv.kernel.get_value(), np.float32)}


def _bn_relu(x: jax.Array, p: dict, relu: bool = True) -> jax.Array:
    y = x * p["scale"] + p["shift"]
    return jax.nn.relu(y) if relu else y


def _first_unit(x: jax.Array, p: dict) -> jax.Array:
    """(B, H, W, 1) -> BN (no ReLU) -> 3x3 conv 1 -> C, as nine shifted
    multiply-adds (zero padding after the BN, as the conv pads)."""
    y = _bn_relu(x, p, relu=False)[..., 0]
    h, w = y.shape[1:3]
    yp = jnp.pad(y, ((0, 0), (1, 1), (1, 1)))
    k = p["kernel"][:, :, 0, :]  # (3, 3, C)
    out = None
    for dy in range(3):
        for dx in range(3):
            term = yp[:, dy : dy + h, dx : dx + w, None] * k[dy, dx]
            out = term if out is None else out + term
    return out


def _up_unit(low: jax.Array, skip: jax.Array, p: dict) -> jax.Array:
    """conv3x3(relu(bn(concat[upsample2(low), skip]))) without building the
    upsampled or concatenated tensors."""
    c_low = low.shape[-1]
    z = jax.nn.relu(low * p["scale"][:c_low] + p["shift"][:c_low])  # BN/ReLU commute with nearest upsample
    s = jax.nn.relu(skip * p["scale"][c_low:] + p["shift"][c_low:])
    up = conv3x3_of_upsampled(z, p["sub"])
    return up + conv_nhwc(s, p["kernel_skip"], ((1, 1), (1, 1)))


def inference_params(model: FacemapUNet) -> dict:
    """The model's weights rearranged for `fast_forward` (numpy arrays).
    Needs a grayscale (in_channels 1), 3x3-kernel model, as the default."""
    if model.in_channels != 1 or model.kernel != 3:
        raise ValueError(
            f"fast inference needs in_channels=1 and kernel=3, got {model.in_channels} and {model.kernel}:"
            " use jfacemap.track.inference.make_predict_fn"
        )
    enc = []
    for block in model.encoder:
        enc.append([_unit_params(block.unit0), _unit_params(block.unit1)])
    dec = []
    for k, block in enumerate(model.decoder):
        u0 = _unit_params(block.unit0)
        c_low = model.channels[-1 - k]  # channels coming from below (upsampled)
        u0["sub"] = [[np.asarray(k) for k in row] for row in subpixel_kernels(u0["kernel"][:, :, :c_low])]
        u0["kernel_skip"] = u0.pop("kernel")[:, :, c_low:]
        dec.append([u0, _unit_params(block.unit1)])
    names = ("heatmap_head", "offset_x_head", "offset_y_head")
    heads = (
        np.concatenate([np.asarray(getattr(model, n).kernel.get_value(), np.float32)[0, 0] for n in names], axis=-1),
        np.concatenate([np.asarray(getattr(model, n).bias.get_value(), np.float32) for n in names]),
    )
    return {"encoder": enc, "decoder": dec, "heads": heads}


def fast_forward(params: dict, x: jax.Array):
    """Eval-mode network: (B, 256, 256, 1) -> (heatmap, offset_x, offset_y),
    each (B, 64, 64, K), equal to FacemapUNet(x, train=False) up to rounding."""
    skips = []
    for k, (u0, u1) in enumerate(params["encoder"]):
        if k == 0:
            x = _first_unit(x, u0)
        else:
            x = max_pool_3x3_s2(x)
            x = conv_nhwc(_bn_relu(x, u0), u0["kernel"], ((1, 1), (1, 1)))
        x = conv_nhwc(_bn_relu(x, u1), u1["kernel"], ((1, 1), (1, 1)))
        skips.append(x)
    for k, (u0, u1) in enumerate(params["decoder"]):
        x = _up_unit(x, skips[-2 - k], u0)
        x = conv_nhwc(_bn_relu(x, u1), u1["kernel"], ((1, 1), (1, 1)))

    # The three 1x1 heads as one matmul (64 -> 3K channels), then split.
    w, b = params["heads"]
    out = jnp.einsum("bhwc,ck->bhwk", x, w) + b  # default precision, as nnx.Conv
    heatmap, offset_x, offset_y = jnp.split(out, 3, axis=-1)
    return jax.nn.relu(heatmap), offset_x, offset_y
