"""bench/train_base_model.py: which synthetic sessions a base-model run trains on."""

from __future__ import annotations

import pytest

from bench.train_base_model import TEST_SEED_BASE, training_sessions


def test_sessions_cycle_the_families_by_seed_so_a_fresh_range_keeps_the_mix():
    fam = ["wild", "wild", "wild", "wild", "lab1"]
    seeds, styles, lab2 = training_sessions(0, 400, fam)
    assert seeds == list(range(400)) and lab2 == []
    assert styles.count("lab1") == 80 and styles.count("wild") == 320
    fresh, fresh_styles, _ = training_sessions(800, 400, fam)
    assert fresh == list(range(800, 1200)) and not set(fresh) & set(seeds)
    assert fresh_styles == styles  # 800 % 5 == 0: the same pattern on new faces
    shifted = training_sessions(3, 5, fam)[1]
    assert shifted == ["wild", "lab1", "wild", "wild", "wild"]


def test_a_lab2_fraction_is_spread_over_the_range_and_reported_by_seed():
    seeds, styles, lab2 = training_sessions(1000, 10, ["lab1"], lab2_fraction=0.2)
    assert lab2 == [1000, 1009] and [s for s, st in zip(seeds, styles) if st == "lab2"] == lab2


def test_training_seeds_never_reach_the_test_seeds():
    with pytest.raises(ValueError, match="below the test seeds"):
        training_sessions(TEST_SEED_BASE - 10, 20, ["wild"])
    with pytest.raises(ValueError):
        training_sessions(-1, 5, ["wild"])
