"""Test-time flip averaging: mirrored outputs mapped back onto the frame's grid, and its wiring."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from jfacemap.errors import JfacemapError
from jfacemap.nets.unet import FacemapUNet
from jfacemap.track.decode import (average_with_mirror, decode_heatmaps, heatmap_targets, mean_likelihood,
                                   unmirror_outputs)
from jfacemap.track.inference import make_predict_fn
from jfacemap.track.model_store import load_tracker, save_tracker
from jfacemap.track.preprocess import keypoints_to_frame, preprocess

_targets = jax.jit(heatmap_targets)
_decode = jax.jit(decode_heatmaps)
coordinate = st.floats(min_value=4.0, max_value=251.0, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None)
@given(points=st.lists(st.tuples(coordinate, coordinate), min_size=3, max_size=3))
def test_outputs_for_the_mirror_image_decode_to_the_frames_keypoints(points):
    kp = np.asarray(points, np.float32)[None]  # (1, 3, 2) input pixels of a 256-pixel input
    mirrored = kp.copy()
    mirrored[..., 0] = 255.0 - kp[..., 0]  # column x of the frame is column 255 - x of its mirror
    t = _targets(mirrored)
    back = unmirror_outputs(t.heatmap, t.offset_x, t.offset_y)
    np.testing.assert_allclose(np.asarray(_decode(*back))[0, :, :2], kp[0], atol=2e-3)
    # Averaged with the frame's own (perfect) outputs the point stays where it is.
    own = _targets(kp)
    mean = average_with_mirror((own.heatmap, own.offset_x, own.offset_y), (t.heatmap, t.offset_x, t.offset_y))
    np.testing.assert_allclose(np.asarray(_decode(*mean))[0, :, :2], kp[0], atol=2e-3)


def test_without_the_shift_mirrored_outputs_would_be_off_by_three_input_pixels():
    """The fraction-of-a-cell shift is needed: a plain flip of the grid puts x 3 px to the left."""
    kp = np.array([[[100.25, 60.5]]], np.float32)
    t = _targets(np.array([[[255.0 - 100.25, 60.5]]], np.float32))
    naive = _decode(t.heatmap[:, :, ::-1], -t.offset_x[:, :, ::-1], t.offset_y[:, :, ::-1])
    assert abs(float(naive[0, 0, 0]) - (kp[0, 0, 0] - 3.0)) < 1e-3


@pytest.fixture(scope="module")
def model():
    net = FacemapUNet(4, channels=(8, 8, 16, 16, 16), n_upsample=2, rngs=nnx.Rngs(3))
    return net


@pytest.mark.parametrize("fast, shape, bbox", [(True, (256, 256), None), (False, (256, 256), None),
                                               (True, (120, 200), (30, 170, 10, 110))])
def test_predictor_decodes_the_mean_of_frame_and_mirror_outputs(model, fast, shape, bbox):
    """The mirror image is taken of the network's input (after the crop), so a crop box mirrors nothing
    outside it; the keypoints come back in frame pixels."""
    frames = np.random.default_rng(0).integers(0, 256, (2, *shape), dtype=np.uint8)
    predict = make_predict_fn(model, bbox, shape, fast=fast, flip_average=True)
    got = np.asarray(predict(frames))
    x = preprocess(frames, bbox)
    own, mirror = model(x, train=False), model(x[:, :, ::-1], train=False)
    mean = average_with_mirror((own.heatmap, own.offset_x, own.offset_y),
                               (mirror.heatmap, mirror.offset_x, mirror.offset_y), stride=256 / own.heatmap.shape[1])
    net_kp = np.asarray(decode_heatmaps(*mean, stride=256 / own.heatmap.shape[1]))
    want = np.concatenate([np.asarray(keypoints_to_frame(net_kp[..., :2], predict.geometry)), net_kp[..., 2:]], -1)
    plain = np.asarray(make_predict_fn(model, bbox, shape, fast=fast, flip_average=False)(frames))
    np.testing.assert_allclose(got[..., 2], want[..., 2], atol=1e-5)
    np.testing.assert_allclose(got[..., :2], want[..., :2], atol=1e-2)
    assert not np.allclose(got[..., :2], plain[..., :2], atol=1e-2)  # averaging changed something


def test_predictor_follows_the_models_setting(model):
    frames = np.random.default_rng(1).integers(0, 256, (1, 256, 256), dtype=np.uint8)
    on = nnx.clone(model)
    on.flip_average = True
    assert make_predict_fn(on, None, (256, 256)).flip_average
    assert not make_predict_fn(on, None, (256, 256), flip_average=False).flip_average
    np.testing.assert_allclose(np.asarray(make_predict_fn(on, None, (256, 256))(frames)),
                               np.asarray(make_predict_fn(model, None, (256, 256), flip_average=True)(frames)), atol=1e-5)


def test_model_json_keeps_flip_average_and_rejects_a_bad_value(model, tmp_path):
    on = nnx.clone(model)
    on.flip_average, on.flip_average_below = True, 0.8
    save_tracker(tmp_path / "on", on, ["a", "b", "c", "d"])
    save_tracker(tmp_path / "off", model, ["a", "b", "c", "d"])
    loaded = load_tracker(tmp_path / "on")[0]
    assert (loaded.flip_average, loaded.flip_average_below) == (True, 0.8)
    assert load_tracker(tmp_path / "off")[0].flip_average is False
    path = tmp_path / "on" / "model.json"
    info = json.loads(path.read_text())
    for key, bad in [("flip_average", "yes"), ("flip_average_below", 2.0), ("flip_average_below", "0.8")]:
        path.write_text(json.dumps(info | {key: bad}))
        with pytest.raises(JfacemapError, match=key):
            load_tracker(tmp_path / "on")


def test_the_gate_averages_only_the_frames_below_it():
    """Frame 0 has confident peaks, frame 1 weak ones: with a gate between them only frame 1 is averaged."""
    rng = np.random.default_rng(5)
    own = tuple(rng.normal(0, 0.1, (2, 16, 16, 3)).astype(np.float32) for _ in range(3))
    own[0][0, 5, 5] = 6.0  # likelihood ~1 for every keypoint of frame 0
    own[0][1, 5, 5] = 0.2  # ~0.55 for frame 1
    mirrored = tuple(rng.normal(0, 0.1, (2, 16, 16, 3)).astype(np.float32) for _ in range(3))
    every = average_with_mirror(own, mirrored)
    gated = average_with_mirror(own, mirrored, below=0.8)
    for o, e, g in zip(own, every, gated):
        np.testing.assert_array_equal(np.asarray(g)[0], o[0])
        np.testing.assert_array_equal(np.asarray(g)[1], np.asarray(e)[1])
    assert not np.allclose(np.asarray(every[0])[0], own[0][0])


def test_a_gated_predictor_decides_frame_by_frame(model):
    """Each frame gets the averaged or the plain result by its own likelihood, whatever its batch holds;
    a batch of confident frames is exactly the plain one (the mirrored pass is skipped)."""
    frames = np.random.default_rng(3).integers(0, 256, (2, 256, 256), dtype=np.uint8)
    out = model(preprocess(frames), train=False)
    lik = np.asarray(mean_likelihood(out.heatmap))
    assert lik[0] != lik[1]
    gated = nnx.clone(model)
    gated.flip_average, gated.flip_average_below = True, float(lik.mean())  # between the two frames
    got = np.asarray(make_predict_fn(gated, None, (256, 256))(frames))
    every = np.asarray(make_predict_fn(model, None, (256, 256), flip_average=True)(frames))
    plain = np.asarray(make_predict_fn(model, None, (256, 256), flip_average=False)(frames))
    low, high = int(np.argmin(lik)), int(np.argmax(lik))
    np.testing.assert_allclose(got[low], every[low], atol=1e-4)
    np.testing.assert_allclose(got[high], plain[high], atol=1e-4)
    gated.flip_average_below = float(lik.min()) - 1e-3  # no frame below: the plain pass only
    np.testing.assert_array_equal(np.asarray(make_predict_fn(gated, None, (256, 256))(frames)), plain)


def test_shipped_base_averages_the_frames_it_is_unsure_of():
    """The base model's setting was picked on held-out styles (bench/flip_average_sweep.py)."""
    base = load_tracker("base")[0]
    assert base.flip_average is True and 0.5 < base.flip_average_below < 1


