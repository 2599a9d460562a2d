"""Trained deep encoders on disk (`save_encoder` / `load_encoder`).

A model folder:

    <dir>/model.json   {"format": "jfacemap-encoder", "version": 1,
                        "architecture": {n_in, n_out, n_filters, kernel_size, n_hidden, n_features},
                        ... caller's meta: recipe, history, data description}
    <dir>/state/       orbax checkpoint of nnx.state(model)

Writes are atomic: the folder is built beside its destination under a
temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from jfacemap.io.jsonable import jsonable
from jfacemap.nets.encoder import NeuralEncoder

FORMAT = "jfacemap-encoder"
VERSION = 1


def save_encoder(path: str | os.PathLike, model: NeuralEncoder, meta: dict | None = None) -> Path:
    """Write `model` to the folder `path` (orbax state/ + model.json with
    the architecture and the caller's `meta`, e.g. recipe and history),
    replacing it atomically (built beside it under a temporary name, renamed)."""
    final = Path(path).expanduser().absolute()
    info = {"format": FORMAT, "version": VERSION, "architecture": model.config()}
    clash = sorted(set(meta or {}) & set(info))
    if clash:
        raise ValueError(f"meta may not set {clash}: they describe the model itself")
    info |= jsonable(meta or {})
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(tmp / "state", nnx.state(model))
            checkpointer.wait_until_finished()
        (tmp / "model.json").write_text(json.dumps(info, indent=2) + "\n")
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; a model folder is ordinary data
        old = None
        if final.exists():  # a folder cannot be os.replace'd onto another: move the old one aside
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_encoder(path: str | os.PathLike) -> tuple[NeuralEncoder, dict]:
    """(model, model.json contents) from a folder written by `save_encoder`."""
    folder = Path(path).expanduser().absolute()
    try:
        info = json.loads((folder / "model.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{folder}: cannot read model.json ({err})") from None
    if info.get("format") != FORMAT or "architecture" not in info:
        raise ValueError(f"{folder}: not a jfacemap encoder folder")
    arch = {k: int(v) for k, v in info["architecture"].items()}
    abstract = nnx.eval_shape(lambda: NeuralEncoder(**arch, rngs=nnx.Rngs(0)))
    graphdef, target = nnx.split(abstract)
    with ocp.StandardCheckpointer() as checkpointer:
        state = checkpointer.restore(folder / "state", target)
    # Plain fresh arrays: committed orbax arrays would make the jitted steps compile twice.
    state = jax.tree.map(lambda a: jnp.asarray(np.asarray(a)), state)
    return nnx.merge(graphdef, state), info
