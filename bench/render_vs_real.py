"""How far the synthetic renderer is from real mouse faces: keypoint layout and image statistics.

    python -m bench.render_vs_real                          # all styles, 60 renders each
    python -m bench.render_vs_real --styles lab1 --n-renders 100 --name render_vs_real_after
    python -m bench.render_vs_real --per-keypoint            # also u, v of every keypoint

Real: the six faces of `../shared/data/real-faces` (354 x 354 px, Facemap
bodyparts), read with jfacemap's own label loader. Renders: for each style,
`--n-renders` sessions (seeds `--seed`, `--seed` + 1, ...) made with
`jfacemap.synth.make_session` as `bench/train_base_model.py` does (a
`--session-frames` long session, one random frame of it), so whatever the
renderer currently does is what is measured.

Everything is measured at the paper's 256 scale: real faces are resized x
256/354 with the bilinear resize the tracker's preprocessing uses (torch's
align_corners=False) and their keypoints mapped alike; renders of another size
are resized the same way.

For each statistic, one value per image; the table shows the real mean and
range, the render mean and range, the gap (render mean - real mean) and the
AUC, P(render value > real value) over all (render, real) pairs: 0.5 = the
two sets overlap, 0 or 1 = every render lies on one side of every real face.
Histogram distances compare the pooled histograms. The legend printed under
the table defines every statistic. Writes bench/results/<--name>.json.

The statistic functions (`layout_stats`, `image_stats` and their parts) are
pure: image(s) or keypoints in, numbers out.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage
from scipy.spatial.distance import jensenshannon

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

FACES = REPO.parent / "shared" / "data" / "real-faces" / "CollectedData.csv"
SIZE = 256  # the paper's scale

EYE = ("eye(back)", "eye(bottom)", "eye(front)", "eye(top)")
# The nose points labelled on every real face; nose(r) (labelled on 2 of 6) is reported on its own.
NOSE = ("nose(bottom)", "nose(tip)", "nose(top)")
WHISKERS = ("whisker(I)", "whisker(II)", "whisker(III)")
PER_KEYPOINT = EYE + ("nose(bottom)", "nose(r)", "nose(tip)", "nose(top)") + WHISKERS

HIST_BINS = 32
SPECTRUM_FIT = (1 / 64, 1 / 4)  # cycles / px: periods 4-64 px
BANDS = {"low": (0.0, 1 / 32), "mid": (1 / 32, 1 / 8), "high": (1 / 8, np.inf)}  # cycles / px
WINDOW = 16  # px, local statistics
PAD_RADIUS, PAD_SIGMA = 12, 2.0  # px at 256: the whisker pad's window and its fine-detail scale

LEGEND = {
    "whisker_u": "whiskers: mean u (eye-nose frame: origin eye centre = mean of the 4 eye points, "
                 "u = projection on the eye->nose(tip) axis / axis length)",
    "whisker_v": "whiskers: mean v (distance below the axis / axis length; 'below' = the perpendicular "
                 "pointing down the image, so a face mirrored left-right gives the same u, v)",
    "nose_u": "nose(bottom), nose(tip), nose(top): mean u",
    "nose_v": "nose(bottom), nose(tip), nose(top): mean v",
    "eye_tilt_deg": "eye(back) -> eye(front) angle to the axis, degrees (front end below the axis > 0); "
                    "the eye points' mean u, v is 0 by construction, their own u, v are in --per-keypoint",
    "nose_spread_px": "max pairwise distance of nose(bottom), nose(tip), nose(top), px at 256",
    "nose_spread_all_px": "max pairwise distance of all labelled nose points (nose(r) too), px at 256",
    "eye_width": "eye width |eye(front) - eye(back)| / axis length",
    "eye_height": "eye height |eye(top) - eye(bottom)| / axis length",
    "axis_px": "axis length eye centre -> nose(tip), px at 256 (face scale)",
    "axis_tilt_deg": "axis angle below the horizontal, degrees (nose lower than eye > 0; mirror-invariant)",
    "nose_edge_px": "nose(tip) to the frame edge it points at, px at 256 (tight crops: small)",
    "mean": "intensity mean (grey levels 0-255)",
    "sd": "intensity SD",
    "p5": "intensity 5th percentile",
    "p50": "intensity median",
    "p95": "intensity 95th percentile",
    "sat_hi": "fraction of pixels >= 250",
    "sat_lo": "fraction of pixels <= 5",
    "lap_sd": "Laplacian SD: SD of scipy.ndimage.laplace (5-point) over the interior (1 px border dropped)",
    "grad_mean": "mean gradient magnitude, Sobel / 8 (grey levels per px), interior",
    "spec_slope": "radially averaged power spectrum: slope of log10 power vs log10 frequency over "
                  f"{SPECTRUM_FIT[0]:.4g}-{SPECTRUM_FIT[1]:.4g} cycles/px (Hann window, mean removed; "
                  "natural images ~ -2, flatter = more fine detail/noise)",
    "band_low": "fraction of (non-DC, windowed) power below 1/32 cycles/px (periods > 32 px)",
    "band_mid": "fraction of power at 1/32-1/8 cycles/px (periods 8-32 px)",
    "band_high": "fraction of power above 1/8 cycles/px (periods < 8 px)",
    "local_sd": f"mean of the intensity SD within {WINDOW} x {WINDOW} px tiles (local contrast: fur, edges)",
    "local_sd_sd": f"SD across tiles of that {WINDOW} px tile SD (how uneven local contrast is)",
    "shading_sd": f"SD across tiles of the {WINDOW} px tile mean (large-scale shading)",
    "noise_sigma": "sensor noise estimate, grey levels (Immerkaer 1996: mean |3x3 Laplacian-difference| "
                   "* sqrt(pi/2) / 6)",
    "pad_detail": f"whisker pad: SD of the fine detail (image - Gaussian blur sigma {PAD_SIGMA}) within "
                  f"{PAD_RADIUS} px of the whisker keypoints' centre, grey levels (shafts, fur strands)",
    "pad_detail_rel": "pad_detail / the mean grey level there (contrast of the pad's detail, gain-free)",
    "pad_radial": "whisker pad: share of the fine detail's gradient energy across the rays from the whisker "
                  f"keypoints' centre (within {2 * PAD_RADIUS} px): 0.5 isotropic, 1 = lines radiating from it",
    "hist_js": f"Jensen-Shannon distance (base 2, 0-1) between the pooled {HIST_BINS}-bin histograms",
    "hist_emd": "earth mover's distance between the pooled histograms, grey levels",
}
LAYOUT_KEYS = ("whisker_u", "whisker_v", "nose_u", "nose_v", "eye_tilt_deg", "nose_spread_px",
               "nose_spread_all_px", "eye_width", "eye_height", "axis_px", "axis_tilt_deg", "nose_edge_px")
PAD_KEYS = ("pad_detail", "pad_detail_rel", "pad_radial")
IMAGE_KEYS = ("mean", "sd", "p5", "p50", "p95", "sat_hi", "sat_lo", "lap_sd", "grad_mean", "spec_slope",
              "band_low", "band_mid", "band_high", "local_sd", "local_sd_sd", "shading_sd", "noise_sigma")


# ------------------------------------------------------------------ scale


def _taps(n_in: int, n_out: int):
    src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    p0 = np.floor(src).astype(np.int64)
    p1 = np.minimum(p0 + 1, n_in - 1)
    return p0, p1, src - p0


def resize_bilinear(image: np.ndarray, size: int = SIZE) -> np.ndarray:
    """(H, W) -> (size, size) float64, bilinear like the tracker's preprocess (torch, align_corners=False)."""
    img = np.asarray(image, np.float64)
    r0, r1, wr = _taps(img.shape[0], size)
    rows = img[r0] * (1.0 - wr)[:, None] + img[r1] * wr[:, None]
    c0, c1, wc = _taps(img.shape[1], size)
    return rows[:, c0] * (1.0 - wc) + rows[:, c1] * wc


