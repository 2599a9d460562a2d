"""Frame-exact reads on the videos labs have: long / open GOPs, 4:4:4, intra refresh, VFR,
MJPEG, edit lists, and a video with damaged packets. Reference: sequential decoding from 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hard_videos
from jfacemap.io.video import VideoError, iter_chunks, read_frames, video_info

NAMES = [*hard_videos.RECIPES, "edit_list"]


@pytest.fixture(scope="session")
def hard(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hard")
    out = {name: hard_videos.make(folder, name) for name in hard_videos.RECIPES}
    out["edit_list"] = hard_videos.make_edit_list(folder, out["long_gop"])
    return out


@pytest.fixture(scope="session")
def damaged(tmp_path_factory):
    return hard_videos.make_corrupt(tmp_path_factory.mktemp("damaged"))


def sequential(path) -> np.ndarray:
    return np.concatenate(list(iter_chunks(path, 64)))


@pytest.mark.parametrize("name", NAMES)
def test_random_reads_and_starts_equal_sequential_decoding(hard, name):
    path = hard[name]
    full = sequential(path)
    n = len(full)
    assert video_info(path).n_frames == video_info(path, exact=False).n_frames == n
    assert len({f.tobytes() for f in full}) == n  # every frame differs: a wrong one cannot pass
    rng = np.random.default_rng(3)
    # Around every 30th index (keyframes of all recipes fall on multiples of 10), the ends, random.
    edges = np.clip(np.arange(0, n, 30)[:, None] + [-1, 0, 1, 2], 0, n - 1).ravel()
    idx = np.concatenate([[0, n - 1, n - 2], rng.integers(0, n, 12), rng.choice(edges, 10)])
    np.testing.assert_array_equal(read_frames(path, idx), full[idx])
    for start in (n // 3, n // 2 + 7, n - 5):
        got = np.concatenate(list(iter_chunks(path, 50, start=start, stop=start + 60)))
        np.testing.assert_array_equal(got, full[start:start + 60], err_msg=f"start={start}")


def test_damaged_frames_keep_their_slots(damaged):
    intact, corrupt, bad = damaged
    reference = sequential(intact)
    chunks = list(iter_chunks(corrupt, 64, with_valid=True))
    frames = np.concatenate([c for c, _ in chunks])
    valid = np.concatenate([v for _, v in chunks])
    assert len(frames) == len(reference) == video_info(corrupt).n_frames
    assert video_info(corrupt).undecodable == tuple(bad)
    assert np.flatnonzero(~valid).tolist() == bad
    np.testing.assert_array_equal(frames[valid], reference[valid])  # later frames keep their index
    assert not frames[~valid].any()
    np.testing.assert_array_equal(sequential(corrupt), frames)  # default: zeros, same count
    good = [0, bad[0] + 1, bad[1] - 1, bad[-1] + 1, len(reference) - 1, 150]
    np.testing.assert_array_equal(read_frames(corrupt, good), reference[good])
    for k in bad:
        with pytest.raises(VideoError, match=f"frame {k} cannot be decoded") as err:
            read_frames(corrupt, [3, k])
        assert "\n" not in str(err.value) and str(corrupt) in str(err.value)
    start = bad[1] - 3
    got = list(iter_chunks(corrupt, 16, start=start, with_valid=True))
    np.testing.assert_array_equal(np.concatenate([v for _, v in got]), valid[start:])
    np.testing.assert_array_equal(np.concatenate([c for c, _ in got]), frames[start:])
