"""Pre-processing: per-frame normalisation, crop / pad / resize, keypoint geometry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jfacemap.track.preprocess import (
    CropGeometry,
    crop_geometry,
    crop_pad_resize,
    frame_percentiles,
    keypoints_to_frame,
    keypoints_to_network,
    normalize_percentile,
    preprocess,
)


def _frames(b=4, h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    scale = rng.uniform(20, 120, size=(b, 1, 1))  # very different contrast per frame
    return np.clip(rng.normal(100, scale, (b, h, w)), 0, 255).astype(np.uint8)


def test_percentiles_match_numpy_uint8_and_float():
    frames = _frames()
    for data in (frames, frames.astype(np.float32) + 0.25):
        lo, hi = frame_percentiles(jnp.asarray(data), (1.0, 99.0))
        np.testing.assert_allclose(np.asarray(lo), np.percentile(data, 1, axis=(1, 2)), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(hi), np.percentile(data, 99, axis=(1, 2)), rtol=1e-6)


def test_normalisation_is_per_frame_not_per_batch():
    frames = jnp.asarray(_frames())
    batch = np.asarray(normalize_percentile(frames))
    for i in range(frames.shape[0]):
        np.testing.assert_array_equal(batch[i], np.asarray(normalize_percentile(frames[i : i + 1]))[0])
    lo, hi = np.percentile(np.asarray(frames[1]), [1, 99])
    np.testing.assert_allclose(batch[1], (np.asarray(frames[1], np.float32) - lo) / (hi - lo), rtol=1e-5, atol=1e-6)
    flat = normalize_percentile(jnp.full((1, 8, 8), 7, jnp.uint8))
    assert np.all(np.asarray(flat) == 0)  # constant frame: no NaN


@pytest.mark.parametrize(
    "shape,bbox,expected",
    [
        ((480, 640), None, CropGeometry(0, 0, 640, 480, 0, 80, 640)),  # wide: pad rows, centred
        ((300, 200), None, CropGeometry(0, 0, 200, 300, 50, 0, 300)),  # tall: pad columns
        ((256, 256), None, CropGeometry(0, 0, 256, 256, 0, 0, 256)),
        # odd difference (301 - 200): the original makes the square 302, the long side gets
        # 1 pixel after, the short side (302 - 200) / 2 = 51 on each side
        ((240, 320), (17, 318, 30, 230), CropGeometry(17, 30, 301, 200, 0, 51, 302)),
        ((240, 320), (10.4, 60.6, 5, 40), CropGeometry(10, 5, 51, 35, 0, 8, 51)),  # rounded
    ],
)
def test_geometry(shape, bbox, expected):
    assert crop_geometry(shape, bbox) == expected


def test_crop_pad_resize_matches_reference_bilinear():
    # Reference: explicit zero padding, then jax.image.resize without antialiasing, which
    # uses half-pixel centres like torch's F.interpolate(bilinear, align_corners=False).
    frames = np.random.default_rng(2).random((2, 90, 120)).astype(np.float32)
    bbox = (7, 110, 11, 80)
    g = crop_geometry(frames.shape, bbox)
    padded = np.zeros((2, g.side, g.side), np.float32)
    padded[:, g.pad_top : g.pad_top + g.height, g.pad_left : g.pad_left + g.width] = frames[:, 11:80, 7:110]
    ref = jax.image.resize(padded, (2, 256, 256), "bilinear", antialias=False)
    out = crop_pad_resize(jnp.asarray(frames), bbox)
    assert out.shape == (2, 256, 256) and out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-6)


def test_align_corners_variant_hits_the_corners():
    frames = np.random.default_rng(3).random((1, 40, 40)).astype(np.float32)
    out = np.asarray(crop_pad_resize(jnp.asarray(frames), None, align_corners=True))
    for r, c, fr, fc in [(0, 0, 0, 0), (0, 255, 0, 39), (255, 0, 39, 0), (255, 255, 39, 39)]:
        assert out[0, r, c] == pytest.approx(frames[0, fr, fc], abs=1e-6)


def test_preprocess_output_and_jit():
    frames = jnp.asarray(_frames(2, 60, 80))
    out = jax.jit(lambda f: preprocess(f, (5, 75, 2, 58)))(frames)
    assert out.shape == (2, 256, 256, 1) and out.dtype == jnp.float32
    g = crop_geometry(frames.shape, (5, 75, 2, 58))
    assert g.pad_top > 0 and np.all(np.asarray(out)[:, : int(g.pad_top * g.scale) - 1] == 0)  # zero padding


def test_context_is_zero_padding_around_the_normalised_crop():
    frames = _frames(2, 60, 80)
    got = np.asarray(preprocess(jnp.asarray(frames), context=2.0))
    # side 80 -> 160: the frame sits 40 columns and 50 rows in, on zeros (after normalising)
    padded = np.pad(np.asarray(normalize_percentile(jnp.asarray(frames))), ((0, 0), (50, 50), (40, 40)))
    want = np.asarray(crop_pad_resize(jnp.asarray(padded)))[..., None]
    np.testing.assert_allclose(got, want, atol=1e-6)
    g = crop_geometry(frames.shape, (5, 75, 2, 58), context=1.5)
    assert (g.side, g.pad_left, g.pad_top) == (round(1.5 * 70), (105 - 70) // 2, (105 - 56) // 2)
    point = jnp.asarray([[30.0, 20.0]])
    np.testing.assert_allclose(keypoints_to_frame(keypoints_to_network(point, g), g), point, atol=1e-4)
    for bad in (0.5, float("nan")):
        with pytest.raises(ValueError, match="context"):
            crop_geometry(frames.shape, None, context=bad)


bbox_strategy = st.tuples(
    st.integers(0, 150), st.integers(1, 170), st.integers(0, 100), st.integers(1, 120)
).map(lambda t: (t[0], t[0] + t[1], t[2], t[2] + t[3]))


@settings(max_examples=100, deadline=None)
@given(bbox=bbox_strategy, fx=st.floats(0, 1), fy=st.floats(0, 1))
def test_keypoint_round_trip(bbox, fx, fy):
    g = crop_geometry((240, 330), bbox)
    point = np.array([[bbox[0] + fx * (bbox[1] - bbox[0]), bbox[2] + fy * (bbox[3] - bbox[2])]], np.float32)
    net = keypoints_to_network(jnp.asarray(point), g)
    assert np.all((np.asarray(net) >= -1e-3) & (np.asarray(net) <= 256 + 1e-3))  # inside the square
    back = np.asarray(keypoints_to_frame(net, g))
    np.testing.assert_allclose(back, point, atol=1e-3, rtol=0)


def test_keypoint_mapping_is_the_originals_pure_scale():
    g = crop_geometry((480, 640), (100, 400, 50, 250))  # 300 x 200 -> side 300, pad_top 50
    assert (g.side, g.pad_left, g.pad_top) == (300, 0, 50)
    xy = np.asarray(keypoints_to_frame(jnp.array([[128.0, 128.0], [0.0, 0.0]]), g))
    np.testing.assert_allclose(xy, [[100 + 150, 50 - 50 + 150], [100, 0]], rtol=1e-6)
    assert np.isnan(np.asarray(keypoints_to_network(jnp.array([[np.nan, 3.0]]), g))[0, 0])


@pytest.mark.parametrize(
    "bbox,match",
    [
        ((10, 10, 0, 20), "empty"),
        ((30, 10, 0, 20), "empty"),
        ((0, 20, 15, 5), "empty"),
        ((-1, 20, 0, 20), "outside"),
        ((0, 65, 0, 20), "outside"),
        ((0, 20, 0, 49), "outside"),
        ((0, 20, 0), r"\(x0, x1, y0, y1\)"),
        ((0, float("nan"), 0, 10), "finite"),
    ],
)
def test_bad_bbox(bbox, match):
    with pytest.raises(ValueError, match=match) as err:
        crop_geometry((48, 64), bbox)
    assert "\n" not in str(err.value)
