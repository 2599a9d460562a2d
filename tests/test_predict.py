"""Whole-video tracking: outputs, batch/chunk invariance, resuming, errors (random tiny U-Net)."""

from __future__ import annotations

import numpy as np
import pytest
from flax import nnx

from jfacemap.io.keypoints import read_dlc_csv, read_facemap_pose
from jfacemap.io.video import VideoError, write_video
from jfacemap.nets.unet import FacemapUNet
from jfacemap.synth import make_session
from jfacemap.track import predict as predict_mod
from jfacemap.track.predict import partial_path, track_video, track_videos

SMALL = (8, 8, 16, 16, 16)
N_FRAMES = 13  # not a multiple of any batch or chunk size used below
SHARED: dict = {}  # compiled predictors reused across tests (each new one costs a compile)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip")
    session = make_session(N_FRAMES, seed=2, size=64)
    frames, _ = session.render(0, N_FRAMES)
    frames = np.concatenate([frames, frames[:, :, :16]], axis=2)  # 64 x 80: not square
    video = folder / "mouse.mkv"
    write_video(video, frames, fps=50.0, lossless=True)
    model = FacemapUNet(len(session.bodyparts), SMALL, rngs=nnx.Rngs(0))
    # A raised heatmap bias gives every channel a peak: an all-zero heatmap would decode to NaN.
    model.heatmap_head.bias.set_value(model.heatmap_head.bias.get_value() + 0.5)
    return video, model, list(session.bodyparts)


@pytest.fixture(scope="module")
def reference(clip, tmp_path_factory):
    video, model, names = clip
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    return track_video(video, model, names, batch_size=8, chunk_size=256, out_path=out, predictors=SHARED)


def test_outputs_and_files(clip, reference, tmp_path):
    video, model, names = clip
    assert reference.shape == (N_FRAMES, len(names), 3) and reference.dtype == np.float32
    assert np.isfinite(reference).all()
    # Random weights: argmax anywhere on the grid, offsets of a few px beyond it.
    assert (np.abs(reference[..., 0] - 40) < 40 + 16).all() and (np.abs(reference[..., 1] - 32) < 32 + 16).all()

    [out] = track_videos([video], model, names, out_dir=tmp_path, csv=True, chunk_size=8, predictors=SHARED)
    assert out == tmp_path / "mouse_FacemapPose.h5"
    kp, bodyparts = read_facemap_pose(out)
    assert bodyparts == names
    np.testing.assert_allclose(kp, reference, atol=1e-4)
    table = read_dlc_csv(out.with_suffix(".csv"))
    assert table.bodyparts == names and table.with_likelihood
    assert table.frame_indices() == list(range(N_FRAMES))
    np.testing.assert_allclose(table.keypoints, reference, atol=1e-4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mouse_FacemapPose.csv", "mouse_FacemapPose.h5"]


@pytest.mark.parametrize("batch_size, chunk_size", [(1, 5), (3, 4), (8, 13)])
def test_batch_and_chunk_size_do_not_change_results(clip, reference, tmp_path, batch_size, chunk_size):
    video, model, names = clip
    kp = track_video(video, model, names, batch_size=batch_size, chunk_size=chunk_size,
                     out_path=tmp_path / "o.h5", predictors=SHARED)
    np.testing.assert_allclose(kp, reference, atol=1e-4)


class Stop(Exception):
    pass


def test_interrupted_run_resumes_from_the_last_chunk(clip, reference, tmp_path, monkeypatch):
    video, model, names = clip
    out = tmp_path / "o.h5"
    seen = []

    def stop_after_two(n):
        seen.append(n)
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        track_video(video, model, names, chunk_size=5, out_path=out, on_progress=stop_after_two,
                    predictors=SHARED)
    assert partial_path(out).is_file() and not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["o.h5.partial"]

    starts = []
    real = predict_mod.iter_chunks
    monkeypatch.setattr(predict_mod, "iter_chunks", lambda v, c, start=0, **kw: starts.append(start) or real(v, c, start=start, **kw))
    progress = []
    kp = track_video(video, model, names, chunk_size=5, out_path=out, on_progress=progress.append,
                     predictors=SHARED)
    assert starts == [10]  # decoding skipped the two finished chunks
    assert progress == [10, 3]  # the resumed frames first, then each new chunk
    np.testing.assert_allclose(kp, reference, atol=1e-4)
    np.testing.assert_allclose(read_facemap_pose(out)[0], reference, atol=1e-4)
    assert not partial_path(out).exists()


def test_partial_of_another_model_or_damaged_is_discarded(clip, reference, tmp_path, monkeypatch):
    video, model, names = clip
    out = tmp_path / "o.h5"
    other = FacemapUNet(len(names), SMALL, rngs=nnx.Rngs(1))
    with pytest.raises(Stop):
        track_video(video, other, names, chunk_size=5, out_path=out, on_progress=lambda n: (_ for _ in ()).throw(Stop))
    starts = []
    real = predict_mod.iter_chunks
    monkeypatch.setattr(predict_mod, "iter_chunks", lambda v, c, start=0, **kw: starts.append(start) or real(v, c, start=start, **kw))
    np.testing.assert_allclose(track_video(video, model, names, chunk_size=5, out_path=out, predictors=SHARED), reference, atol=1e-4)
    partial_path(out).write_bytes(b"\x89HDF garbage from a killed write")
    np.testing.assert_allclose(track_video(video, model, names, chunk_size=5, out_path=out, predictors=SHARED), reference, atol=1e-4)
    assert starts == [0, 0]


def test_postprocess_gets_fps_and_changes_the_file(clip, reference, tmp_path):
    video, model, names = clip
    got = {}

    def shift(kp, fps):
        got["fps"] = fps
        return kp + np.array([1.0, 0.0, 0.0], np.float32)

    kp = track_video(video, model, names, out_path=tmp_path / "o.h5", postprocess=shift, predictors=SHARED)
    assert got["fps"] == pytest.approx(50.0)
    np.testing.assert_allclose(read_facemap_pose(tmp_path / "o.h5")[0][..., 0], reference[..., 0] + 1, atol=1e-4)
    np.testing.assert_allclose(kp[..., 1], reference[..., 1], atol=1e-4)


def test_corrupt_video_is_a_one_line_error(clip, tmp_path):
    _, model, names = clip
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError) as err:
        track_video(bad, model, names)
    assert "bad.mp4" in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == [bad]


