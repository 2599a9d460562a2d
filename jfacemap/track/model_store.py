"""Trained trackers on disk: self-describing model folders, training checkpoints.

A model folder:

    <dir>/model.json   {"format": "jfacemap-tracker", "version": 1, "bodyparts": [...],
                        "channels": [...], "n_upsample": 2, "kernel": 3, "in_channels": 1,
                        ... caller's meta: recipe, training data, measured errors}
    <dir>/state/       orbax checkpoint of nnx.state(model) (params + BatchNorm statistics)

`load_tracker("base")` resolves a bare name to `<repo>/weights/<name>/`
(shipped) first, then `<models home>/<name>/` (user models;
`$JFACEMAP_HOME/models`, default `~/.jfacemap/models`). An original-program
`.pt`/`.pth` state_dict is loaded through `jfacemap.nets.convert`. The name
`facemap` is the original Facemap's own pretrained model where an install of
it keeps it (`~/.facemap/models/`, or `$FACEMAP_MODELS_DIR`; see
`jfacemap.io.facemap_install`).

Writes are atomic: the folder is built beside its destination under a
temporary name and renamed into place, so a reader sees the old model or the
new one, never half of one.

Training checkpoints (`open_manager`, `save_epoch`, `restore_latest`) use an
orbax CheckpointManager (its own atomic step folders), one step per epoch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import jax
import orbax.checkpoint as ocp
from flax import nnx

from jfacemap.errors import JfacemapError
from jfacemap.io.facemap_install import NAME as FACEMAP_NAME
from jfacemap.io.facemap_install import (FacemapModelError, facemap_installed, facemap_model_files,
                                         read_facemap_params)
from jfacemap.io.jsonable import jsonable
from jfacemap.io.model_folder import CHECKSUM_KEY, ModelFolderError, describe, restore_model, write_model_folder
from jfacemap.nets.unet import FacemapUNet
from jfacemap.track.shape_prior import ShapePrior

def _shipped_weights_dir() -> Path:
    """The repo's weights/ folder, installed as the data package `jfacemap.weights`.

    It has no __init__.py (a namespace package): its search location is the
    folder, in a wheel install and an editable one alike.
    """
    import importlib.util

    spec = importlib.util.find_spec("jfacemap.weights")
    if spec is not None and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(__file__).resolve().parents[2] / "weights"  # a checkout that was never installed


FORMAT = "jfacemap-tracker"
VERSION = 1
REPO_WEIGHTS = _shipped_weights_dir()
_ARCH_KEYS = ("channels", "n_upsample", "kernel", "in_channels")


def user_models_dir() -> Path:
    """Where user models live: $JFACEMAP_HOME/models, default ~/.jfacemap/models."""
    home = os.environ.get("JFACEMAP_HOME")
    return (Path(home).expanduser() if home else Path.home() / ".jfacemap") / "models"


def _local(dir_or_name: str | os.PathLike) -> tuple[Path, bool, bool]:
    """(path, is it a bare name, does it name something here rather than a model name)."""
    p = Path(dir_or_name).expanduser()
    name = str(dir_or_name)
    bare = "/" not in name and os.sep not in name and p.suffix.lower() not in (".pt", ".pth")
    return p, bare, p.is_file() or (p / "model.json").is_file() or (p.exists() and not bare)


def _names_facemap(dir_or_name: str | os.PathLike) -> bool:
    """True for the name `facemap` (the original's installed model), unless a
    model folder or file of that name is in the current folder."""
    return str(dir_or_name) == FACEMAP_NAME and not _local(dir_or_name)[2]


def resolve_model(dir_or_name: str | os.PathLike) -> Path:
    """A model folder or .pt file from a path or a name.

    A bare name (no path separator) is looked up as a shipped model, then a
    user model, unless the current folder holds a model folder of that name.
    `facemap` gives the original's installed state file (FacemapModelError,
    one line naming the folder, when it or its params file is missing).
    """
    p, bare, here = _local(dir_or_name)
    name = str(dir_or_name)
    if here:
        return p.absolute()  # orbax refuses relative checkpoint paths
    if name == FACEMAP_NAME:
        return facemap_model_files()[0]
    if bare:
        for root in (REPO_WEIGHTS, user_models_dir()):
            if (root / name / "model.json").is_file():
                return root / name
    raise FileNotFoundError(
        f"no tracker {name!r}: not a model folder or .pt file, nor a model name in {REPO_WEIGHTS} "
        f"or {user_models_dir()}"
    )


# Every model.json key that describes the model itself (save_tracker writes them from the
# model; a caller's meta may not set them): what a tool copying one model's meta drops.
MODEL_INFO_KEYS = ("format", "version", "bodyparts", *_ARCH_KEYS, "context", "shape_prior",
                   "flip_average", "flip_average_below", CHECKSUM_KEY)


def save_tracker(
    directory: str | os.PathLike, model: FacemapUNet, bodyparts: Sequence[str], meta: dict | None = None
) -> Path:
    """Write `model` with its `bodyparts` and `meta` (recipe, data, errors,
    any JSON-able dict) to the folder `directory`, replacing it atomically."""
    final = Path(directory).expanduser().absolute()
    if len(bodyparts) != model.n_keypoints:
        raise ValueError(f"{len(bodyparts)} bodyparts for a model with {model.n_keypoints} keypoints")
    info = {"format": FORMAT, "version": VERSION, "bodyparts": [str(b) for b in bodyparts],
            "channels": list(model.channels), "n_upsample": model.n_upsample,
            "kernel": model.kernel, "in_channels": model.in_channels, "context": model.context}
    if getattr(model, "shape_prior", None) is not None:
        info["shape_prior"] = model.shape_prior.to_json()
    if getattr(model, "flip_average", False):
        info["flip_average"] = True
        if getattr(model, "flip_average_below", None) is not None:
            info["flip_average_below"] = float(model.flip_average_below)
    return write_model_folder(final, model, describe(info, meta))


def read_model_json(directory: str | os.PathLike) -> dict:
    """The model.json of a model folder (or name), checked."""
    path = resolve_model(directory) / "model.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{path}: cannot read model description ({err})") from err
    if info.get("format") != FORMAT or "bodyparts" not in info:
        raise ModelFolderError(f"{path}: not a jfacemap tracker description")
    return info


def load_tracker(
    dir_or_name: str | os.PathLike, bodyparts: Sequence[str] | None = None
) -> tuple[FacemapUNet, list[str], dict]:
    """(model in eval mode, bodyparts, meta) from a model folder, a model
    name, or an original-program .pt/.pth state_dict (`facemap`: the
    original's installed pretrained model).

    For a .pt file, `bodyparts` names its K outputs (default: the Facemap 15
    when K = 15); for a folder it must agree with model.json if given.
    meta is model.json (the .pt case: its path and architecture).
    """
    if _names_facemap(dir_or_name):
        return _load_facemap(bodyparts)
    path = resolve_model(dir_or_name)
    if path.is_file():
        return _load_torch(path, bodyparts)
    info = read_model_json(path)
    names = list(info["bodyparts"])
    if bodyparts is not None and list(bodyparts) != names:
        raise JfacemapError(f"{path}: model bodyparts {names} differ from the requested {list(bodyparts)}")
    arch = {k: (tuple(info[k]) if k == "channels" else int(info[k])) for k in _ARCH_KEYS}
    context = float(info.get("context", 1.0))  # folders written before context existed: the original's 1
    model = restore_model(path, lambda: FacemapUNet(len(names), **arch, context=context, rngs=nnx.Rngs(0)),
                          info.get(CHECKSUM_KEY))
    if "shape_prior" in info:
        prior = ShapePrior.from_json(info["shape_prior"])
        if len(prior.sd) != len(names):
            raise JfacemapError(f"{path / 'model.json'}: shape_prior has {len(prior.sd)} keypoints, "
                                f"the model {len(names)}")
        model.shape_prior = prior
    flip, below = info.get("flip_average", False), info.get("flip_average_below")
    if not isinstance(flip, bool):
        raise JfacemapError(f"{path / 'model.json'}: flip_average must be true or false, got {flip!r}")
    if below is not None and (isinstance(below, bool) or not isinstance(below, (int, float)) or not 0.5 <= below <= 1):
        raise JfacemapError(f"{path / 'model.json'}: flip_average_below must be a likelihood in [0.5, 1], "
                            f"got {below!r}")
    model.flip_average, model.flip_average_below = flip, None if below is None else float(below)
    model.eval()
    return model, names, info


def _load_torch(path: Path, bodyparts: Sequence[str] | None) -> tuple[FacemapUNet, list[str], dict]:
    from jfacemap.io.torch_weights import load_torch_state_dict
    from jfacemap.nets.convert import unet_from_torch_state_dict
    from jfacemap.skeleton import FACEMAP_BODYPARTS

    state_dict = load_torch_state_dict(path)
    try:
        model = unet_from_torch_state_dict(state_dict)
    except ValueError as err:  # the converter checks the tensors; its messages do not name the file
        raise FacemapModelError(f"{path}: not an original Facemap network: {err}") from err
    if bodyparts is None:
        if model.n_keypoints != len(FACEMAP_BODYPARTS):
            raise JfacemapError(f"{path}: {model.n_keypoints} outputs; give the bodyparts they stand for")
        bodyparts = FACEMAP_BODYPARTS
    if len(bodyparts) != model.n_keypoints:
        raise JfacemapError(f"{path}: {model.n_keypoints} outputs but {len(bodyparts)} bodyparts given")
    model.eval()
    meta = {"source": str(path), "channels": list(model.channels), "n_upsample": model.n_upsample}
    return model, [str(b) for b in bodyparts], meta


def _load_facemap(bodyparts: Sequence[str] | None) -> tuple[FacemapUNet, list[str], dict]:
    """The original Facemap's installed model: its state_dict, checked against
    the channels of its params file; bodyparts default to the original's 15."""
    state, params_file = facemap_model_files()
    channels = read_facemap_params(params_file)["channels"]
    model, names, meta = _load_torch(state, bodyparts)  # its errors name the file
    if tuple(model.channels) != channels:
        raise FacemapModelError(f"{state}: weights have channels {list(model.channels)} but {params_file} "
                                f"says {list(channels)}")
    return model, names, meta | {"name": FACEMAP_NAME, "params_file": str(params_file)}


def list_trackers() -> dict[str, Path]:
    """name -> folder of every shipped and user model (shipped names win),
    and `facemap` -> the original's state file when it is installed."""
    found: dict[str, Path] = {FACEMAP_NAME: facemap_model_files()[0]} if facemap_installed() else {}
    for root in (REPO_WEIGHTS, user_models_dir()):
        if root.is_dir():
            for d in sorted(root.iterdir()):
                if (d / "model.json").is_file():
                    found.setdefault(d.name, d)
    return found


# ---------------------------------------------------- training checkpoints ---


def open_manager(directory: str | os.PathLike, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """An orbax manager for per-epoch training checkpoints (synchronous
    saves, so a checkpoint is complete when `save_epoch` returns)."""
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False)
    return ocp.CheckpointManager(Path(directory).expanduser().absolute(), options=options,
                                 item_names=("state", "meta"))


def save_epoch(manager: ocp.CheckpointManager, epoch: int, state: Any, meta: dict) -> None:
    """Checkpoint after `epoch` (0-based): the training state pytree (params,
    BatchNorm statistics, optimizer state) and JSON meta (run description,
    epoch, rng streams)."""
    meta = jsonable(meta | {"epoch": int(epoch), "rng": {"seed": meta.get("seed"), "next_epoch": int(epoch) + 1}})
    manager.save(int(epoch), args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)))
    manager.wait_until_finished()


_RUN_KEYS = ("recipe", "bodyparts", "n_frames", "frame_shape", "seed", "bbox")


def restore_latest(manager: ocp.CheckpointManager, like: Any, meta: dict) -> tuple[Any, int, dict] | None:
    """(state shaped like `like`, next epoch, saved meta) from the latest
    checkpoint, or None when there is none. ValueError when it belongs to another run (a
    different recipe, skeleton, data size or seed)."""
    step = manager.latest_step()
    if step is None:
        return None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                             meta=ocp.args.JsonRestore()))
    saved = restored.meta
    wanted = jsonable({k: meta.get(k) for k in _RUN_KEYS})
    differ = [k for k in _RUN_KEYS if saved.get(k) != wanted[k]]
    if differ:
        raise JfacemapError(f"{manager.directory}: checkpoint is from another training run "
                            f"(differs in {', '.join(differ)}); use a new checkpoint folder")
    # Rebuild with `like`'s tree structure (orbax returns plain tuples for optax's namedtuples).
    state = jax.tree.unflatten(jax.tree.structure(like), jax.tree.leaves(restored.state))
    return state, int(saved["epoch"]) + 1, saved
