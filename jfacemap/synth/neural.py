"""Synthetic neurons at ~3 Hz driven by the behaviour of a synthetic session, with known ground truth.

    sim = simulate_neural(n_neurons=10_000, duration_s=3600.0, seed=0)
    sim.spks            # (n_neurons, n_neural_frames) float32
    ground_truth_ve(sim, test_idx)["best_ve"]   # per neuron, on the test frames

Each neuron i is  spks_i(t) = baseline_i + b_i(t) + s_i(t) + e_i(t)  with

* b_i = sum_m A_im f_m(t): M behavioural factors, each a non-linear, temporally
  filtered function of the z-scored 22 analysis coordinates x (50 Hz) built
  inside the deep encoder's function class (SPEC 3), so the best prediction is
  reachable:  f_m = phi_m(h_m * (w_m . x)) with w_m a projection, h_m one of 7
  causal kernels shorter than 2 s and phi_m a rectification (|u - theta|,
  relu(u - theta), or relu(|cos-Gabor| + |sin-Gabor| - theta), an envelope of a
  whisking/sniffing band).  f_m is read at the neural frame time (linear
  interpolation between video frames; the band energies keep a small ripple).
  A linear model of 100-ms-smoothed coordinates reaches ~1/3 of best_ve.
  With `linear=True`, f_m = w_m . g(x) instead, g = 100 ms Gaussian smoothing:
  exactly the linear baseline's input, so linear and deep models should tie.
* s_i = sum_k C_ik z_k(t): K slow shared latents (OU processes at the neural
  rate, 1-10 s), made orthogonal to the behaviour factors: behaviour cannot
  predict them, peers can.
* e_i: private white noise, orthogonal to the factors and latents.

Over the whole recording the three parts are therefore uncorrelated and
best_ve = var(b)/var(spks), explainable_ve = var(b + s)/var(spks) hold
exactly (up to float32 rounding); on a subset of frames `ground_truth_ve`
recomputes them from the compact components.  Loadings come from spatial
patches (~250 um for behaviour, ~400 um for latents) with a preferred factor,
so neighbouring neurons share tuning: clusters are local and a spatial-strip
peer prediction works.  The behaviour is `make_session(len(behavior_times),
seed, fps=video_fps)`, so the matching video can be rendered.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import lfilter, oaconvolve

from jfacemap import DEFAULT_FPS
from jfacemap.io.behavior import keypoint_coordinates
from jfacemap.series import zscore
from jfacemap.skeleton import ANALYSIS_BODYPARTS, select_bodyparts
from jfacemap.synth.session import SyntheticSession, make_session

# Behaviour recorded before the first and after the last neural frame: covers the
# 2 s kernels and the deep encoder's +-2 s window without edge effects.
LEAD_S, TAIL_S = 4.0, 3.0
_BLOCK = 1000  # neurons generated together (one random stream each block)
_TAG = 0x6E657572  # separates the neural random streams from the behaviour's

# name, coordinate group, projection, kernel, non-linearity, threshold (in s.d.).
# Thresholds are tuned so that a linear model of 100-ms-smoothed coordinates
# reaches ~1/3 of the best prediction (1 h recordings; the factors range from
# ~0.9 linear, whisk_setpoint, to ~0, the motion energies).
NONLINEAR_FACTORS = (
    ("whisk_energy", "whisker", "w0", "whisk", "energy", 0.5),
    ("whisk_protraction", "whisker", "w0", "slow", "relu", 1.0),
    ("whisk_setpoint", "whisker", "w0", "fast", "relu", -0.5),
    ("whisk_motion", "whisker", "w0", "change", "abs", 0.0),
    ("sniff_energy", "nose", "n0", "sniff", "energy", 0.0),
    ("nose_motion", "nose", "n1", "change", "abs", 0.0),
    ("nose_position", "nose", "n2", "slow", "abs", 1.0),
    ("nose_fast", "nose", "n1", "fast", "relu", 0.5),
    ("eye_transient", "eye", "e0", "fast", "relu", 0.5),
    ("eye_motion", "eye", "e1", "change", "abs", 0.0),
    ("eye_position", "eye", "e2", "slow", "abs", 1.0),
    ("eye_offset", "eye", "e3", "slow", "relu", 0.0),
    ("face_fast", "all", "a0", "fast", "abs", 0.0),
    ("face_slow", "all", "a1", "slow", "relu", 0.5),
)
LINEAR_FACTORS = tuple(
    (f"linear_{p}", group, p, "gauss100ms", "identity", 0.0)
    for group, p in (("whisker", "w0"), ("nose", "n0"), ("nose", "n1"), ("eye", "e0"), ("eye", "e1"), ("all", "a0"))
)
_GROUPS = {"eye": slice(0, 8), "nose": slice(8, 16), "whisker": slice(16, 22), "all": slice(0, 22)}


@dataclass(frozen=True)
class NeuralSimulation:
    """A simulated recording and its ground truth.

    spks: (n_neurons, n_frames) float32 (a read-only `np.memmap` when written to `out`).
    xpos, ypos: (n_neurons,) float32 positions, um.
    neural_times: (n_frames,) float64 s;  behavior_times: (n_video_frames,) float64 s (same clock).
    keypoints: (n_video_frames, 15, 3) float32 x, y (pixels), likelihood; NaN where occluded.
    best_ve, explainable_ve: (n_neurons,) float64 fractions of variance on the whole recording.
    factors: (M, n_frames) float32 behaviour factors at the neural times (zero mean, unit s.d.).
    factor_loadings: (n_neurons, M) float32 A;  latents: (K, n_frames) float32;
    latent_loadings: (n_neurons, K) float32 C;  noise_sd, baseline: (n_neurons,) float32.
    """

    spks: np.ndarray
    xpos: np.ndarray
    ypos: np.ndarray
    neural_times: np.ndarray
    keypoints: np.ndarray
    bodyparts: tuple[str, ...]
    behavior_times: np.ndarray
    best_ve: np.ndarray
    explainable_ve: np.ndarray
    factors: np.ndarray
    factor_names: tuple[str, ...]
    factor_loadings: np.ndarray
    latents: np.ndarray
    latent_loadings: np.ndarray
    noise_sd: np.ndarray
    baseline: np.ndarray
    linear: bool
    seed: int

    @property
    def n_neurons(self) -> int:
        return int(self.spks.shape[0])

    @property
    def n_frames(self) -> int:
        return int(self.spks.shape[1])

    def behavior_drive(self, neurons=slice(None), time_idx=None) -> np.ndarray:
        """b = A F: (n_selected, n_times) float64, the best prediction from behaviour, less baseline."""
        f = self.factors if time_idx is None else self.factors[:, time_idx]
        return self.factor_loadings[neurons].astype(np.float64) @ f.astype(np.float64)


def ground_truth_ve(sim: NeuralSimulation, time_idx=None) -> dict[str, np.ndarray]:
    """Per-neuron {"best_ve", "explainable_ve"} (n_neurons,) on frames `time_idx` (default: all).

    best_ve = var(b)/var(spks), explainable_ve = var(b + s)/var(spks), variances over
    the selected frames; streamed over neurons, so a memmapped `spks` is fine.
    """
    idx = np.arange(sim.n_frames) if time_idx is None else np.asarray(time_idx)
    if idx.dtype == bool and idx.shape != (sim.n_frames,):
        raise ValueError(f"a boolean time_idx needs {sim.n_frames} values, got shape {idx.shape}")
    idx = np.flatnonzero(idx) if idx.dtype == bool else idx
    if idx.ndim != 1 or len(idx) < 2 or idx.min() < -sim.n_frames or idx.max() >= sim.n_frames:
        raise ValueError(f"time_idx must select at least 2 of the {sim.n_frames} neural frames")
    best, expl = np.empty(sim.n_neurons), np.empty(sim.n_neurons)
    for a in range(0, sim.n_neurons, _BLOCK):
        rows = slice(a, min(sim.n_neurons, a + _BLOCK))
        total_var = np.asarray(sim.spks[rows])[:, idx].var(axis=1, dtype=np.float64)
        var_b, var_bs = _drive_variances(sim.factor_loadings[rows], sim.latent_loadings[rows],
                                         sim.factors[:, idx], sim.latents[:, idx])
        best[rows], expl[rows] = var_b / total_var, var_bs / total_var
    return {"best_ve": best, "explainable_ve": expl}


def simulate_neural(
    n_neurons: int = 10_000,
    duration_s: float | None = 3600.0,
    seed: int = 0,
    *,
    neural_fps: float = 3.0,
    video_fps: float = DEFAULT_FPS,
    linear: bool = False,
    n_latents: int = 8,
    field_um: float = 1200.0,
    out: str | os.PathLike | None = None,
    session: SyntheticSession | None = None,
    explainable_beta: tuple[float, float] = (2.0, 7.0),
) -> NeuralSimulation:
    """Simulate `n_neurons` over `duration_s` of neural recording (deterministic per seed).

    Neural frames come every 1/neural_fps s (+-2 ms jitter at most), starting LEAD_S after
    the behaviour; the behaviour (video_fps) ends TAIL_S after the last neural frame.
    Neurons lie uniformly in a field_um x field_um field. With `out` (a .npy path)
    spks is written there block by block and returned as a read-only memmap, so
    memory does not grow with `n_neurons`.

    session: drive the neurons with this session's behaviour (e.g. the one whose video
    is tracked) instead of `make_session(..., seed)`; `duration_s` and `video_fps` then
    follow from it (pass duration_s=None): every neural frame that fits between
    LEAD_S after its first frame and TAIL_S before its last.

    explainable_beta: (a, b) of the Beta distribution of each neuron's explainable
    fraction of variance (default mean 2/9, as in cortex: most variance is private);
    a few minutes of recording need a larger share to show anything.
    """
    if session is not None:
        if duration_s is not None:
            raise ValueError("give duration_s or session, not both (the session sets the duration)")
        video_fps = session.fps
        usable_s = (session.n_frames - 1) / video_fps - LEAD_S - TAIL_S
        duration_s = (np.floor(usable_s * neural_fps) + 1) / neural_fps if usable_s > 0 else 0.0
    _check_args(n_neurons, duration_s, seed, neural_fps, video_fps, n_latents, field_um,
                None if session is None else f"a session of {session.n_frames} frames")
    rng = _streams(seed)
    n_frames = int(round(duration_s * neural_fps))
    n_video = int(np.ceil((LEAD_S + (n_frames - 1) / neural_fps + TAIL_S) * video_fps)) + 1
    if session is None:
        session = make_session(n_video, seed=seed, fps=video_fps)
    n_video = session.n_frames
    keypoints = session.keypoints()
    clocks = rng(0)
    clock_start = clocks.uniform(0.0, 100.0)  # both clocks share an arbitrary origin
    behavior_times = clock_start + np.arange(n_video) / video_fps
    jitter = clocks.uniform(-1.0, 1.0, n_frames) * min(0.002, 0.1 / neural_fps)
    neural_times = clock_start + LEAD_S + np.arange(n_frames) / neural_fps + jitter

    table = LINEAR_FACTORS if linear else NONLINEAR_FACTORS
    coords = analysis_coordinates(keypoints, session.bodyparts)
    factors = behavior_factors(coords, video_fps, behavior_times, neural_times, table, rng(1))
    latents = _shared_latents(rng(6), n_latents, n_frames, neural_fps, factors)
    basis = _orthonormal_basis(np.vstack([np.ones(n_frames), factors, latents]))

    pos = rng(2).uniform(0.0, field_um, (n_neurons, 2))
    tuning = _patch_tuning(rng(3), pos, len(table), field_um, spacing=250.0, jitter=0.8)
    latent_tuning = _patch_tuning(rng(4), pos, n_latents, field_um, spacing=400.0, jitter=0.5)
    fractions = rng(5)
    explainable = fractions.beta(*explainable_beta, n_neurons)  # default mean ~0.22 of a neuron's variance
    behavior_share = fractions.beta(4.0, 2.0, n_neurons)  # mean 2/3 of the explainable part
    scale = np.exp(fractions.normal(0.0, 0.5, n_neurons))  # neurons differ in overall size
    baseline = scale * fractions.uniform(1.0, 3.0, n_neurons)
    loadings = _scale_rows(tuning, factors, scale**2 * explainable * behavior_share)
    latent_loadings = _scale_rows(latent_tuning, latents, scale**2 * explainable * (1 - behavior_share))
    noise_sd = scale * np.sqrt(1.0 - explainable)

    f32 = lambda a: np.ascontiguousarray(a, np.float32)  # noqa: E731
    factors, latents, loadings, latent_loadings = f32(factors), f32(latents), f32(loadings), f32(latent_loadings)
    spks, best_ve, explainable_ve = _generate_spks(
        rng, basis, factors, latents, loadings, latent_loadings, f32(baseline), noise_sd, out)
    return NeuralSimulation(
        spks=spks, xpos=f32(pos[:, 0]), ypos=f32(pos[:, 1]), neural_times=neural_times,
        keypoints=keypoints, bodyparts=tuple(session.bodyparts), behavior_times=behavior_times,
        best_ve=best_ve, explainable_ve=explainable_ve, factors=factors,
        factor_names=tuple(row[0] for row in table), factor_loadings=loadings, latents=latents,
        latent_loadings=latent_loadings, noise_sd=f32(noise_sd), baseline=f32(baseline),
        linear=bool(linear), seed=int(seed),
    )


def _generate_spks(rng, basis, factors, latents, loadings, latent_loadings, baseline, noise_sd, out):
    """spks (in memory, or a read-only memmap of `out`), best_ve, explainable_ve; block by block.

    The private noise is made orthogonal to `basis` (constant, factors, latents), so over
    the whole recording var(spks) = var(b) + var(s) + noise_sd**2 up to float32 rounding.
    """
    n_neurons, n_frames = len(loadings), factors.shape[1]
    traces, basis32 = np.vstack([factors, latents]), basis.astype(np.float32)
    spks = np.empty((n_neurons, n_frames), np.float32) if out is None else None
    best_ve, explainable_ve = np.empty(n_neurons), np.empty(n_neurons)
    # written row block by row block (not through a writable memmap), so the written
    # pages do not stay in this process's resident memory
    sink = None if out is None else _open_npy(out, (n_neurons, n_frames))
    try:
        for block, a in enumerate(range(0, n_neurons, _BLOCK)):
            rows = slice(a, min(n_neurons, a + _BLOCK))
            noise = rng(100 + block).standard_normal((rows.stop - a, n_frames), dtype=np.float32)
            noise -= (noise @ basis32) @ basis32.T
            noise *= (noise_sd[rows] / noise.std(axis=1, dtype=np.float64)).astype(np.float32)[:, None]
            weights = np.hstack([loadings[rows], latent_loadings[rows]])
            block_spks = baseline[rows, None] + weights @ traces + noise
            if sink is None:
                spks[rows] = block_spks
            else:
                sink.write(block_spks.tobytes())
            total_var = block_spks.var(axis=1, dtype=np.float64)  # of the realised, rounded spks
            var_b, var_bs = _drive_variances(loadings[rows], latent_loadings[rows], factors, latents)
            best_ve[rows], explainable_ve[rows] = var_b / total_var, var_bs / total_var
    finally:
        if sink is not None:
            sink.close()
    if out is not None:
        spks = np.load(os.fspath(out), mmap_mode="r")
    return spks, best_ve, explainable_ve


def _drive_variances(loadings, latent_loadings, factors, latents) -> tuple[np.ndarray, np.ndarray]:
    """(var(b), var(b + s)) per neuron over the given frames, via the traces' covariance (no N x T)."""
    weights = np.hstack([loadings, latent_loadings]).astype(np.float64)
    cov = np.atleast_2d(np.cov(np.vstack([factors, latents]).astype(np.float64), bias=True))
    m = loadings.shape[1]
    var_b = np.einsum("im,mn,in->i", weights[:, :m], cov[:m, :m], weights[:, :m])
    return var_b, np.einsum("im,mn,in->i", weights, cov, weights)


