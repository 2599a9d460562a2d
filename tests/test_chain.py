"""The paper's chain through the public API alone, as a notebook would run it (no `jfacemap.cli` import):
render a session, simulate neurons driven by its behaviour, then video -> keypoints -> encoders -> HMM."""

import json

import numpy as np
import pytest
from flax import nnx

from jfacemap import FACEMAP_BODYPARTS
from jfacemap.chain import run_chain, track_keypoints
from jfacemap.encode import encode_recording
from jfacemap.hmm import run_hmm
from jfacemap.io import read_facemap_pose, read_frames, write_video
from jfacemap.nets.unet import FacemapUNet
from jfacemap.synth import make_session, save_synthetic_session, simulate_neural
from jfacemap.track import make_predict_fn

FPS = 25.0     # the slowest camera the neural simulator takes: half the frames to render and track
FRAMES = 3800  # the shortest session whose neurons split into 10 train/test segments (2.5 min)


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chain")
    files = save_synthetic_session(folder / "mouse.mp4", n_frames=FRAMES, seed=7, fps=FPS)
    session = make_session(FRAMES, seed=7, fps=FPS)
    sim = simulate_neural(400, None, seed=7, neural_fps=10.0, session=session)
    return files, sim


def small_tracker():
    """A narrow, untrained U-Net: the wiring is under test here, not the accuracy (bench/ and the demo test that)."""
    return FacemapUNet(len(FACEMAP_BODYPARTS), channels=(4, 8, 8), n_upsample=1, rngs=nnx.Rngs(0)), FACEMAP_BODYPARTS


def test_run_chain_hands_each_stage_to_the_next_in_memory_and_on_disk(recording, tmp_path):
    files, sim = recording
    tracker = small_tracker()
    result = run_chain(files.video, sim.spks, sim.neural_times, video_times=sim.behavior_times, xpos=sim.xpos,
                       ypos=sim.ypos, tracker=tracker, n_states=6, seed=1, out=tmp_path,
                       encode_options={"deep_overrides": {"epochs": 12}},
                       hmm_options={"max_steps": 30, "refine": 0})
    # tracking: the tracker's own output on those frames, and the pose file a resumed run would reuse
    picks = np.array([0, 1234, FRAMES - 1])
    predict = make_predict_fn(tracker[0], None, frame_shape=(256, 256))
    np.testing.assert_allclose(result.tracked[picks], np.asarray(predict(read_frames(files.video, picks))),
                               atol=1e-3)
    on_disk, names = read_facemap_pose(tmp_path / "keypoints" / "mouse_FacemapPose.h5")
    assert names == list(FACEMAP_BODYPARTS)
    np.testing.assert_allclose(on_disk[..., :2], result.tracked[..., :2], atol=1e-3)
    # encode: the deep features are the encoder's, at every video frame and at the neural frames
    enc = result.encode
    assert enc.features.shape == (FRAMES, 256) and enc.features_neural.shape == (sim.n_frames, 256)
    assert np.isfinite(enc.features).all()
    with np.load(tmp_path / "encode" / "features.npz") as saved:
        np.testing.assert_array_equal(saved["features"], enc.features)
        np.testing.assert_array_equal(saved["times"], sim.behavior_times)
    i = np.searchsorted(sim.behavior_times, sim.neural_times[5], side="right") - 1
    frac = (sim.neural_times[5] - sim.behavior_times[i]) / (sim.behavior_times[i + 1] - sim.behavior_times[i])
    expected = (1 - frac) * enc.features[i] + frac * enc.features[i + 1]
    np.testing.assert_allclose(enc.features_neural[5], expected, rtol=1e-4, atol=1e-4)
    # HMM: fitted to those features at 25 Hz / 10
    assert result.hmm.params.means.shape == (6, 256)
    assert result.hmm.x.shape[0] == FRAMES // 10
    summary = json.loads((tmp_path / "hmm" / "summary.json").read_text())
    assert summary["n_states"] == 6 and np.isfinite(summary["test_loglik"])
    assert json.loads((tmp_path / "encode" / "summary.json").read_text())["inputs"]["behavior"] == "tracked keypoints"


def test_each_step_is_callable_alone(recording, tmp_path):
    files, sim = recording
    clips = [write_video(tmp_path / name, read_frames(files.video, np.arange(40)), fps=FPS) for name in ("a.mp4", "b.mp4")]
    keypoints, bodyparts, fps = track_keypoints(clips, small_tracker(), out_dir=tmp_path)
    assert keypoints.shape == (80, 15, 3) and fps == FPS and bodyparts == FACEMAP_BODYPARTS
    np.testing.assert_array_equal(keypoints[:40], keypoints[40:])  # parts of one recording, in order
    x = np.random.default_rng(0).normal(size=(FRAMES, 4)).astype(np.float32)
    enc = encode_recording(sim.spks, sim.neural_times, x, sim.behavior_times, models=("linear",))
    assert enc.features is None and "ve_linear" in enc.summary
    hmm = run_hmm(np.random.default_rng(1).normal(size=(2000, 3)), 50.0, 4, max_steps=10, refine=0)
    assert hmm.states.shape == (200,)


def test_chain_refuses_an_hmm_without_the_deep_encoder(recording):
    files, sim = recording
    from jfacemap.errors import JfacemapError

    with pytest.raises(JfacemapError, match="n_states"):
        run_chain(files.video, sim.spks, sim.neural_times, models=("linear",), n_states=5)
