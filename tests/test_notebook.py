"""notebooks/jfacemap_tour.ipynb runs top to bottom on a CPU with its short settings (JFACEMAP_NOTEBOOK_QUICK=1).

Its code cells run in order in one fresh interpreter (no Jupyter needed), outside Colab, so the install cell
does nothing and the refinement page is started and stopped without a browser.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "jfacemap_tour.ipynb"


def code_cells(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]


def test_the_notebook_opens_in_colab_and_installs_the_right_extra():
    text = NOTEBOOK.read_text()
    assert "colab.research.google.com/github/" in text and "colab-badge.svg" in text
    install = code_cells(NOTEBOOK)[0]
    assert '"cuda"' in install and '"tpu"' in install and "git+" in install


# about two minutes on one CPU core (rendering 7,600 frames, tracking, the encoders, the HMM): in CI, so it never rots
def test_the_notebook_runs_top_to_bottom(tmp_path):
    pytest.importorskip("matplotlib")
    env = dict(os.environ, JFACEMAP_NOTEBOOK_QUICK="1", MPLBACKEND="Agg",
               PYTHONPATH=str(NOTEBOOK.parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    run = subprocess.run([sys.executable, "-c", "\n\n".join(code_cells(NOTEBOOK))], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "variance explained: linear" in run.stdout and "refinement page: http://127.0.0.1:" in run.stdout
    assert "clip.csv" in run.stdout
    assert (tmp_path / "jfacemap-tour" / "chain" / "hmm").is_dir()