def scale_points(xy: np.ndarray, shape: tuple[int, int], size: int = SIZE) -> np.ndarray:
    """x, y (..., 2) in pixels of an (H, W) image -> pixels of its `resize_bilinear` (pixel centres kept)."""
    xy = np.asarray(xy, np.float64)
    h, w = shape
    return np.stack([(xy[..., 0] + 0.5) * (size / w) - 0.5, (xy[..., 1] + 0.5) * (size / h) - 0.5], axis=-1)


# ------------------------------------------------------------------ layout


def face_frame(xy: np.ndarray, bodyparts: Sequence[str]):
    """(origin, axis, normal) of the eye-to-nose frame of one face, or None if an eye point or nose(tip) is missing.

    origin: eye centre (mean of the four eye points); axis: origin -> nose(tip)
    (not normalised); normal: the axis turned 90 degrees toward the bottom of the
    image (so it does not depend on which way the face points), same length.
    """
    xy = np.asarray(xy, np.float64)
    idx = {b: i for i, b in enumerate(bodyparts)}
    eye = xy[[idx[b] for b in EYE]]
    tip = xy[idx["nose(tip)"]]
    if not (np.isfinite(eye).all() and np.isfinite(tip).all()):
        return None
    origin = eye.mean(axis=0)
    axis = tip - origin
    if np.hypot(*axis) == 0:
        return None
    side = 1.0 if axis[0] >= 0 else -1.0  # nose right: (-ay, ax) points down; nose left: its opposite
    normal = side * np.array([-axis[1], axis[0]])
    return origin, axis, normal


