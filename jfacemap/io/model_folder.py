"""Model folders on disk, shared by every trained network (tracker, encoder).

    <dir>/model.json   a description: format, version, architecture, the caller's meta
    <dir>/state/       orbax checkpoint of nnx.state(model)

`write_model_folder` builds the folder beside its destination under a
temporary name and renames it into place, so a reader sees the old model or
the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import sys
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from jfacemap.errors import JfacemapError
from jfacemap.io.jsonable import jsonable


CHECKSUM_KEY = "weights_sha256"


class ModelFolderError(JfacemapError):
    """A model folder cannot be read; the message is one line naming the file."""


def _reason(err: Exception) -> str:
    """The first sentence of an orbax / tensorstore error, without its pointers to details."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.split(" See ")[0][:160]


@contextlib.contextmanager
def _quiet_unraisable():
    """A failed tensorstore read leaves coroutines that were never awaited; Python would print
    their tracebacks ("Exception ignored in ...") when they are collected. Collect them here, silently."""
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        yield
    finally:
        gc.collect()
        sys.unraisablehook = hook


def describe(info: dict, meta: dict | None) -> dict:
    """`info` (what describes the model itself) plus the caller's `meta`; meta may not override info."""
    clash = sorted(set(meta or {}) & set(info))
    if clash:
        raise ValueError(f"meta may not set {clash}: they describe the model itself")
    return info | jsonable(meta or {})


def weights_digest(state) -> str:
    """sha256 of every array of an nnx state (tree order, raw bytes): model.json's `weights_sha256`."""
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(state):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def write_model_folder(path: str | os.PathLike, model: nnx.Module, info: dict) -> Path:
    """Write nnx.state(model) and model.json (`info` plus the weights' checksum) to the
    folder `path`, atomically replacing it."""
    info = info | {CHECKSUM_KEY: weights_digest(nnx.state(model))}
    final = Path(path).expanduser().absolute()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(tmp / "state", nnx.state(model))
            checkpointer.wait_until_finished()
        # Plain writes are enough inside the temporary folder: the rename below publishes it.
        (tmp / "model.json").write_text(json.dumps(info, indent=2) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a model folder is ordinary data
        old = None
        if final.exists():  # directories cannot be os.replace'd onto: move the old one aside first
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def restore_model(folder: str | os.PathLike, build: Callable[[], nnx.Module], checksum: str | None = None) -> nnx.Module:
    """The model `build()` makes (called abstractly: no weights drawn), with the weights in `folder`/state.

    `checksum`: model.json's `weights_sha256`; weights that do not match it
    (bytes changed on disk, which orbax reads without complaint) are refused.
    ModelFolderError (one line naming the folder) for a missing, damaged or
    altered state.
    """
    abstract = nnx.eval_shape(build)
    graphdef, target = nnx.split(abstract)
    path = Path(folder) / "state"
    if not path.is_dir():
        raise ModelFolderError(f"{path}: missing (a model folder holds model.json and state/)")
    try:
        with _quiet_unraisable(), ocp.StandardCheckpointer() as checkpointer:
            state = checkpointer.restore(path, target)
    except Exception as err:  # orbax, tensorstore and msgpack each fail their own way on a damaged file
        raise ModelFolderError(f"{path}: damaged or unreadable weights ({_reason(err)}); "
                               "restore the folder or train the model again") from err
    bad = [jax.tree_util.keystr(k) for k, v in jax.tree_util.tree_leaves_with_path(state)
           if not np.isfinite(np.asarray(v)).all()]
    if bad or (checksum is not None and weights_digest(state) != checksum):
        what = f"non-finite values in {bad[0]}" if bad else "they do not match the checksum in model.json"
        raise ModelFolderError(f"{path}: damaged weights ({what}); restore the folder or train the model again")
    # orbax returns committed arrays; a jitted step fed those first and its own
    # outputs next would compile twice, so hand back plain fresh copies.
    state = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), state)
    return nnx.merge(graphdef, state)
