"""make_predict_fn: the fast inference rewrite equals the Flax module on the same weights."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from jfacemap.nets.unet import FacemapUNet
from jfacemap.track.fast_inference import fast_forward, inference_params
from jfacemap.track.inference import make_predict_fn
from test_unet import _randomise_running_stats


@pytest.fixture(scope="module")
def model():
    net = FacemapUNet(15, rngs=nnx.Rngs(7))
    _randomise_running_stats(net, seed=8)
    return net


def test_fast_network_equals_module(model):
    x = np.random.default_rng(0).random((2, 256, 256, 1), dtype=np.float32)
    want = model(x, train=False)
    got = fast_forward(inference_params(model), x)
    for a, b in zip(got, want):
        scale = float(np.abs(np.asarray(b)).max()) + 1e-12
        assert float(np.abs(np.asarray(a) - np.asarray(b)).max()) / scale < 1e-5


@pytest.mark.parametrize(
    "frame_shape, bbox, batch",
    [((256, 256), None, 1), ((240, 320), None, 2), ((240, 320), (30, 290, 20, 200), 3)],
)
def test_fast_predict_equals_reference(model, frame_shape, bbox, batch):
    frames = np.random.default_rng(1).integers(0, 256, (batch, *frame_shape), dtype=np.uint8)
    fast = np.asarray(make_predict_fn(model, bbox, frame_shape, fast=True)(frames))
    reference = np.asarray(make_predict_fn(model, bbox, frame_shape, fast=False)(frames))
    assert fast.shape == reference.shape == (batch, 15, 3)
    np.testing.assert_allclose(fast[..., :2], reference[..., :2], atol=1e-3)
    np.testing.assert_allclose(fast[..., 2], reference[..., 2], atol=1e-5)


@pytest.mark.parametrize("fast", [True, False])
def test_context_predicts_as_on_the_frame_padded_with_zeros(model, fast):
    """A model with context 2 on a 64 x 80 frame == the same weights with context 1 on the frame
    zero-padded to 160 x 160 (40 columns, 48 rows each side), shifted back."""
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (2, 64, 80)).astype(np.uint8)
    frames[:, :20] = 0  # a third black, a third white: padding leaves the 1st / 99th percentiles at 0 / 255,
    frames[:, -20:] = 255  # so both frames normalise alike
    wide = nnx.clone(model)
    wide.context = 2.0
    got = np.asarray(make_predict_fn(wide, None, (64, 80), fast=fast)(frames))
    padded = np.pad(frames, ((0, 0), (48, 48), (40, 40)))
    want = np.array(make_predict_fn(model, None, (160, 160), fast=fast)(padded))
    want[..., 0] -= 40
    want[..., 1] -= 48
    np.testing.assert_allclose(got[..., :2], want[..., :2], atol=1e-3)
    np.testing.assert_allclose(got[..., 2], want[..., 2], atol=1e-5)


def test_fast_path_refuses_models_it_cannot_rewrite():
    rgb = FacemapUNet(2, channels=(4, 8, 8), n_upsample=1, in_channels=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="in_channels=1"):
        inference_params(rgb)
