"""The README's Python tour runs as written, in a fresh interpreter from a clone with nothing beside it
(no ../shared), and prints nothing on stderr: no JAX fork warning, no other warning."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

EPILOGUE = """
import json as _json
print("README-RESULT " + _json.dumps({
    "n_frames": info.n_frames, "some": list(some.shape), "tracked": list(tracked.shape),
    "clip_file": __import__("os").path.exists("clip_FacemapPose.h5"), "truth": list(truth.shape),
    "features": list(features.shape), "ve": float(ve), "lifetime": float(lifetime),
    "ve_linear": float(result.encode.summary["ve_linear"]),
}))
"""


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_tour_runs_quietly_from_a_fresh_clone(tmp_path):
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert blocks, "README has no python example"
    assert "../shared" not in "".join(blocks), "the tour must run without ../shared"
    run = subprocess.run([sys.executable, "-c", "\n".join(blocks) + EPILOGUE], cwd=tmp_path,
                         capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "fork" not in run.stderr.lower(), run.stderr[-3000:]
    assert "warning" not in run.stderr.lower(), run.stderr[-3000:]
    line = next(line for line in run.stdout.splitlines() if line.startswith("README-RESULT "))
    got = json.loads(line.removeprefix("README-RESULT "))
    assert got["n_frames"] == 7600 and got["some"][0] == 4
    assert got["tracked"] == [200, 15, 3] and got["clip_file"]
    assert got["truth"] == [7600, 15, 3] and got["features"] == [7600, 256]
    # the deep encoder found behaviour-driven activity (2.5 min is too little for the 21-rank linear model),
    # and the HMM states last longer than one 0.2 s step
    assert got["ve"] > max(got["ve_linear"], 0) and got["lifetime"] > 0.2, got