def analysis_coordinates(keypoints: np.ndarray, bodyparts) -> np.ndarray:
    """(T, 22) float64 z-scored x, y of ANALYSIS_BODYPARTS, occlusion gaps filled linearly: the
    encode stage's `keypoint_coordinates`, z-scored; every analysis bodypart must be visible."""
    select_bodyparts(bodyparts, ANALYSIS_BODYPARTS)  # all of them, or ValueError naming the missing one
    xy, names = keypoint_coordinates(keypoints, bodyparts, "synthetic session", dtype=np.float64)
    if len(names) != 2 * len(ANALYSIS_BODYPARTS):  # the factors' projections address all 22 columns
        raise ValueError("an analysis bodypart of the synthetic session is never visible")
    return zscore(xy, dtype=np.float64)[0]


def temporal_kernels(fps: float) -> dict[str, np.ndarray]:
    """Causal kernels (lag 0 first) shorter than 2 s; 'whisk'/'sniff' are (2, L) cos/sin Gabor pairs."""

    def alpha(tau: float) -> np.ndarray:
        t = np.arange(int(min(8 * tau, 1.96) * fps) + 1) / fps
        h = t * np.exp(-t / tau)
        return h / h.sum()

    def gabor_pair(freq: float, sd: float, centre: float) -> np.ndarray:
        t = np.arange(int(2 * centre * fps) + 1) / fps
        envelope = np.exp(-0.5 * ((t - centre) / sd) ** 2)
        pair = np.stack([envelope * np.cos(2 * np.pi * freq * (t - centre)),
                         envelope * np.sin(2 * np.pi * freq * (t - centre))])
        pair -= np.outer(pair.sum(axis=1) / envelope.sum(), envelope)  # no DC: pure band-pass
        return pair / np.linalg.norm(pair, axis=1, keepdims=True)

    fast, slow = alpha(0.04), alpha(0.25)
    change = np.pad(fast, (0, len(slow) - len(fast))) - slow  # responds to changes: zero sum
    return {"fast": fast, "slow": slow, "change": change,
            "whisk": gabor_pair(10.0, 0.06, 0.15), "sniff": gabor_pair(5.0, 0.1, 0.25)}