def to_face_frame(xy: np.ndarray, origin, axis, normal) -> tuple[np.ndarray, np.ndarray]:
    """u, v of points (..., 2) in the frame of `face_frame`, in axis lengths."""
    d = np.asarray(xy, np.float64) - origin
    n2 = float(axis @ axis)
    return d @ axis / n2, d @ normal / n2


def _group_mean(u, v, bodyparts, group):
    idx = [bodyparts.index(b) for b in group]
    gu, gv = u[idx], v[idx]
    ok = np.isfinite(gu) & np.isfinite(gv)
    return (float(gu[ok].mean()), float(gv[ok].mean())) if ok.any() else (np.nan, np.nan)


def _spread(xy: np.ndarray) -> float:
    xy = xy[np.isfinite(xy).all(axis=1)]
    if len(xy) < 2:
        return np.nan
    return float(max(np.hypot(*(a - b)) for a, b in combinations(xy, 2)))


def layout_stats(xy: np.ndarray, bodyparts: Sequence[str], size: int = SIZE) -> dict | None:
    """Keypoint layout of one face, keypoints (K, 2) in pixels of a `size` x `size` image (NaN = absent).

    None when the frame is undefined (an eye point or nose(tip) missing). Keys:
    LAYOUT_KEYS (see LEGEND), eye_u and eye_v (0 up to rounding: the origin is
    the eye centre), and `per_keypoint`: {bodypart: (u, v)}.
    """
    bodyparts = list(bodyparts)
    frame = face_frame(xy, bodyparts)
    if frame is None:
        return None
    origin, axis, normal = frame
    xy = np.asarray(xy, np.float64)
    u, v = to_face_frame(xy, origin, axis, normal)
    length = float(np.hypot(*axis))
    idx = {b: i for i, b in enumerate(bodyparts)}
    out = {}
    for name, group in (("whisker", WHISKERS), ("nose", NOSE), ("eye", EYE)):
        out[f"{name}_u"], out[f"{name}_v"] = _group_mean(u, v, bodyparts, group)
    du = u[idx["eye(front)"]] - u[idx["eye(back)"]]
    dv = v[idx["eye(front)"]] - v[idx["eye(back)"]]
    out["eye_tilt_deg"] = float(np.degrees(np.arctan2(dv, du)))
    out["nose_spread_px"] = _spread(xy[[idx[b] for b in NOSE]])
    out["nose_spread_all_px"] = _spread(xy[[idx[b] for b in PER_KEYPOINT if b.startswith("nose") and b in idx]])
    out["eye_width"] = float(np.hypot(*(xy[idx["eye(front)"]] - xy[idx["eye(back)"]]))) / length
    out["eye_height"] = float(np.hypot(*(xy[idx["eye(top)"]] - xy[idx["eye(bottom)"]]))) / length
    out["axis_px"] = length
    out["axis_tilt_deg"] = float(np.degrees(np.arctan2(axis[1], abs(axis[0]))))
    tip_x = xy[idx["nose(tip)"], 0]
    out["nose_edge_px"] = float(size - 0.5 - tip_x if axis[0] >= 0 else tip_x + 0.5)
    out["per_keypoint"] = {b: (float(u[idx[b]]), float(v[idx[b]])) for b in PER_KEYPOINT if b in idx}
    return out


# ------------------------------------------------------------------ intensity


