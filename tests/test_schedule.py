"""Learning-rate tails (jfacemap.nets.schedule): one rule, per epoch for the encoder, per step for the tracker."""

import numpy as np
import pytest

from jfacemap.encode.deep import EncoderRecipe
from jfacemap.nets.schedule import tail_multiplier, tail_schedule, tail_starts
from jfacemap.track.train import get_recipe, lr_schedule


@pytest.mark.parametrize("tail, epochs", [
    (((100, 0.1), (50, 0.01)), 300), (((6, 0.1), (3, 0.04)), 36), (((6, 0.1), (3, 0.04)), 4),
    (((3, 0.04), (6, 0.1)), 10), ((), 5), (((10, 0.5),), 10),
])
def test_per_epoch_and_per_step_forms_agree(tail, epochs):
    steps = 7
    schedule = tail_schedule(2e-3, tail, epochs, steps)
    for epoch in range(epochs):
        expected = 2e-3 * tail_multiplier(tail, epochs, epoch)
        for step in (epoch * steps, epoch * steps + steps - 1):
            assert float(schedule(step)) == pytest.approx(expected, rel=1e-6)


def test_the_latest_starting_tail_applies_and_short_runs_start_lowered():
    assert [tail_multiplier(((100, 0.1), (50, 0.01)), 300, e) for e in (0, 199, 200, 249, 250, 299)] == \
        [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    assert tail_multiplier(((100, 0.1), (50, 0.01)), 30, 0) == 0.01  # both clamped to epoch 0: the shorter wins
    assert tail_starts(((3, 0.04), (6, 0.1)), 36) == [(30, 0.1), (33, 0.04)]


def test_encoder_and_tracker_recipes_use_it():
    r = EncoderRecipe()
    assert [r.lr_at(e) for e in (199, 200, 250)] == pytest.approx([r.lr, r.lr / 10, r.lr / 100])
    recipe = get_recipe("base")
    schedule = lr_schedule(recipe, 5)
    lrs = np.array([float(schedule(e * 5)) for e in range(recipe.epochs)])
    np.testing.assert_allclose(lrs, [recipe.lr * tail_multiplier(recipe.lr_tail, recipe.epochs, e)
                                     for e in range(recipe.epochs)], rtol=1e-6)
