"""bench/real_face_layout_floor.py: a layout oracle placed in each face's own eye -> nose frame."""

from __future__ import annotations

import numpy as np

from bench.real_face_layout_floor import SCORED, layout_oracle_errors

NAMES = ["eye(back)", "eye(bottom)", "eye(front)", "eye(top)", "nose(tip)", "nose(bottom)", "whisker(I)", "mouth"]
# one face's layout in the eye -> nose frame (u along, v below, axis lengths)
UV = np.array([[-0.1, 0.0], [0.0, 0.08], [0.1, 0.0], [0.0, -0.08], [1.0, 0.0], [0.93, 0.18], [0.55, 0.2], [0.7, 0.3]])


def _place(uv, eye, tip, nose_left=False):
    """Pixel positions of a (u, v) layout for a face with eye centre `eye` and nose tip `tip`."""
    eye, tip = np.asarray(eye, float), np.asarray(tip, float)
    axis = tip - eye
    normal = np.array([-axis[1], axis[0]]) * (-1.0 if nose_left else 1.0)  # toward the image's bottom
    return eye + uv[:, :1] * axis + uv[:, 1:] * normal


def test_the_same_layout_at_another_pose_and_scale_costs_nothing_and_a_shift_costs_its_length():
    faces = np.stack([_place(UV, (100, 80), (220, 140)), _place(UV, (300, 60), (150, 130), nose_left=True),
                      _place(UV, (50, 50), (120, 60))])
    source = np.array([True, True, False])
    err = layout_oracle_errors(faces, NAMES, source, 2)
    scored = np.isin(NAMES, SCORED)
    np.testing.assert_allclose(err[scored], 0.0, atol=1e-9)
    assert np.isnan(err[~scored]).all()  # the frame's own points and unscored ones
    # move face 2's whisker 0.1 axis lengths further along its axis: the oracle is off by exactly that
    moved = faces.copy()
    axis = faces[2, 4] - faces[2, :4].mean(0)
    moved[2, NAMES.index("whisker(I)")] += 0.1 * axis
    err = layout_oracle_errors(moved, NAMES, source, 2)
    np.testing.assert_allclose(err[NAMES.index("whisker(I)")], 0.1 * np.hypot(*axis), rtol=1e-9)
    np.testing.assert_allclose(err[NAMES.index("nose(bottom)")], 0.0, atol=1e-9)


def test_the_oracle_is_the_mean_of_its_sources_and_skips_their_unlabelled_points():
    a, b = UV.copy(), UV.copy()
    a[6] += (0.1, 0.0)
    b[6] -= (0.1, 0.0)
    b[5] = np.nan  # not labelled on b: the mean is a's alone
    faces = np.stack([_place(a, (0, 0), (100, 0)), _place(b, (0, 0), (200, 0)), _place(UV, (10, 10), (110, 10))])
    err = layout_oracle_errors(faces, NAMES, np.array([True, True, False]), 2)
    np.testing.assert_allclose(err[NAMES.index("whisker(I)")], 0.0, atol=1e-9)
    np.testing.assert_allclose(err[NAMES.index("nose(bottom)")], 0.0, atol=1e-9)
