"""Optimisers of the HMM fit (optax factories over `fit.trainable_parameters`: the tuple
(Q, means, initial logits), with log sigma2 as a fourth entry when the variance is learned).

`fit.fit_hmm` runs two phases by default: :func:`hmm_optimizer` (Adam, the
transitions at a tenth of the means' rate, so they do not lock in the first
noisy state assignments; a learned log sigma2 goes with the means), then
:func:`transitions_only_optimizer` (the transitions alone, means and a learned
sigma2 frozen, so they converge even when the means' overfitting ended the
first phase early).
"""

from __future__ import annotations

import numpy as np
import optax

from jfacemap.errors import JfacemapError
from jfacemap.hmm import LEARNING_RATE

__all__ = ["default_transition_learning_rate", "hmm_optimizer", "transitions_only_optimizer"]


def default_transition_learning_rate(learning_rate: float) -> float:
    """The transitions' Adam rate when none is given: a tenth of the means'."""
    return learning_rate / 10


def _check_rate(name: str, value: float) -> None:
    if not (np.isfinite(value) and value > 0):
        raise JfacemapError(f"{name} must be a positive number, got {value}")


_GROUPS = ("transitions", "means", "transitions", "means")  # Q, means, initial logits[, log sigma2]


def _per_group(transitions: optax.GradientTransformation, means: optax.GradientTransformation):
    """One transformation for Q and the initial logits, another for the emission parameters (means and,
    when learned, log sigma2); the labels follow the order of `fit.trainable_parameters`."""
    return optax.multi_transform({"transitions": transitions, "means": means},
                                 lambda trainable: _GROUPS[:len(trainable)])


def hmm_optimizer(
    learning_rate: float = LEARNING_RATE, transition_learning_rate: float | None = None
) -> optax.GradientTransformation:
    """Adam over (Q, means, initial logits[, log sigma2]), with its own rate for Q and the initial logits.

    learning_rate: the means' Adam rate (units of the data per step, roughly;
    also the learned log sigma2's, i.e. a relative change of the variance);
    transition_learning_rate: the rate of Q and the initial logits (nats per
    step, roughly), default :func:`default_transition_learning_rate`. On the
    planted 50-state benchmark (bench/bench_hmm.py, seed 0) equal rates end
    at test log-likelihood -365.73 nats per timepoint against EM's -364.69
    from the same start; rates 0.05 / 0.005 reach -364.65 (seeds 1, 2:
    -364.73 and -365.05 against EM's -364.88 and -364.47).
    """
    if transition_learning_rate is None:
        transition_learning_rate = default_transition_learning_rate(learning_rate)
    _check_rate("learning_rate", learning_rate)
    _check_rate("transition_learning_rate", transition_learning_rate)
    return _per_group(optax.adam(transition_learning_rate), optax.adam(learning_rate))


def transitions_only_optimizer(learning_rate: float = LEARNING_RATE) -> optax.GradientTransformation:
    """Adam on Q and the initial logits at learning_rate; the means (and a learned sigma2) stay where they are."""
    _check_rate("learning_rate", learning_rate)
    return _per_group(optax.adam(learning_rate), optax.set_to_zero())
