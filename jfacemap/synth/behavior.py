"""Behavioural latents of a synthetic head-fixed mouse, sampled at the camera rate.

A discrete behavioural state follows a Markov chain with a known per-frame
transition matrix (mean dwell times of seconds); every continuous latent is a
function of the state plus its own slow noise:

==================  =======================================================
whisking            angle = set point + amplitude * cos(phase); frequency
                    8-12 Hz, drifting; set point and amplitude follow the
                    state slowly (degrees, protraction positive)
sniffing            nose_x, nose_y: the nose moving on a small ellipse at
                    the sniff frequency (2-4 Hz breathing at rest, 4-10 Hz
                    bursts when exploring; locked to whisking, up to 10 Hz,
                    while sniff-whisking), in head units (pixels at 256 px,
                    zoom 1)
blinks              blink in [0, 1] (1 = lids closed): Poisson events of
                    0.2-0.3 s, fast closing, slower opening
eye movements       eye_x, eye_y in [-1, 1]: slow drift plus saccades
pupil               pupil radius as a fraction of the eye's half height
jaw                 jaw opening in [0, 1]: rhythmic (5 Hz) while chewing
grooming            paw_height in [0, 1] (0 = paw below the face,
                    1 = paw at the face), paw_stroke in [-1, 1] (4-6 Hz)
==================  =======================================================

Everything is deterministic given the seed (`numpy.random.default_rng(seed)`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from jfacemap import DEFAULT_FPS

STATE_NAMES: tuple[str, ...] = ("quiet", "whisking", "sniff_whisk", "grooming", "chewing")

# Mean dwell time of each state, seconds.
DWELL_SECONDS = np.array([4.0, 3.0, 2.5, 3.0, 2.0])

# Where the chain goes when it leaves a state (rows sum to 1, zero diagonal).
JUMP_PROBABILITIES = np.array(
    [
        [0.00, 0.50, 0.20, 0.15, 0.15],
        [0.40, 0.00, 0.40, 0.10, 0.10],
        [0.20, 0.60, 0.00, 0.10, 0.10],
        [0.60, 0.20, 0.10, 0.00, 0.10],
        [0.50, 0.30, 0.10, 0.10, 0.00],
    ]
)

# Per-state targets of the continuous latents (same order as STATE_NAMES).
_WHISK_AMPLITUDE = np.array([2.0, 14.0, 22.0, 3.0, 4.0])  # degrees
_WHISK_SETPOINT = np.array([0.0, 10.0, 18.0, 0.0, 4.0])  # degrees
_SNIFF_FREQ = np.array([3.0, 6.0, 9.0, 3.5, 3.0])  # Hz
_SNIFF_AMPLITUDE = np.array([0.5, 1.2, 2.5, 0.5, 0.6])  # head units
_BLINK_RATE = np.array([0.15, 0.10, 0.10, 0.50, 0.15])  # per second
_AROUSAL = np.array([0.0, 0.5, 1.0, 0.3, 0.2])

WHISK_FREQ_RANGE = (8.0, 12.0)
SNIFF_FREQ_RANGE = (4.0, 10.0)  # sniffing bursts; breathing at rest is 2-4 Hz


@dataclass(frozen=True)
class BehaviorLatents:
    """Behaviour of one session at `fps`: every array has one value per frame.

    Units: whisk_* in degrees (protraction positive) and Hz; whisk_phase in
    radians; nose_x, nose_y in head units (pixels at 256 px and zoom 1);
    sniff_freq in Hz; blink, pupil, jaw, paw_height in [0, 1]; eye_x, eye_y,
    paw_stroke in [-1, 1]; state an index into STATE_NAMES.
    """

    whisk_angle: np.ndarray
    whisk_setpoint: np.ndarray
    whisk_amplitude: np.ndarray
    whisk_phase: np.ndarray
    whisk_freq: np.ndarray
    sniff_freq: np.ndarray
    nose_x: np.ndarray
    nose_y: np.ndarray
    blink: np.ndarray
    eye_x: np.ndarray
    eye_y: np.ndarray
    pupil: np.ndarray
    jaw: np.ndarray
    paw_height: np.ndarray
    paw_stroke: np.ndarray
    state: np.ndarray
    transition_matrix: np.ndarray
    fps: float = DEFAULT_FPS

    @property
    def n_frames(self) -> int:
        return int(self.state.shape[0])

    def __len__(self) -> int:
        return self.n_frames

    @classmethod
    def series_names(cls) -> tuple[str, ...]:
        """Names of the per-frame arrays (everything but transition_matrix and fps)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name not in ("transition_matrix", "fps"))

    def to_dict(self) -> dict[str, np.ndarray]:
        """Plain arrays for `np.savez`: the (T,) series, the (K, K) matrix, fps as a 0-d array."""
        out = {name: np.asarray(getattr(self, name)) for name in self.series_names()}
        out["transition_matrix"] = np.asarray(self.transition_matrix)
        out["fps"] = np.asarray(self.fps, np.float64)
        return out

    @classmethod
    def from_dict(cls, data) -> "BehaviorLatents":
        """Inverse of `to_dict` (accepts an `np.load` result; extra keys are ignored)."""
        kwargs = {}
        for name in cls.series_names():
            dtype = np.int32 if name == "state" else np.float32
            kwargs[name] = np.asarray(data[name], dtype)
        kwargs["transition_matrix"] = np.asarray(data["transition_matrix"], np.float64)
        kwargs["fps"] = float(np.asarray(data["fps"]))
        return cls(**kwargs)

    def slice(self, start: int, stop: int) -> "BehaviorLatents":
        """Frames [start, stop) as a new BehaviorLatents (same matrix and fps)."""
        kwargs = {name: getattr(self, name)[start:stop] for name in self.series_names()}
        return dataclasses.replace(self, **kwargs)


