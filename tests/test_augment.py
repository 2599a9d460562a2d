"""Training augmentation: identity == preprocess, geometry follows the image, draws in range."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jfacemap.track.augment import IDENTITY, ZOOM, AugmentConfig, AugmentParams, apply_params, augment_batch, sample_params
from jfacemap.track.preprocess import crop_geometry, keypoints_to_network, normalize_percentile, preprocess

# jitted: op-by-op dispatch compiles every small op and is slower on a CPU
apply_params = jax.jit(apply_params, static_argnames=("base_side", "size", "intensity", "mirror"))
sample_params = jax.jit(sample_params, static_argnums=(1, 2, 3, 4))
preprocess = jax.jit(preprocess, static_argnames=("bbox", "context"))
normalize_percentile = jax.jit(normalize_percentile)


@pytest.mark.parametrize("shape, bbox, context", [((2, 256, 256), None, 1.0), ((2, 300, 200), (10, 190, 20, 251), 1.0),
                                                  ((2, 300, 200), (10, 190, 20, 251), 2.2), ((2, 256, 256), None, 1.5)])
def test_identity_equals_preprocess(shape, bbox, context):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, shape).astype(np.uint8)
    geom = crop_geometry(shape, bbox, context=context)
    # Labels inside the box (those outside are cropped away by design).
    kp = np.stack([rng.uniform(geom.x0, geom.x0 + geom.width - 1, (shape[0], 5)),
                   rng.uniform(geom.y0, geom.y0 + geom.height - 1, (shape[0], 5))], -1).astype(np.float32)
    kp[0, 1] = np.nan
    x = normalize_percentile(jnp.asarray(frames))
    images, out_kp = augment_batch(jax.random.key(0), x, kp, IDENTITY, bbox, context=context)
    np.testing.assert_allclose(images, preprocess(jnp.asarray(frames), bbox, context=context), atol=1e-5)
    np.testing.assert_allclose(out_kp, keypoints_to_network(jnp.asarray(kp), geom), atol=1e-4)
    assert np.isnan(out_kp[0, 1]).all()


def _dot_frames(shape, centres, sigma=1.5):
    """(B, H, W) float frames, each with a Gaussian dot at its (x, y) centre."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.stack([np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2)) for x, y in centres]).astype(np.float32)


def _centroid(image):
    """Intensity centroid (x, y) in a 9 x 9 window around the brightest pixel."""
    r, c = np.unravel_index(np.argmax(image), image.shape)
    r0, c0 = max(r - 4, 0), max(c - 4, 0)
    win = image[r0 : r + 5, c0 : c + 5]
    yy, xx = np.mgrid[r0 : r0 + win.shape[0], c0 : c0 + win.shape[1]]
    return np.array([(xx * win).sum(), (yy * win).sum()]) / win.sum()


def test_flip_mirrors_keypoints_with_the_image():
    frames = _dot_frames((256, 256), [(60.0, 100.0)])
    kp = np.array([[[60.0, 100.0], [np.nan, np.nan]]], np.float32)
    params = AugmentParams(jnp.array([[0, 256, 0, 256]]), jnp.array([True]), jnp.ones(1), jnp.zeros(1))
    images, out = apply_params(jnp.asarray(frames), kp, params, base_side=256)
    np.testing.assert_allclose(out[0, 0], [255 - 60.0, 100.0], atol=1e-4)
    np.testing.assert_allclose(_centroid(np.asarray(images[0, ..., 0])), out[0, 0], atol=0.2)
    assert np.isnan(out[0, 1]).all()


def test_flip_swaps_left_right_partners_and_nothing_else():
    frames = jnp.zeros((1, 256, 256))
    kp = np.array([[[60.0, 100.0], [90.0, 30.0], [10.0, 20.0]]], np.float32)  # left, right, unpaired
    mirror = (1, 0, 2)
    for flip in (True, False):
        params = AugmentParams(jnp.array([[0, 256, 0, 256]]), jnp.array([flip]), jnp.ones(1), jnp.zeros(1))
        _, plain = apply_params(frames, kp, params, base_side=256)
        _, paired = apply_params(frames, kp, params, base_side=256, mirror=mirror)
        expected = np.asarray(plain)[:, list(mirror)] if flip else np.asarray(plain)
        np.testing.assert_allclose(paired, expected)
    np.testing.assert_allclose(paired[0], kp[0], atol=1e-4)  # not flipped: where labelled
    # flipped: the left label sits on the mirror image of the right point, and vice versa
    params = AugmentParams(jnp.array([[0, 256, 0, 256]]), jnp.array([True]), jnp.ones(1), jnp.zeros(1))
    _, paired = apply_params(frames, kp, params, base_side=256, mirror=mirror)
    np.testing.assert_allclose(paired[0], [[255 - 90.0, 30.0], [255 - 60.0, 100.0], [255 - 10.0, 20.0]], atol=1e-4)


