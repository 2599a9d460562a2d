"""The README's Python tour runs as written (paths made absolute, files in a temp folder)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MIRROR = ROOT.parent / "shared" / "data" / "mirror-mouse" / "CollectedData.csv"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_tour_runs(tmp_path, monkeypatch):
    if not MIRROR.exists():
        pytest.skip("../shared/data/mirror-mouse is not beside this checkout")
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block.replace("../shared/data/mirror-mouse/CollectedData.csv", str(MIRROR)), "README", "exec"), namespace)
    # the tour ends with real objects, not just no exception
    assert namespace["info"].n_frames == 500
    assert namespace["some"].shape[0] == 4
    assert namespace["images"].shape[0] == 90
    assert np.isnan(namespace["labels"].keypoints).any()
    assert os.path.exists(tmp_path / "mouse_FacemapPose.h5")
