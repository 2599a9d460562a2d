"""The keypoint-layout prior: fitted layouts against a known one, decoding against planted heatmaps."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from jfacemap.errors import JfacemapError
from jfacemap.nets.unet import FacemapUNet, with_new_heads
from jfacemap.track.decode import decode_heatmaps, heatmap_targets
from jfacemap.track.inference import make_predict_fn
from jfacemap.track.model_store import load_tracker, save_tracker
from jfacemap.track.preprocess import NET_SIZE, crop_geometry
from jfacemap.track.shape_prior import ShapePrior, _similarity, decode_with_shape_prior, fit_shape_prior

# A face-like layout of 7 keypoints (eye, nose, whisker-ish points), roughly unit size.
LAYOUT = np.array([[-1.0, -0.8], [-0.7, -0.6], [-0.8, -1.0], [0.9, 0.4], [1.0, 0.7], [0.1, 0.3], [0.0, 0.6]])


def _place(layout, scale, angle, shift, mirror):
    """layout (K, 2) moved by a similarity (and a mirror in x first)."""
    z = layout[:, 0] + 1j * layout[:, 1]
    z = (np.conj(z) if mirror else z) * scale * np.exp(1j * angle) + (shift[0] + 1j * shift[1])
    return np.stack([z.real, z.imag], -1)


def test_fit_recovers_a_known_layout_and_its_spread():
    rng = np.random.default_rng(0)
    noise = 0.03
    shapes = []
    for n in range(300):
        pts = _place(LAYOUT + rng.normal(0, noise, LAYOUT.shape), rng.uniform(20, 80), rng.uniform(-np.pi, np.pi),
                     rng.uniform(50, 200, 2), mirror=bool(n % 2))
        paw = rng.uniform(0, 256, (1, 2))  # anywhere: no fixed place on the face
        shapes.append(np.concatenate([pts, paw]))
    shapes = np.array(shapes)
    shapes[rng.random(shapes.shape[:2]) < 0.1] = np.nan  # some points not labelled
    prior = fit_shape_prior(shapes)
    mean, sd = np.asarray(prior.mean), np.asarray(prior.sd)
    assert np.isinf(sd[-1])  # the paw is left unconstrained
    # The fitted layout is the known one up to a similarity (and a mirror): compare after aligning.
    truth = (LAYOUT - LAYOUT.mean(0)) / np.sqrt(np.mean(np.sum((LAYOUT - LAYOUT.mean(0)) ** 2, -1)))
    aligned = _similarity(mean[:7], truth)(mean[:7])
    np.testing.assert_allclose(aligned, truth, atol=0.02)
    np.testing.assert_allclose(np.sqrt(np.mean(np.sum(mean[:7] ** 2, -1))), 1.0, rtol=1e-6)
    # Per-axis spread in units of the RMS radius: the added noise over the layout's radius, less
    # what the alignment itself absorbs (4 of 14 degrees of freedom; more at high-leverage points).
    radius = np.sqrt(np.mean(np.sum((LAYOUT - LAYOUT.mean(0)) ** 2, -1)))
    assert np.all((sd[:7] > 0.5 * noise / radius) & (sd[:7] < 1.05 * noise / radius)), sd


def _heatmaps(points_px, extra=()):
    """(1, 64, 64, K) heatmaps + offsets with a target blob at each point (input px; NaN = none)
    and extra (keypoint, x, y, gain) blobs."""
    t = heatmap_targets(np.asarray(points_px, np.float32)[None])
    hm, ox, oy = (np.array(a) for a in (t.heatmap, t.offset_x, t.offset_y))
    for k, x, y, gain in extra:
        e = heatmap_targets(np.array([[[x, y]]], np.float32))
        blob = np.asarray(e.heatmap)[0, ..., 0] * gain
        near = blob > hm[0, ..., k]
        hm[0, ..., k] = np.maximum(hm[0, ..., k], blob)
        ox[0, ..., k] = np.where(near, np.asarray(e.offset_x)[0, ..., 0], ox[0, ..., k])
        oy[0, ..., k] = np.where(near, np.asarray(e.offset_y)[0, ..., 0], oy[0, ..., k])
    return hm, ox, oy


def _peaks_at(hm, height):
    """Heatmaps scaled so that each keypoint's highest value is `height`."""
    return hm * (height / hm.max(axis=(1, 2), keepdims=True))