def histogram(image: np.ndarray, bins: int = HIST_BINS) -> np.ndarray:
    """Normalised histogram of grey levels over [0, 256) in `bins` equal bins."""
    counts, _ = np.histogram(np.asarray(image, np.float64).ravel(), bins=bins, range=(0.0, 256.0))
    return counts / max(counts.sum(), 1)


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (sqrt of the divergence, base 2): 0 identical, 1 disjoint."""
    return float(jensenshannon(np.asarray(p, np.float64), np.asarray(q, np.float64), base=2))


def emd(p: np.ndarray, q: np.ndarray, bin_width: float = 256.0 / HIST_BINS) -> float:
    """Earth mover's distance between two histograms on the same equal bins, in units of the bin axis."""
    p = np.asarray(p, np.float64) / np.sum(p)
    q = np.asarray(q, np.float64) / np.sum(q)
    return float(np.abs(np.cumsum(p - q)).sum() * bin_width)


def intensity_stats(image: np.ndarray) -> dict:
    x = np.asarray(image, np.float64).ravel()
    p5, p50, p95 = np.percentile(x, [5, 50, 95])
    return {"mean": float(x.mean()), "sd": float(x.std()), "p5": float(p5), "p50": float(p50), "p95": float(p95),
            "sat_hi": float(np.mean(x >= 250.0)), "sat_lo": float(np.mean(x <= 5.0))}


# ------------------------------------------------------------------ texture


def laplacian_sd(image: np.ndarray) -> float:
    """SD of the 5-point Laplacian (scipy.ndimage.laplace) over the interior (1 px border dropped)."""
    lap = ndimage.laplace(np.asarray(image, np.float64))
    return float(lap[1:-1, 1:-1].std())


def gradient_mean(image: np.ndarray) -> float:
    """Mean gradient magnitude (Sobel / 8: grey levels per pixel on a ramp) over the interior."""
    x = np.asarray(image, np.float64)
    gy, gx = ndimage.sobel(x, axis=0) / 8.0, ndimage.sobel(x, axis=1) / 8.0
    return float(np.hypot(gx, gy)[1:-1, 1:-1].mean())


def _power_2d(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(power, radial frequency in cycles/px) of the mean-removed, Hann-windowed image."""
    x = np.asarray(image, np.float64)
    h, w = x.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    f = np.fft.fft2((x - x.mean()) * window)
    power = np.abs(f) ** 2
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :]
    return power, np.hypot(fy, fx)


def radial_spectrum(image: np.ndarray, n_bins: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """(frequencies, mean power) in log-spaced annuli from 1/min(H, W) to 0.5 cycles/px (empty annuli dropped)."""
    power, freq = _power_2d(image)
    edges = np.geomspace(1.0 / min(power.shape), 0.5, n_bins + 1)
    which = np.digitize(freq.ravel(), edges) - 1
    ok = (which >= 0) & (which < n_bins)
    total = np.bincount(which[ok], power.ravel()[ok], n_bins)
    count = np.bincount(which[ok], minlength=n_bins)
    fsum = np.bincount(which[ok], freq.ravel()[ok], n_bins)
    keep = count > 0
    return fsum[keep] / count[keep], total[keep] / count[keep]


def spectrum_slope(image: np.ndarray, fit: tuple[float, float] = SPECTRUM_FIT) -> float:
    """Slope of log10 radial power vs log10 frequency over `fit` (cycles/px): -a for 1/f^a power."""
    f, p = radial_spectrum(image)
    ok = (f >= fit[0]) & (f <= fit[1]) & (p > 0)
    return float(np.polyfit(np.log10(f[ok]), np.log10(p[ok]), 1)[0])


def band_powers(image: np.ndarray, bands: dict = BANDS) -> dict:
    """Fraction of the non-DC power (windowed) in each band of radial frequency [lo, hi) cycles/px."""
    power, freq = _power_2d(image)
    nz = freq > 0
    total = power[nz].sum()
    if total <= 0:
        return {f"band_{k}": np.nan for k in bands}
    return {f"band_{k}": float(power[nz & (freq >= lo) & (freq < hi)].sum() / total) for k, (lo, hi) in bands.items()}


def local_stats(image: np.ndarray, window: int = WINDOW) -> dict:
    """Local SD and local mean over non-overlapping `window` x `window` tiles (image cropped, centred,
    to a multiple of `window`)."""
    x = np.asarray(image, np.float64)
    h, w = (x.shape[0] // window) * window, (x.shape[1] // window) * window
    y0, x0 = (x.shape[0] - h) // 2, (x.shape[1] - w) // 2
    tiles = x[y0 : y0 + h, x0 : x0 + w].reshape(h // window, window, w // window, window)
    m, s = tiles.mean(axis=(1, 3)), tiles.std(axis=(1, 3))
    return {"local_sd": float(s.mean()), "local_sd_sd": float(s.std()), "shading_sd": float(m.std())}


def noise_sigma(image: np.ndarray) -> float:
    """Immerkaer's fast noise estimate: sigma of white Gaussian noise, insensitive to smooth structure."""
    x = np.asarray(image, np.float64)
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)
    r = ndimage.convolve(x, kernel)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2.0) * np.abs(r).mean() / 6.0)


