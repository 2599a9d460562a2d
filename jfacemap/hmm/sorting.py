"""Order HMM states so forward transitions sit just above the diagonal (SPEC 5).

The paper sorts states "with Rastermap on B": maximise the similarity
sum_ab B[o_a, o_b] F[a, b] of the re-ordered off-diagonal transition matrix
B (rows = from, columns = to) to a template F that rewards transitions from
a state to one a little later in the order.

The paper writes F_ji = -log((i - j)^2) for j < i, 0 otherwise. Taken with
integer distances that is 0 for neighbours and negative further away, so
backward transitions (F = 0) would score as well as the best forward ones and
the optimum would not favour forward order at all. Rastermap measures
distances between positions placed on [0, 1) (position a -> a / K), which
makes the template positive and largest next to the diagonal. We use that:

    F[a, b] = -log(((b - a) / K)^2) = 2 log(K / (b - a))   for b > a,
    F[a, b] = 0                                              otherwise,

with the paper's convention rows = "from", columns = "to", so F lives above
the diagonal: a transition to the next state in the order scores 2 log K, one
K - 1 places ahead scores 2 log(K / (K - 1)) ~ 0, and any backward one 0.

The optimiser is a deterministic best-improvement local search over three
move kinds: exchanging two states, moving any segment to another place (both
scored for all candidates at once in closed form, O(K^3)), and reversing a
segment in place (scored exactly). It starts from a greedy chain, any
`init` and `n_restarts` seeded random orders. A move is taken
only when the exactly recomputed objective rises, so the result never scores
below any starting order.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = [
    "forward_template", "sorting_objective", "swap_gains", "block_move_gains", "sort_states",
]

_BATCH_ELEMENTS = 4_000_000   # candidate orders x K x K evaluated at once


def forward_template(n_states: int) -> np.ndarray:
    """The sorting template F (K, K) float64, rows = from position, cols = to.

    F[a, b] = 2 log(K / (b - a)) for b > a, else 0 (see the module docstring).
    """
    if n_states < 2:
        raise ValueError(f"need at least 2 states to sort, got {n_states}")
    pos = np.arange(n_states)
    d = pos[None, :] - pos[:, None]
    with np.errstate(divide="ignore"):
        return np.where(d > 0, 2.0 * np.log(n_states / np.maximum(d, 1)), 0.0)


def _check_square(B: np.ndarray) -> np.ndarray:
    B = np.asarray(B, dtype=np.float64)
    if B.ndim != 2 or B.shape[0] != B.shape[1]:
        raise ValueError(f"transition matrix must be square (K, K), got shape {B.shape}")
    if not np.all(np.isfinite(B)):
        raise ValueError("transition matrix has non-finite values")
    return B


def _check_order(order: np.ndarray, n_states: int) -> np.ndarray:
    order = np.asarray(order)
    if order.shape != (n_states,) or not np.array_equal(np.sort(order), np.arange(n_states)):
        raise ValueError(f"order must be a permutation of 0..{n_states - 1}")
    return order.astype(np.int64)


def sorting_objective(B: np.ndarray, order: np.ndarray) -> float:
    """Similarity sum_ab B[order[a], order[b]] F[a, b] of the re-ordered B to F.

    B: (K, K) transitions, rows = from (its diagonal is ignored: F is 0 there).
    order: (K,) permutation; order[a] = the state shown at position a.
    """
    B = _check_square(B)
    order = _check_order(order, B.shape[0])
    return float(np.sum(B[np.ix_(order, order)] * forward_template(B.shape[0])))


def swap_gains(B: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Objective change (K, K) from exchanging the positions of states s and t.

    Closed form in O(K^3): with W[u, v] = F[pos u, pos v] (diagonal of B
    zeroed), G = B W^T and H = B^T W,
      gain[s, t] = G[s,t] + G[t,s] - G[s,s] - G[t,t]
                 + H[s,t] + H[t,s] - H[s,s] - H[t,t]
                 + (B[s,t] + B[t,s]) (W[s,t] + W[t,s]).
    Indexed by state, not position; the diagonal is 0.
    """
    B = _check_square(B).copy()
    np.fill_diagonal(B, 0.0)
    order = _check_order(order, B.shape[0])
    pos = np.empty_like(order)
    pos[order] = np.arange(len(order))
    W = forward_template(len(order))[np.ix_(pos, pos)]
    G, H = B @ W.T, B.T @ W
    g, h = np.diag(G), np.diag(H)
    gain = (G + G.T - g[:, None] - g[None, :] + H + H.T - h[:, None] - h[None, :]
            + (B + B.T) * (W + W.T))
    np.fill_diagonal(gain, 0.0)
    return gain