@pytest.fixture(scope="module")
def prior():
    return ShapePrior.from_arrays(*_unit(LAYOUT), np.full(len(LAYOUT), 0.05))


def _unit(layout):
    c = layout - layout.mean(0)
    return (c / np.sqrt(np.mean(np.sum(c**2, -1))),)


@pytest.mark.parametrize("mirror", [False, True])
def test_a_stronger_look_alike_away_from_the_face_loses_to_the_peak_that_fits(prior, mirror):
    face = _place(np.asarray(prior.mean), 40.0, 0.4, (128, 120), mirror)
    decoy = (4, 30.0, 220.0, 3.0)  # keypoint 4 peaks 3x higher far from where the face puts it
    hm, ox, oy = _heatmaps(face, [decoy])
    plain = np.asarray(decode_heatmaps(hm, ox, oy))[0]
    out = np.asarray(jax.jit(lambda h, x, y: decode_with_shape_prior(h, x, y, prior, trust=0.0))(hm, ox, oy))[0]
    np.testing.assert_allclose(plain[4, :2], decoy[1:3], atol=1e-3)  # the argmax takes the look-alike
    np.testing.assert_allclose(out[:, :2], face, atol=1e-3)  # the prior takes the blob that fits the face
    true_peak = hm[0, ..., 4].max() / decoy[3]  # the planted blob's own height
    np.testing.assert_allclose(out[4, 2], 1 / (1 + np.exp(-true_peak)), rtol=1e-3)
    others = [k for k in range(len(face)) if k != 4]
    np.testing.assert_array_equal(out[others], plain[others])  # the rest exactly as the argmax


def test_a_face_whose_argmax_already_fits_decodes_exactly_as_the_argmax(prior):
    face = _place(np.asarray(prior.mean), 55.0, -1.2, (100, 140), False)
    hm, ox, oy = _heatmaps(face, [(1, 200.0, 30.0, 0.5)])  # a weaker second blob changes nothing
    hm = _peaks_at(hm, 3.0)  # likelihood sigmoid(3) = 0.95, above `trust`: peaks taken as they are
    np.testing.assert_array_equal(np.asarray(decode_with_shape_prior(hm, ox, oy, prior)),
                                  np.asarray(decode_heatmaps(hm, ox, oy)))


def test_a_missing_point_is_placed_by_the_layout_but_never_invented(prior):
    face = _place(np.asarray(prior.mean), 45.0, 0.2, (128, 128), False)
    hm, ox, oy = _heatmaps(face, [(2, 20.0, 230.0, 1.0)])
    # keypoint 2's only blob is the look-alike (its true blob removed); keypoint 5 has no peak at all
    lone = heatmap_targets(np.array([[[20.0, 230.0]]], np.float32))
    hm[0, ..., 2], ox[0, ..., 2], oy[0, ..., 2] = (np.asarray(a)[0, ..., 0] for a in (lone.heatmap, lone.offset_x, lone.offset_y))
    hm[0, ..., 5] = 0.0
    out = np.asarray(decode_with_shape_prior(hm, ox, oy, prior, trust=0.0))[0]
    np.testing.assert_allclose(out[2, :2], face[2], atol=0.5)  # where the face puts it
    assert out[2, 2] < 0.51  # ...with the heatmap's (nil) evidence there as its likelihood
    assert np.isnan(out[5, :2]).all() and out[5, 2] == 0.0  # no peak: not found, as decode_heatmaps