def pad_stats(image: np.ndarray, xy: np.ndarray, bodyparts: Sequence[str]) -> dict:
    """PAD_KEYS of one grey image: fine detail around the whisker keypoints (xy (K, 2) px), where
    real close-ups show whisker shafts and fur converging on the pad. NaN where no whisker
    keypoint is labelled or the window leaves the frame."""
    idx = [i for i, b in enumerate(bodyparts) if b.startswith("whisker")]
    pts = xy[idx] if idx else np.empty((0, 2))
    pts = pts[np.isfinite(pts).all(axis=1)]
    nan = {k: np.nan for k in PAD_KEYS}
    if not len(pts):
        return nan
    cx, cy = np.round(pts.mean(axis=0)).astype(int)
    r, R = PAD_RADIUS, 2 * PAD_RADIUS
    if not (R <= cx < image.shape[1] - R and R <= cy < image.shape[0] - R):
        return nan
    x = np.asarray(image, np.float64)
    detail = x - ndimage.gaussian_filter(x, PAD_SIGMA)
    yy, xx = np.mgrid[-R : R + 1, -R : R + 1]
    rr = np.hypot(yy, xx)
    win = (slice(cy - R, cy + R + 1), slice(cx - R, cx + R + 1))
    disk = rr <= r
    sd = float(detail[win][disk].std())
    # gradients across the rays (perpendicular to the direction from the centre) mark radial lines
    gy, gx = ndimage.sobel(detail, axis=0)[win], ndimage.sobel(detail, axis=1)[win]
    ring = (rr >= 3) & (rr <= R)
    along = (gx * xx + gy * yy) / np.maximum(rr, 1e-9)
    energy = gx**2 + gy**2
    radial = float(1.0 - (along**2)[ring].sum() / max(energy[ring].sum(), 1e-12))
    return {"pad_detail": sd, "pad_detail_rel": sd / max(float(x[win][disk].mean()), 1.0), "pad_radial": radial}


def image_stats(image: np.ndarray) -> dict:
    """All per-image statistics (IMAGE_KEYS) of one grey image (any float or integer dtype, 0-255)."""
    out = intensity_stats(image)
    out["lap_sd"] = laplacian_sd(image)
    out["grad_mean"] = gradient_mean(image)
    out["spec_slope"] = spectrum_slope(image)
    out.update(band_powers(image))
    out.update(local_stats(image))
    out["noise_sigma"] = noise_sigma(image)
    return out


# ------------------------------------------------------------------ comparison


def auc(render: np.ndarray, real: np.ndarray) -> float:
    """P(render value > real value) over all pairs, ties counted half; NaN if either set is empty."""
    a = np.asarray(render, np.float64)
    b = np.asarray(real, np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if not (a.size and b.size):
        return np.nan
    diff = a[:, None] - b[None, :]
    return float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))


def _summary(values) -> dict:
    x = np.asarray(values, np.float64)
    x = x[np.isfinite(x)]
    if not x.size:
        return {"mean": np.nan, "min": np.nan, "max": np.nan, "n": 0}
    return {"mean": float(x.mean()), "min": float(x.min()), "max": float(x.max()), "n": int(x.size)}


