"""`jfacemap track --cluster`: Dask distributed gives the files serial `track` writes, also past a killed worker."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from jfacemap.errors import JfacemapError
from jfacemap.cluster import ClusterError, parse_cluster

N_VIDEOS = 4
N_FRAMES = 24
CHUNK = 8  # three chunks per video: a kill after the first leaves a partial to resume from

# As tests/test_cli_track.py: the cheapest XLA CPU optimisation level halves compile time. Every process
# here (the serial run, the workers) compiles the same functions: a shared persistent cache saves the repeats.
# Both are set in os.environ by the `archive` fixture, which spawned workers inherit.
XLA_FLAGS = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jfacemap.cli.app", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_parse_cluster():
    assert parse_cluster("local:2") == ("local", 2)
    assert parse_cluster(" tcp://10.0.0.5:8786 ") == ("address", "tcp://10.0.0.5:8786")
    assert parse_cluster("tls://[::1]:8786") == ("address", "tls://[::1]:8786")
    for bad in ("local", "local:0", "local:x", "10.0.0.5:8786", "tcp://", "slurm:4"):
        with pytest.raises(ClusterError, match="--cluster"):
            parse_cluster(bad)
    assert issubclass(ClusterError, JfacemapError)


def test_missing_extra_names_the_install(monkeypatch):
    from jfacemap.cluster import require_distributed

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(ClusterError, match=r'pip install "jfacemap\[cluster\]"'):
        require_distributed()


def test_unreachable_scheduler_is_one_line():
    pytest.importorskip("distributed")
    from jfacemap.cluster import open_client

    with pytest.raises(ClusterError, match=r"^--cluster tcp://127\.0\.0\.1:9: cannot reach a Dask scheduler there"):
        with open_client("tcp://127.0.0.1:9", timeout_s=0.5):
            pass


@pytest.fixture(scope="module")
def compile_env(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XLA_FLAGS", XLA_FLAGS)
        patch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path_factory.mktemp("jax-cache")))
        patch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        patch.setenv("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
        yield


@pytest.fixture(scope="module")
def archive(tmp_path_factory, compile_env):
    """N_VIDEOS short clips, a tiny random tracker, and serial `track`'s outputs for them."""
    from flax import nnx

    from jfacemap.io.video import write_video
    from jfacemap.nets.unet import FacemapUNet
    from jfacemap.synth import make_session
    from jfacemap.track.model_store import save_tracker

    root = tmp_path_factory.mktemp("archive")
    (root / "clips").mkdir()
    for i in range(N_VIDEOS):
        session = make_session(N_FRAMES, seed=i, size=64)
        frames, _ = session.render(0, N_FRAMES)
        write_video(root / "clips" / f"mouse{i}.mkv", frames, fps=50.0, lossless=True)
    model = FacemapUNet(len(session.bodyparts), (8, 8, 16, 16, 16), rngs=nnx.Rngs(0))
    model.heatmap_head.bias.set_value(model.heatmap_head.bias.get_value() + 0.5)  # every channel peaks
    save_tracker(root / "model", model, list(session.bodyparts))
    result = run_cli("track", root / "clips", "--model", root / "model", "--out", root / "serial", "--chunk-size", CHUNK)
    assert result.returncode == 0, result.stderr
    return root


def h5_arrays(path: Path) -> dict:
    """Every dataset of an h5 file by its path inside it."""
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, node: found.__setitem__(name, node[()]) if isinstance(node, h5py.Dataset) else None)
    return found


def assert_same_outputs(root: Path, out: Path) -> None:
    for i in range(N_VIDEOS):
        name = f"mouse{i}_FacemapPose.h5"
        serial, cluster = h5_arrays(root / "serial" / name), h5_arrays(out / name)
        assert sorted(cluster) == sorted(serial) and serial
        for key, value in serial.items():
            np.testing.assert_array_equal(cluster[key], value, err_msg=f"{name}: {key}")
    assert not list(out.glob("*.partial"))


def test_bad_cluster_is_one_line(tmp_path, capsys):
    from jfacemap.cli.app import main

    with pytest.raises(SystemExit) as stop:
        main(["track", str(tmp_path / "none.mkv"), "--cluster", "local:zero"])  # refused before the video is read
    assert stop.value.code == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("jfacemap: error: --cluster 'local:zero'")


@pytest.fixture(scope="module")
def client(compile_env):
    """A LocalCluster of 2 workers shared by the tests below (starting one costs ~10 s here)."""
    pytest.importorskip("distributed")  # the `test` extra installs it; a bare checkout skips
    from jfacemap.cluster import open_client

    with open_client("local:2") as client:
        yield client


