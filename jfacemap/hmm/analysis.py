"""Properties of a fitted HMM and of its state paths (SPEC section 5).

Conventions: a transition matrix A (K, K) has rows = "from", columns = "to"
(A[i, j] = P(h_{t+1} = j | h_t = i)), rows summing to 1. B is A without
self-transitions, rows renormalised (`off_diagonal_transitions`). A state
path is (T,) ints in 0..K-1 (e.g. Viterbi). A "run" is a maximal stretch of
one state; a path "collapsed" to runs keeps one entry per run. Durations are
in steps unless a step `dt` (seconds) is given.

The state order (`order`, from `sorting.sort_states`) lists the states by
position: order[a] = the state shown at position a.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "runs", "run_lengths", "state_lifetimes", "off_diagonal_transitions",
    "transition_sparsity", "near_states", "NearTransitions", "near_transitions",
    "empirical_transitions", "relabel", "forward_sequence_lengths",
    "sequence_length_histogram", "shuffled_forward_lengths", "StateResponses",
    "state_triggered_responses",
]

_ROW_TOL = 1e-4   # float32 fits: rows of a softmax sum to 1 within ~1e-6
TOP_NEURONS = 10  # neurons picked per state by `state_triggered_responses`


def _check_transitions(A: np.ndarray, name: str = "A") -> np.ndarray:
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 2:
        raise ValueError(f"{name} must be a square (K, K) matrix with K >= 2, got {A.shape}")
    if not np.all(np.isfinite(A)) or np.any(A < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    worst = np.max(np.abs(A.sum(1) - 1.0))
    if worst > _ROW_TOL:
        raise ValueError(f"rows of {name} must sum to 1 (worst is off by {worst:.2g})")
    return A


def _check_path(states: np.ndarray, n_states: int | None = None) -> np.ndarray:
    s = np.asarray(states)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"states must be a non-empty 1-D path, got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.integer):
        if not np.all(np.isfinite(s)) or np.any(s != np.round(s)):
            raise ValueError("states must be integers")
        s = s.astype(np.int64)
    if s.min() < 0 or (n_states is not None and s.max() >= n_states):
        raise ValueError(f"states must lie in 0..{'K-1' if n_states is None else n_states - 1}")
    return s.astype(np.int64)


# ---- durations -------------------------------------------------------------

def runs(states: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of a path: (state (R,), start (R,), length (R,)) int64, in steps."""
    s = _check_path(states)
    start = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    length = np.diff(np.r_[start, len(s)])
    return s[start], start, length


def run_lengths(states: np.ndarray, n_states: int, drop_edges: bool = False) -> list[np.ndarray]:
    """Empirical run lengths per state: list of K arrays (n_runs_k,) int64, steps.

    drop_edges: leave out the first and last run, whose true length is cut
    by the recording's ends.
    """
    state, _, length = runs(_check_path(states, n_states))
    if drop_edges:
        state, length = state[1:-1], length[1:-1]
    return [length[state == k] for k in range(n_states)]


def state_lifetimes(A: np.ndarray, dt: float = 1.0, kind: str = "mean") -> np.ndarray:
    """Lifetime of each state from its self-transition p = A[k, k], (K,) seconds.

    kind="mean": dt / (1 - p), the exact mean of the geometric run length
      (a run lasts n steps with probability p^(n-1) (1 - p)); this is what
      `run_lengths` measures on sampled paths. SPEC's "mean duration".
    kind="exponential": -dt / log(p), the mean of the continuous-time
      exponential whose survival over one step is p (~ "mean" - dt/2 for p
      near 1).
    kind="paper": -dt * log(1 - p), the formula as printed in the paper.
      It grows only logarithmically as p -> 1 (10 s at 5 Hz would need
      1 - p = e^-50), so it cannot be a mean duration; kept for comparison.
    dt: seconds per step (0.2 s for the paper's 5 Hz fits).
    """
    p = np.diag(_check_transitions(A))
    if not dt > 0:
        raise ValueError(f"dt must be positive seconds, got {dt}")
    with np.errstate(divide="ignore"):
        if kind == "mean":
            steps = 1.0 / (1.0 - p)
        elif kind == "exponential":
            steps = np.where(p > 0, -1.0 / np.log(np.where(p > 0, p, 1.0)), 0.0)
        elif kind == "paper":
            steps = -np.log1p(-p)
        else:
            raise ValueError(f"kind must be 'mean', 'exponential' or 'paper', got {kind!r}")
    return dt * steps


