"""Weights between the original PyTorch FMnet state_dict and `FacemapUNet`.

Key names of the original (facemap 1.0.8, `facemap_network.FMnet`), for
encoder block k (`Conv.conv{k}`) and decoder block k (`Up_conv.upconv{k}`),
unit u in {0, 1}:

    <block>.conv.conv_{u}.0.{weight,bias,running_mean,running_var,num_batches_tracked}
                                       BatchNorm2d -> norm.{scale,bias,mean,var}
    <block>.conv.conv_{u}.2.weight     conv after BN + ReLU (OIHW -> HWIO)
    Conv.conv0.conv.conv_0.1.weight    the first unit has no ReLU: index 1
    Conv2_1x1.conv0.{weight,bias}      heatmap head
    Conv2_1x1.conv1.{weight,bias}      the original's "locx": the ROW offset  -> offset_y_head
    Conv2_1x1.conv2.{weight,bias}      the original's "locy": the COLUMN offset -> offset_x_head

(The original's decoder reads `locx` as the first spatial axis and pairs it
with the row index of the argmax, so its "x" is our y; see
`jfacemap.track.decode`.) `num_batches_tracked` is accepted and ignored on
load (it only matters for torch's momentum=None mode) and written as 0.
"""

from __future__ import annotations

import re
from typing import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jfacemap.nets.unet import FacemapUNet

_IGNORED_SUFFIX = ".num_batches_tracked"


def _unit_entries(prefix: str, unit, first: bool) -> dict[str, tuple[nnx.Variable, str]]:
    conv_index = 1 if first else 2
    return {
        f"{prefix}.0.weight": (unit.norm.scale, "vec"),
        f"{prefix}.0.bias": (unit.norm.bias, "vec"),
        f"{prefix}.0.running_mean": (unit.norm.mean, "vec"),
        f"{prefix}.0.running_var": (unit.norm.var, "vec"),
        f"{prefix}.{conv_index}.weight": (unit.conv.kernel, "conv"),
    }


def torch_key_map(model: FacemapUNet) -> dict[str, tuple[nnx.Variable, str]]:
    """torch state_dict key -> (NNX variable, kind) with kind in
    {'vec', 'conv', 'bias'}; every parameter and running statistic once."""
    entries: dict[str, tuple[nnx.Variable, str]] = {}
    blocks = [(f"Conv.conv{k}", b, k == 0) for k, b in enumerate(model.encoder)]
    blocks += [(f"Up_conv.upconv{k}", b, False) for k, b in enumerate(model.decoder)]
    for name, block, first in blocks:
        entries |= _unit_entries(f"{name}.conv.conv_0", block.unit0, first)
        entries |= _unit_entries(f"{name}.conv.conv_1", block.unit1, False)
    heads = (model.heatmap_head, model.offset_y_head, model.offset_x_head)
    for j, head in enumerate(heads):
        entries[f"Conv2_1x1.conv{j}.weight"] = (head.kernel, "conv")
        entries[f"Conv2_1x1.conv{j}.bias"] = (head.bias, "bias")
    return entries


def _architecture(sd: Mapping[str, np.ndarray]) -> dict:
    """Channels, n_upsample, kernel, in_channels and K read off the shapes."""
    enc = sorted({int(m.group(1)) for k in sd if (m := re.match(r"Conv\.conv(\d+)\.", k))})
    dec = sorted({int(m.group(1)) for k in sd if (m := re.match(r"Up_conv\.upconv(\d+)\.", k))})
    try:
        if enc != list(range(len(enc))) or dec != list(range(len(dec))) or not enc or not dec:
            raise KeyError("encoder/decoder blocks")
        return dict(
            channels=tuple(int(sd[f"Conv.conv{k}.conv.conv_1.0.weight"].shape[0]) for k in enc),
            n_upsample=len(dec),
            kernel=int(sd["Conv.conv0.conv.conv_0.1.weight"].shape[-1]),
            in_channels=int(sd["Conv.conv0.conv.conv_0.0.weight"].shape[0]),
            n_keypoints=int(sd["Conv2_1x1.conv0.weight"].shape[0]),
        )
    except KeyError as err:
        raise ValueError(f"not an FMnet state_dict: cannot find {err}") from err


def _to_flax(array: np.ndarray, kind: str) -> np.ndarray:
    return np.transpose(array, (2, 3, 1, 0)) if kind == "conv" else array  # OIHW -> HWIO


def _to_torch(array: np.ndarray, kind: str) -> np.ndarray:
    return np.transpose(array, (3, 2, 0, 1)) if kind == "conv" else array  # HWIO -> OIHW


def load_torch_state_dict_into(model: FacemapUNet, state_dict: Mapping[str, np.ndarray]) -> FacemapUNet:
    """Copy a torch FMnet state_dict into `model` in place (strict).

    Raises ValueError listing missing and unexpected keys, or the first key
    whose shape does not fit.
    """
    entries = torch_key_map(model)
    given = {k for k in state_dict if not k.endswith(_IGNORED_SUFFIX)}
    missing = sorted(set(entries) - given)
    unexpected = sorted(given - set(entries))
    if missing or unexpected:
        raise ValueError(f"state_dict does not match FacemapUNet: missing keys {missing}, unexpected keys {unexpected}")
    for key, (variable, kind) in entries.items():
        value = _to_flax(np.asarray(state_dict[key]), kind)
        current = variable.get_value()
        if value.shape != current.shape:
            raise ValueError(f"state_dict key {key}: shape {value.shape} (as HWIO) != model's {current.shape}")
        variable.set_value(jnp.asarray(value, dtype=current.dtype))
    return model


def unet_from_torch_state_dict(
    state_dict: Mapping[str, np.ndarray], n_keypoints: int | None = None
) -> FacemapUNet:
    """Build a FacemapUNet (eval mode) holding the weights of a torch FMnet state_dict.

    The architecture (channels, n_upsample, kernel, K) is read off the
    weights; `n_keypoints`, when given, must agree with it.
    """
    arch = _architecture(state_dict)
    if n_keypoints is not None and n_keypoints != arch["n_keypoints"]:
        raise ValueError(f"state_dict has {arch['n_keypoints']} keypoints, expected {n_keypoints}")
    model = FacemapUNet(**arch, rngs=nnx.Rngs(0))
    return load_torch_state_dict_into(model, state_dict)


def unet_to_torch_state_dict(model: FacemapUNet) -> dict[str, np.ndarray]:
    """The model's weights as a torch FMnet state_dict (numpy arrays, torch
    key order, float32), loadable by `FMnet.load_state_dict` once converted
    with torch.from_numpy, or saved with `jfacemap.io.torch_weights`."""
    out: dict[str, np.ndarray] = {}
    for key, (variable, kind) in torch_key_map(model).items():
        out[key] = np.ascontiguousarray(_to_torch(np.asarray(variable.get_value()), kind))
        if key.endswith(".0.running_var"):
            out[key[: -len(".running_var")] + _IGNORED_SUFFIX] = np.array(0, dtype=np.int64)
    return out
