"""HMM analyses of SPEC section 5 (lifetimes, B, sparsity, near-pair transitions,
state sorting, forward sequences, controls, state-triggered neurons) against
hand counts, brute force and planted ground truth."""

import itertools

import numpy as np
import pytest

from jfacemap.hmm.analysis import (
    empirical_transitions, forward_sequence_lengths, near_states, near_transitions,
    off_diagonal_transitions, relabel, run_lengths, runs, sequence_length_histogram,
    shuffled_forward_lengths, state_lifetimes, state_triggered_responses, transition_sparsity,
)
from jfacemap.hmm.controls import (
    planted_sequence_transitions, sample_markov_chain, shuffle_time, symmetrize_transitions,
)
from jfacemap.hmm.sorting import (
    block_move_gains, forward_template, sort_states, sorting_objective, swap_gains,
)


def random_transitions(rng, K, p_stay=None):
    A = rng.gamma(0.3, size=(K, K))
    np.fill_diagonal(A, 0.0)
    A /= A.sum(1, keepdims=True)
    p = rng.uniform(0.5, 0.95, K) if p_stay is None else np.full(K, p_stay)
    return p[:, None] * np.eye(K) + (1 - p)[:, None] * A


def chain_transitions(K):
    """Non-circular forward chain 0 -> 1 -> ... -> K-1 (with skips), B only."""
    B = np.full((K, K), 0.05 / (K - 3))
    for i in range(K):
        B[i, i] = 0.0
        if i + 1 < K:
            B[i, i + 1] = 0.65
        if i + 2 < K:
            B[i, i + 2] = 0.3
    return B / B.sum(1, keepdims=True)


# ---- durations ---------------------------------------------------------------

def test_runs_and_run_lengths_match_hand_counts():
    path = np.array([2, 2, 0, 0, 0, 1, 2, 2, 2, 2, 0])
    state, start, length = runs(path)
    np.testing.assert_array_equal(state, [2, 0, 1, 2, 0])
    np.testing.assert_array_equal(start, [0, 2, 5, 6, 10])
    np.testing.assert_array_equal(length, [2, 3, 1, 4, 1])
    per_state = run_lengths(path, n_states=4)
    np.testing.assert_array_equal(per_state[0], [3, 1])
    np.testing.assert_array_equal(per_state[1], [1])
    np.testing.assert_array_equal(per_state[2], [2, 4])
    assert per_state[3].size == 0
    inner = run_lengths(path, n_states=4, drop_edges=True)
    np.testing.assert_array_equal(inner[2], [4])
    np.testing.assert_array_equal(inner[0], [3])
    with pytest.raises(ValueError, match="states"):
        run_lengths(path, n_states=2)


def test_lifetimes_formulas_and_sampled_mean_run_length():
    A = np.array([[0.9, 0.05, 0.05], [0.25, 0.5, 0.25], [0.01, 0.01, 0.98]])
    p = np.diag(A)
    np.testing.assert_allclose(state_lifetimes(A, dt=0.2), 0.2 / (1 - p))
    np.testing.assert_allclose(state_lifetimes(A, 0.2, "paper"), -0.2 * np.log(1 - p))
    np.testing.assert_allclose(state_lifetimes(A, 0.2, "exponential"), -0.2 / np.log(p))
    # the "mean" lifetime is the mean run length of paths sampled from A
    path = sample_markov_chain(A, 200_000, seed=3)
    for k, lengths in enumerate(run_lengths(path, 3, drop_edges=True)):
        assert abs(lengths.mean() - 1 / (1 - p[k])) < 0.05 * (1 / (1 - p[k]))
    with pytest.raises(ValueError, match="sum to 1"):
        state_lifetimes(A * 0.9)
    with pytest.raises(ValueError, match="kind"):
        state_lifetimes(A, kind="median")


# ---- B, sparsity, near states -----------------------------------------------------

