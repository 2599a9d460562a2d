"""Frame picking for refinement: candidates, the three uncertainty signs, random/uncertain/mixed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from jfacemap.refine.picking import (
    candidate_frames,
    flip_disagreement_px,
    jump_px,
    pick_frames,
    uncertainty_scores,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _smooth_track(n: int, k: int, rng) -> np.ndarray:
    """(n, k, 2) keypoints moving on straight lines: zero second difference."""
    start, step = rng.uniform(10, 50, (1, k, 2)), rng.uniform(-1, 1, (1, k, 2))
    return start + step * np.arange(n)[:, None, None]


def test_candidates_have_neighbours_and_spread():
    c = candidate_frames(1000, 50)
    assert len(c) == 50 and c[0] == 1 and c[-1] == 998 and np.all(np.diff(c) > 0)
    assert np.ptp(np.diff(c)) <= 1  # evenly spread
    assert candidate_frames(5, 50).tolist() == [1, 2, 3]
    assert candidate_frames(2, 10).tolist() == [0, 1]
    with pytest.raises(ValueError):
        candidate_frames(0, 3)


def test_jump_is_the_distance_from_the_neighbours_midpoint():
    rng = np.random.default_rng(0)
    track = _smooth_track(12, 4, rng)
    track[6, 2] += [3.0, 4.0]  # one keypoint jumps 5 px for one frame
    j = jump_px(track[:-2], track[1:-1], track[2:])  # row r is frame r + 1
    expected = np.zeros((10, 4))
    expected[5, 2] = 5.0  # frame 6 itself
    expected[[4, 6], 2] = 2.5  # its neighbours see half of it
    np.testing.assert_allclose(j, expected, atol=1e-9)


def test_flip_disagreement_mirrors_x_about_the_pixel_centres():
    kp = np.array([[[0.0, 5.0], [10.0, 2.0], [63.0, 9.0]]])
    mirrored = kp.copy()
    mirrored[..., 0] = 63 - kp[..., 0]  # the same points, seen in a 64-px-wide mirrored frame
    np.testing.assert_allclose(flip_disagreement_px(kp, mirrored, 64), 0.0, atol=1e-12)
    mirrored[0, 1, 1] += 2.0
    mirrored[0, 2, 0] += 6.0
    np.testing.assert_allclose(flip_disagreement_px(kp, mirrored, 64), [[0.0, 2.0, 6.0]])


def test_each_sign_alone_ranks_the_unsure_frame_first():
    rng = np.random.default_rng(1)
    n, k = 30, 5
    sure = np.full((n, k), 0.9)  # likelihood that says nothing: every frame ties
    lik = rng.uniform(0.8, 1.0, (n, k))
    jumps, flips = rng.uniform(0, 1, (n, k)), rng.uniform(0, 1, (n, k))
    lik[4], jumps[17], flips[25] = 0.1, 40.0, 40.0
    assert np.argmax(uncertainty_scores(lik)) == 4
    assert np.argmax(uncertainty_scores(sure, jumps)) == 17
    assert np.argmax(uncertainty_scores(sure, None, flips)) == 25
    s = uncertainty_scores(lik, jumps, flips)
    assert s.shape == (n,) and 0 <= s.min() and s.max() <= 1
    assert all(s[f] > np.median(s) for f in (4, 17, 25))  # worst on one sign beats the median frame


def test_scores_are_mean_ranks_by_brute_force():
    rng = np.random.default_rng(2)
    lik, jumps, flips = rng.uniform(0, 1, (9, 3)), rng.uniform(0, 9, (9, 3)), rng.uniform(0, 9, (9, 3))
    per = [(1 - lik).mean(1), jumps.mean(1), flips.mean(1)]
    # rank by counting, float64, no ties in random data
    ranks = [np.array([(p < v).sum() for v in p]) / 8 for p in per]
    np.testing.assert_allclose(uncertainty_scores(lik, jumps, flips), np.mean(ranks, 0), atol=1e-12)
    # ties share their rank; NaN frames count as middling
    tied = uncertainty_scores(np.array([[0.5], [0.5], [0.9], [np.nan]]))
    np.testing.assert_allclose(tied, [0.75, 0.75, 0.0, 0.5])


def test_uncertain_picks_the_top_scores_not_excluded():
    cand = np.array([10, 20, 30, 40, 50])
    scores = np.array([0.1, 0.9, 0.5, 0.8, 0.2])
    got = pick_frames(100, cand, scores, 3, random_fraction=0.0, exclude=[20])
    assert got.tolist() == [30, 40, 50]


def test_random_and_mixed_counts_and_no_repeats():
    rng = np.random.default_rng(3)
    cand = np.arange(5, 95, 10)
    scores = np.linspace(0, 1, len(cand))  # 85 is the least sure, then 75, ...
    mixed = pick_frames(100, cand, scores, 10, random_fraction=0.3, rng=rng, exclude=[0, 1])
    assert len(mixed) == len(set(mixed.tolist())) == 10
    assert {85, 75, 65, 55, 45, 35, 25} <= set(mixed.tolist())  # the 7 uncertain ones
    assert not {0, 1} & set(mixed.tolist())
    rand = pick_frames(100, cand, None, 20, rng=np.random.default_rng(4))
    assert len(set(rand.tolist())) == 20 and rand.min() >= 0 and rand.max() < 100
    # uniform: over many draws each frame is chosen about equally often
    counts = np.zeros(50)
    draws = np.random.default_rng(5)
    for _ in range(400):
        counts[pick_frames(50, cand[:0], None, 5, rng=draws)] += 1
    assert counts.min() > 20 and counts.max() < 65  # mean 40; binomial sd ~6
    # asking for more than there are gives every free frame once
    assert pick_frames(6, cand[:0], None, 10, exclude=[2]).tolist() == [0, 1, 3, 4, 5]


def test_choose_frames_on_a_video_finds_a_corrupted_frame(tmp_path):
    """End to end on a video: a tracker that is sure everywhere but one frame region."""
    from refine_data import make_video

    from jfacemap.refine.tracker import choose_frames

    video = make_video(tmp_path / "v.mp4")

    class FakeTracker:
        """Follows the bright square, but on frame 13 (found by the square's place, x 18..25)
        it is unsure, 5 px off to the right, and so also off when the frame is mirrored."""

        bodyparts = ["a", "b"]

        def predict(self, frames):
            out = np.zeros((len(frames), 2, 3))
            for i, f in enumerate(frames):
                cols = np.flatnonzero(f[20:28].mean(0) > 150)
                x = cols.mean() if len(cols) else 0.0
                odd = len(cols) > 0 and (cols.min() == 18 or cols.max() == 63 - 18)
                out[i, :, 0] = x + (5.0 if odd else 0.0)
                out[i, :, 1] = 24.0
                out[i, :, 2] = 0.2 if odd else 0.95
            return out

    picked = choose_frames(FakeTracker(), video, 2, "uncertain", n_candidates=28)
    assert 13 in picked.tolist()
    assert len(choose_frames(None, video, 5, "random", exclude=range(10))) == 5
    with pytest.raises(ValueError, match="picking method"):
        choose_frames(None, video, 5, "best")

