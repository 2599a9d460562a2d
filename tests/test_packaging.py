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


def test_shipped_weights_are_found_in_an_installed_layout(tmp_path):
    """A wheel puts weights/ at jfacemap/weights (no __init__.py): the model names must resolve there."""
    import shutil
    import subprocess
    import sys

    site = tmp_path / "site-packages"
    shutil.copytree(ROOT / "jfacemap", site / "jfacemap", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "weights", site / "jfacemap" / "weights")
    code = "from jfacemap.track.model_store import list_trackers; print(sorted(list_trackers().items()))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                            env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 0, result.stderr
    shipped = sorted(p.name for p in (ROOT / "weights").iterdir() if (p / "model.json").is_file())
    assert shipped, "no shipped model in weights/"
    for name in shipped:
        assert f"('{name}', PosixPath('{site}/jfacemap/weights/{name}')" in result.stdout, result.stdout