def test_off_diagonal_transitions_zero_diagonal_rows_sum_to_one():
    rng = np.random.default_rng(0)
    A = random_transitions(rng, 8)
    B = off_diagonal_transitions(A)
    np.testing.assert_array_equal(np.diag(B), 0.0)
    np.testing.assert_allclose(B.sum(1), 1.0)
    for i, j in [(0, 3), (5, 1), (7, 6)]:
        assert B[i, j] == pytest.approx(A[i, j] / (1 - A[i, i]))
    with pytest.raises(ValueError, match="never leave"):
        off_diagonal_transitions(np.eye(3))


def test_sparsity_curve_monotone_and_ends_at_one():
    rng = np.random.default_rng(1)
    B = off_diagonal_transitions(random_transitions(rng, 10))
    curves, mean = transition_sparsity(B)
    assert curves.shape == (10, 9) and mean.shape == (9,)
    assert np.all(np.diff(curves, axis=1) >= -1e-15)
    np.testing.assert_allclose(curves[:, -1], 1.0)
    np.testing.assert_allclose(curves[:, 0], B.max(1))
    np.testing.assert_allclose(mean, curves.mean(0))
    # a uniform B is the densest possible: n nearest states hold n / (K-1)
    uniform = (1 - np.eye(10)) / 9
    np.testing.assert_allclose(transition_sparsity(uniform)[1], np.arange(1, 10) / 9)
    assert np.all(mean >= transition_sparsity(uniform)[1] - 1e-12)


def test_near_states_are_top_of_argsort_without_self():
    rng = np.random.default_rng(2)
    B = off_diagonal_transitions(random_transitions(rng, 9))
    near = near_states(B, n=5)
    for i in range(9):
        expected = [j for j in np.argsort(-B[i], kind="stable") if j != i][:5]
        np.testing.assert_array_equal(near[i], expected)
    with pytest.raises(ValueError, match="n must be"):
        near_states(B, n=9)


def test_near_transitions_match_brute_force():
    rng = np.random.default_rng(3)
    K, n = 8, 3
    B = off_diagonal_transitions(random_transitions(rng, K))
    nt = near_transitions(B, n=n)
    fwd, rev, two_f, two_b, far = [], [], [], [], []
    for i in range(K):
        nears = sorted(range(K), key=lambda j: (-B[i, j], j) if j != i else (np.inf, j))[:n]
        for j in range(K):
            if j != i and j not in nears:
                far.append(B[i, j])
        for j in nears:
            fwd.append(B[i, j])
            rev.append(B[j, i])
            nears_j = sorted(range(K), key=lambda k: (-B[j, k], k) if k != j else (np.inf, k))[:n]
            for k in nears_j:
                if k != i:
                    two_f.append(B[i, k])
                    two_b.append(B[k, i])
    s = nt.summary()
    assert s["forward"] == pytest.approx(np.mean(fwd))
    assert s["reverse"] == pytest.approx(np.mean(rev))
    assert s["two_step_forward"] == pytest.approx(np.mean(two_f))
    assert s["two_step_backward"] == pytest.approx(np.mean(two_b))
    assert s["chance"] == pytest.approx(1 / (K - 1))
    assert s["chance_far"] == pytest.approx(np.mean(far))
    assert np.isnan(nt.two_step_backward).sum() == K * n * n - len(two_b)


def test_near_transitions_of_a_forward_chain_are_asymmetric():
    A = planted_sequence_transitions(20, p_stay=0.7, forward=(0.6, 0.3))
    nt = near_transitions(off_diagonal_transitions(A))
    s = nt.summary(weighted=True)
    assert s["two_step_forward"] > 2 * s["chance"]       # i -> i+2 shortcut
    assert s["reverse"] < s["chance"] and s["two_step_backward"] < s["chance"]
    # weighted by B[i, j] B[j, k]: brute force over all triples
    B = off_diagonal_transitions(A)
    num, den = 0.0, 0.0
    for i in range(20):
        for j in nt.near[i]:
            for k in nt.near[j]:
                if k != i:
                    num += B[i, j] * B[j, k] * B[k, i]
                    den += B[i, j] * B[j, k]
    assert s["two_step_backward"] == pytest.approx(num / den)
    sym = near_transitions(off_diagonal_transitions(symmetrize_transitions(A))).summary(True)
    assert sym["reverse"] > 3 * sym["chance"] and sym["two_step_backward"] > 2 * sym["chance"]


