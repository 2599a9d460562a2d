"""A face's keypoint layout as a prior on the decoder: pick the heatmap peaks that make a face.

    prior = fit_shape_prior(keypoints)                      # (N, K, 2) labelled layouts -> ShapePrior
    kp = decode_with_shape_prior(hm, ox, oy, prior)         # (B, K, 3), as decode_heatmaps

Why: on faces unlike its training set the network's heatmap for a point
often has two blobs, the true place and a look-alike (a whisker pad's
heatmap peaking on a bright paw, the nose's bottom on the lower jaw). The
argmax picks the look-alike; the rest of the face says which blob is right.

How (per frame, all fixed-shape jnp, so it jits and vmaps with the network):
1. Candidates: each keypoint's `n_candidates` highest local maxima of its
   heatmap, decoded with their offsets like `decode_heatmaps`.
2. Hypotheses: every pair of constrained keypoints x their two best
   candidates x {as is, mirrored} gives one similarity transform of the
   mean layout (rotation, scale, shift; a mirror for faces pointing the
   other way). Each is scored by how much heatmap evidence sits where it
   puts every keypoint (RANSAC with soft, evidence-weighted votes; each
   keypoint's peaks count relative to its own best, so every keypoint counts
   once). Layouts of implausible size (`scale_range`) are rejected.
3. The best hypothesis is refined by weighted least squares (two rounds).
4. Each keypoint takes the candidate that best combines peak height and
   closeness to the fitted layout, if it lies within `gate` of its spread;
   a keypoint with no such candidate (but some peak) is placed where the
   layout puts it, with the (low) heatmap value there as its likelihood; one
   with no peak at all stays not found (NaN). Too little support
   for any layout (fewer than `min_support` keypoints agree) leaves the
   frame as `decode_heatmaps` gives it. Unconstrained keypoints (the paw:
   no fixed place on a face) are always decoded as `decode_heatmaps` does.
5. A point taken from a weak peak (likelihood below `trust`) is drawn toward
   the layout's place for it, by its weakness: on held-out styles a peak of
   likelihood < 0.55 is as far off as the layout's own guess, and the layout
   is right about as often on faces unlike the training set (six real faces:
   mean 15.9 -> 13.5 px; held-out synthetic 7.01 -> 6.80, bench/shape_prior_sweep.py).
Where each keypoint's best-voting candidate is its highest peak (a frame
whose argmax points already form a face) and the peaks are strong, the
output is exactly `decode_heatmaps`' output.

`FacemapUNet.shape_prior` carries a model's prior (saved in model.json);
`decode_keypoints` decodes with it when there is one.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jfacemap.track.decode import SIGMA, cell_to_input, decode_heatmaps

# Bumped whenever the decoder's output changes for the same heatmaps and prior, so that a
# half-tracked video (track_video's resume fingerprint) is never finished by another decoder.
DECODER_VERSION = 2  # 2: weak peaks drawn toward the layout (`trust`)


class ShapePrior(NamedTuple):
    """A canonical keypoint layout, held in tuples so that a model can carry it as a static
    attribute (`FacemapUNet.shape_prior`).

    mean: K (x, y) pairs, centroid 0 and RMS radius 1 over the constrained keypoints.
    sd: K spreads about the mean after similarity alignment, per axis, same units;
      inf = unconstrained (never moved, never votes).
    """

    mean: tuple[tuple[float, float], ...]
    sd: tuple[float, ...]

    @classmethod
    def from_arrays(cls, mean, sd) -> ShapePrior:
        return cls(tuple((float(x), float(y)) for x, y in np.asarray(mean, np.float64)),
                   tuple(float(s) for s in np.asarray(sd, np.float64)))

    def to_json(self) -> dict:
        return {"mean": [[x, y] for x, y in self.mean], "sd": [s if np.isfinite(s) else None for s in self.sd]}

    @classmethod
    def from_json(cls, data: dict) -> ShapePrior:
        return cls.from_arrays(data["mean"], [np.inf if s is None else s for s in data["sd"]])

    def subset(self, index) -> ShapePrior:
        """The prior of keypoints `index` (a reordering or selection of the K)."""
        return ShapePrior.from_arrays(np.asarray(self.mean)[list(index)], np.asarray(self.sd)[list(index)])


def _similarity(src: np.ndarray, dst: np.ndarray, weight: np.ndarray | None = None):
    """Weighted least-squares similarity (mirror allowed) taking src (n, 2) onto dst (n, 2),
    as a function of (m, 2) points."""
    s, d = src[:, 0] + 1j * src[:, 1], dst[:, 0] + 1j * dst[:, 1]
    w = np.ones(len(s)) if weight is None else np.asarray(weight, np.float64)
    w = w / w.sum()
    best = None
    for mirror in (False, True):
        z = np.conj(s) if mirror else s
        z0, d0 = np.sum(w * z), np.sum(w * d)
        zc, dc = z - z0, d - d0
        a = np.sum(w * np.conj(zc) * dc) / max(np.sum(w * np.abs(zc) ** 2), 1e-12)
        err = np.sum(w * np.abs(a * zc - dc) ** 2)
        if best is None or err < best[0]:
            best = (err, a, mirror, z0, d0)
    _, a, mirror, z0, d0 = best

    def apply(points: np.ndarray) -> np.ndarray:
        z = points[:, 0] + 1j * points[:, 1]
        out = a * ((np.conj(z) if mirror else z) - z0) + d0
        return np.stack([out.real, out.imag], -1)

    return apply


def fit_shape_prior(keypoints: np.ndarray, min_present: float = 0.5, max_sd: float = 0.6,
                    max_sd_ratio: float = 4.0, iterations: int = 6) -> ShapePrior:
    """Generalised Procrustes over labelled layouts.

    keypoints: (N, K, 2+) x, y (any pixel units; NaN = not labelled).
    A keypoint is constrained when labelled in >= `min_present` of the layouts
    and its spread is <= `max_sd` (of the RMS radius) and <= `max_sd_ratio` times the
    median keypoint's (a point with no fixed place, like a paw, is left out; it is
    left out of the alignment too, which it would otherwise skew). Layouts with fewer
    than three constrained keypoints are skipped.
    A face suits it (one rigid-ish layout, seen from one side); `train_tracker` does not
    fit one to a user's labels: on mirror-mouse (a body seen from the side and, in a
    mirror, from below; paws that move freely) it raised the held-out error from 6.43 to
    6.9-7.5 px (`python -m bench.shape_prior_sweep --mirror-mouse DIR`).
    """
    xy = np.asarray(keypoints, np.float64)[..., :2]
    present = np.isfinite(xy).all(-1)
    use = present.mean(0) >= min_present
    rows = [n for n in range(len(xy)) if (present[n] & use).sum() >= 3]
    if len(rows) < 3 or use.sum() < 3:
        raise ValueError(f"fit_shape_prior: need >= 3 layouts with >= 3 common keypoints, got {len(rows)}")
    for _ in range(3):  # refit without the keypoints found to wander (they would skew the alignment)
        mean, sd = _procrustes(xy, present, use, rows, iterations)
        keep = use & np.isfinite(sd) & (sd <= min(max_sd, max_sd_ratio * np.nanmedian(sd[use])))
        if (keep == use).all():
            break
        use = keep
        rows = [n for n in rows if (present[n] & use).sum() >= 3]
        if len(rows) < 3 or use.sum() < 3:
            raise ValueError("fit_shape_prior: fewer than 3 keypoints keep a stable place in the layouts")
    centre = mean[use].mean(0)
    radius = np.sqrt(np.mean(np.sum((mean[use] - centre) ** 2, -1)))
    return ShapePrior.from_arrays(np.where(use[:, None], (mean - centre) / radius, 0.0),
                                  np.where(use, sd / radius, np.inf))


def _procrustes(xy, present, use, rows, iterations):
    """Mean layout (K, 2) and per-axis spreads (K,) of the `use` keypoints of layouts `rows`."""
    # Start from the layout with the most constrained keypoints. Alignments weight each keypoint
    # by its inverse variance (weighted Procrustes), so a wandering point cannot skew them.
    first = max(rows, key=lambda n: (present[n] & use).sum())
    mean = np.where((use & present[first])[:, None], xy[first], np.nan)
    weight = np.ones(len(use))
    for _ in range(iterations):
        ref = np.isfinite(mean).all(-1)
        mean = mean - mean[ref].mean(0)
        mean = mean / np.sqrt(np.mean(np.sum(mean[ref] ** 2, -1)))
        aligned = np.full((len(rows), xy.shape[1], 2), np.nan)
        for r, n in enumerate(rows):
            common, labelled = present[n] & use & ref, present[n] & use
            if common.sum() >= 3:
                aligned[r, labelled] = _similarity(xy[n][common], mean[common], weight[common])(xy[n][labelled])
        mean = _nanmean(aligned)
        sd = np.sqrt(_nanmean(np.sum((aligned - mean) ** 2, -1)) / 2)
        # Floored at the median spread: pure inverse variance lets one point pin every alignment.
        spread = np.nan_to_num(sd, nan=np.inf)
        weight = 1.0 / (spread**2 + np.nanmedian(sd[use]) ** 2)
    return mean, sd


def _nanmean(a: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN; NaN (no warning) where a column has none."""
    n = np.isfinite(a).sum(0)
    return np.where(n > 0, np.nansum(a, 0) / np.maximum(n, 1), np.nan)


