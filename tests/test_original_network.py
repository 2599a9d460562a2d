"""jfacemap against the original program (facemap 1.0.8, PyTorch), run side by side.

The original lives in its own virtual environment (bench/peers.py; built on
first use, ~1 min, reused afterwards); these tests talk to it through files.
They skip cleanly when that environment cannot be built (offline, no torch
wheel) or when JFACEMAP_SKIP_PEERS=1.
"""

import os
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench/, under plain `pytest` too

from bench.peers import FACEMAP_SCRIPT, PeerUnavailable, facemap_python, run_facemap_script  # noqa: E402
from jfacemap.io.torch_weights import load_torch_file, load_torch_state_dict, save_torch_state_dict  # noqa: E402
from jfacemap.nets.convert import torch_key_map, unet_from_torch_state_dict, unet_to_torch_state_dict  # noqa: E402
from jfacemap.nets.unet import FacemapUNet  # noqa: E402
from jfacemap.track import make_predict_fn, preprocess  # noqa: E402


@pytest.fixture(scope="module")
def peer():
    if os.environ.get("JFACEMAP_SKIP_PEERS") == "1":
        pytest.skip("JFACEMAP_SKIP_PEERS=1")
    try:
        return facemap_python()
    except (PeerUnavailable, OSError) as err:
        pytest.skip(f"original facemap environment unavailable: {err}")


@pytest.fixture(scope="module")
def original_net(peer, tmp_path_factory):
    """A random original FMnet: its saved state_dict and its eval-mode outputs."""
    out = tmp_path_factory.mktemp("fmnet")
    run_facemap_script(FACEMAP_SCRIPT, "net", out, 0, 3)
    return out / "fmnet.pt", dict(np.load(out / "net.npz"))


def _rel_err(ours, theirs):
    return float(np.max(np.abs(np.asarray(ours) - theirs)) / np.max(np.abs(theirs)))


def _nhwc(a):
    return np.transpose(a, (0, 2, 3, 1))


def test_network_matches_original(original_net):
    weights, ref = original_net
    model = unet_from_torch_state_dict(load_torch_state_dict(weights), n_keypoints=15)
    out = model(jnp.asarray(_nhwc(ref["images"])))
    # The original's "locx" refines rows (our y), its "locy" columns (our x).
    errors = {
        "heatmap": _rel_err(out.heatmap, _nhwc(ref["heatmap"])),
        "offset_y/locx": _rel_err(out.offset_y, _nhwc(ref["locx"])),
        "offset_x/locy": _rel_err(out.offset_x, _nhwc(ref["locy"])),
    }
    print("max relative error vs original:", errors)
    assert max(errors.values()) < 1e-4, errors


def _frames(h=240, w=320, n=3, seed=0):
    """Smooth texture + a bright blob + noise: uint8 frames like a face camera's."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = []
    for i in range(n):
        f = 60 + 30 * np.sin(xx / 17.0 + i) + 25 * np.cos(yy / 11.0) + rng.normal(0, 10, (h, w))
        f += 120 * np.exp(-((xx - 100 - 20 * i) ** 2 + (yy - 80) ** 2) / 400.0)
        out.append(np.clip(f, 0, 255).astype(np.uint8))
    return np.stack(out)


@pytest.mark.parametrize(
    "bbox",
    [
        (17, 318, 30, 230),  # 301 x 200: odd difference, the original's square-plus-one rule
        (40, 190, 10, 235),  # 150 x 225: tall, odd difference
        None,  # whole 320 x 240 frame
    ],
)
def test_full_pipeline_matches_original(original_net, tmp_path, bbox):
    """Same frames, bbox and weights through the original's preprocess_img +
    predict + adjust_keypoints and through make_predict_fn."""
    weights, _ = original_net
    frames = _frames()
    np.save(tmp_path / "frames.npy", frames)
    h, w = frames.shape[1:]
    x0, x1, y0, y1 = bbox or (0, w, 0, h)
    # The original's bbox lists the row range first.
    run_facemap_script(FACEMAP_SCRIPT, "pipeline", tmp_path, weights, tmp_path / "frames.npy", y0, y1, x0, x1)
    ref = dict(np.load(tmp_path / "pipeline.npz"))

    inputs = np.asarray(preprocess(jnp.asarray(frames), bbox))[..., 0]
    assert _rel_err(inputs, ref["inputs"]) < 1e-5

    model = unet_from_torch_state_dict(load_torch_state_dict(weights))
    predict = make_predict_fn(model, bbox, (h, w))
    g = predict.geometry
    # The original's pads: (columns before, columns after, rows before, rows after).
    assert (g.pad_left, g.pad_top) == (ref["pads"][0], ref["pads"][2])
    assert tuple(ref["postpad_shape"]) == (g.side, g.side)
    keypoints = np.asarray(predict(jnp.asarray(frames)))
    assert keypoints.shape == ref["keypoints"].shape == (3, 15, 3)
    xy_err = np.max(np.abs(keypoints[..., :2] - ref["keypoints"][..., :2]))
    lik_err = np.max(np.abs(keypoints[..., 2] - ref["keypoints"][..., 2]))
    print(f"bbox {bbox}: max |xy| error {xy_err:.2e} px, max likelihood error {lik_err:.2e}")
    assert xy_err < 1e-3 and lik_err < 1e-5


def test_original_loads_our_weights(peer, tmp_path):
    """unet_to_torch_state_dict -> our .pt writer -> torch.load(weights_only=True) ->
    FMnet.load_state_dict(strict=True): same outputs as our model."""
    model = FacemapUNet(15, rngs=nnx.Rngs(7))
    keys = iter(jax.random.split(jax.random.key(8), 100))
    for var, _ in torch_key_map(model).values():
        if isinstance(var, nnx.BatchStat):  # non-trivial eval-mode BatchNorm
            var.set_value(jax.random.uniform(next(keys), var.get_value().shape, minval=0.5, maxval=1.5))
    save_torch_state_dict(tmp_path / "ours.pt", unet_to_torch_state_dict(model))
    images = np.random.default_rng(9).random((2, 256, 256)).astype(np.float32)
    np.save(tmp_path / "images.npy", images)
    run_facemap_script(FACEMAP_SCRIPT, "run", tmp_path, tmp_path / "ours.pt", tmp_path / "images.npy")
    ref = dict(np.load(tmp_path / "run.npz"))
    out = model(jnp.asarray(images[..., None]))
    assert _rel_err(out.heatmap, _nhwc(ref["heatmap"])) < 1e-4
    assert _rel_err(out.offset_y, _nhwc(ref["locx"])) < 1e-4
    assert _rel_err(out.offset_x, _nhwc(ref["locy"])) < 1e-4


def test_loader_reads_real_torch_files(peer, tmp_path):
    """Strided, offset and shared-storage views and several dtypes, as torch writes them."""
    run_facemap_script(FACEMAP_SCRIPT, "tensors", tmp_path)
    ours = load_torch_state_dict(tmp_path / "tensors.pt")
    ref = dict(np.load(tmp_path / "tensors.npz"))
    assert sorted(ours) == sorted(ref)
    for key, value in ref.items():
        assert ours[key].dtype == value.dtype and ours[key].shape == value.shape, key
        np.testing.assert_array_equal(ours[key], value)
    checkpoint = load_torch_file(tmp_path / "checkpoint.pt")
    assert checkpoint["epoch"] == 3
    assert sorted(load_torch_state_dict(tmp_path / "checkpoint.pt")) == [
        "bias", "num_batches_tracked", "running_mean", "running_var", "weight",
    ]