def test_cli_joins_a_running_scheduler_and_matches_serial(archive, client):
    from typer.testing import CliRunner

    from jfacemap.cli.app import app

    out = archive / "joined"
    result = CliRunner().invoke(app, ["track", str(archive / "clips"), "--model", str(archive / "model"),
                                      "--out", str(out), "--chunk-size", str(CHUNK),
                                      "--cluster", client.scheduler.address])
    assert result.exit_code == 0, result.output
    assert_same_outputs(archive, out)
    lines = result.output.strip().splitlines()
    assert sum(line.startswith("tracked mouse") for line in lines) == N_VIDEOS  # one line per video as it ends
    assert lines[-1].startswith(f"{N_VIDEOS} of {N_VIDEOS} videos tracked, 0 failed")
    assert len(client.nthreads()) == 2  # joined, not replaced: the workers still run


def test_long_videos_in_segments_give_the_serial_files(archive, client):
    from jfacemap.track.cluster import track_on_cluster

    out = archive / "segments"
    videos = sorted((archive / "clips").glob("*.mkv"))
    # pieces [0, 10), [10, 20), [20, end): boundaries inside chunks of 8, a short last piece
    summary = track_on_cluster(client, videos, str(archive / "model"), out, chunk_size=CHUNK, segment_frames=10)
    assert len(summary.done) == N_VIDEOS and not summary.failed
    assert all(r.frames == N_FRAMES and r.extra["segments"] == 3 for r in summary.results)
    assert_same_outputs(archive, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"mouse{i}_FacemapPose.h5" for i in range(N_VIDEOS))


def test_segments_with_filter_and_csv_match_serial_cli(archive, client, tmp_path):
    clip = sorted((archive / "clips").glob("*.mkv"))[0]
    common = ["track", clip, "--model", archive / "model", "--chunk-size", CHUNK, "--filter", "--csv"]
    serial = run_cli(*common, "--out", tmp_path / "serial")  # a process with the workers' XLA flags
    cluster = run_cli(*common, "--out", tmp_path / "cluster", "--cluster", client.scheduler.address,
                      "--segment-frames", 16)
    assert serial.returncode == 0 and cluster.returncode == 0, serial.stderr + cluster.stderr
    assert "in 2 segments on" in cluster.stdout and "filtered" in cluster.stdout
    a, b = h5_arrays(tmp_path / "serial" / "mouse0_FacemapPose.h5"), h5_arrays(tmp_path / "cluster" / "mouse0_FacemapPose.h5")
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert (tmp_path / "serial" / "mouse0_FacemapPose.csv").read_text() == \
        (tmp_path / "cluster" / "mouse0_FacemapPose.csv").read_text()
    bad = run_cli(*common, "--segment-frames", 16)  # without --cluster
    assert bad.returncode == 1 and "--segment-frames 16: needs --cluster" in bad.stderr


def test_segments_of_an_open_gop_h264_seek_to_the_right_frames(archive, client, tmp_path):
    """Pieces that start inside GOPs of an h264 file with B-frames and open GOPs (tests/hard_videos.py):
    every piece must begin at its exact frame, or the joined file differs from serial `track`."""
    from hard_videos import make

    video = make(tmp_path, "open_gop")  # 500 frames, keyframes every 90, 4 B-frames
    common = ["track", video, "--model", archive / "model", "--chunk-size", 32]
    serial = run_cli(*common, "--out", tmp_path / "serial")
    cluster = run_cli(*common, "--out", tmp_path / "cluster", "--cluster", client.scheduler.address,
                      "--segment-frames", 128)  # starts 128, 256, 384: none on a keyframe
    assert serial.returncode == 0 and cluster.returncode == 0, serial.stderr + cluster.stderr
    assert "in 4 segments on" in cluster.stdout
    a = h5_arrays(tmp_path / "serial" / "open_gop_FacemapPose.h5")
    b = h5_arrays(tmp_path / "cluster" / "open_gop_FacemapPose.h5")
    assert sorted(a) == sorted(b) and all(len(v) == 500 for k, v in a.items() if k.endswith("/x"))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("command", [
    ["svd", "-n", "5", "--roi", "8,40,8,40"],
    ["roi", "--running", "0,32,32,64", "--blink", "8,8,40,40", "--svd-roi", "16,16,48,48", "-n", "4"],
])
def test_svd_and_roi_on_the_cluster_write_the_serial_files(archive, client, tmp_path, command):
    clips = sorted((archive / "clips").glob("*.mkv"))[:3]
    runs = {}
    # Both in processes started with this module's XLA flags, as the workers are: a different
    # optimisation level may fuse (and round) the FFTs of `running` differently, by ~1e-6 px.
    for how, extra in (("serial", []), ("cluster", ["--cluster", client.scheduler.address])):
        result = run_cli(*command, *clips, "--out", tmp_path / how, *extra)
        assert result.returncode == 0, result.stderr
        runs[how] = result.stdout.strip().splitlines()
    suffix = f"_{command[0]}.npz"
    for clip in clips:
        with np.load(tmp_path / "serial" / (clip.stem + suffix)) as a, \
                np.load(tmp_path / "cluster" / (clip.stem + suffix)) as b:
            assert sorted(a.files) == sorted(b.files) and len(a.files) > 3
            for key in a.files:
                np.testing.assert_array_equal(a[key], b[key], err_msg=f"{clip.name}: {key}")
    assert sum(line.startswith("done mouse") for line in runs["cluster"]) == len(clips)
    assert runs["cluster"][-1].startswith(f"{len(clips)} of {len(clips)} videos done, 0 failed; "
                                          f"{len(clips) * N_FRAMES} frames in ")
    assert not list((tmp_path / "cluster").glob("*.partial"))


