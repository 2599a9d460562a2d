"""The deep neural encoder (the paper's Fig. 3a; "KeypointsNetwork" in the original), in Flax NNX.

Behaviour (B, T, n_in) at the video rate -> deep behavioural features
(B, T, 256) at the video rate -> readout to neural PCs or neurons:

- mix:      Linear(n_in -> n_in) with bias, per frame.
- wavelets: one bank of `n_filters` (10) temporal filters of `kernel_size`
            (201) frames shared by every mixed channel: channel c and filter f
            give output channel c * n_filters + f (the original's order).
            Cross-correlation (torch's conv1d), 'same' length, zero padding,
            no bias; initialised with Gabor wavelets (`gabor_bank`). -> ReLU
- hidden:   Linear(n_in * n_filters -> 50) -> ReLU
- latent:   Linear(50 -> 256) -> ReLU = the deep behavioural features.
- out:      Linear(256 -> n_out), applied by `readout`.

Zero padding applies to the conv's input, i.e. to the mixed channels (after
the bias of `mix`), so a frame outside the recording contributes exactly 0.
`valid` masks say which frames are real; padded frames act as frames outside
the recording. The features of a frame depend only on frames within
kernel_size // 2 of it, so a window with that much context on each side gives
the same features as the whole recording (training segments and chunked
prediction rely on it).

`features_at` evaluates the conv only at chosen frames (gathering their
kernel-wide windows): training needs the features at the neural frame times
only (~3 Hz of 50 Hz), ~17x less conv work than the full-rate conv.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jfacemap.nets.init import torch_default_init


MAX_CYCLES = 40.0  # highest initial filter frequency, cycles per kernel (see gabor_bank)


def gabor_bank(n_filters: int = 10, kernel_size: int = 201, max_cycles: float = MAX_CYCLES) -> np.ndarray:
    """(kernel_size, n_filters) float32 initial filters: Gabor wavelets.

    The kernel spans one period 2*pi (centred at 0); each filter is a
    Gaussian envelope (sd 1 rad, ~1/6 of the kernel) times a cosine of
    n_filters // 2 frequencies log-spaced from 1 to `max_cycles` cycles per
    kernel, in phase 0 (first half of the filters) and pi/2 (second half),
    each scaled to unit L2 norm. An odd n_filters gets one extra phase-0
    filter at max_cycles.

    The original spans 1-10 cycles: 0.25-2.5 Hz for 201 frames at 50 Hz.
    jfacemap spans 1-40 (0.25-10 Hz there) so that the whisking band (8-12 Hz)
    starts inside the bank: filters that must travel from 2.5 Hz to 10 Hz
    against the smoothness penalty mostly never get there (on simulated
    whisking-energy neurons, R^2 0.47 -> 0.94; bench/bench_encode.py).
    """
    if n_filters < 1 or kernel_size < 1:
        raise ValueError(f"need n_filters >= 1 and kernel_size >= 1, got {n_filters}, {kernel_size}")
    n_pairs = max(1, n_filters // 2)
    freqs = np.geomspace(1.0, max_cycles, n_pairs)
    phases = [0.0] * n_pairs + [np.pi / 2] * n_pairs
    freqs = np.concatenate([freqs, freqs])
    if n_filters % 2:
        phases, freqs = phases + [0.0], np.append(freqs, max_cycles)
    t = np.arange(kernel_size) * (2 * np.pi / kernel_size)
    t -= t.mean()
    envelope = np.exp(-0.5 * t**2)
    bank = envelope[:, None] * np.cos(np.asarray(phases)[None, :n_filters] + freqs[None, :n_filters] * t[:, None])
    bank /= np.linalg.norm(bank, axis=0, keepdims=True)
    return bank.astype(np.float32)




def _linear(n_in: int, n_out: int, rngs: nnx.Rngs) -> nnx.Linear:
    init = torch_default_init(n_in)
    return nnx.Linear(n_in, n_out, kernel_init=init, bias_init=init, rngs=rngs)


class NeuralEncoder(nnx.Module):
    """Behaviour -> deep features -> neural PCs (or neurons); see the module doc.

    Attributes describing the architecture (`config()` returns them for
    model files): n_in, n_out, n_filters, kernel_size, n_hidden, n_features.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        n_filters: int = 10,
        kernel_size: int = 201,
        n_hidden: int = 50,
        n_features: int = 256,
        rngs: nnx.Rngs,
    ):
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd for a centred 'same' conv, got {kernel_size}")
        if min(n_in, n_out, n_filters, n_hidden, n_features) < 1:
            raise ValueError("all layer sizes must be >= 1")
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.n_filters, self.kernel_size = int(n_filters), int(kernel_size)
        self.n_hidden, self.n_features = int(n_hidden), int(n_features)
        self.mix = _linear(n_in, n_in, rngs)
        self.wavelets = nnx.Param(jnp.asarray(gabor_bank(n_filters, kernel_size)))  # (K, n_filters)
        self.hidden = _linear(n_in * n_filters, n_hidden, rngs)
        self.latent = _linear(n_hidden, n_features, rngs)
        self.out = _linear(n_features, n_out, rngs)

    @property
    def half_width(self) -> int:
        """Frames of context the conv reads on each side (kernel_size // 2)."""
        return self.kernel_size // 2

    def config(self) -> dict:
        """The constructor arguments (JSON-ready)."""
        return {"n_in": self.n_in, "n_out": self.n_out, "n_filters": self.n_filters,
                "kernel_size": self.kernel_size, "n_hidden": self.n_hidden, "n_features": self.n_features}

    def _mixed(self, x: jax.Array, valid: jax.Array | None) -> jax.Array:
        h = self.mix(x)
        # Zero (not just the raw input) so padded frames equal the conv's own zero padding.
        return h if valid is None else jnp.where(valid[..., None], h, 0.0)

    def _head(self, conv: jax.Array) -> jax.Array:
        """(..., n_in, n_filters) conv outputs -> (..., n_features) features."""
        h = jax.nn.relu(conv.reshape(*conv.shape[:-2], self.n_in * self.n_filters))
        h = jax.nn.relu(self.hidden(h))
        return jax.nn.relu(self.latent(h))

    def __call__(self, x: jax.Array, valid: jax.Array | None = None) -> jax.Array:
        """Deep features at every frame.

        x: (B, T, n_in) float32 behaviour; valid: (B, T) bool, False = a
        padded frame (treated as outside the recording), None = all real.
        Returns (B, T, n_features) float32.
        """
        b, t, c = x.shape
        h = self._mixed(x, valid)
        lanes = jnp.transpose(h, (0, 2, 1)).reshape(b * c, t, 1)  # every channel meets the same filters
        w = self.wavelets[...][:, None, :]  # (K, 1, n_filters), WIO
        conv = jax.lax.conv_general_dilated(lanes, w, window_strides=(1,), padding="SAME",
                                            dimension_numbers=("NWC", "WIO", "NWC"))
        conv = jnp.transpose(conv.reshape(b, c, t, self.n_filters), (0, 2, 1, 3))  # (B, T, n_in, n_filters)
        return self._head(conv)

    def features_at(self, x: jax.Array, positions: jax.Array, valid: jax.Array | None = None,
                    frac: jax.Array | None = None) -> jax.Array:
        """Deep features at chosen frames only (equal to `self(x, valid)[:, positions]`).

        x: (B, L, n_in) float32; positions: (B, M) int frame indices into L;
        valid: (B, L) bool or None; frac: (B, M) float32 in [0, 1] or None: the
        features at a time between two frames, (1 - frac) F[p] + frac F[p + 1]
        (p + 1 must lie in L). Returns (B, M, n_features) float32.
        """
        if frac is not None:
            M = positions.shape[1]
            both = self.features_at(x, jnp.concatenate([positions, positions + 1], axis=1), valid)
            w = frac[..., None]
            return (1.0 - w) * both[:, :M] + w * both[:, M:]
        h = self._mixed(x, valid)
        half = self.half_width
        h = jnp.pad(h, ((0, 0), (half, half), (0, 0)))  # the conv's zero padding at the window edges
        taps = positions[..., None] + jnp.arange(self.kernel_size)  # (B, M, K) into the padded axis
        windows = jax.vmap(lambda hb, tb: hb[tb])(h, taps)  # (B, M, K, n_in)
        conv = jnp.einsum("bmkc,kf->bmcf", windows, self.wavelets[...])
        return self._head(conv)

    def readout(self, features: jax.Array) -> jax.Array:
        """(..., n_features) -> (..., n_out) predicted neural PCs / neurons."""
        return self.out(features)

    def smoothness(self) -> jax.Array:
        """Sum of squared differences of neighbouring conv weights (in time),
        the original's smoothness penalty before its 0.5 weight."""
        return jnp.sum(jnp.diff(self.wavelets[...], axis=0) ** 2)


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars."""
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