def transition_matrix(fps: float = DEFAULT_FPS) -> np.ndarray:
    """Per-frame state transition matrix P[i, j] = Prob(state j at t+1 | state i at t)."""
    stay = 1.0 - 1.0 / (DWELL_SECONDS * fps)
    matrix = JUMP_PROBABILITIES * (1.0 - stay)[:, None]
    matrix[np.diag_indices_from(matrix)] = stay
    return matrix


def stationary_distribution(matrix: np.ndarray) -> np.ndarray:
    """The left eigenvector of `matrix` with eigenvalue 1, normalised to sum 1."""
    values, vectors = np.linalg.eig(matrix.T)
    v = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
    return v / v.sum()


def _markov_chain(rng: np.random.Generator, matrix: np.ndarray, n: int) -> np.ndarray:
    """Sample the chain segment by segment: geometric dwell, then a jump (same law as frame by frame)."""
    stay = np.diag(matrix)
    jumps = matrix * (1.0 - np.eye(len(matrix)))
    jumps = jumps / jumps.sum(axis=1, keepdims=True)
    states = np.empty(n, np.int32)
    s = int(rng.choice(len(matrix), p=stationary_distribution(matrix)))
    t = 0
    while t < n:
        dwell = int(rng.geometric(1.0 - stay[s]))
        states[t : t + dwell] = s
        t += dwell
        s = int(rng.choice(len(matrix), p=jumps[s]))
    return states


def _ou(rng: np.random.Generator, n: int, tau: float, sigma: float, fps: float) -> np.ndarray:
    """Ornstein-Uhlenbeck process (stationary std `sigma`, time constant `tau` seconds)."""
    a = np.exp(-1.0 / (tau * fps))
    first = rng.standard_normal() * sigma
    noise = rng.standard_normal(n) * sigma * np.sqrt(1.0 - a * a)
    noise[0] = first
    return _lowpass_recursive(noise, a)


