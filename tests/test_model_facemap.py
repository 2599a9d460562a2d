"""`--model facemap`: the original Facemap's installed pretrained model, used as it is on disk.

Two sources of the two files (`facemap_model_state.pt`, `facemap_model_params.pth`):
jfacemap's own torch-format writer (no peer needed), and the original program
(facemap 1.0.8 with torch, its own venv; skipped when that venv is not built),
which also loads them back through its own `Pose.load_model` to give the
reference outputs.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench/, under plain `pytest` too

from bench.peers import PeerUnavailable, facemap_python, run_facemap_script  # noqa: E402
from jfacemap.io.facemap_install import (ENV_VAR, PARAMS_FILE, STATE_FILE, FacemapModelError,  # noqa: E402
                                         read_facemap_params)
from jfacemap.io.torch_weights import TorchFileError, save_torch_file, save_torch_state_dict  # noqa: E402
from jfacemap.nets.convert import torch_key_map, unet_to_torch_state_dict  # noqa: E402
from jfacemap.nets.unet import FacemapUNet  # noqa: E402
from jfacemap.skeleton import FACEMAP_BODYPARTS  # noqa: E402
from jfacemap.track.model_store import list_trackers, load_tracker, resolve_model  # noqa: E402

SMALL = (8, 8, 16, 16, 16)
# A params file like the original's download: the "params" dict it reads "channels" from (and, in
# versions before 1.0, "bodyparts"), with training settings beside them.
PARAMS = {"bodyparts": list(FACEMAP_BODYPARTS), "channels": list(SMALL), "kernel_size": 3, "nout": 15,
          "img_size": (256, 256), "learning_rate": 4e-4, "weight_decay": 0.0, "batch_size": 8,
          "n_epochs": 36, "augment": True, "seed": None}


def _nhwc(a):
    return np.transpose(a, (0, 2, 3, 1))


def _rel_err(ours, theirs):
    return float(np.max(np.abs(np.asarray(ours) - theirs)) / np.max(np.abs(theirs)))


def _random_unet(seed=0, channels=SMALL):
    """A FacemapUNet with random weights and BatchNorm statistics away from the identity."""
    model = FacemapUNet(15, channels=channels, rngs=nnx.Rngs(seed))
    rng = np.random.default_rng(seed)
    for var, _ in torch_key_map(model).values():
        if isinstance(var, nnx.BatchStat):
            var.set_value(jnp.asarray(rng.uniform(0.5, 1.5, var.get_value().shape), dtype=jnp.float32))
    model.eval()
    return model


@pytest.fixture
def install(tmp_path, monkeypatch):
    """A models folder written with jfacemap's own torch writer, set as $FACEMAP_MODELS_DIR."""
    folder = tmp_path / "fm-models"
    model = _random_unet()
    save_torch_state_dict(folder / STATE_FILE, unet_to_torch_state_dict(model))
    save_torch_file(folder / PARAMS_FILE, {"params": PARAMS})
    monkeypatch.setenv(ENV_VAR, str(folder))
    return folder, model


def test_facemap_loads_from_the_override_folder(install):
    folder, source = install
    model, bodyparts, meta = load_tracker("facemap")
    assert bodyparts == list(FACEMAP_BODYPARTS) and len(bodyparts) == 15
    assert model.channels == SMALL and model.n_keypoints == 15
    assert meta["source"] == str(folder / STATE_FILE) and meta["params_file"] == str(folder / PARAMS_FILE)
    assert resolve_model("facemap") == folder / STATE_FILE
    assert list_trackers()["facemap"] == folder / STATE_FILE
    images = jnp.asarray(np.random.default_rng(1).random((2, 256, 256, 1), dtype=np.float32))
    ours, theirs = model(images), source(images)
    for field in ("heatmap", "offset_y", "offset_x"):
        np.testing.assert_array_equal(np.asarray(getattr(ours, field)), np.asarray(getattr(theirs, field)))
    assert float(jnp.max(theirs.heatmap)) > 0  # a non-trivial comparison


def test_params_file_is_read_as_plain_data(install):
    folder, _ = install
    params = read_facemap_params(folder / PARAMS_FILE)
    assert params["channels"] == SMALL and params["img_size"] == (256, 256) and params["seed"] is None
    assert params["bodyparts"] == list(FACEMAP_BODYPARTS) and params["learning_rate"] == 4e-4


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text.strip(), text
    return text


