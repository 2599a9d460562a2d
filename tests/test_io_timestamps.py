"""The one timestamp check (jfacemap.io.timestamps): messages name the clock, errors are user errors."""

import numpy as np
import pytest

from jfacemap.errors import JfacemapError
from jfacemap.io.behavior import BehaviorFileError
from jfacemap.io.timestamps import TimestampError, check_timestamps


def test_a_good_clock_comes_back_as_float64():
    t = check_timestamps(np.arange(5, dtype=np.int32), "video_times", n=5)
    assert t.dtype == np.float64 and list(t) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("times, n, message", [
    (np.zeros((2, 3)), None, r"^neural times must be 1-D timestamps, got shape \(2, 3\)$"),
    (np.arange(4.0), 5, r"^neural times: 4 timestamps, need one per neural frame \(5\)$"),
    (np.zeros(0), None, r"^neural times is empty$"),
    (np.array([0.0, np.nan, 2.0, np.inf]), None, r"^neural times has 2 non-finite \(NaN/inf\) timestamps, first at"),
    (np.array([0.0, 1.0, 1.0, 2.0]), None, r"^neural times is not strictly increasing: t\[1\]=1 s, t\[2\]=1 s$"),
])
def test_bad_clocks_give_one_line_naming_them(times, n, message):
    with pytest.raises(TimestampError, match=message) as info:
        check_timestamps(times, "neural times", n=n, what="neural frame")
    assert isinstance(info.value, JfacemapError) and isinstance(info.value, ValueError)


def test_a_reader_raises_its_own_error_class():
    with pytest.raises(BehaviorFileError, match="t.npy is not strictly increasing"):
        check_timestamps([2.0, 1.0], "t.npy", error=BehaviorFileError)
