"""Markov chains with known structure, for checking the HMM analyses (SPEC 5).

- `planted_sequence_transitions`: states that follow each other in a fixed
  forward cycle (i -> i+1, i -> i+2), the asymmetric structure the paper
  finds in deep-feature HMMs;
- `symmetrize_transitions`: the same chain with its between-state
  transitions made symmetric (B = B^T), keeping every state's lifetime: the
  control in which forward sequences must vanish;
- `sample_markov_chain`: a state path from a transition matrix (numpy);
- `shuffle_time`: data with time points or blocks permuted, to fit the
  paper's temporally shuffled control model on.
Transition matrices are (K, K), rows = from, rows summing to 1.
"""

from __future__ import annotations

import numpy as np

from .analysis import _check_transitions, off_diagonal_transitions

__all__ = [
    "planted_sequence_transitions", "symmetrize_transitions", "sample_markov_chain", "shuffle_time",
]


def planted_sequence_transitions(
    n_states: int, p_stay: float = 0.8, forward: tuple[float, ...] = (0.6, 0.3)
) -> np.ndarray:
    """A (K, K) of a forward cycle: on leaving state i the chain goes to
    i + d (mod K) with probability forward[d - 1], and to each other state with
    equal share of the rest. Self-transition p_stay for every state.

    The between-state matrix B is circulant, so its columns sum to 1 too and
    (B + B^T) / 2 is a valid symmetric control.
    """
    forward = tuple(float(f) for f in forward)
    if n_states < len(forward) + 2:
        raise ValueError(
            f"need at least {len(forward) + 2} states for {len(forward)} forward steps")
    if not 0 <= p_stay < 1:
        raise ValueError(f"p_stay must be in [0, 1), got {p_stay}")
    if any(f < 0 for f in forward) or sum(forward) > 1 + 1e-12:
        raise ValueError(f"forward probabilities must be >= 0 and sum to <= 1, got {forward}")
    K = n_states
    rest = (1.0 - sum(forward)) / (K - 1 - len(forward))
    row = np.full(K, rest)
    row[0] = 0.0
    row[1:len(forward) + 1] = forward
    B = np.stack([np.roll(row, i) for i in range(K)])
    return p_stay * np.eye(K) + (1.0 - p_stay) * B


def symmetrize_transitions(A: np.ndarray, tol: float = 1e-12, max_iter: int = 10_000) -> np.ndarray:
    """A with the same self-transitions but a symmetric B (B = B^T).

    S = (B + B^T) / 2 is scaled to D S D with rows summing to 1 (symmetric
    Sinkhorn balancing, x <- sqrt(x / (S x))), which keeps it symmetric;
    for a doubly stochastic B (e.g. circulant) S is already balanced.
    Returns A_sym (K, K) = diag(p) + (1 - p) * B_sym row-wise.
    """
    A = _check_transitions(A)
    p = np.diag(A)
    S = off_diagonal_transitions(A)
    S = 0.5 * (S + S.T)
    x = np.ones(len(S))
    for _ in range(max_iter):
        x = np.sqrt(x / (S @ x))
        if np.max(np.abs(x * (S @ x) - 1.0)) < tol:
            break
    else:
        raise ValueError("B + B^T cannot be balanced to a symmetric stochastic matrix")
    B_sym = x[:, None] * S * x[None, :]
    B_sym = 0.5 * (B_sym + B_sym.T)
    return np.diag(p) + (1.0 - p)[:, None] * B_sym


def sample_markov_chain(
    A: np.ndarray, n_steps: int, seed: int, init: np.ndarray | None = None
) -> np.ndarray:
    """A state path (n_steps,) int64: h_1 ~ init (default uniform), then
    h_{t+1} ~ A[h_t]; numpy seed."""
    A = _check_transitions(A)
    K = A.shape[0]
    if n_steps < 1:
        raise ValueError(f"n_steps must be >= 1, got {n_steps}")
    init = np.full(K, 1.0 / K) if init is None else np.asarray(init, dtype=np.float64)
    if init.shape != (K,) or np.any(init < 0) or abs(init.sum() - 1) > 1e-6:
        raise ValueError(f"init must be a probability vector of length {K}")
    rng = np.random.default_rng(seed)
    u = rng.random(n_steps)
    cum = np.cumsum(A, axis=1)
    cum[:, -1] = np.inf   # rounding must not let a draw fall off the end
    path = np.empty(n_steps, np.int64)
    path[0] = min(np.searchsorted(np.cumsum(init), u[0], side="right"), K - 1)
    for t in range(1, n_steps):
        path[t] = np.searchsorted(cum[path[t - 1]], u[t], side="right")
    return path


def shuffle_time(x: np.ndarray, seed: int, block: int = 1, axis: int = 0) -> np.ndarray:
    """x with its time points (block=1) or blocks of `block` consecutive time
    points permuted along `axis` (numpy seed). A final shorter block is
    shuffled as one block. Within-block order is kept, so blocks longer than
    the behaviour's timescale keep its short-range structure; the temporal
    order of the blocks is destroyed (the paper's shuffled control).
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("x must have a time axis")
    if block < 1:
        raise ValueError(f"block must be >= 1 time points, got {block}")
    T = x.shape[axis]
    starts = np.arange(0, T, block)
    perm = np.random.default_rng(seed).permutation(len(starts))
    idx = np.concatenate([np.arange(a, min(a + block, T)) for a in starts[perm]])
    return np.take(x, idx, axis=axis)
