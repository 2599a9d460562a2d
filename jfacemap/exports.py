"""Lazy public names for a subpackage's `__init__`: `from jfacemap.encode import encode_recording`
works, but importing `jfacemap.encode` alone loads nothing heavy (the CLI starts fast, and a stage
that needs no JAX never imports it)."""

from __future__ import annotations

from importlib import import_module
from typing import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[list[str], Callable, Callable]:
    """(__all__, __getattr__, __dir__) for `package`, whose public `name` lives in module `exports[name]`
    (relative to the package: "pipeline" for `<package>.pipeline`)."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(f"{package}.{exports[name]}"), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return sorted(exports), __getattr__, __dir__
