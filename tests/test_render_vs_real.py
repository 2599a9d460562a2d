"""bench/render_vs_real.py: the statistics on inputs whose answers are known, and one tiny end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench import render_vs_real as rv
from jfacemap.skeleton import FACEMAP_BODYPARTS

BP = list(FACEMAP_BODYPARTS)

# A face pointing right, axis horizontal: eye centre (100, 100), nose(tip) (200, 100): axis length 100.
FACE = {
    "eye(back)": (90, 100), "eye(front)": (110, 100), "eye(top)": (100, 92), "eye(bottom)": (100, 108),
    "nose(tip)": (200, 100), "nose(bottom)": (190, 115), "nose(top)": (185, 90), "nose(r)": (215, 112),
    "whisker(I)": (160, 130), "whisker(II)": (150, 120), "whisker(III)": (170, 125),
}
UV = {"eye(back)": (-0.1, 0.0), "eye(front)": (0.1, 0.0), "eye(top)": (0.0, -0.08), "eye(bottom)": (0.0, 0.08),
      "nose(tip)": (1.0, 0.0), "nose(bottom)": (0.9, 0.15), "nose(top)": (0.85, -0.1), "nose(r)": (1.15, 0.12),
      "whisker(I)": (0.6, 0.3), "whisker(II)": (0.5, 0.2), "whisker(III)": (0.7, 0.25)}


def face_array(points=FACE) -> np.ndarray:
    xy = np.full((len(BP), 2), np.nan)
    for name, p in points.items():
        xy[BP.index(name)] = p
    return xy


def transformed(xy, degrees=0.0, scale=1.0, mirror=False, size=256):
    """Rotate (clockwise on screen, y down) and scale about the eye centre, then mirror left-right."""
    t = np.deg2rad(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    c = np.array([100.0, 100.0])
    out = (xy - c) @ rot.T * scale + c
    if mirror:
        out[:, 0] = size - 1 - out[:, 0]
    return out


def layout_mismatches(stats, axis_px=100.0, tilt=0.0) -> list[str]:
    """Names of the layout statistics that differ from the hand-made face's known values."""
    expected = {
        "whisker_u": 0.6, "whisker_v": 0.25,
        "nose_u": (0.9 + 1.0 + 0.85) / 3, "nose_v": (0.15 + 0.0 - 0.1) / 3,
        "eye_u": 0.0, "eye_v": 0.0, "eye_width": 0.2, "eye_height": 0.16, "eye_tilt_deg": 0.0,
        "axis_px": axis_px, "axis_tilt_deg": tilt,
        # bottom (0.9, 0.15) to top (0.85, -0.1): the farthest pair of the three
        "nose_spread_px": np.hypot(0.05, 0.25) * axis_px,
        # nose(r) (1.15, 0.12) to top is farther still
        "nose_spread_all_px": np.hypot(0.30, 0.22) * axis_px,
    }
    bad = [k for k, v in expected.items() if stats[k] != pytest.approx(v, rel=1e-6, abs=1e-9)]
    bad += [name for name, uv in UV.items() if stats["per_keypoint"][name] != pytest.approx(uv, abs=1e-9)]
    return bad


def test_layout_of_a_hand_made_face():
    stats = rv.layout_stats(face_array(), BP)
    assert layout_mismatches(stats) == []
    assert stats["nose_edge_px"] == pytest.approx(255.5 - 200)


@pytest.mark.parametrize("degrees, scale", [(0.0, 1.0), (20.0, 1.3), (-25.0, 0.7)])
def test_layout_is_the_same_for_a_rotated_scaled_and_mirrored_face(degrees, scale):
    xy = face_array()
    for mirror in (False, True):
        stats = rv.layout_stats(transformed(xy, degrees, scale, mirror), BP)
        assert layout_mismatches(stats, axis_px=100.0 * scale, tilt=degrees) == [], mirror


def test_mirrored_face_points_left_and_keeps_its_edge_distance():
    xy = transformed(face_array(), mirror=True)
    assert xy[BP.index("nose(tip)"), 0] < xy[BP.index("eye(back)"), 0]  # nose to the left now
    assert rv.layout_stats(xy, BP)["nose_edge_px"] == pytest.approx(255.5 - 200)


def test_layout_without_a_frame_and_with_a_missing_whisker():
    xy = face_array()
    xy[BP.index("nose(tip)")] = np.nan
    assert rv.layout_stats(xy, BP) is None
    xy = face_array()
    xy[BP.index("eye(top)")] = np.nan
    assert rv.layout_stats(xy, BP) is None
    xy = face_array()
    xy[BP.index("whisker(III)")] = np.nan
    stats = rv.layout_stats(xy, BP)
    assert stats["whisker_u"] == pytest.approx(0.55) and stats["whisker_v"] == pytest.approx(0.25)


