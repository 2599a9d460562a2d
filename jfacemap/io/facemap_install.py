"""The pretrained tracker of an installed original Facemap, found by the name `facemap`.

facemap (1.0.8, `pose/model_loader.py`) downloads its base model once into
`~/.facemap/models/` (here `$FACEMAP_MODELS_DIR` overrides that folder):

    facemap_model_state.pt     torch.save(FMnet.state_dict())
    facemap_model_params.pth   torch.save({"params": {"channels": [16, 32, 64, 128, 200], ...}})

The original (`pose.py`, `Pose.load_model`) builds `FMnet(img_ch=1,
output_ch=15, channels=params["params"]["channels"], kernel=3)` and names
the 15 outputs with its own fixed list (`Pose.bodyparts`, which is
`jfacemap.skeleton.FACEMAP_BODYPARTS`; it ignores any "bodyparts" in the
params file). Both files are read with the restricted unpickler of
`jfacemap.io.torch_weights`: plain containers, numbers, strings and
tensors, nothing else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np

from jfacemap.errors import JfacemapError
from jfacemap.io.torch_weights import load_torch_file

NAME = "facemap"
ENV_VAR = "FACEMAP_MODELS_DIR"
STATE_FILE = "facemap_model_state.pt"
PARAMS_FILE = "facemap_model_params.pth"


class FacemapModelError(JfacemapError):
    """The original Facemap's model is missing or not what the original writes (one line)."""


def facemap_models_dir() -> tuple[Path, str]:
    """(folder, how it was chosen): $FACEMAP_MODELS_DIR, else ~/.facemap/models (the original's)."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser().absolute(), f"from ${ENV_VAR}"
    return Path.home() / ".facemap" / "models", f"the original's folder; set ${ENV_VAR} to look elsewhere"


def facemap_model_files() -> tuple[Path, Path]:
    """(state file, params file) of the installed original model; FacemapModelError naming
    the folder and the missing files when either is absent."""
    folder, how = facemap_models_dir()
    state, params = folder / STATE_FILE, folder / PARAMS_FILE
    missing = [p.name for p in (state, params) if not p.is_file()]
    if missing:
        raise FacemapModelError(
            f"model {NAME!r}: no original Facemap model in {folder} ({how}): missing {' and '.join(missing)}; "
            f"the original facemap downloads both there on its first pose run"
        )
    return state, params


def facemap_installed() -> bool:
    """True when both files of the original model are there."""
    try:
        facemap_model_files()
    except FacemapModelError:
        return False
    return True


def read_facemap_params(path: str | os.PathLike) -> dict:
    """The `params` dict of a facemap_model_params.pth, with `channels` checked
    and made a tuple of ints (the only entry the original reads)."""
    obj = load_torch_file(path)  # TorchFileError (one line) for any global but plain data and tensors
    params = obj.get("params") if isinstance(obj, Mapping) else None
    if not isinstance(params, Mapping):
        raise FacemapModelError(f"{path}: not a Facemap params file (no 'params' dict)")
    channels = params.get("channels")
    if isinstance(channels, np.ndarray):
        channels = channels.tolist() if channels.ndim == 1 and channels.dtype.kind in "iu" else None
    ok = isinstance(channels, (list, tuple)) and len(channels) >= 2
    if not ok or not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in channels):
        raise FacemapModelError(f"{path}: params 'channels' must be a list of >= 2 positive integers, "
                                f"got {channels!r:.80}")
    return dict(params) | {"channels": tuple(int(c) for c in channels)}