def behavior_factors(coords, fps, behavior_times, neural_times, table, rng) -> np.ndarray:
    """(M, n_frames) float64 factors of `table` read at `neural_times`, zero mean and unit s.d.

    coords: (T, 22) z-scored analysis coordinates at `fps`, sampled at `behavior_times`.
    """
    kernels = temporal_kernels(fps)
    projections = _projections(coords, {row[2]: row[1] for row in table}, rng)
    out = np.empty((len(table), len(neural_times)))
    for m, (name, _, proj, kernel, phi, theta) in enumerate(table):
        v = coords @ projections[proj]
        if kernel == "gauss100ms":
            trace = gaussian_filter1d(v, 0.1 * fps)
        elif phi == "energy":
            c, s = (_standard(_causal(v, h)) for h in kernels[kernel])
            trace = np.maximum(_standard(np.abs(c) + np.abs(s)) - theta, 0.0)
        else:
            u = _standard(_causal(v, kernels[kernel]))
            trace = np.abs(u - theta) if phi == "abs" else np.maximum(u - theta, 0.0)
        out[m] = _standard(np.interp(neural_times, behavior_times, trace))
    return out


def _projections(coords: np.ndarray, groups: dict[str, str], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per projection name, a (22,) weight vector: a random mix of its group's principal components."""
    out = {}
    for name, group in sorted(groups.items()):
        cols = _GROUPS[group]
        values, vectors = np.linalg.eigh(np.cov(coords[:, cols].T))
        # a group's coordinates move together: keep the few real components, not the
        # ~1e-5 residue of geometry and rounding (whitening it would amplify it)
        keep = values > 1e-2 * values.sum()
        mix = rng.standard_normal(int(keep.sum())) / np.sqrt(values[keep])
        w = np.zeros(coords.shape[1])
        w[cols] = vectors[:, keep] @ mix
        out[name] = w / np.std(coords @ w)
    return out


def _causal(v: np.ndarray, h: np.ndarray) -> np.ndarray:
    return oaconvolve(v, h)[: len(v)]  # u[t] = sum_lag h[lag] v[t - lag]


def _standard(v: np.ndarray) -> np.ndarray:
    """(T,) -> (T,) float64, zero mean and unit s.d. (a constant stays 0)."""
    return zscore(v, dtype=np.float64)[0]


def _shared_latents(rng, n_latents, n_frames, fps, factors) -> np.ndarray:
    """(K, n_frames) slow OU processes (1-10 s), orthogonal to the factors, unit s.d."""
    taus = np.exp(rng.uniform(np.log(1.0), np.log(10.0), n_latents))
    z = np.empty((n_latents, n_frames))
    for k, tau in enumerate(taus):
        a = np.exp(-1.0 / (tau * fps))
        drive = rng.standard_normal(n_frames) * np.sqrt(1 - a * a)
        drive[0] = rng.standard_normal()
        z[k] = lfilter([1.0], [1.0, -a], drive)
    basis = _orthonormal_basis(np.vstack([np.ones(n_frames), factors]))
    z -= (z @ basis) @ basis.T
    return np.array([_standard(row) for row in z]).reshape(n_latents, n_frames)


def _orthonormal_basis(rows: np.ndarray) -> np.ndarray:
    """(T, r) orthonormal basis of the span of `rows` (R, T), rank-revealing."""
    u, s, _ = np.linalg.svd(rows.T, full_matrices=False)
    return u[:, s > 1e-9 * s.max()]


def _patch_tuning(rng, pos, n_dims, field_um, spacing, jitter) -> np.ndarray:
    """(n_neurons, n_dims) tuning that varies smoothly in space.

    Patch centres sit on a jittered grid `spacing` um apart, each with a preferred
    dimension (sign mostly +); a neuron mixes the patches near it (Gaussian
    weights, s.d. spacing/2) and adds its own random part (`jitter`).
    """
    if n_dims == 0:
        return np.zeros((len(pos), 0))
    side = int(np.ceil(field_um / spacing))
    grid = (np.stack(np.meshgrid(np.arange(side), np.arange(side)), -1).reshape(-1, 2) + 0.5) * spacing
    centres = grid + rng.uniform(-0.3, 0.3, grid.shape) * spacing
    preferred = rng.permutation(np.resize(np.arange(n_dims), len(centres)))
    patch = 0.3 * rng.standard_normal((len(centres), n_dims))
    patch[np.arange(len(centres)), preferred] += np.where(rng.random(len(centres)) < 0.8, 1.0, -1.0)
    d2 = ((pos[:, None, :] - centres[None]) ** 2).sum(-1)
    weights = np.exp(-0.5 * (d2 - d2.min(axis=1, keepdims=True)) / (0.5 * spacing) ** 2)
    weights /= weights.sum(axis=1, keepdims=True)
    return weights @ patch + jitter * 0.3 * rng.standard_normal((len(pos), n_dims))


def _scale_rows(tuning: np.ndarray, traces: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """Rescale each row of `tuning` so that var(row @ traces) equals `variance`."""
    if tuning.shape[1] == 0:
        return tuning
    cov = np.atleast_2d(np.cov(traces, bias=True))
    current = np.einsum("im,mn,in->i", tuning, cov, tuning)
    return tuning * np.sqrt(variance / np.maximum(current, 1e-12))[:, None]


def _open_npy(path, shape: tuple[int, int]):
    """An open file holding a float32 C-order .npy header for `shape`, ready for the rows."""
    fh = open(os.fspath(path), "wb")
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(fh, header)
    return fh


def _streams(seed: int):
    """rng(k): the k-th independent random stream of this seed."""
    return lambda k: np.random.default_rng(np.random.SeedSequence([int(seed), _TAG], spawn_key=(k,)))


def _check_args(n_neurons, duration_s, seed, neural_fps, video_fps, n_latents, field_um, source=None) -> None:
    if int(n_neurons) != n_neurons or n_neurons < 1:
        raise ValueError(f"n_neurons must be a positive integer, got {n_neurons}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed}")
    if not (np.isfinite(video_fps) and 25.0 <= video_fps <= 1000.0):
        raise ValueError(f"video_fps must be between 25 and 1000 Hz (whisking is ~10 Hz), got {video_fps}")
    if not (np.isfinite(neural_fps) and 0.0 < neural_fps <= video_fps / 2):
        raise ValueError(f"neural_fps must be in (0, video_fps/2] = (0, {video_fps / 2}], got {neural_fps}")
    if int(n_latents) != n_latents or not 0 <= n_latents <= 50:
        raise ValueError(f"n_latents must be an integer in 0..50, got {n_latents}")
    # the noise is made orthogonal to 1 + M + K traces: it needs many more frames than that
    min_frames = 5 * (1 + len(NONLINEAR_FACTORS) + n_latents)
    if duration_s is None or not np.isfinite(duration_s) or round(duration_s * neural_fps) < min_frames:
        given = source or f"{duration_s} s"
        raise ValueError(f"duration_s must give at least {min_frames} neural frames ({min_frames / neural_fps:g} s "
                         f"at {neural_fps} Hz, plus {LEAD_S + TAIL_S:g} s of behaviour around them), got {given}")
    if not (np.isfinite(field_um) and field_um > 0):
        raise ValueError(f"field_um must be positive, got {field_um}")