def test_bbox_outside_the_frame_is_a_clear_error(clip, tmp_path):
    video, model, names = clip
    with pytest.raises(ValueError, match=r"mouse\.mkv: bbox .* outside the 80x64 frame"):
        track_video(video, model, names, bbox=(0, 100, 0, 64), out_path=tmp_path / "o.h5")
    with pytest.raises(ValueError, match="bodyparts"):
        track_video(video, model, names[:3], out_path=tmp_path / "o.h5")
    assert not any(tmp_path.iterdir())


def test_two_videos_with_one_name_into_one_folder_are_refused(tmp_path):
    from jfacemap.track.predict import output_paths

    a, b = tmp_path / "day1" / "cam.mp4", tmp_path / "day2" / "cam.mp4"
    with pytest.raises(ValueError, match="would both write"):
        output_paths([a, b], tmp_path / "out")
    assert [p.parent.name for p in output_paths([a, b])] == ["day1", "day2"]


# ------------------------------------------- hard and damaged videos -------

@pytest.fixture(scope="module")
def hard_clips(tmp_path_factory):
    import hard_videos

    folder = tmp_path_factory.mktemp("hard")
    intact, corrupt, bad = hard_videos.make_corrupt(folder, n_frames=200, n_bad=2)
    names = ("long_gop", "intra_refresh")
    return {**{name: hard_videos.make(folder, name) for name in names}, "corrupt": corrupt}, bad


@pytest.mark.parametrize("name", ["long_gop", "intra_refresh", "corrupt"])
def test_resume_is_byte_identical_on_hard_videos(hard_clips, tmp_path, name):
    clips, bad = hard_clips
    video = clips[name]
    model = FacemapUNet(4, SMALL, rngs=nnx.Rngs(3))
    names = ["a", "b", "c", "d"]
    warned = []
    whole = track_video(video, model, names, chunk_size=64, out_path=tmp_path / "whole.h5",
                        predictors=SHARED, on_warning=warned.append)
    seen = []

    def stop_after_three(n):
        seen.append(n)
        if len(seen) == 3:
            raise Stop

    out = tmp_path / "resumed.h5"
    with pytest.raises(Stop):  # stops after frame 192: resuming seeks into the middle of the video
        track_video(video, model, names, chunk_size=64, out_path=out, on_progress=stop_after_three,
                    predictors=SHARED, on_warning=warned.append)
    resumed = track_video(video, model, names, chunk_size=64, out_path=out, predictors=SHARED,
                          on_warning=warned.append)
    assert resumed.tobytes() == whole.tobytes()
    assert read_facemap_pose(out)[0].tobytes() == read_facemap_pose(tmp_path / "whole.h5")[0].tobytes()
    if name == "corrupt":
        assert np.isnan(whole[bad, :, :2]).all() and (whole[bad, :, 2] == 0).all()
        assert warned == [f"corrupt.mkv: 2 frames could not be decoded (frames {bad[0]}-{bad[1]}); "
                          "their keypoints are NaN with likelihood 0"] * 2
    else:
        assert warned == []


def test_track_videos_keep_going_skips_bad_videos_through_its_callbacks(clip, tmp_path):
    import contextlib

    video, model, names = clip
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video" * 50)
    skipped, opened = [], []

    @contextlib.contextmanager
    def per_video(v, out):
        opened.append((v.name, out.name))
        progress = []
        yield {"on_progress": progress.append}
        assert sum(progress) == N_FRAMES  # runs only after a tracked video

    written = track_videos([bad, video], model, names, out_dir=tmp_path / "out", keep_going=True,
                           on_error=lambda v, err: skipped.append((v.name, str(err))), per_video=per_video,
                           chunk_size=8, predictors=SHARED)
    assert written == [tmp_path / "out" / "mouse_FacemapPose.h5"] and written[0].is_file()
    assert [name for name, _ in skipped] == ["bad.mp4"] and "bad.mp4" in skipped[0][1]
    assert opened == [("bad.mp4", "bad_FacemapPose.h5"), ("mouse.mkv", "mouse_FacemapPose.h5")]
    with pytest.warns(predict_mod.VideoSkippedWarning, match="skipped bad.mp4"):  # the default callback
        track_videos([bad], model, names, out_dir=tmp_path / "out", keep_going=True)
    with pytest.raises(VideoError, match="bad.mp4"):  # without keep_going the first bad video stops it
        track_videos([bad, video], model, names, out_dir=tmp_path / "out2", chunk_size=8, predictors=SHARED)
    assert not (tmp_path / "out2" / "mouse_FacemapPose.h5").exists()
