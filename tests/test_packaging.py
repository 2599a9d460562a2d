"""pyproject's hand-written package list covers every package folder, and weights/ ships."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "jfacemap").rglob("__init__.py")
    }
    assert on_disk - listed == set(), f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"
    assert "jfacemap.weights" in listed


def test_shipped_weights_resolve_to_the_weights_folder():
    from jfacemap.track.model_store import REPO_WEIGHTS

    assert (REPO_WEIGHTS / "README.md").read_text() == (ROOT / "weights" / "README.md").read_text()
