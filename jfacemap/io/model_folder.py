"""Model folders on disk, shared by every trained network (tracker, encoder).

    <dir>/model.json   a description: format, version, architecture, the caller's meta
    <dir>/state/       orbax checkpoint of nnx.state(model)

`write_model_folder` builds the folder beside its destination under a
temporary name and renames it into place, so a reader sees the old model or
the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from jfacemap.io.jsonable import jsonable


def describe(info: dict, meta: dict | None) -> dict:
    """`info` (what describes the model itself) plus the caller's `meta`; meta may not override info."""
    clash = sorted(set(meta or {}) & set(info))
    if clash:
        raise ValueError(f"meta may not set {clash}: they describe the model itself")
    return info | jsonable(meta or {})


def write_model_folder(path: str | os.PathLike, model: nnx.Module, info: dict) -> Path:
    """Write nnx.state(model) and model.json (`info`) to the folder `path`, atomically replacing it."""
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


def restore_model(folder: str | os.PathLike, build: Callable[[], nnx.Module]) -> nnx.Module:
    """The model `build()` makes (called abstractly: no weights drawn), with the weights in `folder`/state."""
    abstract = nnx.eval_shape(build)
    graphdef, target = nnx.split(abstract)
    with ocp.StandardCheckpointer() as checkpointer:
        state = checkpointer.restore(Path(folder) / "state", target)
    # orbax returns committed arrays; a jitted step fed those first and its own
    # outputs next would compile twice, so hand back plain fresh copies.
    state = jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), state)
    return nnx.merge(graphdef, state)