def _objectives(B: np.ndarray, F: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """Objective of each candidate order (M, K) -> (M,), in memory-bounded batches."""
    K = B.shape[0]
    step = max(1, _BATCH_ELEMENTS // (K * K))
    out = np.empty(len(orders))
    for i in range(0, len(orders), step):
        o = orders[i:i + step]
        out[i:i + step] = np.einsum("mab,ab->m", B[o[:, :, None], o[:, None, :]], F)
    return out


@lru_cache(maxsize=4)
def _block_moves(n_states: int) -> np.ndarray:
    """All (p, q, r) with 0 <= p < q < r <= K, (M, 3) int64, read-only."""
    p, q, r = np.ogrid[:n_states + 1, :n_states + 1, :n_states + 1]
    moves = np.argwhere((p < q) & (q < r)).astype(np.int64)
    moves.flags.writeable = False
    return moves


def block_move_gains(B: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Objective change of every move that exchanges two adjacent blocks of
    positions, X = [p, q) and Y = [q, r) -> order[:p] + Y + X + order[r:].

    Such moves are all single insertions and all segment moves. Returns
    (gains (M,), moves (M, 3) read-only = p, q, r). Pairs inside X, inside Y or both
    outside keep their distances; the rest change by a block shift s, so with
    T_s[x, y] = M[x, y] f(y - x + s) (M the re-ordered B, f(d) = F's value at
    distance d) every term is a rectangle sum of some T_s, read off 2-D
    prefix sums: O(K^3) time and memory for all O(K^3) moves.
    """
    B = _check_square(B).copy()
    np.fill_diagonal(B, 0.0)
    K = B.shape[0]
    order = _check_order(order, K)
    M = B[np.ix_(order, order)]
    d = np.arange(-2 * K, 2 * K + 1)
    with np.errstate(divide="ignore"):
        f = np.where(d > 0, 2.0 * np.log(K / np.maximum(d, 1)), 0.0)
    shifts = np.arange(-K, K + 1)
    pos = np.arange(K)
    dist = pos[None, :] - pos[:, None]
    T = M[None] * f[dist[None] + shifts[:, None, None] + 2 * K]
    P = np.zeros((len(shifts), K + 1, K + 1))
    P[:, 1:, 1:] = T.cumsum(1).cumsum(2)
    del T

    def rect(s, r0, r1, c0, c1):
        i = s + K
        return P[i, r1, c1] - P[i, r0, c1] - P[i, r1, c0] + P[i, r0, c0]

    p, q, r = _block_moves(K).T
    nx, ny, zero, end = q - p, r - q, np.zeros_like(p), np.full_like(p, K)
    gains = (rect(ny, zero, p, p, q) - rect(0, zero, p, p, q)       # left of X: X moves +ny
             + rect(-ny, p, q, r, end) - rect(0, p, q, r, end)      # X to right: X moves +ny
             + rect(-nx, zero, p, q, r) - rect(0, zero, p, q, r)    # left of Y: Y moves -nx
             + rect(nx, q, r, r, end) - rect(0, q, r, r, end)       # Y to right: Y moves -nx
             + rect(nx + ny, q, r, p, q) - rect(0, p, q, q, r))     # X, Y change order
    return gains, np.stack([p, q, r], axis=1)


def _apply_block_move(order: np.ndarray, p: int, q: int, r: int) -> np.ndarray:
    return np.concatenate([order[:p], order[q:r], order[p:q], order[r:]])


def _reversals(order: np.ndarray) -> np.ndarray:
    """All orders (M, K) with one segment of length >= 2 reversed in place."""
    K = len(order)
    cands = []
    for p in range(K - 1):
        for q in range(p + 2, K + 1):
            c = order.copy()
            c[p:q] = order[p:q][::-1]
            cands.append(c)
    return np.asarray(cands)


def _local_search(B: np.ndarray, F: np.ndarray, order: np.ndarray,
                  max_moves: int) -> tuple[np.ndarray, float]:
    """Best-improvement search over swaps and block moves (screened in closed
    form), then in-place segment reversals; every move is re-scored exactly and
    taken only if the objective rises."""
    score = float(_objectives(B, F, order[None])[0])
    for _ in range(max_moves):
        tol = 1e-12 * max(1.0, abs(score))
        cands = []
        gains = swap_gains(B, order)
        s, t = np.unravel_index(np.argmax(gains), gains.shape)
        if gains[s, t] > tol:
            swapped = order.copy()
            swapped[order == s], swapped[order == t] = t, s
            cands.append((gains[s, t], swapped))
        bgains, moves = block_move_gains(B, order)
        best = int(np.argmax(bgains))
        if bgains[best] > tol:
            cands.append((bgains[best], _apply_block_move(order, *moves[best])))
        cands.sort(key=lambda c: -c[0])
        for _, cand in cands:
            new = float(_objectives(B, F, cand[None])[0])
            if new > score + tol:
                order, score = cand, new
                break
        else:
            revs = _reversals(order)
            vals = _objectives(B, F, revs)
            i = int(np.argmax(vals))
            if vals[i] <= score + tol:
                return order, score
            order, score = revs[i], float(vals[i])
    return order, score


def _greedy_chain(B: np.ndarray) -> np.ndarray:
    """Start at the state with the least incoming flow; repeatedly append the
    unvisited state it most likely goes to next."""
    K = B.shape[0]
    inflow = B.sum(0)
    visited = np.zeros(K, bool)
    cur = int(np.argmin(inflow))
    chain = [cur]
    visited[cur] = True
    for _ in range(K - 1):
        nxt = np.where(visited, -np.inf, B[cur])
        if nxt.max() <= 0:   # nowhere new to go: restart from the least-entered
            nxt = np.where(visited, -np.inf, -inflow)
        cur = int(np.argmax(nxt))
        chain.append(cur)
        visited[cur] = True
    return np.asarray(chain, dtype=np.int64)


def sort_states(
    B: np.ndarray,
    *,
    init: np.ndarray | None = None,
    n_restarts: int = 0,
    seed: int = 0,
    max_moves: int = 10_000,
) -> np.ndarray:
    """State order (K,) int64 maximising `sorting_objective(B, order)`.

    B: (K, K) off-diagonal transition matrix, rows = from (e.g. from
    `off_diagonal_transitions`). order[a] = the state put at position a, so
    B[np.ix_(order, order)] is the re-ordered matrix and forward sequences
    run up the new labels. Starts from a greedy chain (follow each state's
    most likely successor), `init` if given, and `n_restarts` random orders
    (numpy seed `seed`); the result scores at least as high as every start.
    Deterministic. max_moves: cap on improving moves per start.
    Cost: each move is O(K^3) time and O(K^3) memory (2 K^3 floats); from the
    greedy chain K = 50 takes well under a second, K = 200 tens of seconds;
    each random restart costs more (it needs more moves).
    """
    B = _check_square(B).copy()
    np.fill_diagonal(B, 0.0)
    K = B.shape[0]
    F = forward_template(K)
    if n_restarts < 0:
        raise ValueError(f"n_restarts must be >= 0, got {n_restarts}")
    starts = [_greedy_chain(B)]
    if init is not None:
        starts.insert(0, _check_order(init, K))
    rng = np.random.default_rng(seed)
    starts += [rng.permutation(K) for _ in range(n_restarts)]
    best_order, best_score = None, -np.inf
    for start in starts:
        order, score = _local_search(B, F, start, max_moves)
        if score > best_score:
            best_order, best_score = order, score
    return best_order
