"""Each stage's public names (`jfacemap.track`, `.encode`, `.hmm`, `.io`, `.synth`, `.roi`) resolve, are documented,
and importing a stage's package loads nothing heavy until a name is used."""

import importlib
import inspect
import subprocess
import sys

import pytest

PACKAGES = ["jfacemap.track", "jfacemap.encode", "jfacemap.hmm", "jfacemap.io", "jfacemap.synth", "jfacemap.roi",
            "jfacemap.live"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves_and_has_a_docstring(package):
    module = importlib.import_module(package)
    assert module.__all__, f"{package} exports nothing"
    for name in module.__all__:
        value = getattr(module, name)
        assert inspect.getdoc(value), f"{package}.{name} has no docstring"
        if inspect.isfunction(value):
            assert value.__name__ == name, f"{package}.{name} resolves to {value.__name__}"
    with pytest.raises(AttributeError, match="no attribute"):
        getattr(module, "no_such_name")


def test_the_main_functions_say_their_shapes():
    from jfacemap.chain import run_chain
    from jfacemap.encode import encode_recording
    from jfacemap.hmm import run_hmm
    from jfacemap.track import track_video

    for fn in (run_chain, encode_recording, run_hmm, track_video):
        doc = inspect.getdoc(fn)
        assert "(" in doc and ("T" in doc or "time" in doc), fn.__name__
        assert inspect.signature(fn).parameters, fn.__name__
        annotated = [p for p in inspect.signature(fn).parameters.values() if p.annotation is not inspect._empty]
        assert len(annotated) >= 2, f"{fn.__name__}: parameters without types"


@pytest.mark.parametrize("package", ["jfacemap.encode", "jfacemap.hmm", "jfacemap.io", "jfacemap.roi", "jfacemap.live"])
def test_importing_a_stage_package_is_light(package):
    code = f"import sys, {package}; print('jax' in sys.modules, 'h5py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"], f"importing {package} loaded jax/h5py: {out}"