def describe_set(images: np.ndarray, keypoints: np.ndarray, bodyparts: Sequence[str]) -> dict:
    """Per-image statistics of a set of 256 x 256 images and their keypoints (N, K, >= 2) at that scale.

    Returns {"per_image": {key: [N values, NaN where undefined]}, "per_keypoint": {bodypart: {"u": [...],
    "v": [...]}}, "histogram": pooled normalised histogram, "radial_spectrum": {"freq", "mean_log10_power"}
    (mean over images), "layout_frames": how many faces had a frame}.
    """
    per_image = {k: [] for k in LAYOUT_KEYS + PAD_KEYS + IMAGE_KEYS}
    per_kp = {b: {"u": [], "v": []} for b in PER_KEYPOINT if b in bodyparts}
    hists, spectra = [], []
    n_frames = 0
    for image, kp in zip(images, keypoints):
        lay = layout_stats(kp[:, :2], bodyparts, size=image.shape[1])
        n_frames += lay is not None
        for k in LAYOUT_KEYS:
            per_image[k].append(np.nan if lay is None else lay[k])
        for b in per_kp:
            u, v = (np.nan, np.nan) if lay is None else lay["per_keypoint"][b]
            per_kp[b]["u"].append(u), per_kp[b]["v"].append(v)
        for k, value in (pad_stats(image, kp[:, :2], bodyparts) | image_stats(image)).items():
            per_image[k].append(value)
        hists.append(histogram(image))
        freq, power = radial_spectrum(image)
        spectra.append(np.log10(np.maximum(power, 1e-30)))
    return {"per_image": per_image, "per_keypoint": per_kp, "histogram": np.mean(hists, axis=0).tolist(),
            "radial_spectrum": {"freq": freq.tolist(), "mean_log10_power": np.mean(spectra, axis=0).tolist()},
            "layout_frames": n_frames}


def compare(real: dict, render: dict, per_keypoint: bool = False) -> list[dict]:
    """Table rows: each statistic's real and render mean and range, gap (render - real) and AUC."""
    rows = []

    def row(stat, a, b):
        r, s = _summary(a), _summary(b)
        rows.append({"statistic": stat, "real": r["mean"], "real range": _range(r), "render": s["mean"],
                     "render range": _range(s), "gap": s["mean"] - r["mean"], "auc": auc(b, a),
                     "n real": r["n"], "n render": s["n"]})

    for key in LAYOUT_KEYS + PAD_KEYS + IMAGE_KEYS:
        row(key, real["per_image"][key], render["per_image"][key])
    if per_keypoint:
        for b in real["per_keypoint"]:
            if b in render["per_keypoint"]:
                for c in ("u", "v"):
                    row(f"{b} {c}", real["per_keypoint"][b][c], render["per_keypoint"][b][c])
    p, q = real["histogram"], render["histogram"]
    for key, value in (("hist_js", js_distance(p, q)), ("hist_emd", emd(p, q))):
        rows.append({"statistic": key, "real": "", "real range": "", "render": "", "render range": "",
                     "gap": value, "auc": "", "n real": "", "n render": ""})
    return rows


def _range(s: dict) -> str:
    if not s["n"]:
        return "-"
    fmt = (lambda x: f"{x:.3g}") if max(abs(s["min"]), abs(s["max"])) < 100 else (lambda x: f"{x:.0f}")
    return f"{fmt(s['min'])}..{fmt(s['max'])}"


# ------------------------------------------------------------------ data