def test_missing_files_name_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(ENV_VAR, raising=False)
    default = tmp_path / ".facemap" / "models"
    with pytest.raises(FacemapModelError) as err:
        load_tracker("facemap")
    text = _one_line(err)
    assert str(default) in text and STATE_FILE in text and PARAMS_FILE in text and f"${ENV_VAR}" in text
    assert "facemap" not in list_trackers()

    folder = tmp_path / "elsewhere"
    save_torch_state_dict(folder / STATE_FILE, unet_to_torch_state_dict(_random_unet()))
    monkeypatch.setenv(ENV_VAR, str(folder))
    with pytest.raises(FacemapModelError) as err:
        resolve_model("facemap")
    text = _one_line(err)
    assert str(folder) in text and f"from ${ENV_VAR}" in text and PARAMS_FILE in text and STATE_FILE not in text


def _pickle_zip(path: Path, payload: bytes) -> None:
    """A torch-style zip archive whose data.pkl is `payload`."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")


class _Evil:
    """Unpickles as os.mkdir(target) (pickled as the global `posix.mkdir`)."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (str(self.target),))


@pytest.mark.parametrize("which", [PARAMS_FILE, STATE_FILE])
def test_forbidden_pickle_global_is_refused(install, tmp_path, which):
    folder, _ = install
    marker = tmp_path / "pwned"
    _pickle_zip(folder / which, pickle.dumps({"params": {"channels": [8, 8], "x": _Evil(marker)}}, protocol=2))
    with pytest.raises(TorchFileError) as err:
        load_tracker("facemap")
    text = _one_line(err)
    assert str(folder / which) in text and "refused" in text and "mkdir" in text
    assert not marker.exists()


def test_params_that_disagree_or_are_not_params(install):
    folder, _ = install
    save_torch_file(folder / PARAMS_FILE, {"params": PARAMS | {"channels": [16, 32, 64, 128, 200]}})
    with pytest.raises(FacemapModelError, match="channels"):
        load_tracker("facemap")
    save_torch_file(folder / PARAMS_FILE, {"channels": list(SMALL)})
    with pytest.raises(FacemapModelError, match="no 'params' dict"):
        load_tracker("facemap")
    save_torch_file(folder / PARAMS_FILE, {"params": {"channels": "16,32"}})
    with pytest.raises(FacemapModelError, match=PARAMS_FILE):
        load_tracker("facemap")


def test_a_model_folder_named_facemap_here_still_wins(install, tmp_path, monkeypatch):
    from jfacemap.track.model_store import save_tracker

    save_tracker(tmp_path / "facemap", _random_unet(seed=3, channels=(8, 8, 8)), FACEMAP_BODYPARTS)
    monkeypatch.chdir(tmp_path)
    assert resolve_model("facemap") == tmp_path / "facemap"
    assert load_tracker("facemap")[0].channels == (8, 8, 8)