def test_resize_and_keypoint_scaling_agree():
    # On a ramp image I = x (column), the resized value at output column j is the source x it samples,
    # and scale_points must map that source x back to j (away from the clamped left edge).
    ramp = np.tile(np.arange(354, dtype=np.float64), (354, 1))
    small = rv.resize_bilinear(ramp)
    assert small.shape == (256, 256)
    j = np.arange(2, 256)
    src = small[0, j]
    back = rv.scale_points(np.stack([src, np.zeros_like(src)], -1), (354, 354))[:, 0]
    np.testing.assert_allclose(back, j, atol=1e-9)
    np.testing.assert_allclose(rv.resize_bilinear(np.full((354, 354), 77.0)), 77.0)


def test_laplacian_sd_known_images():
    i, j = np.mgrid[:64, :64]
    checker = np.where((i + j) % 2 == 0, 1.0, -1.0)
    assert rv.laplacian_sd(checker) == pytest.approx(8.0)  # every interior Laplacian is -8 * value
    assert rv.laplacian_sd(3.0 * i**2 + j**2) == pytest.approx(0.0, abs=1e-9)  # constant Laplacian 8
    img = np.random.default_rng(0).uniform(0, 255, (50, 70))
    direct = img[:-2, 1:-1] + img[2:, 1:-1] + img[1:-1, :-2] + img[1:-1, 2:] - 4 * img[1:-1, 1:-1]
    assert rv.laplacian_sd(img) == pytest.approx(direct.std(), rel=1e-12)
    assert rv.laplacian_sd(img.astype(np.uint8)) == pytest.approx(rv.laplacian_sd(np.floor(img)), rel=1e-12)


def test_gradient_mean_of_a_ramp_is_its_slope():
    i, j = np.mgrid[:40, :40].astype(np.float64)
    assert rv.gradient_mean(3.0 * j + 4.0 * i) == pytest.approx(5.0)


def power_law_noise(a: float, n: int = 256, seed: int = 0) -> np.ndarray:
    """Gaussian noise whose power falls as 1 / f^a."""
    rng = np.random.default_rng(seed)
    f = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :])
    f[0, 0] = 1.0
    spectrum = np.fft.fft2(rng.standard_normal((n, n))) * f ** (-a / 2)
    spectrum[0, 0] = 0.0
    return np.real(np.fft.ifft2(spectrum))


@pytest.mark.parametrize("a", [1.0, 2.0, 3.0])
def test_spectrum_slope_recovers_power_law_exponent(a):
    slopes = [rv.spectrum_slope(power_law_noise(a, seed=s)) for s in range(3)]
    assert np.mean(slopes) == pytest.approx(-a, abs=0.12)


def test_band_powers_of_white_noise_follow_the_band_areas():
    bands = rv.band_powers(np.random.default_rng(1).standard_normal((256, 256)))
    assert sum(bands.values()) == pytest.approx(1.0)
    # white: power ~ area of the frequency square [-0.5, 0.5)^2 in each band
    assert bands["band_low"] == pytest.approx(np.pi / 32**2, rel=0.15)
    assert bands["band_mid"] == pytest.approx(np.pi * (1 / 8**2 - 1 / 32**2), rel=0.1)
    assert bands["band_high"] == pytest.approx(1 - np.pi / 8**2, rel=0.02)
    smooth = rv.band_powers(power_law_noise(3.0))
    assert smooth["band_low"] > 0.9 > bands["band_low"]


