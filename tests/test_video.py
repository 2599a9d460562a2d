"""Video reading and writing: exact counts, exact frames, exact seeks, clear errors."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jfacemap.io.video import (
    VideoError, VideoWriter, iter_chunks, read_frames, video_info, write_video,
)

REAL_VIDEO = Path(__file__).parents[1] / ".." / "shared" / "data" / "mirror-mouse" / "videos" / "test_vid.mp4"
H, W, N = 48, 64, 40


def noise_frames(n=N, h=H, w=W, seed=0) -> np.ndarray:
    """Every frame different, so a frame read at the wrong index cannot pass."""
    return np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)


def smooth_frames(n=N, h=H, w=W) -> np.ndarray:
    """A moving gradient with a bright square: content a lossy codec keeps close."""
    y, x = np.mgrid[:h, :w]
    frames = np.empty((n, h, w), np.uint8)
    for t in range(n):
        img = 40 + 100 * (0.5 + 0.5 * np.sin((x + 2 * t) / 9.0)) + 40 * (y / h)
        img[10:20, t % (w - 10): t % (w - 10) + 10] = 240
        frames[t] = img.astype(np.uint8)
    return frames


def ffmpeg(*args: str) -> None:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                    *args], check=True, stdin=subprocess.DEVNULL)


def read_all(path) -> np.ndarray:
    return np.concatenate(list(iter_chunks(path, 16)))


def assert_one_line_naming(err: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg, msg


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="module")
def gop_videos(folder) -> dict[str, Path]:
    """Lossy H.264 / MPEG-4 videos with B-frames and a keyframe every 7-9 frames.

    These are the files where seeking goes wrong: B-frames are decoded after
    the frame shown after them, and AVI stores no presentation times.
    """
    frames = noise_frames(seed=1)
    out = {}
    for ext in ("mp4", "mkv", "mov", "avi"):
        out[ext] = write_video(folder / f"gop.{ext}", frames, 30, extra_args=["-g", "7", "-bf", "3"])
    # MPEG-4 part 2 in mp4: the demuxer seeks by decode time with no B-frame margin.
    out["mpeg4"] = write_video(folder / "mpeg4.mp4", frames, 30, codec="mpeg4",
                               extra_args=["-g", "9", "-bf", "2", "-q:v", "3"])
    return out


@pytest.mark.parametrize("ext", ["mp4", "avi", "mkv", "mov"])
def test_lossless_round_trip_is_exact(folder, ext):
    frames = noise_frames(h=47, w=63)  # odd sizes on purpose
    path = write_video(folder / f"lossless.{ext}", [frames[:10], frames[10], frames[11:]], 25,
                       lossless=True)
    info = video_info(path)
    assert (info.n_frames, info.height, info.width, info.fps) == (N, 47, 63, 25.0)
    np.testing.assert_array_equal(read_all(path), frames)


@pytest.mark.parametrize("ext", ["mkv", "avi"])
def test_ffv1_round_trip_is_exact(folder, ext):
    frames = noise_frames()
    path = write_video(folder / f"ffv1.{ext}", frames, 50, codec="ffv1", lossless=True)
    np.testing.assert_array_equal(read_all(path), frames)


@pytest.mark.parametrize("ext", ["mp4", "avi", "mkv", "mov"])
@pytest.mark.parametrize("size", [(H, W), (47, 63)])
def test_lossy_round_trip_keeps_count_and_is_close(folder, ext, size):
    frames = smooth_frames(h=size[0], w=size[1])
    path = write_video(folder / f"lossy{size[0]}.{ext}", frames, 30)
    got = read_all(path)
    assert got.shape == frames.shape
    err = np.abs(got.astype(int) - frames)
    assert err.mean() < 2.0 and np.percentile(err, 99) < 12


def test_quick_count_equals_exact_count_for_intact_files(gop_videos):
    for path in gop_videos.values():
        assert video_info(path, exact=False).n_frames == video_info(path).n_frames == N


@pytest.mark.parametrize("name", ["mp4", "mkv", "mov", "avi", "mpeg4"])
def test_random_access_equals_sequential(gop_videos, name):
    path = gop_videos[name]
    full = read_all(path)
    rng = np.random.default_rng(7)
    idx = rng.integers(0, N, 25)
    idx = np.concatenate([idx, idx[:6], [0, N - 1, N - 1]])
    rng.shuffle(idx)
    np.testing.assert_array_equal(read_frames(path, idx), full[idx])
    np.testing.assert_array_equal(read_frames(path, [N - 1, 0]), full[[N - 1, 0]])


@pytest.mark.parametrize("name", ["mp4", "mpeg4"])
def test_every_start_frame_is_exact(gop_videos, name):
    path = gop_videos[name]
    full = read_all(path)
    for start in range(1, N):
        got = np.concatenate(list(iter_chunks(path, 4, start=start, stop=start + 2)))
        np.testing.assert_array_equal(got, full[start:start + 2], err_msg=f"start={start}")


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.integers(0, N + 3), length=st.one_of(st.none(), st.integers(0, N)),
       chunk=st.integers(1, 17), name=st.sampled_from(["mp4", "avi", "mov"]))
def test_iter_chunks_equals_slicing(gop_videos, start, length, chunk, name):
    path = gop_videos[name]
    full = _full_cache.setdefault(path, read_all(path))
    stop = None if length is None else start + length
    chunks = list(iter_chunks(path, chunk, start=start, stop=stop))
    assert all(len(c) <= chunk for c in chunks) and all(len(c) == chunk for c in chunks[:-1])
    got = np.concatenate(chunks) if chunks else full[:0]
    np.testing.assert_array_equal(got, full[start:stop])


_full_cache: dict[Path, np.ndarray] = {}


def test_variable_frame_rate_reads_every_frame_once(folder):
    # Frames 20.. jump 7 frame-times ahead; a constant-rate pipe would fill the gap with copies.
    path = folder / "vfr.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x48:rate=30,noise=alls=30:allf=t", "-frames:v", "60",
           "-vf", "setpts='(N+if(gte(N,20),7,0))/30/TB'", "-fps_mode", "passthrough",
           "-c:v", "libx264", "-g", "8", str(path))
    full = read_all(path)
    assert len(full) == video_info(path).n_frames == 60
    assert len({f.tobytes() for f in full}) == 60
    np.testing.assert_array_equal(read_frames(path, [25, 3, 19, 20, 59]), full[[25, 3, 19, 20, 59]])
    np.testing.assert_array_equal(np.concatenate(list(iter_chunks(path, start=21))), full[21:])


def test_container_metadata_that_lies_is_not_believed(folder):
    """An mp4 with its index up front, cut short: the index still promises 90 frames."""
    frames = noise_frames(n=90)
    whole = write_video(folder / "whole.mp4", frames, 30, lossless=True,
                        extra_args=["-movflags", "+faststart"])
    cut = folder / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    meta = next(imageio_ffmpeg.read_frames(str(cut)))
    assert round(meta["duration"] * meta["fps"]) == 90  # what the container claims
    got = read_all(cut)
    n = video_info(cut).n_frames
    assert n == len(got) and 30 < n < 90
    np.testing.assert_array_equal(got, frames[:n])
    assert video_info(cut, exact=False).n_frames == n  # the cut packet is discarded
    np.testing.assert_array_equal(read_frames(cut, [n - 1, 5]), frames[[n - 1, 5]])
    with pytest.raises(VideoError, match=f"valid indices are 0..{n - 1}") as err:
        read_frames(cut, [n])
    assert_one_line_naming(err, cut)


def _bad_files(folder: Path) -> dict[str, Path]:
    files = {"missing": folder / "missing.mp4", "empty": folder / "empty.mp4",
             "text": folder / "text.mp4", "cut_mp4": folder / "cut_half.mp4"}
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is not a video\n")
    whole = write_video(folder / "for_cut.mp4", noise_frames(), 30, lossless=True)
    files["cut_mp4"].write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return files


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "cut_mp4"])
def test_unreadable_files_raise_one_line_video_error(folder, kind):
    path = _bad_files(folder)[kind]
    calls = [lambda: video_info(path), lambda: video_info(path, exact=False),
             lambda: list(iter_chunks(path)), lambda: list(iter_chunks(path, start=3)),
             lambda: read_frames(path, [0])]
    for call in calls:
        with pytest.raises(VideoError) as err:
            call()
        assert_one_line_naming(err, path)
    expected = {"missing": "no such file", "empty": "empty file", "text": "not a video",
                "cut_mp4": "not a video"}[kind]
    assert expected in str(err.value)


@pytest.mark.parametrize("ext", ["mkv", "avi"])
def test_truncated_file_decodes_the_frames_that_exist(folder, ext):
    frames = noise_frames()
    whole = write_video(folder / f"whole.{ext}", frames, 30, lossless=True)
    cut = folder / f"half.{ext}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    got = read_all(cut)
    assert 0 < len(got) < N and video_info(cut).n_frames == len(got)
    np.testing.assert_array_equal(got, frames[: len(got)])
    np.testing.assert_array_equal(read_frames(cut, [len(got) - 1, 2]), frames[[len(got) - 1, 2]])


def test_read_frames_rejects_out_of_range(gop_videos):
    path = gop_videos["mp4"]
    for bad in ([N], [3, N + 10], [-1]):
        with pytest.raises(VideoError, match=f"valid indices are 0..{N - 1}") as err:
            read_frames(path, bad)
        assert_one_line_naming(err, path)
    assert read_frames(path, []).shape == (0, H, W)


def test_writer_exception_leaves_no_file(folder):
    target = folder / "sub" / "aborted.mp4"
    with pytest.raises(KeyError):
        with VideoWriter(target, 30) as writer:
            writer.write(noise_frames(n=5))
            raise KeyError("boom")
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_writer_errors_are_video_errors_and_leave_no_file(folder):
    target = folder / "bad.mp4"
    with pytest.raises(VideoError, match="ffmpeg could not write") as err:
        write_video(target, noise_frames(n=3), 30, codec="no-such-codec")
    assert_one_line_naming(err, target)
    with pytest.raises(VideoError, match="differs"):
        write_video(target, [noise_frames(n=2), noise_frames(n=2, w=W + 2)], 30)
    with pytest.raises(VideoError, match="no frames"):
        write_video(target, [], 30)
    with pytest.raises(VideoError, match="uint8"):
        write_video(target, [np.zeros((H, W), np.float32)], 30)
    assert not target.exists()
    assert not [p for p in folder.iterdir() if "partial" in p.name]


def test_writer_replaces_existing_file_only_on_success(folder):
    target = folder / "replace.mkv"
    write_video(target, noise_frames(n=3), 30, lossless=True)
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        with VideoWriter(target, 30, lossless=True) as writer:
            writer.write(noise_frames(n=8))
            raise RuntimeError
    assert target.read_bytes() == before
    write_video(target, noise_frames(n=8), 30, lossless=True)
    assert video_info(target).n_frames == 8


@pytest.mark.skipif(not REAL_VIDEO.exists(), reason="mirror-mouse data not present")
def test_real_video():
    info = video_info(REAL_VIDEO)
    assert (info.n_frames, info.height, info.width, info.fps) == (994, 406, 396, 250.0)
    assert video_info(REAL_VIDEO, exact=False).n_frames == 994
    full = read_all(REAL_VIDEO)
    assert full.shape == (994, 406, 396)
    idx = np.random.default_rng(0).integers(0, 994, 30)
    idx = np.concatenate([idx, idx[:3], [191, 192, 193, 431, 432, 993]])  # around keyframes
    np.testing.assert_array_equal(read_frames(REAL_VIDEO, idx), full[idx])
    np.testing.assert_array_equal(np.concatenate(list(iter_chunks(REAL_VIDEO, 100, 430, 690))),
                                  full[430:690])
