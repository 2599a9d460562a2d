"""The shared time-series helpers (jfacemap.series): z-scoring and the held-out-ends split, and the
stages' adapters over the split (encode's index arrays, the HMM's slices, the timescales' blocks)."""

import numpy as np
import pytest

from jfacemap.encode.align import segment_split
from jfacemap.errors import JfacemapError
from jfacemap.hmm.pipeline import split_blocks
from jfacemap.series import split_segments, zscore
from jfacemap.track.timescales import split_train_test


def test_zscore_along_an_axis_with_training_indices():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, size=(50, 4))
    x[:, 2] = 7.0  # constant: sd 1, z 0
    z, mean, sd = zscore(x)
    assert z.dtype == np.float32 and mean.shape == sd.shape == (4,)
    np.testing.assert_allclose(mean, x.mean(0))
    np.testing.assert_allclose(sd, np.where(x.std(0) > 0, x.std(0), 1.0))
    np.testing.assert_allclose(z, (x - x.mean(0)) / sd, rtol=1e-6, atol=1e-6)
    assert np.all(z[:, 2] == 0)
    idx = np.arange(0, 50, 3)
    zt, mt, st = zscore(x.T, axis=1, idx=idx, dtype=np.float64)
    assert zt.dtype == np.float64 and zt.shape == (4, 50)
    np.testing.assert_allclose(mt, x[idx].mean(0))
    cols = [0, 1, 3]
    np.testing.assert_allclose(zt[cols], ((x[:, cols] - x[idx][:, cols].mean(0)) / x[idx][:, cols].std(0)).T)
    v, m, s = zscore(np.arange(5.0), dtype=np.float64)  # 1-D: scalars
    assert m.shape == s.shape == () and v.mean() == pytest.approx(0) and v.std() == pytest.approx(1)


def test_split_segments_gap_in_frames_or_on_a_clock():
    train, test = split_segments(1000, 10, 0.75, gap=9)
    assert train == [(100 * k, 100 * k + 75) for k in range(10)]
    assert test == [(100 * k + 84, 100 * (k + 1)) for k in range(10)]
    times = np.arange(1000) / 3.0  # the same gap as 3 s on a 3 Hz clock
    assert split_segments(1000, 10, 0.75, gap=3.0, times=times) == (train, test)
    # empty spans are returned, for the caller to refuse or drop
    train, test = split_segments(40, 10, 0.75, gap=5)
    assert all(b - a == 3 for a, b in train) and all(a == b for a, b in test)
    train, test = split_segments(50, 5, 1.0)
    assert [b - a for a, b in train] == [10] * 5 and all(a == b for a, b in test)
    assert split_segments(30, 10, 1 - 0.3)[0][0] == (0, 2)  # 0.7 * 3 = 2.0999..., floor 2
    for bad in ({"n_segments": 0}, {"train_fraction": 0.0}, {"train_fraction": 1.5}, {"gap": -1.0}):
        with pytest.raises(JfacemapError):
            split_segments(100, **bad)


def test_the_stages_adapters_are_views_of_one_split():
    train, test = split_segments(1000, 10, 0.75, gap=3.0, times=np.arange(1000) / 3.0)
    s = segment_split(1000, fps=3.0)
    assert [(t[0], t[-1] + 1) for t in s.train] == train and [(t[0], t[-1] + 1) for t in s.test] == test
    blocks = split_blocks(1000, test_fraction=0.25)
    assert [(b.start, b.stop) for b in blocks[0]] == split_segments(1000, 10, 0.75)[0]
    assert [(b.start, b.stop) for b in blocks[1]] == split_segments(1000, 10, 0.75)[1]
    assert split_train_test(10_000, 50.0) == split_segments(10_000, 10, 0.75, gap=130)
    # the HMM keeps its own segment count rule and refusals
    assert len(split_blocks(35)[0]) == 3 and split_blocks(100, test_fraction=0.0)[1] == []
    with pytest.raises(JfacemapError, match="too few"):
        split_blocks(1, test_fraction=0.5)