def test_histogram_distances():
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 256, (64, 64))
    p = rv.histogram(a)
    assert p.shape == (32,) and p.sum() == pytest.approx(1.0)
    assert rv.js_distance(p, p) == pytest.approx(0.0, abs=1e-7)
    assert rv.emd(p, p) == pytest.approx(0.0)
    dark, bright = rv.histogram(np.full((8, 8), 10.0)), rv.histogram(np.full((8, 8), 200.0))
    assert rv.js_distance(dark, bright) == pytest.approx(1.0)
    assert rv.emd(dark, bright) == pytest.approx((200 // 8 - 10 // 8) * 8.0)  # 24 bins of 8 grey levels


def test_intensity_and_saturation():
    img = np.zeros((10, 10))
    img[:2] = 255.0  # 20 % at 255
    img[2:3] = 250.0  # 10 % at 250 (counts as saturated)
    img[3:5] = 5.0  # 20 % at 5 (dark)
    img[5:] = 100.0
    s = rv.intensity_stats(img)
    assert s["sat_hi"] == pytest.approx(0.3) and s["sat_lo"] == pytest.approx(0.2)
    assert s["mean"] == pytest.approx(img.mean()) and s["p50"] == pytest.approx(100.0)


def test_noise_sigma_ignores_smooth_structure():
    i, j = np.mgrid[:256, :256]
    smooth = 100 + 0.3 * j + 20 * np.sin(i / 30.0)
    noise = np.random.default_rng(3).normal(0, 5.0, smooth.shape)
    assert rv.noise_sigma(smooth) < 0.1
    assert rv.noise_sigma(smooth + noise) == pytest.approx(5.0, rel=0.05)


def test_local_stats_of_tiles():
    img = np.zeros((64, 64))
    img[:, 32:] = 100.0  # tiles all 0 or all 100: no local contrast, shading SD 50
    s = rv.local_stats(img)
    assert s["shading_sd"] == pytest.approx(50.0) and s["local_sd"] == pytest.approx(0.0)
    img[:, 1::2] += 10.0  # add a stripe of period 2: every tile's SD becomes 5, its mean shifts by 5
    s = rv.local_stats(img)
    assert s["local_sd"] == pytest.approx(5.0) and s["local_sd_sd"] == pytest.approx(0.0, abs=1e-9)
    assert s["shading_sd"] == pytest.approx(50.0)
    img[:16, :16] = 0.0  # one flat tile of 16: local SD 5 in 15 tiles, 0 in one
    s = rv.local_stats(img)
    assert s["local_sd"] == pytest.approx(5.0 * 15 / 16)
    assert rv.local_stats(np.full((64, 64), 50.0)) == pytest.approx({"local_sd": 0, "local_sd_sd": 0, "shading_sd": 0},
                                                                     abs=1e-6)


def test_auc_counts_pairs():
    assert rv.auc([5, 6], [1, 2, 3]) == 1.0
    assert rv.auc([0], [1, 2]) == 0.0
    assert rv.auc([1, 2], [1, 2]) == 0.5
    assert rv.auc([2, np.nan], [1, 3]) == 0.5


def test_image_stats_are_mirror_invariant():
    img = np.random.default_rng(4).uniform(0, 255, (96, 96))
    a, b = rv.image_stats(img), rv.image_stats(img[:, ::-1])
    assert a.keys() == set(rv.IMAGE_KEYS)
    for k in rv.IMAGE_KEYS:
        assert a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-12), k


@pytest.mark.skipif(not rv.FACES.exists(), reason="../shared/data/real-faces is not beside this checkout")
def test_real_faces_layout_sign_and_mirror():
    images, keypoints, bodyparts, names = rv.load_real()
    assert images.shape == (6, 256, 256) and len(names) == 6
    for xy in keypoints:
        stats = rv.layout_stats(xy, bodyparts)
        assert stats is not None
        assert stats["whisker_v"] > 0  # whiskers below the eye-nose axis on every real face
        assert 0.3 < stats["whisker_u"] < 0.8 and stats["nose_u"] > 0.8
        mirrored = rv.layout_stats(transformed(xy, mirror=True), bodyparts)
        for k in rv.LAYOUT_KEYS:
            assert mirrored[k] == pytest.approx(stats[k], abs=1e-9), k


def test_end_to_end_tiny_run(tmp_path, monkeypatch):
    if not rv.FACES.exists():
        pytest.skip("../shared/data/real-faces is not beside this checkout")
    import bench.common
    from jfacemap.synth import STYLES

    monkeypatch.setattr(bench.common, "RESULTS", tmp_path)
    rv.main(["--n-renders", "2", "--styles", STYLES[0], "--name", "tiny", "--session-frames", "500"])
    data = json.loads((tmp_path / "tiny.json").read_text())
    rows = {r["statistic"]: r for r in data["renders"][STYLES[0]]["rows"]}
    assert set(rv.LAYOUT_KEYS + rv.IMAGE_KEYS + ("hist_js", "hist_emd")) <= set(rows)
    assert 8 < rows["lap_sd"]["real"] < 17  # the real faces: Laplacian SD 9-15
    assert rows["lap_sd"]["gap"] == pytest.approx(rows["lap_sd"]["render"] - rows["lap_sd"]["real"], rel=1e-4)
    assert 0 <= rows["hist_js"]["gap"] <= 1
    assert len(data["renders"][STYLES[0]]["per_image"]["lap_sd"]) == 2


def test_pad_statistics_tell_radiating_lines_from_isotropic_texture():
    """pad_radial ~1 for lines through the whisker keypoints' centre, ~0.5 for white noise, ~0 for
    rings around it; pad_detail is the high-pass SD (0 on a flat image), NaN without whiskers."""
    xy = face_array()  # whisker centre (160, 125)
    yy, xx = np.mgrid[0:256, 0:256]
    angle = np.arctan2(yy - 125, xx - 160)
    radius = np.hypot(yy - 125, xx - 160)
    rays = 120 + 60 * np.cos(12 * angle)  # 12 dark/bright spokes radiating from the centre
    rings = 120 + 60 * np.cos(2 * np.pi * radius / 6)
    noise = 120 + 20 * np.random.default_rng(0).standard_normal((256, 256))
    r_rays, r_rings, r_noise = (rv.pad_stats(im, xy, BP)["pad_radial"] for im in (rays, rings, noise))
    assert r_rays > 0.9 and r_rings < 0.1 and 0.4 < r_noise < 0.6
    flat = rv.pad_stats(np.full((256, 256), 80.0), xy, BP)
    assert flat["pad_detail"] == 0.0 and flat["pad_detail_rel"] == 0.0
    assert rv.pad_stats(noise, xy, BP)["pad_detail"] > 10
    no_whiskers = face_array({k: v for k, v in FACE.items() if not k.startswith("whisker")})
    assert all(np.isnan(v) for v in rv.pad_stats(noise, no_whiskers, BP).values())