def _lowpass_recursive(x: np.ndarray, a: float, x0: float | None = None, block: int = 64) -> np.ndarray:
    """y[t] = a y[t-1] + x[t], with y[-1] = x0 (0 when None).

    Computed block-wise in closed form (y = a^k cumsum(x a^-k) within a block,
    plus the decaying carry of the previous block): exact, no scipy.signal.
    """
    x = np.asarray(x, np.float64)
    n = len(x)
    if n == 0:
        return x.copy()
    pad = (-n) % block
    xb = np.concatenate([x, np.zeros(pad)]).reshape(-1, block)
    power = a ** np.arange(block)
    out = np.cumsum(xb / power, axis=1) * power
    decay = a * power
    previous = 0.0 if x0 is None else float(x0)
    for row in out:
        row += previous * decay
        previous = row[-1]
    return out.reshape(-1)[:n]


def _smooth(x: np.ndarray, tau: float, fps: float) -> np.ndarray:
    """First-order low-pass with unit DC gain, started at x[0]."""
    a = np.exp(-1.0 / (tau * fps))
    return _lowpass_recursive((1.0 - a) * x, a, x0=x[0]) if len(x) else x


def _blinks(rng_onset: np.random.Generator, rng_shape: np.random.Generator, rate: np.ndarray, fps: float) -> np.ndarray:
    n = len(rate)
    onsets = np.flatnonzero(rng_onset.random(n) < rate / fps)
    closure = np.zeros(n)
    for onset in onsets:
        duration = rng_shape.uniform(0.2, 0.3) * fps
        depth = 1.0 if rng_shape.random() < 0.85 else rng_shape.uniform(0.5, 0.8)
        t = np.arange(int(np.ceil(duration)) + 1) / duration
        close = 0.35
        profile = np.where(t < close, np.sin(0.5 * np.pi * t / close) ** 2,
                           np.cos(0.5 * np.pi * np.clip((t - close) / (1 - close), 0, 1)) ** 2)
        stop = min(n, onset + len(t))
        closure[onset:stop] = np.maximum(closure[onset:stop], depth * profile[: stop - onset])
    return closure


def _saccadic(stream, n: int, fps: float, scale: float) -> np.ndarray:
    """Slow drift plus saccades: jumps (Poisson, 0.3/s) that decay back over ~2 s."""
    jumps = np.zeros(n)
    events = stream().random(n) < 0.3 / fps
    jumps[events] = stream().normal(0.0, 0.5 * scale, events.sum())
    # a saccade takes ~3 frames: spread each jump, then let it relax slowly
    jumps = np.convolve(jumps, np.ones(3) / 3.0, mode="full")[:n]
    a = np.exp(-1.0 / (2.0 * fps))
    return _lowpass_recursive(jumps, a) + _ou(stream(), n, 1.5, 0.15 * scale, fps)