def test_a_bad_video_fails_alone_in_svd_on_the_cluster(archive, client, tmp_path):
    """The command refuses an unreadable file before the cluster; its per-video work, sent there, fails alone."""
    from jfacemap.cli.svd import svd_one_video
    from jfacemap.cluster import run_on_cluster
    from jfacemap.encode.movie_pcs_store import load_movie_svd

    bad = tmp_path / "broken.mkv"
    bad.write_bytes(b"not a video" * 100)
    clip = sorted((archive / "clips").glob("*.mkv"))[0]
    work = functools.partial(svd_one_video, components=3, bin_=1, rois=(), movie=True, motion=True, out=tmp_path)
    summary = run_on_cluster(client, work, [bad, clip])
    assert [r.video.name for r in summary.done] == [clip.name] and summary.done[0].frames == N_FRAMES
    [failed] = summary.failed
    assert "broken.mkv" in failed.error and "\n" not in failed.error
    assert load_movie_svd(tmp_path / f"{clip.stem}_svd.npz").full.movie_masks.shape[0] == 3


@pytest.mark.slow  # starts its own cluster (~25 s); the joined test above covers the same path
def test_local_cluster_matches_serial(archive):
    pytest.importorskip("distributed")
    out = archive / "local2"
    result = run_cli("track", archive / "clips", "--model", archive / "model", "--out", out,
                     "--chunk-size", CHUNK, "--cluster", "local:2")
    assert result.returncode == 0, result.stderr
    assert_same_outputs(archive, out)
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"{N_VIDEOS} of {N_VIDEOS} videos tracked, 0 failed; {N_VIDEOS * N_FRAMES} frames in ")
    assert "frames/s overall" in summary


def _kill_once(flag: str, victim: str, video: Path, frames: int) -> None:
    """on_chunk hook: the worker tracking `victim` kills itself after its first chunk, once (flag file)."""
    if video.name == victim and not os.path.exists(flag):
        Path(flag).touch()
        os.kill(os.getpid(), signal.SIGKILL)


def test_killed_worker_is_retried_and_resumes(archive, client):
    import cloudpickle

    from jfacemap.track.cluster import track_on_cluster

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    out, flag = archive / "killed", archive / "killed.flag"
    videos = sorted((archive / "clips").glob("*.mkv"))
    summary = track_on_cluster(client, videos, str(archive / "model"), out, chunk_size=CHUNK,
                               on_chunk=functools.partial(_kill_once, str(flag), "mouse1.mkv"))
    assert flag.exists()  # a worker did die
    assert [r.error for r in summary.results] == [None] * N_VIDEOS
    victim = summary.results[1]
    assert victim.resumed == CHUNK and victim.frames == N_FRAMES - CHUNK  # went on from the dead run's partial
    assert summary.frames == N_VIDEOS * N_FRAMES - CHUNK
    # Workers keep the model between runs: only the process started in the dead one's place loads it.
    assert sum(r.extra["model_loaded"] for r in summary.results) <= 1
    assert_same_outputs(archive, out)


def test_a_bad_video_fails_alone(archive, client, tmp_path):
    from jfacemap.track.cluster import track_on_cluster

    bad = tmp_path / "broken.mkv"
    bad.write_bytes(b"not a video" * 100)
    videos = [bad, *sorted((archive / "clips").glob("*.mkv"))[:1]]
    summary = track_on_cluster(client, videos, str(archive / "model"), tmp_path / "out", chunk_size=CHUNK)
    assert [r.video.name for r in summary.done] == ["mouse0.mkv"]
    [failed] = summary.failed
    assert failed.video == bad and "broken.mkv" in failed.error and "\n" not in failed.error
    assert summary.lines()[0].startswith("1 of 2 videos tracked, 1 failed;") and summary.lines()[1].startswith("failed ")