def test_a_weak_peak_is_drawn_toward_the_layout_by_its_weakness(prior):
    face = _place(np.asarray(prior.mean), 45.0, 0.3, (128, 128), False)
    moved = face.copy()
    moved[3] += (6.0, -4.0)  # keypoint 3's peak sits 7.2 px off the face's layout, inside the gate
    hm, ox, oy = _heatmaps(moved)
    hm = _peaks_at(hm, 3.0)
    hm[0, ..., 3] *= 0.5 / 3.0  # ...and is weak: peak 0.5, likelihood sigmoid(0.5) = 0.62
    strong = np.asarray(decode_with_shape_prior(hm, ox, oy, prior, trust=0.0))[0]
    np.testing.assert_allclose(strong[3, :2], moved[3], atol=1e-3)  # trust 0: the peak as it is
    # The point moves 1 - 0.62 / trust of the way toward where the refitted layout puts it. The
    # refit is pulled a little toward the weak point itself, so the layout's place is near the
    # face's, not at it; it does not depend on trust, so two trusts' shifts keep the shares' ratio.
    lik = 1 / (1 + np.exp(-0.5))
    shifts = {}
    for trust in (0.9, 0.7):
        out = np.asarray(decode_with_shape_prior(hm, ox, oy, prior, trust=trust))[0]
        shifts[trust] = out[3, :2] - moved[3]
    share = {t: 1.0 - lik / t for t in shifts}
    np.testing.assert_allclose(shifts[0.7] * share[0.9], shifts[0.9] * share[0.7], atol=1e-3)
    toward = face[3] - moved[3]
    norm = np.linalg.norm(shifts[0.9])
    assert np.dot(shifts[0.9], toward) > 0.95 * norm * np.linalg.norm(toward)  # toward the face
    assert 0.5 * share[0.9] * np.linalg.norm(toward) < norm < share[0.9] * np.linalg.norm(toward)
    out = np.asarray(decode_with_shape_prior(hm, ox, oy, prior, trust=0.9))[0]
    others = [k for k in range(len(face)) if k != 3]
    np.testing.assert_array_equal(out[others], strong[others])
    np.testing.assert_array_equal(out[:, 2], strong[:, 2])  # likelihoods unchanged


def test_too_few_points_for_a_face_leaves_the_argmax(prior):
    face = _place(np.asarray(prior.mean), 45.0, 0.0, (128, 128), False)
    hm, ox, oy = _heatmaps(face, [(0, 230.0, 20.0, 3.0)])
    hm[..., 3:] = 0.0  # three keypoints with peaks: below min_support
    np.testing.assert_array_equal(np.asarray(decode_with_shape_prior(hm, ox, oy, prior)),
                                  np.asarray(decode_heatmaps(hm, ox, oy)))


def test_the_prior_travels_with_the_model_into_tracking(tmp_path, prior):
    names = [f"p{k}" for k in range(len(LAYOUT))]
    model = FacemapUNet(len(names), channels=(4, 8, 8), n_upsample=1, rngs=nnx.Rngs(3))
    model.shape_prior = prior
    save_tracker(tmp_path / "m", model, names)
    loaded, _, info = load_tracker(tmp_path / "m")
    assert loaded.shape_prior == prior and "shape_prior" in info
    subset = with_new_heads(loaded, names, names[::-1][:5])
    np.testing.assert_array_equal(subset.shape_prior.mean, np.asarray(prior.mean)[::-1][:5])
    assert with_new_heads(loaded, names, names + ["new"]).shape_prior is None
    info["shape_prior"]["sd"] = info["shape_prior"]["sd"][:-1]  # a hand-edited file: one keypoint short
    (tmp_path / "m" / "model.json").write_text(json.dumps(info))
    with pytest.raises(JfacemapError, match="model.json: shape_prior has 6 keypoints, the model 7"):
        load_tracker(tmp_path / "m")



def test_tracking_decodes_with_the_models_prior_unless_told_not_to(monkeypatch, prior):
    import jfacemap.track.shape_prior as shape_prior_module

    model = FacemapUNet(len(LAYOUT), channels=(4, 8, 8), n_upsample=1, rngs=nnx.Rngs(3))
    frames = np.random.default_rng(1).integers(0, 255, (2, 96, 80)).astype(np.uint8)
    plain = np.asarray(make_predict_fn(model, None, frames.shape[1:], fast=False)(frames))  # no prior: argmax
    seen = []

    def marked(heatmap, offset_x, offset_y, p, sigma, stride):
        seen.append(p)
        return decode_heatmaps(heatmap, offset_x, offset_y, sigma=sigma, stride=stride).at[..., 0].add(100.0)

    monkeypatch.setattr(shape_prior_module, "decode_with_shape_prior", marked)
    model.shape_prior = prior
    for fast in (False, True):
        got = np.asarray(make_predict_fn(model, None, frames.shape[1:], fast=fast)(frames))
        scale = crop_geometry(frames.shape, None, NET_SIZE, model.context).side / NET_SIZE
        np.testing.assert_allclose(got[..., 0], plain[..., 0] + 100.0 * scale, atol=1e-3)
    assert seen and all(p is prior for p in seen)
    off = np.asarray(make_predict_fn(model, None, frames.shape[1:], fast=False, shape_prior=False)(frames))
    np.testing.assert_allclose(off, plain, atol=1e-5)