def test_a_finetuned_model_keeps_the_setting_and_a_new_one_starts_without(model):
    from jfacemap.track.train import get_recipe, train_tracker

    on = nnx.clone(model)
    on.flip_average, on.flip_average_below = True, 0.8
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64), dtype=np.uint8)
    keypoints = np.tile(np.array([[10, 10, 1], [30, 30, 1], [40, 20, 1], [20, 50, 1]], np.float32), (2, 1, 1))
    recipe = get_recipe("finetune", epochs=1, min_steps=1)
    tuned, _ = train_tracker(images, keypoints, ["a", "b", "c", "d"], recipe, init_model=on)
    assert (tuned.flip_average, tuned.flip_average_below) == (True, 0.8)
    fresh, _ = train_tracker(images, keypoints, ["a", "b", "c", "d"], recipe, channels=(8, 8, 16, 16, 16))
    assert fresh.flip_average is False


def test_a_partial_track_file_made_without_flip_averaging_is_not_resumed_with_it(model, tmp_path):
    from jfacemap.track.predict import _fingerprint

    video = tmp_path / "v.mp4"
    video.write_bytes(b"not read")
    args = (video, model, ["a", "b", "c", "d"], (0, 0, 256, 256, 256))
    every, gated, off = (True, None), (True, 0.85), (False, None)
    assert len({_fingerprint(*args, None, f) for f in (every, gated, off)}) == 3
    assert _fingerprint(*args, None, off) == _fingerprint(*args)
