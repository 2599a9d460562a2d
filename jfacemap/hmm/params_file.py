"""params.npz, a fitted HMM on disk: the arrays `jfacemap hmm` writes, and readers in model or data units.

Arrays (K states, D features):
  transition_matrix (K, K) float64, rows sum to 1; log_transition (K, K) Q;
  initial (K,) float64; initial_logits (K,);
  means (K, D), model units; sigma2 (), model units squared (shared by all features);
  zscore_mean, zscore_sd (D,) float64, data units: the transform, model = (data - zscore_mean) / zscore_sd
    (0 and 1 when the features were not z-scored);
  zscore () bool: the features were z-scored; sigma2_learned () bool: sigma2 was trained, not fixed;
  fps (), downsample (): the input frame rate (Hz) and block-mean factor ("data" = the downsampled features).
Files written before `zscore` / `sigma2_learned` existed read as z-scored (every version z-scored) with a
fixed sigma2; files without zscore_mean / zscore_sd read with no transform (values stay in model units).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from jfacemap.errors import JfacemapError
from jfacemap.hmm.fit import HMMParams
from jfacemap.hmm.transform import FeatureTransform

__all__ = ["Emissions", "SavedHMM", "params_arrays", "read_params", "read_emissions"]


def params_arrays(params: HMMParams, transform: FeatureTransform, *, zscored: bool, sigma2_learned: bool,
                  fps: float, downsample: int) -> dict[str, np.ndarray]:
    """The arrays of params.npz (see the module docstring) for a model fitted in `transform`'s units."""
    A = np.asarray(params.transition_matrix, np.float64)
    return {
        "transition_matrix": A / A.sum(1, keepdims=True), "means": np.asarray(params.means),
        "initial": np.asarray(params.initial, np.float64), "sigma2": np.float64(params.sigma2),
        "log_transition": np.asarray(params.log_transition), "initial_logits": np.asarray(params.initial_logits),
        "zscore_mean": transform.mean, "zscore_sd": transform.sd, "zscore": np.bool_(zscored),
        "sigma2_learned": np.bool_(sigma2_learned), "fps": np.float64(fps), "downsample": np.int64(downsample),
    }


class Emissions(NamedTuple):
    """State k emits x ~ N(means[k], diag(variance)).

    means (K, D), variance (D,) float64; units: "data" (the downsampled features), or "model" when the
    file keeps no transform (then variance is sigma2 for every feature).
    """

    means: np.ndarray
    variance: np.ndarray
    units: str


@dataclass(frozen=True)
class SavedHMM:
    """A params.npz read back: params in model units; transform None when the file has none;
    zscored, sigma2_learned as recorded (see the module docstring for older files); fps, downsample
    (None when absent)."""

    params: HMMParams
    transform: FeatureTransform | None
    zscored: bool
    sigma2_learned: bool
    fps: float | None
    downsample: int | None

    def emissions(self) -> Emissions:
        """Emission means and per-feature variance in data units (model units without a transform)."""
        means = np.asarray(self.params.means, np.float64)
        if self.transform is None:
            return Emissions(means, np.full(means.shape[1], float(self.params.sigma2)), "model")
        return Emissions(self.transform.means_to_data(means), self.transform.variance_to_data(self.params.sigma2),
                         "data")


def read_params(path: str | Path) -> SavedHMM:
    """Read a params.npz (plain arrays, no pickles); log_transition / initial_logits are rebuilt from
    transition_matrix / initial when missing."""
    with np.load(Path(path), allow_pickle=False) as z:
        arrays = {k: np.asarray(z[k]) for k in z.files}
    missing = [k for k in ("means", "sigma2") if k not in arrays]
    if missing or not {"log_transition", "transition_matrix"} & arrays.keys():
        raise JfacemapError(f"{path}: not an HMM params.npz (missing {', '.join(missing) or 'transition_matrix'})")
    Q = arrays.get("log_transition")
    Q = np.log(np.maximum(arrays["transition_matrix"], 1e-30)) if Q is None else Q
    logits = arrays.get("initial_logits")
    if logits is None:
        logits = np.log(np.maximum(arrays["initial"], 1e-30)) if "initial" in arrays else np.zeros(len(Q))
    params = HMMParams(jnp.asarray(Q, jnp.float32), jnp.asarray(arrays["means"], jnp.float32),
                       jnp.asarray(logits, jnp.float32), float(arrays["sigma2"]))
    has_transform = "zscore_mean" in arrays and "zscore_sd" in arrays
    transform = FeatureTransform(arrays["zscore_mean"], arrays["zscore_sd"]) if has_transform else None
    return SavedHMM(
        params=params, transform=transform,
        zscored=bool(arrays.get("zscore", has_transform)), sigma2_learned=bool(arrays.get("sigma2_learned", False)),
        fps=float(arrays["fps"]) if "fps" in arrays else None,
        downsample=int(arrays["downsample"]) if "downsample" in arrays else None,
    )


def read_emissions(path: str | Path) -> Emissions:
    """Emission means (K, D) and variance (D,) of a params.npz in data units (see `SavedHMM.emissions`)."""
    return read_params(path).emissions()