def simulate_behavior(n_frames: int, seed: int, fps: float = DEFAULT_FPS) -> BehaviorLatents:
    """Simulate `n_frames` of behaviour at `fps` (deterministic per seed).

    Every random component draws from its own stream, in time order, so a
    shorter session is exactly the beginning of a longer one with the same seed.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    seeds = np.random.SeedSequence(int(seed))

    def stream() -> np.random.Generator:
        return np.random.default_rng(seeds.spawn(1)[0])

    phases = stream().uniform(0.0, 2 * np.pi, 4)
    n = int(n_frames)
    dt = 1.0 / fps
    matrix = transition_matrix(fps)
    state = _markov_chain(stream(), matrix, n)

    # Whisking: frequency drifts in 8-12 Hz, set point and amplitude follow the state.
    lo, hi = WHISK_FREQ_RANGE
    whisk_freq = np.clip(10.0 + _ou(stream(), n, 2.0, 0.8, fps), lo + 0.1, hi - 0.1)
    whisk_phase_unwrapped = phases[0] + 2 * np.pi * np.cumsum(whisk_freq) * dt
    envelope = np.clip(1.0 + _ou(stream(), n, 0.7, 0.3, fps), 0.2, 2.0)
    amplitude = _smooth(_WHISK_AMPLITUDE[state], 0.3, fps) * envelope
    setpoint = _smooth(_WHISK_SETPOINT[state], 0.4, fps) + _ou(stream(), n, 1.5, 3.0, fps)
    whisk_angle = setpoint + amplitude * np.cos(whisk_phase_unwrapped)

    # Sniffing: breathing at rest, fast bursts when exploring, locked to whisking in sniff_whisk.
    sniff_freq = _smooth(_SNIFF_FREQ[state], 0.3, fps) + _ou(stream(), n, 1.0, 0.4, fps)
    sniff_freq = np.where(state == 2, np.minimum(whisk_freq, SNIFF_FREQ_RANGE[1]), sniff_freq)
    sniff_freq = np.clip(_smooth(sniff_freq, 0.1, fps), 2.0, SNIFF_FREQ_RANGE[1])
    sniff_phase = phases[1] + 2 * np.pi * np.cumsum(sniff_freq) * dt
    sniff_amp = _smooth(_SNIFF_AMPLITUDE[state], 0.3, fps) * np.clip(1.0 + _ou(stream(), n, 0.8, 0.25, fps), 0.3, 2.0)
    nose_x = sniff_amp * np.cos(sniff_phase) + _ou(stream(), n, 2.0, 0.4, fps)
    nose_y = 0.6 * sniff_amp * np.sin(sniff_phase) + _ou(stream(), n, 2.0, 0.3, fps)

    # Eye: blinks, gaze, pupil.
    blink = _blinks(stream(), stream(), _BLINK_RATE[state], fps)
    eye_x = np.clip(_saccadic(stream, n, fps, 1.0), -1.0, 1.0)
    eye_y = np.clip(_saccadic(stream, n, fps, 0.5), -1.0, 1.0)
    arousal = _smooth(_AROUSAL[state], 2.0, fps)
    pupil = np.clip(0.35 + 0.2 * arousal + _ou(stream(), n, 3.0, 0.05, fps), 0.15, 0.8)

    # Jaw: rhythmic chewing plus occasional small openings.
    chewing = _smooth((state == 4).astype(float), 0.15, fps)
    chew_phase = phases[2] + 2 * np.pi * np.cumsum(5.0 + _ou(stream(), n, 1.0, 0.4, fps)) * dt
    jaw = chewing * 0.5 * (1 - np.cos(chew_phase)) * 0.8 + np.clip(_ou(stream(), n, 0.3, 0.1, fps) - 0.1, 0, None)
    jaw = np.clip(jaw, 0.0, 1.0)

    # Grooming: the paw rises to the face and strokes it.
    paw_height = np.clip(_smooth((state == 3).astype(float), 0.25, fps), 0.0, 1.0)
    groom_phase = phases[3] + 2 * np.pi * np.cumsum(np.clip(5.0 + _ou(stream(), n, 1.0, 0.5, fps), 4, 6)) * dt
    paw_stroke = np.sin(groom_phase)

    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    return BehaviorLatents(
        whisk_angle=f32(whisk_angle),
        whisk_setpoint=f32(setpoint),
        whisk_amplitude=f32(amplitude),
        whisk_phase=f32(np.mod(whisk_phase_unwrapped, 2 * np.pi)),
        whisk_freq=f32(whisk_freq),
        sniff_freq=f32(sniff_freq),
        nose_x=f32(nose_x),
        nose_y=f32(nose_y),
        blink=f32(blink),
        eye_x=f32(eye_x),
        eye_y=f32(eye_y),
        pupil=f32(pupil),
        jaw=f32(jaw),
        paw_height=f32(paw_height),
        paw_stroke=f32(paw_stroke),
        state=state,
        transition_matrix=matrix,
        fps=float(fps),
    )