def _candidates(heatmap, offset_x, offset_y, n_candidates, sigma, stride):
    """Each keypoint's highest local maxima. heatmap etc.: (G, G, K).
    Returns heights (K, M) (0 = none) and positions (K, M) complex, input px."""
    g, _, k = heatmap.shape
    # 5 x 5 max filter as two 1-D passes (the same values, ~6x faster on CPU than one 2-D window)
    pooled = jax.lax.reduce_window(heatmap, -jnp.inf, jax.lax.max, (5, 1, 1), (1, 1, 1), "SAME")
    pooled = jax.lax.reduce_window(pooled, -jnp.inf, jax.lax.max, (1, 5, 1), (1, 1, 1), "SAME")
    peaks = jnp.where((heatmap >= pooled) & (heatmap > 0), heatmap, 0.0)
    height, index = jax.lax.top_k(peaks.reshape(g * g, k).T, n_candidates)  # (K, M)
    ox = jnp.take_along_axis(offset_x.reshape(g * g, k).T, index, 1)
    oy = jnp.take_along_axis(offset_y.reshape(g * g, k).T, index, 1)
    return height, cell_to_input(ox, index % g, sigma, stride) + 1j * cell_to_input(oy, index // g, sigma, stride)


def _pairs(constrained: np.ndarray, n_hyp_candidates: int) -> np.ndarray:
    """(P, 4) int rows (i, j, a, b): keypoints i < j, their candidates a, b."""
    idx = np.flatnonzero(constrained)
    rows = [(i, j, a, b) for i, j in itertools.combinations(idx, 2)
            for a in range(n_hyp_candidates) for b in range(n_hyp_candidates)]
    return np.array(rows, np.int32).reshape(-1, 4)


def _votes(height, pos, predicted, spread):
    """(K, M) evidence of each candidate for a layout put at `predicted` (K,) with `spread` (K,)."""
    diff = pos - predicted[:, None]
    d2 = diff.real**2 + diff.imag**2
    return height * jnp.exp(-d2 / (2 * spread[:, None] ** 2))


def decode_with_shape_prior(
    heatmap: jax.Array,
    offset_x: jax.Array,
    offset_y: jax.Array,
    prior: ShapePrior,
    sigma: float = SIGMA,
    stride: float = 4.0,
    n_candidates: int = 4,
    widen: float = 3.0,
    gate: float = 3.0,
    min_support: int = 4,
    fill: bool = True,
    scale_range: tuple[float, float] = (0.04, 0.6),
    trust: float = 0.9,
) -> jax.Array:
    """`decode_heatmaps` with the layout prior (module docstring).

    heatmap, offset_x, offset_y: (B, G, G, K). prior: K keypoints, in the heatmap's order.
    widen: the prior's spread is multiplied by this (other mice and views vary more than
      a training set); a floor of one stride is added in quadrature.
    gate: a candidate further than this many spreads from the layout is not taken.
    min_support: fewer constrained keypoints with a candidate inside the gate: no layout.
    fill: a constrained keypoint with no candidate inside the gate goes where the layout
      puts it (if that is in view), with the heatmap value there as its likelihood;
      False keeps its argmax.
    scale_range: a layout's RMS radius lies within this share of the input's side.
    trust: the likelihood (sigmoid of the peak) from which a peak is taken as is; a point
      taken from a weaker peak, likelihood l, moves 1 - l / trust of the way toward where
      the layout puts it (0 = peaks always as they are).
    Defaults: picked on held-out synthetic styles (bench/shape_prior_sweep.py).
    Returns (B, K, 3) float32 x, y (input px) and likelihood, as `decode_heatmaps`.
    """
    prior_mean, prior_sd = np.asarray(prior.mean, np.float64), np.asarray(prior.sd, np.float64)
    if prior_mean.shape != (heatmap.shape[-1], 2):
        raise ValueError(f"shape prior has {len(prior_sd)} keypoints, the heatmap {heatmap.shape[-1]}")
    constrained = np.isfinite(prior_sd)
    mean = jnp.asarray(prior_mean[:, 0] + 1j * prior_mean[:, 1], jnp.complex64)
    sd = jnp.asarray(np.where(constrained, prior_sd, 0.0) * widen, jnp.float32)
    weight = jnp.asarray(constrained, jnp.float32)
    pairs = _pairs(constrained, 2)

    def one(hm, ox, oy):
        raw, pos = _candidates(hm, ox, oy, n_candidates, sigma, stride)
        # Without the barrier XLA:CPU fuses the candidate search into every hypothesis' votes
        # and repeats it there (measured: 9 ms instead of 1.7 ms a frame).
        raw, pos = jax.lax.optimization_barrier((raw, pos))
        # Votes use each keypoint's heights relative to its own best peak: every keypoint
        # counts once, so a few confident ones (the eye) cannot outvote the rest of the face.
        height = raw / jnp.maximum(raw[:, :1], 1e-12)
        i, j, a, b = (pairs[:, c] for c in range(4))
        src_i, src_j, dst_i, dst_j = mean[i], mean[j], pos[i, a], pos[j, b]
        ok = (height[i, a] > 0) & (height[j, b] > 0)

        def hypotheses(m_i, m_j, m_all):
            z = (dst_j - dst_i) / jnp.where(m_j == m_i, 1.0, m_j - m_i)
            t = dst_i - z * m_i
            predicted = z[:, None] * m_all[None] + t[:, None]  # (P, K)
            spread = jnp.sqrt((jnp.abs(z)[:, None] * sd[None]) ** 2 + stride**2)
            votes = jax.vmap(_votes, (None, None, 0, 0))(height, pos, predicted, spread)
            return jnp.sum(weight * votes.max(-1), -1), z, t

        score, z, t = hypotheses(src_i, src_j, mean)
        score_m, z_m, t_m = hypotheses(jnp.conj(src_i), jnp.conj(src_j), jnp.conj(mean))
        # A face's RMS radius lies within `scale_range` of the network input's side.
        side = hm.shape[0] * stride
        ok = ok & (jnp.abs(z) >= scale_range[0] * side) & (jnp.abs(z) <= scale_range[1] * side)
        score, score_m = jnp.where(ok, score, -1.0), jnp.where(ok, score_m, -1.0)
        mirror = score_m.max() > score.max()
        best = jnp.where(mirror, jnp.argmax(score_m), jnp.argmax(score))
        z = jnp.where(mirror, z_m[best], z[best])
        t = jnp.where(mirror, t_m[best], t[best])
        layout = jnp.where(mirror, jnp.conj(mean), mean)

        def place(z, t):
            predicted = z * layout + t
            spread = jnp.sqrt((jnp.abs(z) * sd) ** 2 + stride**2)
            return predicted, spread, _votes(height, pos, predicted, spread)

        for _ in range(2):  # weighted least-squares refit on each keypoint's best-voting candidate
            predicted, spread, votes = place(z, t)
            pick = jnp.argmax(votes, 1)
            target = jnp.take_along_axis(pos, pick[:, None], 1)[:, 0]
            w = weight * jnp.take_along_axis(votes, pick[:, None], 1)[:, 0]
            sw = jnp.maximum(w.sum(), 1e-12)
            m0, d0 = jnp.sum(w * layout) / sw, jnp.sum(w * target) / sw
            den = jnp.sum(w * jnp.abs(layout - m0) ** 2)
            z_new = jnp.sum(w * jnp.conj(layout - m0) * (target - d0)) / jnp.maximum(den, 1e-12)
            z, t = jnp.where(den > 1e-9, z_new, z), jnp.where(den > 1e-9, d0 - z_new * m0, t)

        predicted, spread, votes = place(z, t)
        pick = jnp.argmax(votes, 1)
        chosen = jnp.take_along_axis(pos, pick[:, None], 1)[:, 0]
        chosen_height = jnp.take_along_axis(raw, pick[:, None], 1)[:, 0]
        inside = (jnp.abs(chosen - predicted) <= gate * spread) & (chosen_height > 0)
        support = jnp.sum(inside & constrained)
        g = hm.shape[0]
        cell = jnp.clip(jnp.round(jnp.stack([predicted.imag, predicted.real], -1) / stride), 0, g - 1).astype(jnp.int32)
        at_layout = hm[cell[:, 0], cell[:, 1], jnp.arange(hm.shape[-1])]
        in_view = (predicted.real >= 0) & (predicted.real < side) & (predicted.imag >= 0) & (predicted.imag < side)
        moved = inside | (fill & in_view & (raw[:, 0] > 0))  # no peak at all stays not found
        use_prior = constrained & (support >= min_support) & moved
        if trust > 0:
            # A weak peak is a poor witness (held-out styles, likelihood < 0.55: the peak is as far
            # off as the layout's own guess), so it is shrunk toward the face's layout.
            chosen = chosen + jnp.clip(1.0 - jax.nn.sigmoid(chosen_height) / trust, 0.0, 1.0) * (predicted - chosen)
        xy = jnp.where(use_prior, jnp.where(inside, chosen, predicted), pos[:, 0])
        h = jnp.where(use_prior, jnp.where(inside, chosen_height, at_layout), raw[:, 0])
        found = jnp.where(use_prior, True, raw[:, 0] > 0)
        x = jnp.where(found, xy.real, jnp.nan)
        y = jnp.where(found, xy.imag, jnp.nan)
        likelihood = jnp.where(found, jax.nn.sigmoid(h), 0.0)
        return jnp.stack([x, y, likelihood], -1).astype(jnp.float32)

    return jax.vmap(one)(heatmap, offset_x, offset_y)


def decode_keypoints(heatmap, offset_x, offset_y, prior: ShapePrior | None, sigma: float = SIGMA,
                     stride: float = 4.0) -> jax.Array:
    """(B, K, 3) keypoints: `decode_with_shape_prior` when `prior` is given, else `decode_heatmaps`."""
    if prior is None:
        return decode_heatmaps(heatmap, offset_x, offset_y, sigma=sigma, stride=stride)
    return decode_with_shape_prior(heatmap, offset_x, offset_y, prior, sigma=sigma, stride=stride)
