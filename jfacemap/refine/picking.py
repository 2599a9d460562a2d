"""Which frames to label: at random, where the model is least sure, or a mix.

    centres = candidate_frames(n_frames, 60)                # frames to score (neighbours exist)
    scores = uncertainty_scores(likelihood, jumps, flips)   # (C,) higher = less sure
    chosen = pick_frames(n_frames, centres, scores, 20, random_fraction=0.5, rng=rng)

Three signs that the model is unsure of a frame (SPEC 1, Human-in-the-loop
refinement): a low likelihood, keypoints that jump away from where their
neighbours in time put them, and predictions that move when the frame is
mirrored (the network was trained with flip augmentation and keeps each
keypoint's name under a flip, so a sure prediction mirrors back onto itself).
Each sign is reduced to one number per frame and ranked; the score is the mean
rank, so no sign's units dominate.
"""

from __future__ import annotations

import warnings
from typing import Iterable

import numpy as np

__all__ = ["candidate_frames", "jump_px", "flip_disagreement_px", "uncertainty_scores", "pick_frames"]

PICK_METHODS = ("random", "uncertain", "mixed")


def candidate_frames(n_frames: int, n_candidates: int) -> np.ndarray:
    """(C,) int64 frame indices spread evenly over 1..n_frames-2 (so each has
    a previous and a next frame), C <= n_candidates; all frames of a video
    shorter than 3 frames."""
    if n_frames < 1 or n_candidates < 1:
        raise ValueError(f"need n_frames >= 1 and n_candidates >= 1, got {n_frames}, {n_candidates}")
    if n_frames < 3:
        return np.arange(n_frames, dtype=np.int64)
    return np.unique(np.round(np.linspace(1, n_frames - 2, n_candidates)).astype(np.int64))


def jump_px(previous: np.ndarray, current: np.ndarray, following: np.ndarray) -> np.ndarray:
    """(N, K) distance in px of each keypoint from the midpoint of its
    positions in the previous and the next frame: a smooth track gives ~0,
    a keypoint that jumps away for one frame gives the jump.

    previous, current, following: (N, K, 2+) keypoints x, y in frame px.
    """
    prev, cur, nxt = (np.asarray(a, np.float64)[..., :2] for a in (previous, current, following))
    if not (prev.shape == cur.shape == nxt.shape) or cur.ndim != 3:
        raise ValueError(f"keypoints must be three (N, K, 2) arrays of one shape, got "
                         f"{prev.shape}, {cur.shape}, {nxt.shape}")
    return np.linalg.norm(cur - (prev + nxt) / 2, axis=-1)


def flip_disagreement_px(keypoints: np.ndarray, on_flipped: np.ndarray, width: int) -> np.ndarray:
    """(N, K) distance in px between the predictions on a frame and those on
    its mirror image mapped back (x -> width - 1 - x: pixel centres at
    integers, the mirror of pixel i is pixel width - 1 - i).

    keypoints, on_flipped: (N, K, 2+) x, y in frame px; width: frame width in px.
    """
    kp = np.asarray(keypoints, np.float64)[..., :2]
    back = np.asarray(on_flipped, np.float64)[..., :2].copy()
    if kp.shape != back.shape or kp.ndim != 3:
        raise ValueError(f"keypoints must be two (N, K, 2) arrays of one shape, got {kp.shape}, {back.shape}")
    back[..., 0] = (width - 1) - back[..., 0]
    return np.linalg.norm(kp - back, axis=-1)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Rank of each value in [0, 1] (ties share their mean rank); NaN -> 0.5."""
    v = np.asarray(values, np.float64)
    out = np.full(v.shape, 0.5)
    ok = np.isfinite(v)
    n = int(ok.sum())
    if n > 1:
        order = np.argsort(v[ok], kind="stable")
        r = np.empty(n)
        r[order] = np.arange(n)
        # ties: give every member of a run of equal values the run's mean rank
        _, inverse, counts = np.unique(v[ok], return_inverse=True, return_counts=True)
        sums = np.bincount(inverse, weights=r)
        out[ok] = (sums / counts)[inverse] / (n - 1)
    return out


def uncertainty_scores(
    likelihood: np.ndarray, jumps: np.ndarray | None = None, flips: np.ndarray | None = None
) -> np.ndarray:
    """(N,) score in [0, 1] per frame, higher = the model is less sure.

    likelihood: (N, K) in [0, 1]; jumps, flips: (N, K) px (see `jump_px`,
    `flip_disagreement_px`) or None to leave a sign out. Per frame each sign
    is reduced over keypoints (mean of 1 - likelihood, mean jump, mean
    flip disagreement), ranked over the N frames, and the ranks averaged.
    """
    lik = np.asarray(likelihood, np.float64)
    if lik.ndim != 2:
        raise ValueError(f"likelihood must be (N, K), got shape {lik.shape}")
    signs = [1.0 - lik] + [np.asarray(s, np.float64) for s in (jumps, flips) if s is not None]
    for s in signs:
        if s.shape != lik.shape:
            raise ValueError(f"jumps and flips must be (N, K) = {lik.shape}, got {s.shape}")
    with warnings.catch_warnings():  # a frame with no finite value is NaN, ranked as middling
        warnings.simplefilter("ignore", RuntimeWarning)
        per_frame = [np.nanmean(np.where(np.isfinite(s), s, np.nan), axis=1) if s.size else np.zeros(len(s))
                     for s in signs]
    return np.mean([_ranks(p) for p in per_frame], axis=0)


def pick_frames(
    n_frames: int,
    candidates: np.ndarray,
    scores: np.ndarray | None,
    n: int,
    random_fraction: float = 0.5,
    rng: np.random.Generator | None = None,
    exclude: Iterable[int] = (),
) -> np.ndarray:
    """(m,) sorted int64 frame indices to label, m = min(n, frames available).

    round(n * random_fraction) are drawn uniformly from all `n_frames`
    frames; the rest are the `candidates` with the highest `scores` ((C,),
    higher = less sure; None: all random). No frame is picked twice and
    none in `exclude` (frames already labelled or listed).
    """
    if n < 0 or not 0.0 <= random_fraction <= 1.0:
        raise ValueError(f"need n >= 0 and random_fraction in [0, 1], got {n}, {random_fraction}")
    rng = np.random.default_rng(0) if rng is None else rng
    taken = {int(i) for i in exclude}
    cand = np.asarray(candidates, np.int64).reshape(-1)
    n_uncertain = 0 if scores is None else n - int(round(n * random_fraction))
    chosen: list[int] = []
    if n_uncertain:
        s = np.asarray(scores, np.float64).reshape(-1)
        if s.shape != cand.shape:
            raise ValueError(f"scores must be one per candidate ({len(cand)}), got {s.shape}")
        for i in np.argsort(-s, kind="stable"):
            if len(chosen) == n_uncertain:
                break
            if int(cand[i]) not in taken:
                chosen.append(int(cand[i]))
                taken.add(int(cand[i]))
    free = np.setdiff1d(np.arange(n_frames, dtype=np.int64), np.fromiter(taken, np.int64, len(taken)))
    n_random = min(n - len(chosen), len(free))
    chosen += rng.choice(free, n_random, replace=False).tolist() if n_random > 0 else []
    return np.sort(np.asarray(chosen, np.int64))