def test_cli_track_with_model_facemap(install, tmp_path):
    from jfacemap.io.keypoints import read_facemap_pose
    from jfacemap.io.video import write_video
    from jfacemap.track.predict import track_video

    folder, source = install
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[:96, :128]
    frames = np.stack([np.clip(90 + 60 * np.sin(xx / 9.0 + i) * np.cos(yy / 13.0) + rng.normal(0, 8, yy.shape),
                               0, 255) for i in range(6)]).astype(np.uint8)
    video = tmp_path / "clip.mkv"
    write_video(video, frames, fps=30.0, lossless=True)
    env = os.environ | {ENV_VAR: str(folder)}
    run = [sys.executable, "-m", "jfacemap.cli.app", "track", str(video), "--model", "facemap"]
    result = subprocess.run(run + ["--out", str(tmp_path / "out")], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    kp, names = read_facemap_pose(tmp_path / "out" / "clip_FacemapPose.h5")
    assert names == list(FACEMAP_BODYPARTS) and kp.shape == (6, 15, 3)
    expected = track_video(video, source, FACEMAP_BODYPARTS, out_path=tmp_path / "ref.h5")
    np.testing.assert_allclose(kp, expected, atol=1e-4)

    missing = subprocess.run(run, capture_output=True, text=True, env=env | {ENV_VAR: str(tmp_path / "none")},
                             timeout=300)
    lines = missing.stderr.strip().splitlines()
    assert missing.returncode == 1 and len(lines) == 1, missing.stderr
    assert lines[0].startswith("jfacemap: error: ") and str(tmp_path / "none") in lines[0]


# ------------------------------------------------ files written by the original program ---

# Runs INSIDE the facemap venv. argv: <home> <seed> <n_images>. Writes the two files where the
# original keeps them (<home>/.facemap/models, HOME set before facemap is imported: its
# model_loader downloads them at import when they are missing), then loads them back with the
# original's own Pose.load_model and saves its eval-mode outputs on random images -> <home>/ref.npz.
WRITE_AND_LOAD = r"""
import json, os, sys
home, seed, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.environ["HOME"] = home
from pathlib import Path
import numpy as np
import torch
torch.set_num_threads(1)
from facemap.pose.facemap_network import FMnet

models = Path(home) / ".facemap" / "models"
models.mkdir(parents=True, exist_ok=True)
torch.manual_seed(seed)
bodyparts = [f"part{k}" for k in range(15)]  # the net's own label list is not saved
net = FMnet(img_ch=1, output_ch=15, labels_id=bodyparts, channels=[16, 32, 64, 128, 200],
            device=torch.device("cpu"), kernel=3)
with torch.no_grad():
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5); m.bias.normal_(0.0, 0.2)
            m.running_mean.normal_(0.0, 0.5); m.running_var.uniform_(0.5, 2.0)
    net.Conv2_1x1[0].bias.add_(0.5)
torch.save(net.state_dict(), models / "facemap_model_state.pt")  # as Pose.save_model
params = json.loads(sys.argv[4])
params["img_size"] = tuple(params["img_size"])
torch.save({"params": params}, models / "facemap_model_params.pth")

from facemap import utils
utils.get_frame_details = lambda filenames: ([0, 1], [256], [256], [[None]])  # no video needed
from facemap.pose import model_loader, pose
assert model_loader.get_models_dir() == models
p = pose.Pose(filenames=[["unused.avi"]])
p.device = torch.device("cpu")
p.load_model()  # torch.load of both files, FMnet from params["params"]["channels"], load_state_dict
p.net.eval()
images = torch.rand(n, 1, 256, 256, generator=torch.Generator().manual_seed(seed + 1))
with torch.no_grad():
    hm, locx, locy = p.net(images)
np.savez(Path(home) / "ref.npz", images=images.numpy(), heatmap=hm.numpy(), locx=locx.numpy(),
         locy=locy.numpy())
(Path(home) / "ref.json").write_text(json.dumps({"bodyparts": list(p.bodyparts), "model_name": p.model_name,
                                                "channels": [m.out_channels for m in
                                                             (p.net.Conv[k].conv.conv_1[2] for k in range(5))]}))
"""


@pytest.fixture(scope="module")
def original_install(tmp_path_factory):
    if os.environ.get("JFACEMAP_SKIP_PEERS") == "1":
        pytest.skip("JFACEMAP_SKIP_PEERS=1")
    try:
        facemap_python(build=False)
    except (PeerUnavailable, OSError) as err:
        pytest.skip(f"original facemap environment not built: {err}")
    home = tmp_path_factory.mktemp("home")
    params = PARAMS | {"channels": [16, 32, 64, 128, 200]}
    run_facemap_script(WRITE_AND_LOAD, home, 0, 2, json.dumps(params))
    return home, dict(np.load(home / "ref.npz")), json.loads((home / "ref.json").read_text())


def test_original_files_give_the_original_outputs(original_install, monkeypatch):
    home, ref, info = original_install
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(ENV_VAR, raising=False)
    models = home / ".facemap" / "models"
    assert info["model_name"] == str(models / STATE_FILE) and info["channels"] == [16, 32, 64, 128, 200]
    model, bodyparts, meta = load_tracker("facemap")
    assert bodyparts == info["bodyparts"] == list(FACEMAP_BODYPARTS)  # the original's Pose.bodyparts
    assert model.channels == (16, 32, 64, 128, 200) and meta["params_file"] == str(models / PARAMS_FILE)
    out = model(jnp.asarray(_nhwc(ref["images"])))
    # The original's "locx" refines rows (our y), its "locy" columns (our x).
    errors = {"heatmap": _rel_err(out.heatmap, _nhwc(ref["heatmap"])),
              "offset_y/locx": _rel_err(out.offset_y, _nhwc(ref["locx"])),
              "offset_x/locy": _rel_err(out.offset_x, _nhwc(ref["locy"]))}
    print("max relative error vs the original's own loading:", errors)
    assert max(errors.values()) < 1e-4, errors
    assert read_facemap_params(models / PARAMS_FILE)["img_size"] == (256, 256)
