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
from pathlib import Path

from flax import nnx

from jfacemap.io.model_folder import CHECKSUM_KEY, ModelFolderError, describe, restore_model, write_model_folder
from jfacemap.nets.encoder import NeuralEncoder

FORMAT = "jfacemap-encoder"
VERSION = 1


def save_encoder(path: str | os.PathLike, model: NeuralEncoder, meta: dict | None = None) -> Path:
    """Write `model` to the folder `path` (orbax state/ + model.json with
    the architecture and the caller's `meta`, e.g. recipe and history),
    replacing it atomically (built beside it under a temporary name, renamed)."""
    final = Path(path).expanduser().absolute()
    info = {"format": FORMAT, "version": VERSION, "architecture": model.config()}
    return write_model_folder(final, model, describe(info, meta))


def load_encoder(path: str | os.PathLike) -> tuple[NeuralEncoder, dict]:
    """(model, model.json contents) from a folder written by `save_encoder`."""
    folder = Path(path).expanduser().absolute()
    try:
        info = json.loads((folder / "model.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelFolderError(f"{folder}: cannot read model.json ({err})") from err
    if info.get("format") != FORMAT or "architecture" not in info:
        raise ModelFolderError(f"{folder}: not a jfacemap encoder folder")
    arch = {k: int(v) for k, v in info["architecture"].items()}
    return restore_model(folder, lambda: NeuralEncoder(**arch, rngs=nnx.Rngs(0)), info.get(CHECKSUM_KEY)), info
