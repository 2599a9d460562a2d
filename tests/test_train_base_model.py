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


def test_a_look_plus_layout_style_renders_the_look_over_the_other_layout():
    from jfacemap.synth import make_session, sample_face_params
    from jfacemap.synth.params import LAYOUT_FIELDS

    from bench.train_base_model import synthetic_session

    plain = synthetic_session(7, "lab2", 50)
    assert plain.params == make_session(50, seed=7, style="lab2").params
    mixed = synthetic_session(7, "lab2+wild", 50).params
    wild = sample_face_params(7, "wild")
    assert all(getattr(mixed, f) == getattr(wild, f) for f in LAYOUT_FIELDS)
    assert (mixed.flip, mixed.background, mixed.noise_std) == (plain.params.flip, plain.params.background,
                                                               plain.params.noise_std)
    with pytest.raises(ValueError, match="unknown style"):
        synthetic_session(7, "lab2+nope", 50)
