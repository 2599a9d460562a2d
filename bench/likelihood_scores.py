"""Candidate keypoint confidences from a tracker's raw heatmaps, and how well each flags bad points.

    scores, pred = heatmap_scores(model, frames)            # dict name -> (N, K), (N, K, 2) frame px
    auc = bad_point_auc(scores["peak"], errors, 10.0)      # ROC AUC: low score <-> error > 10 px

Used by `bench_train_real` (mirror-mouse) and `bench_real_faces`: the paper's outlier
filter needs a likelihood whose drops mean a wrong point.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import rankdata

from jfacemap.track.decode import average_with_mirror
from jfacemap.track.inference import flip_setting
from jfacemap.track.preprocess import NET_SIZE, crop_geometry, keypoints_to_frame, preprocess
from jfacemap.track.shape_prior import decode_keypoints


def heatmap_scores(model, frames: np.ndarray, bbox=None, batch: int = 8, shape_prior: bool = True,
                   flip_average: bool | None = None) -> tuple[dict, np.ndarray]:
    """Scores per (frame, keypoint) from the eval-mode heatmap, and the decoded points.

    frames: (N, H, W) uint8. Returns ({name: (N, K)}, (N, K, 2) x, y frame px):
      sigmoid_peak  the original's likelihood (sigmoid of the heatmap maximum)
      peak_share    maximum / heatmap sum
      mass_near     share of the heatmap's mass within 2 sigma (6 cells) of its maximum
      peak_ratio    1 - (highest value farther than 2 sigma from the maximum) / maximum
    The points are decoded as tracking does (with the model's layout prior unless
    `shape_prior` is False) and with the model's flip averaging unless `flip_average` says
    otherwise (True: every frame); the scores always describe the (averaged) heatmap's maximum.
    """
    geom = crop_geometry(frames.shape, bbox, NET_SIZE, model.context)
    prior = model.shape_prior if shape_prior else None
    flip, below = flip_setting(model, flip_average)

    @jax.jit
    def run(x):
        x = preprocess(x, bbox, context=model.context)
        out = model(x, train=False)
        hm, ox, oy = out.heatmap, out.offset_x, out.offset_y
        if flip:
            m = model(x[:, :, ::-1], train=False)
            hm, ox, oy = average_with_mirror((hm, ox, oy), (m.heatmap, m.offset_x, m.offset_y),
                                             stride=NET_SIZE / hm.shape[1], below=below)
        kp = decode_keypoints(hm, ox, oy, prior, stride=NET_SIZE / hm.shape[1])
        b, g, _, k = hm.shape
        flat = hm.reshape(b, g * g, k)
        peak = flat.max(1)
        total = flat.sum(1)
        idx = jnp.argmax(flat, 1)
        r, c = idx // g, idx % g
        rows = jnp.arange(g)[None, :, None, None]
        cols = jnp.arange(g)[None, None, :, None]
        near = (rows - r[:, None, None, :]) ** 2 + (cols - c[:, None, None, :]) ** 2 <= 36
        mass_near = jnp.sum(jnp.where(near, hm, 0.0), (1, 2)) / jnp.maximum(total, 1e-12)
        far_peak = jnp.max(jnp.where(near, 0.0, hm), (1, 2))
        scores = {"sigmoid_peak": jax.nn.sigmoid(peak), "peak_share": peak / jnp.maximum(total, 1e-12),
                  "mass_near": mass_near, "peak_ratio": 1.0 - far_peak / jnp.maximum(peak, 1e-12)}
        return scores, keypoints_to_frame(kp[..., :2], geom)

    parts, points = [], []
    for s in range(0, len(frames), batch):
        chunk = frames[s : s + batch]
        pad = batch - len(chunk)
        x = np.concatenate([chunk, np.repeat(chunk[-1:], pad, 0)]) if pad else chunk
        sc, pts = run(jnp.asarray(x))
        parts.append({k: np.asarray(v)[: len(chunk)] for k, v in sc.items()})
        points.append(np.asarray(pts)[: len(chunk)])
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, np.concatenate(points)


def bad_point_auc(score: np.ndarray, error: np.ndarray, threshold: float) -> float:
    """ROC AUC of `-score` for telling points with error > threshold from the rest.

    1 = every bad point scores below every good one; 0.5 = chance. NaN errors
    (unlabelled) are ignored; NaN scores rank lowest. NaN when one class is empty.
    """
    keep = np.isfinite(error)
    bad = error[keep] > threshold
    s = np.nan_to_num(np.asarray(score, float)[keep], nan=-np.inf)
    if bad.all() or not bad.any():
        return float("nan")
    ranks = rankdata(-s)  # high rank = low score
    n_bad, n_good = bad.sum(), (~bad).sum()
    return float((ranks[bad].sum() - n_bad * (n_bad + 1) / 2) / (n_bad * n_good))
