"""User errors vs bugs: the CLI prints a JfacemapError (or an OS error) as one line and exits 1;
any other exception keeps its traceback. The package's error classes share the one base class,
and re-raised errors keep their cause."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jfacemap.cli.app import is_user_error, main
from jfacemap.errors import JfacemapError

PACKAGE = Path(__file__).resolve().parents[1] / "jfacemap"
ENV = os.environ | {"OPENBLAS_NUM_THREADS": "1"}


def encode_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["encode", "--neural", str(tmp_path / "n.npz"), "--behavior", str(tmp_path / "b.npy"),
            "--fps", "50", "--out", str(tmp_path / "out"), *extra]


def test_a_user_error_is_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("JFACEMAP_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(encode_args(tmp_path, "--model", "svm"))
    assert exit_.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["jfacemap: error: --model must be deep, linear or both, got 'svm'"]


def test_a_missing_input_file_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("JFACEMAP_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(encode_args(tmp_path))
    assert exit_.value.code == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("jfacemap: error: ") and "n.npz" in line


def test_an_os_error_is_one_line(tmp_path, capsys, monkeypatch):
    import jfacemap.io.neural

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "n.npz"))

    monkeypatch.delenv("JFACEMAP_DEBUG", raising=False)
    monkeypatch.setattr(jfacemap.io.neural, "read_neural", denied)
    with pytest.raises(SystemExit) as exit_:
        main(encode_args(tmp_path))
    assert exit_.value.code == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("jfacemap: error: ") and "Permission denied" in line


@pytest.mark.parametrize("bug", [RuntimeError, ValueError, TypeError])
def test_a_bug_in_a_library_function_propagates(tmp_path, capsys, monkeypatch, bug):
    import jfacemap.io.neural

    def broken(*args, **kwargs):
        raise bug("internal: shapes (3,) and (4,) do not broadcast")

    monkeypatch.setattr(jfacemap.io.neural, "read_neural", broken)
    with pytest.raises(bug, match="do not broadcast"):
        main(encode_args(tmp_path))
    assert "jfacemap: error" not in capsys.readouterr().err


def test_a_bug_prints_its_traceback_from_the_console_entry(tmp_path):
    """Through a real interpreter: the traceback reaches stderr, with the bug's own frame."""
    code = ("import sys, jfacemap.io.neural as neural\n"
            "def read_neural(*a, **k):\n"
            "    raise RuntimeError('simulated internal bug')\n"
            "neural.read_neural = read_neural\n"
            "from jfacemap.cli.app import main\n"
            "main(sys.argv[1:])\n")
    result = subprocess.run([sys.executable, "-c", code, *encode_args(tmp_path)], capture_output=True, text=True,
                            timeout=300, env=ENV)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: simulated internal bug" in result.stderr and "in read_neural" in result.stderr
    assert "jfacemap: error" not in result.stderr


def test_debug_setting_shows_the_user_errors_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("JFACEMAP_DEBUG", "1")
    with pytest.raises(JfacemapError, match="--model must be"):
        main(encode_args(tmp_path, "--model", "svm"))


def _raise_in_module(module: str, error: Exception) -> Exception:
    """`error`, raised by code whose module is `module`."""
    scope = {"__name__": module, "error": error}
    exec("def fail():\n    raise error\n", scope)
    try:
        scope["fail"]()
    except Exception as raised:  # noqa: BLE001
        return raised
    raise AssertionError("not raised")


def test_only_jfacemap_and_os_errors_count_as_user_errors():
    assert is_user_error(JfacemapError("x")) and is_user_error(FileNotFoundError("x"))
    assert not is_user_error(ValueError("x")) and not is_user_error(KeyError("x"))
    for module in ("jfacemap.encode.pipeline", "jfacemap.hmm.fit", "jfacemap.cli.hmm", "numpy.core"):
        assert not is_user_error(_raise_in_module(module, ValueError("bug"))), module
    assert is_user_error(_raise_in_module("jfacemap.hmm.fit", JfacemapError("n_states must be >= 1")))


def test_the_hmm_command_reports_bad_input_as_one_line(tmp_path, capsys, monkeypatch):
    import numpy as np

    monkeypatch.delenv("JFACEMAP_DEBUG", raising=False)
    x = np.random.default_rng(0).normal(size=(40, 3))
    x[3, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    with pytest.raises(SystemExit) as exit_:
        main(["hmm", str(tmp_path / "x.npy"), "--states", "2", "--downsample", "1", "--out", str(tmp_path / "o")])
    assert exit_.value.code == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("jfacemap: error: ") and "x.npy" in line and "non-finite" in line


# --------------------------------------------------------------- the source ---


def _classes() -> dict[str, list[str]]:
    """name -> base names of every class the package defines."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                found[node.name] = [ast.unparse(b) for b in node.bases]
    return found


def test_user_error_classes_share_the_base_class():
    from jfacemap.encode.movie_pcs_store import load_movie_svd  # noqa: F401  (imports every module below)
    from jfacemap.io.behavior import BehaviorFileError
    from jfacemap.io.facemap_install import FacemapModelError
    from jfacemap.io.images import ImageError
    from jfacemap.io.keypoints import KeypointFileError
    from jfacemap.io.model_folder import ModelFolderError
    from jfacemap.io.neural import NeuralFileError
    from jfacemap.io.torch_weights import TorchFileError
    from jfacemap.io.video import VideoError
    from jfacemap.refine.project import ProjectError
    from jfacemap.refine.session import RequestError
    from jfacemap.track.labels import LabelError

    for cls in (BehaviorFileError, FacemapModelError, ImageError, KeypointFileError, ModelFolderError,
                NeuralFileError, TorchFileError, VideoError, ProjectError, RequestError, LabelError):
        assert issubclass(cls, JfacemapError) and issubclass(cls, ValueError), cls
    # and no new one sidesteps it
    plain = sorted(name for name, bases in _classes().items() if "ValueError" in bases and name != "JfacemapError")
    assert not plain, f"subclass JfacemapError instead of ValueError: {plain}"


# `raise ... from None` drops the cause a bug report needs. Left in files other work owns:
KNOWN_FROM_NONE: dict[str, int] = {}


def test_re_raised_errors_keep_their_cause():
    counts = {}
    for path in PACKAGE.rglob("*.py"):
        n = sum(1 for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Raise) and isinstance(node.cause, ast.Constant) and node.cause.value is None)
        if n:
            counts[path.relative_to(PACKAGE).as_posix()] = n
    new = {f: n for f, n in counts.items() if n > KNOWN_FROM_NONE.get(f, 0)}
    assert not new, f"raise ... from err (not from None) in {new}"
    assert all(counts.get(f, 0) > 0 for f in KNOWN_FROM_NONE), (
        f"fixed: remove from KNOWN_FROM_NONE: {[f for f in KNOWN_FROM_NONE if not counts.get(f)]}")