# ---- sorting -----------------------------------------------------------------------

def test_template_puts_highest_scores_just_above_diagonal():
    F = forward_template(6)
    assert np.all(np.tril(F) == 0)
    np.testing.assert_allclose(np.diag(F, 1), 2 * np.log(6))
    assert np.all(np.triu(F, 1)[np.triu_indices(6, 1)] > 0)
    assert np.all(np.diff(F[0, 1:]) < 0)   # further ahead scores less


def test_closed_form_move_gains_match_recomputed_objective():
    rng = np.random.default_rng(4)
    K = 7
    B = rng.random((K, K))
    order = rng.permutation(K)
    base = sorting_objective(B, order)
    gains = swap_gains(B, order)
    pos = {s: a for a, s in enumerate(order)}
    for s, t in itertools.permutations(range(K), 2):
        swapped = order.copy()
        swapped[pos[s]], swapped[pos[t]] = t, s
        assert gains[s, t] == pytest.approx(sorting_objective(B, swapped) - base, abs=1e-10)
    bgains, moves = block_move_gains(B, order)
    assert len(moves) == K * (K + 1) * (K - 1) // 6
    for g, (p, q, r) in zip(bgains, moves):
        moved = np.r_[order[:p], order[q:r], order[p:q], order[r:]]
        assert g == pytest.approx(sorting_objective(B, moved) - base, abs=1e-10)


def test_sort_recovers_planted_chain_and_never_lowers_objective():
    rng = np.random.default_rng(5)
    K = 16
    B = chain_transitions(K)
    perm = rng.permutation(K)                 # state perm[a] of Bp is chain state a
    Bp = B[np.ix_(perm, perm)]
    order = sort_states(Bp, n_restarts=1, seed=0)
    planted = np.argsort(perm)                # positions of chain states 0..K-1 in Bp
    assert sorting_objective(Bp, order) >= sorting_objective(Bp, planted) - 1e-9
    np.testing.assert_array_equal(perm[order], np.arange(K))
    # from any start the search only climbs; same seed, same answer
    for seed in range(3):
        start = np.random.default_rng(seed).permutation(K)
        again = sort_states(Bp, init=start, seed=seed)
        assert sorting_objective(Bp, again) >= sorting_objective(Bp, start)
    np.testing.assert_array_equal(sort_states(Bp, n_restarts=1, seed=0), order)


def test_sort_finds_the_optimum_of_a_small_random_matrix():
    rng = np.random.default_rng(6)
    B = off_diagonal_transitions(random_transitions(rng, 7))
    best = max(sorting_objective(B, np.array(p)) for p in itertools.permutations(range(7)))
    assert sorting_objective(B, sort_states(B, n_restarts=3)) == pytest.approx(best)


# ---- forward sequences -------------------------------------------------------------

def test_forward_sequence_lengths_on_hand_made_paths():
    path = np.array([0, 0, 1, 2, 2, 5, 3, 4, 4, 1, 0, 0, 2])
    # runs 0 1 2 5 3 4 1 0 2 -> increasing pieces [0 1 2 5] [3 4] [1] [0 2]
    lengths = forward_sequence_lengths(path)
    np.testing.assert_array_equal(lengths, [4, 2, 1, 2])
    assert lengths.sum() == len(runs(path)[0])
    np.testing.assert_array_equal(sequence_length_histogram(lengths), [1, 2, 0, 1])
    np.testing.assert_array_equal(sequence_length_histogram(lengths, max_length=2), [1, 3])
    # relabelling by an order: order[a] = state at position a
    order = np.array([2, 1, 0])
    np.testing.assert_array_equal(relabel(np.array([0, 1, 2]), order), [2, 1, 0])
    np.testing.assert_array_equal(forward_sequence_lengths(np.array([0, 1, 2, 0]), order),
                                  [1, 1, 2])


