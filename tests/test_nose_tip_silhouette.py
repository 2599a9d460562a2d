"""bench/nose_tip_silhouette.py: the label's offset from the snout's anterior-most silhouette point."""

import numpy as np

from bench.nose_tip_silhouette import tip_offset


def _snout(cx=100.0, cy=100.0, r=20.0, size=256):
    yy, xx = np.mgrid[:size, :size]
    img = np.full((size, size), 20.0)
    img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r**2] = 200.0
    img[(xx > cx) & (np.abs(yy - cy) <= r)] = 200.0  # the rest of the head, behind the round front
    return img.astype(np.uint8)


def test_a_label_on_the_front_point_has_no_offset_and_one_above_it_is_negative_v():
    img, eye = _snout(), np.array([200.0, 100.0])  # a face pointing left, eye on the axis
    du, dv = tip_offset(img, eye, np.array([80.0, 100.0]))
    assert abs(du) < 0.02 and abs(dv) < 0.05
    # 14 px up the round front (and so ~6 px back): above (dv < 0) and behind (du < 0) the front point
    du, dv = tip_offset(img, eye, np.array([86.0, 86.0]))
    assert dv < -0.08 and du < -0.02


def test_no_bright_snout_gives_none():
    img = np.full((128, 128), 30, np.uint8)
    assert tip_offset(img, np.array([100.0, 60.0]), np.array([40.0, 60.0])) is None