# ---- the transition matrix without self-transitions ------------------------

def off_diagonal_transitions(A: np.ndarray) -> np.ndarray:
    """B (K, K) float64: A with its diagonal set to 0, rows renormalised to 1.

    B[i, j] = P(next different state = j | leaving i).
    """
    B = _check_transitions(A).copy()
    np.fill_diagonal(B, 0.0)
    out = B.sum(1)
    if np.any(out <= 0):
        raise ValueError(f"state(s) {np.flatnonzero(out <= 0).tolist()} never leave (A[k, k] = 1)")
    return B / out[:, None]


def _check_b(B: np.ndarray) -> np.ndarray:
    B = _check_transitions(B, "B")
    if np.any(np.diag(B) > 0):
        raise ValueError("B must have a zero diagonal (use off_diagonal_transitions)")
    return B


def transition_sparsity(B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative probability of the n most likely next states.

    Returns (per_state (K, K-1), mean (K-1,)): column n-1 is the summed
    probability of each state's n nearest states (row of B sorted
    descending, cumulative sum; the zero self-entry is dropped), so the
    curves rise monotonically to 1 at n = K-1. Sparse B rises fast.
    """
    B = _check_b(B)
    K = B.shape[0]
    rows = np.sort(B[~np.eye(K, dtype=bool)].reshape(K, K - 1), axis=1)[:, ::-1]
    curves = np.cumsum(rows, axis=1)
    return curves, curves.mean(0)


def near_states(B: np.ndarray, n: int = 5) -> np.ndarray:
    """The n most likely next states of each state (K, n) int64, most likely
    first; ties go to the lower index; a state is never its own near state."""
    B = _check_b(B)
    K = B.shape[0]
    if not 1 <= n <= K - 1:
        raise ValueError(f"n must be in 1..{K - 1} for {K} states, got {n}")
    score = np.where(np.eye(K, dtype=bool), -np.inf, B)
    return np.argsort(-score, axis=1, kind="stable")[:, :n]


@dataclass(frozen=True)
class NearTransitions:
    """Transitions around near pairs i -> j (j among i's n near states).

    near (K, n): j = near[i, r].
    forward (K, n): B[i, j], the near transition itself.
    reverse (K, n): B[j, i], going straight back.
    two_step_forward (K, n, n): B[i, k] for k = near[j, s], the near states of
      j: does i also lead directly to where j leads (i -> j -> k shortcut)?
    two_step_backward (K, n, n): B[k, i]: does j's successor k lead back to i?
    Both two-step arrays are NaN where k == i (that is a reverse transition).
    chance: 1 / (K - 1), the value of every entry of a uniform B, and also
      the mean off-diagonal entry of any B (rows sum to 1), so a ratio of 1
      means "no more likely than a transition picked at random".
    chance_far: mean B[a, b] over pairs where b is not a near state of a
      (the baseline among unlikely transitions; 0 for a B with <= n
      non-zero entries per row).
    A forward-sequence model (i -> i+1 -> i+2) has reverse and two-step
    backward near chance_far and two-step forward high; a symmetric B has
    all three high.
    """

    near: np.ndarray
    forward: np.ndarray
    reverse: np.ndarray
    two_step_forward: np.ndarray
    two_step_backward: np.ndarray
    chance: float
    chance_far: float

    def summary(self, weighted: bool = False) -> dict[str, float]:
        """Means over all near pairs (triples for two-step), and chance.

        weighted: weight each pair i -> j by B[i, j] and each triple
        i -> j -> k by B[i, j] B[j, k], i.e. by how often the path takes it,
        so weak near states (ranks 3-5 of a sparse row) count little.
        """
        w2 = self.forward if weighted else np.ones_like(self.forward)
        # B[i, j] B[j, k] with j = near[i, r], k = near[j, s]
        w3 = (self.forward[:, :, None] * self.forward[self.near] if weighted
              else np.ones_like(self.two_step_forward))

        def mean(x, w):
            ok = ~np.isnan(x)
            return float(np.sum(np.where(ok, x, 0) * w) / np.sum(np.where(ok, w, 0)))

        return {
            "forward": mean(self.forward, w2),
            "reverse": mean(self.reverse, w2),
            "two_step_forward": mean(self.two_step_forward, w3),
            "two_step_backward": mean(self.two_step_backward, w3),
            "chance": self.chance,
            "chance_far": self.chance_far,
        }


def near_transitions(B: np.ndarray, n: int = 5) -> NearTransitions:
    """Reverse, two-step forward and two-step backward transitions of the near
    pairs of B (K, K) (zero diagonal, rows = from); see `NearTransitions`."""
    B = _check_b(B)
    K = B.shape[0]
    near = near_states(B, n)
    i = np.arange(K)[:, None]
    k = near[near]                     # (K, n, n): k = near[near[i, r], s]
    ii = np.broadcast_to(np.arange(K)[:, None, None], k.shape)
    two_fwd = np.where(k == ii, np.nan, B[ii, k])
    two_bwd = np.where(k == ii, np.nan, B[k, ii])
    is_near = np.zeros((K, K), bool)
    is_near[i, near] = True
    far = ~is_near & ~np.eye(K, dtype=bool)
    return NearTransitions(
        near=near, forward=B[i, near], reverse=B[near, i],
        two_step_forward=two_fwd, two_step_backward=two_bwd,
        chance=1.0 / (K - 1), chance_far=float(B[far].mean()) if far.any() else float("nan"),
    )


def empirical_transitions(states: np.ndarray, n_states: int) -> np.ndarray:
    """B (K, K) counted from a path: transitions between different states,
    rows normalised; a state never left in the path gets a uniform row."""
    s, _, _ = runs(_check_path(states, n_states))
    counts = np.zeros((n_states, n_states))
    np.add.at(counts, (s[:-1], s[1:]), 1.0)
    out = counts.sum(1, keepdims=True)
    uniform = (1.0 - np.eye(n_states)) / (n_states - 1)
    return np.where(out > 0, counts / np.where(out > 0, out, 1.0), uniform)


# ---- forward sequences ------------------------------------------------------

def relabel(states: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Path (T,) with each state replaced by its position in `order` (K,)."""
    order = np.asarray(order)
    K = len(order)
    if order.ndim != 1 or not np.array_equal(np.sort(order), np.arange(K)):
        raise ValueError(f"order must be a permutation of 0..{K - 1}")
    rank = np.empty(K, np.int64)
    rank[order] = np.arange(K)
    return rank[_check_path(states, K)]


def _increasing_run_lengths(seq: np.ndarray) -> np.ndarray:
    if len(seq) == 0:
        return np.zeros(0, np.int64)
    breaks = np.flatnonzero(seq[1:] <= seq[:-1]) + 1
    return np.diff(np.r_[0, breaks, len(seq)]).astype(np.int64)


def forward_sequence_lengths(states: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """Lengths (n_sequences,) int64 of the increasing sequences in a path.

    The path is relabelled by `order` (default: as is), collapsed to runs,
    and cut wherever the label does not increase; each piece is a forward
    sequence and its length counts states (a lone state = 1). The lengths
    sum to the number of runs.
    """
    s = _check_path(states) if order is None else relabel(states, order)
    return _increasing_run_lengths(runs(s)[0])


def sequence_length_histogram(lengths: np.ndarray, max_length: int | None = None) -> np.ndarray:
    """counts (max_length,) int64: counts[L - 1] = number of sequences of
    length L; longer ones are added to the last bin."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1 or np.any(lengths < 1):
        raise ValueError("lengths must be a 1-D array of positive integers")
    top = int(lengths.max(initial=1)) if max_length is None else int(max_length)
    if top < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    return np.bincount(np.minimum(lengths, top) - 1, minlength=top)[:top].astype(np.int64)


def shuffled_forward_lengths(
    states: np.ndarray, order: np.ndarray | None = None, seed: int = 0, n_shuffles: int = 10
) -> np.ndarray:
    """Chance forward-sequence lengths: the run-collapsed path with its runs
    put in random order (n_shuffles times, numpy seed), re-collapsed where
    equal states become neighbours. Keeps how often each state occurs, drops
    every temporal relation. Returns all lengths concatenated."""
    s = _check_path(states) if order is None else relabel(states, order)
    seq = runs(s)[0]
    rng = np.random.default_rng(seed)
    out = [forward_sequence_lengths(rng.permutation(seq)) for _ in range(n_shuffles)]
    return np.concatenate(out)


# ---- neural populations per state --------------------------------------------

@dataclass(frozen=True)
class StateResponses:
    """Neurons selected per state on training trials, shown on test trials.

    A trial is a run of one state; a neuron's response on it is its mean
    activity over the run's time points.
    trial_state, trial_start, trial_length (R,): the trials (steps).
    trial_split (R,): 0 train, 1 test, -1 dropped (mixed train/test frames).
    neurons (K, n_top): state k's selected neurons, best first (-1 if k has
      no training trial).
    population (K, R): mean response of state k's neurons on every trial
      (NaN for a state without neurons).
    response (K, K): population k averaged over the test trials of state l;
      the diagonal is a population on its own state, the rest the contrast
      (NaN where state l has no test trial).
    """

    trial_state: np.ndarray
    trial_start: np.ndarray
    trial_length: np.ndarray
    trial_split: np.ndarray
    neurons: np.ndarray
    population: np.ndarray
    response: np.ndarray


def _trial_split(state: np.ndarray, start: np.ndarray, length: np.ndarray,
                 train_mask: np.ndarray | None, T: int) -> np.ndarray:
    if train_mask is None:   # alternate each state's trials: even train, odd test
        nth = np.zeros(len(state), np.int64)
        for k in np.unique(state):
            nth[state == k] = np.arange(np.sum(state == k))
        return nth % 2
    mask = np.asarray(train_mask)
    if mask.shape != (T,) or mask.dtype != bool:
        raise ValueError(f"train_mask must be a bool array of shape ({T},)")
    frames_done = np.r_[0, np.cumsum(mask)]
    n_train = frames_done[start + length] - frames_done[start]
    return np.where(n_train == length, 0, np.where(n_train == 0, 1, -1))


def state_triggered_responses(
    states: np.ndarray,
    spks: np.ndarray,
    n_states: int,
    n_top: int = TOP_NEURONS,
    train_mask: np.ndarray | None = None,
    relative: bool = True,
) -> StateResponses:
    """Each state's most active neurons (on training trials) and their
    responses on test trials.

    states: (T,) path; spks: (n_neurons, T) activity on the same time steps.
    train_mask: (T,) bool, True = training frame; a trial is train if all its
      frames are, test if none are, else dropped. Default: each state's
      trials alternate train, test, train, ...
    relative: rank neurons by mean training response in the state minus
      their mean over training trials of all other states (so neurons that
      are simply always active are not picked); False ranks the raw mean.
    """
    s = _check_path(states, n_states)
    x = np.asarray(spks, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(s):
        raise ValueError(f"spks must be (n_neurons, {len(s)}), got {x.shape}")
    if not 1 <= n_top <= x.shape[0]:
        raise ValueError(f"n_top must be in 1..{x.shape[0]}, got {n_top}")
    state, start, length = runs(s)
    split = _trial_split(state, start, length, train_mask, len(s))
    csum = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x, axis=1)], axis=1)
    resp = (csum[:, start + length] - csum[:, start]) / length     # (n_neurons, R)

    neurons = np.full((n_states, n_top), -1, np.int64)
    population = np.full((n_states, len(state)), np.nan)
    train = split == 0
    for k in range(n_states):
        mine = train & (state == k)
        if not mine.any():
            continue
        score = resp[:, mine].mean(1)
        others = train & (state != k)
        if relative and others.any():
            score = score - resp[:, others].mean(1)
        neurons[k] = np.argsort(-score, kind="stable")[:n_top]
        population[k] = resp[neurons[k]].mean(0)
    response = np.full((n_states, n_states), np.nan)
    for l in range(n_states):
        test_l = (split == 1) & (state == l)
        if test_l.any():
            response[:, l] = population[:, test_l].mean(1)
    return StateResponses(state, start, length, split, neurons, population, response)