def test_planted_sequences_detected_and_absent_in_symmetric_control():
    K = 20
    A = planted_sequence_transitions(K, p_stay=0.8, forward=(0.6, 0.3))
    A_sym = symmetrize_transitions(A)
    B_sym = off_diagonal_transitions(A_sym)
    np.testing.assert_allclose(B_sym, B_sym.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(A_sym), np.diag(A))   # same lifetimes

    stats = {}
    for name, mat in [("planted", A), ("symmetric", A_sym)]:
        perm = np.random.default_rng(7).permutation(K)    # hide the labels
        path = np.argsort(perm)[sample_markov_chain(mat, 30_000, seed=8)]
        B_emp = empirical_transitions(path, K)
        order = sort_states(B_emp)
        lengths = forward_sequence_lengths(path, order)
        chance = shuffled_forward_lengths(path, order, seed=9, n_shuffles=3)
        s = near_transitions(B_emp).summary(weighted=True)
        stats[name] = (lengths.mean() / chance.mean(), s["reverse"] / s["forward"], lengths)
    ratio, asym, lengths = stats["planted"]
    assert ratio > 3 and asym < 0.1 and np.percentile(lengths, 90) >= 8
    ratio, asym, _ = stats["symmetric"]
    assert ratio < 1.4 and 0.7 < asym < 1.3


def test_shuffle_time_permutes_blocks_and_destroys_sequences():
    x = np.arange(10)
    y = shuffle_time(x, seed=0, block=3)
    np.testing.assert_array_equal(np.sort(y), x)
    blocks, i = [], 0
    while i < len(y):          # y must be whole blocks [0 1 2] [3 4 5] [6 7 8] [9]
        assert y[i] % 3 == 0
        size = min(3, 10 - y[i])
        np.testing.assert_array_equal(y[i:i + size], np.arange(y[i], y[i] + size))
        blocks.append(int(y[i]))
        i += size
    assert sorted(blocks) == [0, 3, 6, 9] and blocks != [0, 3, 6, 9]
    z = shuffle_time(np.arange(20).reshape(2, 10), seed=1, axis=1)
    np.testing.assert_array_equal(z[1] - z[0], 10)     # same permutation for all rows
    A = planted_sequence_transitions(12, p_stay=0.5)
    path = sample_markov_chain(A, 20_000, seed=2)
    shuffled = shuffle_time(path, seed=3)
    assert forward_sequence_lengths(path).mean() > 3 * forward_sequence_lengths(shuffled).mean()
    mean_run = lambda p: runs(p)[2].mean()
    assert mean_run(shuffled) < 0.6 * mean_run(path)   # shorter lifetimes


# ---- neural populations per state ------------------------------------------------------