def load_real(csv: Path = FACES) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Real faces at 256 scale: (N, 256, 256) float64 images, (N, K, 2) keypoints, bodyparts, image names."""
    from jfacemap.io.keypoints import load_label_images, read_dlc_csv

    table = read_dlc_csv(csv)
    images = load_label_images(table)
    shape = images.shape[1:]
    small = np.stack([resize_bilinear(im) for im in images])
    return small, scale_points(table.keypoints[..., :2], shape), list(table.bodyparts), list(table.index)


def render_set(style: str, n: int, seed: int, session_frames: int) -> tuple[np.ndarray, np.ndarray, list[str], list]:
    """`n` renders of `style`: one random frame of each of the sessions seed, seed + 1, ... as training does.

    Returns (N, 256, 256) float64 images, (N, K, 2) keypoints at 256 scale, bodyparts, (seed, frame) picks.
    """
    from jfacemap.synth import STYLES, make_session

    style_index = list(STYLES).index(style)
    images, points, picks = [], [], []
    bodyparts: list[str] = []
    for i in range(n):
        session = make_session(session_frames, seed=seed + i, style=style)
        frame = int(np.random.default_rng([seed, i, style_index, 7]).integers(session_frames))
        f, k = session.render(frame, frame + 1)
        image = f[0]
        xy = k[0, :, :2].astype(np.float64)
        if image.shape != (SIZE, SIZE):
            xy = scale_points(xy, image.shape)
            image = resize_bilinear(image)
        images.append(np.asarray(image, np.float64))
        points.append(xy)
        picks.append((seed + i, frame))
        bodyparts = list(session.bodyparts)
    return np.stack(images), np.stack(points), bodyparts, picks


def _git_state() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    return {"commit": git("rev-parse", "HEAD"), "synth_changes": git("status", "--porcelain", "jfacemap/synth")}


def main(argv=None) -> dict:
    from jfacemap.synth import STYLES

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-renders", type=int, default=60, help="renders per style (one frame per session)")
    ap.add_argument("--seed", type=int, default=0, help="first session seed (sessions seed .. seed + n - 1)")
    ap.add_argument("--styles", default="all", help=f"comma-separated styles, or 'all' ({', '.join(STYLES)})")
    ap.add_argument("--session-frames", type=int, default=15_000, help="session length the frame is drawn from")
    ap.add_argument("--faces", type=Path, default=FACES, help="real faces' CollectedData.csv")
    ap.add_argument("--per-keypoint", action="store_true", help="also print u, v of every keypoint")
    ap.add_argument("--name", default="render_vs_real", help="results name: bench/results/<name>.json")
    args = ap.parse_args(argv)
    styles = list(STYLES) if args.styles == "all" else [s.strip() for s in args.styles.split(",") if s.strip()]
    unknown = [s for s in styles if s not in STYLES]
    if unknown or not styles:
        ap.error(f"unknown style(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(STYLES)} or 'all'")
    if args.n_renders < 1:
        ap.error("--n-renders must be at least 1")
    if not args.faces.is_file():
        ap.error(f"{args.faces}: no such file (the real faces live in ../shared/data/real-faces)")

    from bench.common import machine_info, print_table, write_results

    images, keypoints, bodyparts, names = load_real(args.faces)
    real = describe_set(images, keypoints, bodyparts)
    mice = sorted({Path(n).name.split("_")[0] for n in names})
    if len(mice) == 2:  # what two real mice differ by, for scale
        h = [np.mean([histogram(im) for im, n in zip(images, names) if Path(n).name.startswith(m + "_")], axis=0)
             for m in mice]
        real["between_mice"] = {"mice": mice, "hist_js": js_distance(*h), "hist_emd": emd(*h)}
    columns = ["statistic", "real", "real range", "render", "render range", "gap", "auc"]
    results = {}
    for style in styles:
        t0 = time.perf_counter()
        r_images, r_points, r_parts, picks = render_set(style, args.n_renders, args.seed, args.session_frames)
        t_render = time.perf_counter() - t0
        rendered = describe_set(r_images, r_points, r_parts)
        rows = compare(real, rendered, args.per_keypoint)
        print(f"\n== style {style}: {len(r_images)} renders (sessions {args.seed}..{args.seed + args.n_renders - 1}, "
              f"{rendered['layout_frames']} with an eye-nose frame; rendered in {t_render:.1f} s) "
              f"vs {len(images)} real faces ==")
        print_table(rows, columns)
        # per-keypoint u, v per render are summarised in the rows (mean, range), not kept one by one
        results[style] = {"picks": picks, "render_seconds": round(t_render, 2),
                          "rows": compare(real, rendered, per_keypoint=True),
                          **{k: v for k, v in rendered.items() if k != "per_keypoint"}}
    print("\nlegend (one value per image, at 256 scale; gap = render mean - real mean; auc = P(render > real) "
          "over pairs, 0.5 = overlapping, 0/1 = separated):")
    for key in LAYOUT_KEYS + PAD_KEYS + IMAGE_KEYS + ("hist_js", "hist_emd"):
        print(f"  {key:>18}: {LEGEND[key]}")
    if "between_mice" in real:
        b = real["between_mice"]
        print(f"  for scale, real {b['mice'][0]} vs {b['mice'][1]}: hist_js {b['hist_js']:.3f}, "
              f"hist_emd {b['hist_emd']:.1f}")
    payload = {
        "benchmark": "synthetic renders vs real mouse faces: keypoint layout and image statistics at 256 scale",
        "command": "python -m bench.render_vs_real " + " ".join(argv if argv is not None else sys.argv[1:]),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "styles": styles,
        "renderer": _git_state(),
        "machine": machine_info(),
        "legend": LEGEND,
        "real": {"faces": str(args.faces), "images": names, **real},
        "renders": results,
    }
    print(f"wrote {write_results(args.name, _jsonable(payload))}")
    return payload


def _jsonable(x):
    """NaN -> None, numpy scalars -> Python, floats to 6 significant digits, recursively (strict JSON)."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(f"{float(x):.6g}")
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


if __name__ == "__main__":
    main()
