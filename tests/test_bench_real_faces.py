"""The real-faces bench's fine-tuning splits: who is trained on and who is scored."""

from __future__ import annotations

import numpy as np

from bench.bench_real_faces import fine_tune_splits

MICE = np.array(["mouse1", "mouse2", "mouse1", "mouse2", "mouse1", "mouse2"])


def test_leave_one_mouse_out_trains_on_one_mouse_and_scores_the_other():
    splits = fine_tune_splits(MICE)
    assert [label for label, _, _ in splits] == ["all 6", "mouse1 (3 views)", "mouse2 (3 views)"]
    for label, fit, score in splits[1:]:
        m = label.split()[0]
        np.testing.assert_array_equal(fit, MICE == m)
        np.testing.assert_array_equal(score, MICE != m)


def test_leave_one_face_out_holds_out_each_face_once_and_trains_on_the_other_five():
    splits = [s for s in fine_tune_splits(MICE, leave_one_face_out=True) if s[0].startswith("5 faces")]
    assert len(splits) == len(MICE)
    held = np.stack([score for _, _, score in splits])
    np.testing.assert_array_equal(held, np.eye(len(MICE), dtype=bool))  # each face scored exactly once
    for _, fit, score in splits:
        assert fit.sum() == 5 and not (fit & score).any()
