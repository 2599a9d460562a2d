"""Optional dependencies (pyproject's extras): import one, or say in one line which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from jfacemap.errors import JfacemapError

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(JfacemapError):
    """An optional dependency is not installed; the message names the pip command that installs it."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """`module` imported, else MissingExtraError: '<what> needs <module>: pip install "jfacemap[<extra>]"'."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(f'{what} needs {module.split(".")[0]}, which is not installed: '
                                f'pip install "jfacemap[{extra}]"') from err
