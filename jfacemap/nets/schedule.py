"""Learning-rate tails: the LR drops over the last epochs of a training (the tracker's and the encoder's rule).

A tail is ((epochs_before_end, multiplier), ...): the LR is lr * multiplier
from epoch max(0, epochs - epochs_before_end) on, and where tails overlap the
latest-starting (the shortest) applies: ((100, 0.1), (50, 0.01)) with 300
epochs is lr for epochs 0-199, lr / 10 for 200-249, lr / 100 for 250-299.
Keyed on the end, a tail keeps its shape when `epochs` changes; a run shorter
than a tail starts on the lowered LR.

One rule, two forms, because the two trainings take their LR differently:
`tail_multiplier` per epoch in Python, for the encoder, whose compiled step
takes the LR as an input (one compilation serves every recipe); and
`tail_schedule`, an optax schedule on optimizer steps, for the tracker, whose
optimiser owns its schedule.
"""

from __future__ import annotations

from typing import Sequence

import optax

__all__ = ["tail_starts", "tail_multiplier", "tail_schedule"]

LRTail = Sequence[tuple[int, float]]


def tail_starts(lr_tail: LRTail, epochs: int) -> list[tuple[int, float]]:
    """[(first epoch, multiplier)] in the order the tails take over (the last started one applies)."""
    order = sorted(lr_tail, key=lambda t: (max(0, epochs - int(t[0])), -int(t[0]), -float(t[1])))
    return [(max(0, epochs - int(before_end)), float(m)) for before_end, m in order]


def tail_multiplier(lr_tail: LRTail, epochs: int, epoch: int) -> float:
    """The LR multiplier of `epoch` (0-based) of an `epochs`-long run: 1 before any tail."""
    multiplier = 1.0
    for start, m in tail_starts(lr_tail, epochs):
        if epoch >= start:
            multiplier = m
    return multiplier


def tail_schedule(lr: float, lr_tail: LRTail, epochs: int, steps_per_epoch: int = 1) -> optax.Schedule:
    """Piecewise-constant LR on optimizer steps (`steps_per_epoch` per epoch): lr, then each tail's
    lr * multiplier from the first step of its first epoch."""
    boundaries: dict[int, float] = {}
    previous = 1.0
    for start, m in tail_starts(lr_tail, epochs):
        step = start * steps_per_epoch
        boundaries[step] = boundaries.get(step, 1.0) * m / previous  # optax multiplies the scales it passed
        previous = m
    return optax.piecewise_constant_schedule(lr, boundaries)
