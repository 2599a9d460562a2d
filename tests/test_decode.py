"""Heatmap decoding and training targets."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jfacemap.track.decode import decode_heatmaps, heatmap_targets

_decode = jax.jit(decode_heatmaps)
_targets = jax.jit(heatmap_targets)

coordinate = st.floats(min_value=-1.0, max_value=255.75, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(points=st.lists(st.tuples(coordinate, coordinate), min_size=3, max_size=3))
def test_decode_recovers_planted_keypoints(points):
    kp = np.asarray(points, np.float32)[None]  # (1, 3, 2)
    t = _targets(kp)
    out = np.asarray(_decode(t.heatmap, t.offset_x, t.offset_y))
    # Exact up to float32 rounding of coordinates in 0..256.
    np.testing.assert_allclose(out[0, :, :2], kp[0], atol=1e-4, rtol=0)
    # The peak sits in the cell nearest to the keypoint (within the offset mask).
    b, g = np.arange(1)[:, None], np.arange(3)[None]
    row = np.clip(np.round(kp[..., 1] / 4), 0, 63).astype(int)
    col = np.clip(np.round(kp[..., 0] / 4), 0, 63).astype(int)
    assert np.asarray(t.mask)[b, row, col, g].all()


def test_original_convention_by_hand():
    # Peak at row 10, column 20; offsets +0.1 (x) and -0.2 (y) in units of 2 sigma = 6 cells:
    # x = (20 - 6 * 0.1) * 4, y = (10 + 6 * 0.2) * 4; likelihood = sigmoid(peak).
    hm = np.zeros((1, 64, 64, 1), np.float32)
    hm[0, 10, 20, 0] = 2.0
    ox = np.full_like(hm, 0.1)
    oy = np.full_like(hm, -0.2)
    out = np.asarray(decode_heatmaps(hm, ox, oy))
    np.testing.assert_allclose(out[0, 0], [77.6, 44.8, 1 / (1 + np.exp(-2.0))], rtol=1e-6)


def test_likelihood_is_monotone_in_the_peak():
    rng = np.random.default_rng(0)
    hm = rng.random((1, 64, 64, 2)).astype(np.float32)
    zeros = np.zeros_like(hm)
    peaks = np.linspace(0.0, 8.0, 20)
    liks = []
    for p in peaks:
        h = hm.copy()
        h[0, 5, 7, :] = 1.0 + p
        liks.append(np.asarray(decode_heatmaps(h, zeros, zeros))[0, :, 2])
    liks = np.array(liks)
    assert np.all(np.diff(liks, axis=0) > 0) and np.all((liks > 0.5) & (liks < 1.0))


def test_ties_take_the_first_cell_row_major():
    hm = np.zeros((1, 64, 64, 1), np.float32)
    hm[0, 3, 9, 0] = hm[0, 3, 2, 0] = hm[0, 7, 0, 0] = 1.0
    z = np.zeros_like(hm)
    np.testing.assert_allclose(np.asarray(decode_heatmaps(hm, z, z))[0, 0, :2], [8.0, 12.0])


def test_targets_shapes_sums_and_mask():
    kp = np.array([[[100.0, 60.0], [3.0, 250.0]]], np.float32)
    t = heatmap_targets(kp)
    assert t.heatmap.shape == t.offset_x.shape == t.mask.shape == (1, 64, 64, 2)
    np.testing.assert_allclose(np.asarray(t.heatmap.sum(axis=(1, 2))), 10.0, rtol=1e-3)
    # mask: cells within sigma = 3 of (25, 15) in grid units; 29 cells of a radius-3 disc.
    assert int(t.mask[0, :, :, 0].sum()) == 29
    assert bool(t.mask[0, 15, 25, 0]) and not bool(t.mask[0, 15, 29, 0])
    # offset sign: (cell - true) / (2 sigma)
    np.testing.assert_allclose(float(t.offset_x[0, 15, 27, 0]), (27 - 25) / 6, rtol=1e-6)
    np.testing.assert_allclose(float(t.offset_y[0, 13, 25, 0]), (13 - 15) / 6, rtol=1e-6)


def test_missing_labels_are_masked_not_zero_targets():
    kp = np.array([[[np.nan, 40.0], [100.0, 100.0], [np.nan, np.nan]]], np.float32)
    t = heatmap_targets(kp)
    assert np.asarray(t.valid).tolist() == [[False, True, False]]
    for a in (t.heatmap, t.offset_x, t.offset_y):
        assert np.all(np.isfinite(a))
        assert not np.any(np.asarray(a)[..., [0, 2]])
    assert not np.any(np.asarray(t.mask)[..., [0, 2]])
    assert np.asarray(t.mask)[..., 1].any()
    # A label at the origin is a real label: its target sits at cell (0, 0).
    t0 = heatmap_targets(np.zeros((1, 1, 2), np.float32))
    assert bool(t0.valid[0, 0]) and float(t0.heatmap[0, 0, 0, 0]) == float(t0.heatmap.max())


def test_batch_and_jit_agree():
    kp = jnp.asarray(np.random.default_rng(1).uniform(0, 255, (4, 5, 2)), jnp.float32)
    t = _targets(kp)
    full = _decode(t.heatmap, t.offset_x, t.offset_y)
    one = decode_heatmaps(t.heatmap[2:3], t.offset_x[2:3], t.offset_y[2:3])
    np.testing.assert_allclose(np.asarray(full[2:3]), np.asarray(one), rtol=1e-6)


def test_no_peak_is_nan_with_likelihood_zero_not_the_corner():
    # A keypoint the network does not see (e.g. cut off at the frame edge) has an all-zero
    # heatmap after the ReLU: it must not come out at cell (0, 0) with likelihood 0.5.
    hm = np.zeros((2, 64, 64, 2), np.float32)
    hm[1, 10, 20, 1] = 0.3  # frame 1, keypoint 1: a real (weak) peak
    offsets = np.full_like(hm, 0.1)
    out = np.asarray(decode_heatmaps(hm, offsets, offsets))
    assert np.isnan(out[0, :, :2]).all() and np.isnan(out[1, 0, :2]).all()
    np.testing.assert_array_equal(out[0, :, 2], 0.0)
    assert out[1, 0, 2] == 0.0
    np.testing.assert_allclose(out[1, 1], [(20 - 0.6) * 4, (10 - 0.6) * 4, 1 / (1 + np.exp(-0.3))], rtol=1e-6)