def test_state_triggered_responses_select_planted_neurons_and_generalise():
    rng = np.random.default_rng(10)
    K, n_neurons, n_top = 5, 60, 4
    A = planted_sequence_transitions(K, p_stay=0.85, forward=(0.7,))
    path = sample_markov_chain(A, 6000, seed=11)
    tuned = {k: np.arange(k * n_top, (k + 1) * n_top) for k in range(K)}
    spks = rng.gamma(2.0, 1.0, size=(n_neurons, len(path)))
    spks[50:] += 3.0                                      # always-on neurons, not tuned
    for k, idx in tuned.items():
        spks[np.ix_(idx, np.flatnonzero(path == k))] += 2.0
    res = state_triggered_responses(path, spks, K, n_top=n_top)
    for k in range(K):
        assert set(res.neurons[k]) == set(tuned[k])
    diag = np.diag(res.response)
    off = res.response[~np.eye(K, dtype=bool)].reshape(K, K - 1)
    assert np.all(diag > off.max(1) + 1.5)
    # trials: alternate train/test per state, responses are run means
    assert set(np.unique(res.trial_split)) == {0, 1}
    t = 3
    a, b = res.trial_start[t], res.trial_start[t] + res.trial_length[t]
    k = res.trial_state[t]
    assert res.population[k, t] == pytest.approx(spks[res.neurons[k], a:b].mean())
    # a time-based split: trials straddling the boundary are dropped
    mask = np.arange(len(path)) < 3000
    res2 = state_triggered_responses(path, spks, K, n_top=n_top, train_mask=mask)
    straddle = (res2.trial_start < 3000) & (res2.trial_start + res2.trial_length > 3000)
    np.testing.assert_array_equal(res2.trial_split == -1, straddle)
    off2 = np.nanmax(np.where(np.eye(K, dtype=bool), np.nan, res2.response), axis=1)
    assert np.all(np.diag(res2.response) > off2 + 1.5)
    # raw ranking picks the always-on neurons instead
    raw = state_triggered_responses(path, spks, K, n_top=n_top, relative=False)
    assert np.all(raw.neurons >= 50)


def test_run_hmm_gives_state_triggered_responses_of_the_neurons_it_is_given(tmp_path):
    """run_hmm(responses=...): block-means the activity like the features, picks each fitted state's
    neurons on training trials (runs in the training blocks) and scores them on the test blocks."""
    from jfacemap.hmm.pipeline import run_hmm
    from jfacemap.io.hmm_outputs import write_hmm_outputs

    rng = np.random.default_rng(20)
    K, D, n_top, factor = 3, 4, 3, 2
    path = sample_markov_chain(planted_sequence_transitions(K, p_stay=0.95, forward=(0.8,)), 4000, seed=21)
    means = 4.0 * rng.standard_normal((K, D))
    features = means[path] + rng.standard_normal((len(path), D))
    spks = rng.gamma(2.0, 1.0, size=(len(path), K * n_top + 20))  # (T, n_neurons), like the features
    for k in range(K):
        spks[np.ix_(np.flatnonzero(path == k), np.arange(k * n_top, (k + 1) * n_top))] += 3.0
    result = run_hmm(features, 50.0, K, downsample_factor=factor, max_steps=300, refine=0, n_sample=5,
                     responses=spks)
    res = result.responses
    assert res.population.shape == (K, len(res.trial_state)) and res.neurons.shape == (K, 10)
    train_mask = np.zeros(len(result.states), bool)
    for s in result.train:
        train_mask[s] = True
    all_train = [train_mask[a:a + n].all() for a, n in zip(res.trial_start, res.trial_length)]
    np.testing.assert_array_equal(res.trial_split == 0, all_train)
    true_steps = path[::factor][: len(result.states)]
    for k in range(K):  # fitted state k is a relabelled true state: its tuned neurons come first
        truth = np.bincount(true_steps[result.states == k], minlength=K).argmax()
        assert set(res.neurons[k, :n_top]) == set(range(truth * n_top, (truth + 1) * n_top))
    off = res.response[~np.eye(K, dtype=bool)].reshape(K, K - 1)
    assert np.all(np.diag(res.response) > off.max(1) + 0.2)  # 3 tuned (+3) of the 10 neurons shown
    summary = result.summary()
    assert summary["state_response_own"] > summary["state_response_other"] + 0.3
    arrays = np.load(write_hmm_outputs(tmp_path / "hmm", result)["analysis_npz"])
    np.testing.assert_array_equal(arrays["response_neurons"], res.neurons)
    with pytest.raises(ValueError, match=r"responses must be \(T=4000, n_neurons\)"):
        run_hmm(features, 50.0, K, responses=spks[:-1])