@pytest.mark.parametrize("shape", [(256, 256), (180, 240)])
def test_random_augment_keeps_dots_on_their_keypoints(shape):
    rng = np.random.default_rng(1)
    centres = [(rng.uniform(0.4, 0.6) * shape[1], rng.uniform(0.4, 0.6) * shape[0]) for _ in range(16)]
    frames = _dot_frames(shape, centres)
    kp = np.array(centres, np.float32)[:, None, :]
    config = AugmentConfig(inward_prob=0.5, clamp=False, intensity_prob=0.0)  # ZOOM's boxes; no brightness shift
    images, out = augment_batch(jax.random.key(3), jnp.asarray(frames), kp, config)
    images, out = np.asarray(images[..., 0]), np.asarray(out[:, 0])
    for image, point in zip(images, out):
        assert np.isfinite(point).all()  # the centre stays inside a +-30 % box
        assert np.linalg.norm(_centroid(image) - point) < 1.0


def test_points_cropped_away_become_nan():
    frames = jnp.zeros((1, 100, 100))
    kp = np.array([[[5.0, 50.0], [50.0, 50.0]]], np.float32)
    params = AugmentParams(jnp.array([[20, 80, 20, 80]]), jnp.array([False]), jnp.ones(1), jnp.zeros(1))
    _, out = apply_params(frames, kp, params, base_side=100)
    assert np.isnan(out[0, 0]).all() and np.isfinite(out[0, 1]).all()
    # the box's centre (49.5 in pixel-centre coordinates) maps to the output's centre
    np.testing.assert_allclose(out[0, 1], (50 - 20 + 0.5) * 256 / 60 - 0.5 + 0.5 * (1 - 2.56), atol=1e-4)


def test_draws_in_range():
    config = ZOOM
    p = sample_params(jax.random.key(0), 4000, (200, 300), config)
    box = np.asarray(p.box, float)
    moved = np.abs(box - [0, 300, 0, 200]) / [300, 300, 200, 200]
    assert moved.min() >= 0.1 - 0.01 and moved.max() <= 0.3 + 0.01
    assert 0.45 < np.mean(p.flip) < 0.55
    on = np.asarray(p.gain) != 1.0
    assert 0.45 < on.mean() < 0.55
    assert 0.7 <= p.gain.min() and p.gain.max() <= 1.3 and np.abs(p.offset).max() <= 0.2
    assert np.all(np.asarray(p.offset)[~on] == 0)


def test_original_style_boxes_only_grow_and_stay_in_the_frame():
    # inward_prob=0 + clamp: the original's randomize_bbox_coordinates. Around a whole-frame
    # box nothing changes (its expansions are all cut back at the frame edge).
    config = AugmentConfig(inward_prob=0.0, clamp=True)
    p = sample_params(jax.random.key(0), 500, (200, 300), config)
    np.testing.assert_array_equal(np.asarray(p.box), np.tile([0, 300, 0, 200], (500, 1)))
    bbox = (100, 200, 60, 180)  # x0, x1, y0, y1: 100 x 120 px; the bottom can reach the frame's edge
    p = sample_params(jax.random.key(1), 2000, (200, 300), config, bbox)
    box = np.asarray(p.box, float)
    grow = (box - [100, 200, 60, 180]) * [-1, 1, -1, 1] / [100, 100, 120, 120]  # outward moves
    assert grow[:, :3].min() >= 0.1 - 0.01 and grow.max() <= 0.3 + 0.01  # never inwards
    assert box[:, 2].min() >= 0 and box[:, 3].max() == 200  # clamped to the frame, and some reach it


def test_original_intensity_is_the_original_formula():
    # The original's randomly_adjust_contrast, written out in numpy on each network image.
    rng = np.random.default_rng(4)
    frames = rng.uniform(-0.2, 1.3, (3, 40, 40)).astype(np.float32)
    box = jnp.tile(jnp.array([0, 40, 0, 40]), (3, 1))
    gain, offset = np.array([1.25, 1.0, 0.8], np.float32), np.array([0.15, 0.0, -0.1], np.float32)
    params = AugmentParams(box, jnp.zeros(3, bool), jnp.asarray(gain), jnp.asarray(offset))
    plain, _ = apply_params(jnp.asarray(frames), np.zeros((3, 1, 2), np.float32), params._replace(
        gain=jnp.ones(3), offset=jnp.zeros(3)), base_side=40, size=40)
    got, _ = apply_params(jnp.asarray(frames), np.zeros((3, 1, 2), np.float32), params, base_side=40, size=40,
                          intensity="original")
    for i in range(3):
        img = np.asarray(plain[i, ..., 0], np.float64)
        if gain[i] == 1.0 and offset[i] == 0.0:  # not drawn: untouched (negatives kept)
            np.testing.assert_allclose(got[i, ..., 0], img, atol=1e-6)
            continue
        top, mean = img.max(), img.mean()
        want = np.clip(np.minimum(top, (img + offset[i] * top - mean) * gain[i] + mean), 0, top)
        np.testing.assert_allclose(got[i, ..., 0], want, atol=1e-5)
    assert float(np.min(got[0])) >= 0.0  # clipped, unlike the affine mode
