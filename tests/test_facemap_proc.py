"""The original Facemap's `_proc.npy`: `jfacemap export proc` writes its layout, the original's code opens it,
and a `_proc.npy` the original wrote is behaviour input to encode and hmm, read without running its pickle.

tests/data/facemap_proc/original_proc.npy was written by facemap 1.0.8's own `process.run` and
`process.save` (numpy 1.26); make_fixture.py beside it says how.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from jfacemap.cli.app import app, main
from jfacemap.encode.movie_pcs import MovieSVD, RegionPCs, binned_shape
from jfacemap.encode.movie_pcs_store import save_movie_svd
from jfacemap.errors import JfacemapError
from jfacemap.io.behavior import read_behavior
from jfacemap.io.facemap_proc import ProcFileError, load_proc
from jfacemap.io.hmm_outputs import load_features

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench/, under plain `pytest` too
from bench.peers import PeerUnavailable, facemap_python, run_facemap_script  # noqa: E402

ORIGINAL = Path(__file__).parent / "data" / "facemap_proc" / "original_proc.npy"
H, W, BIN, N, T = 12, 16, 2, 4, 10
ROI = (2, 10, 2, 8)  # x0, x1, y0, y1 frame pixels


def synthetic_svd(video: str, seed: int = 0) -> MovieSVD:
    """A MovieSVD of an H x W video (full frame and one ROI), random numbers in the right shapes."""
    rng = np.random.default_rng(seed)

    def region(box):
        h, w = binned_shape(box, BIN)
        kinds = {f"{kind}_{part}": rng.standard_normal(shape).astype(np.float32)
                 for kind in ("movie", "motion") for part, shape in (("masks", (N, h, w)), ("pcs", (T, N)), ("sv", (N,)))}
        return RegionPCs(box, rng.uniform(0, 255, (h, w)).astype(np.float32),
                         rng.uniform(0, 9, (h, w)).astype(np.float32), **kinds)

    return MovieSVD(video, T, BIN, region((0, W, 0, H)), (region(ROI),), np.array([0]), T)


def export_proc(svd_file: Path, out: Path) -> Path:
    result = CliRunner().invoke(app, ["export", "proc", str(svd_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out / svd_file.name.replace("_svd.npz", "_proc.npy")


def test_original_proc_is_behaviour_for_encode_and_hmm():
    trusted = np.load(ORIGINAL, allow_pickle=True).item()  # our own fixture: safe to unpickle here
    proc = load_proc(ORIGINAL)
    assert sorted(proc) == sorted(trusted)
    assert proc["rois"][0]["rind"] == 1 and proc["sbin"] == 2
    for key in ("motSVD", "movSVD", "motMask", "avgframe"):
        for ours, theirs in zip(proc[key], trusted[key]):
            np.testing.assert_array_equal(ours, theirs)
    motion = read_behavior(ORIGINAL, fps=30)
    assert motion.kind == "motion_pcs" and motion.names[0] == "motion_pc0"
    np.testing.assert_allclose(motion.values, trusted["motSVD"][0], atol=1e-6)
    np.testing.assert_allclose(motion.times, np.arange(len(motion.values)) / 30)
    movie = read_behavior(ORIGINAL, fps=30, svd_kind="movie")
    np.testing.assert_allclose(movie.values, trusted["movSVD"][0], atol=1e-6)
    features, fps, kind = load_features(ORIGINAL)  # what `jfacemap hmm` reads
    assert kind == "motion PCs" and fps == 50.0
    np.testing.assert_allclose(features, trusted["motSVD"][0], atol=1e-6)


def test_export_proc_has_the_original_layout(tmp_path):
    result = synthetic_svd("/videos/mouse.mp4")
    proc = load_proc(export_proc(save_movie_svd(tmp_path / "mouse_svd.npz", result), tmp_path / "out"))
    assert proc["filenames"] == [["/videos/mouse.mp4"]]
    assert (proc["Ly"], proc["Lx"], proc["sbin"], proc["fullSVD"]) == ([H], [W], BIN, True)
    for short, kind in (("mot", "motion"), ("mov", "movie")):
        for region_index, region in enumerate(result.regions):
            masks = getattr(region, f"{kind}_masks")
            np.testing.assert_array_equal(proc[f"{short}Mask"][region_index], masks.reshape(N, -1).T)
            np.testing.assert_array_equal(proc[f"{short}Mask_reshape"][region_index], np.moveaxis(masks, 0, -1))
            np.testing.assert_array_equal(proc[f"{short}SVD"][region_index], getattr(region, f"{kind}_pcs"))
            np.testing.assert_array_equal(proc[f"{short}Sv"][region_index], getattr(region, f"{kind}_sv"))
    np.testing.assert_array_equal(proc["avgframe"][0], result.full.avgframe.ravel())
    np.testing.assert_array_equal(proc["avgmotion_reshape"], result.full.avgmotion)
    [roi] = proc["rois"]
    assert roi["rind"] == 1 and roi["ivid"] == 0
    np.testing.assert_array_equal(roi["yrange"], np.arange(ROI[2], ROI[3]))
    np.testing.assert_array_equal(roi["xrange"], np.arange(ROI[0], ROI[1]))
    assert proc["pupil"] == proc["blink"] == proc["running"] == []
    # and it is behaviour input like the original's
    np.testing.assert_allclose(read_behavior(tmp_path / "out" / "mouse_proc.npy", fps=50).values,
                               result.full.motion_pcs, atol=1e-6)


def test_export_proc_carries_the_roi_traces_beside_the_svd(tmp_path):
    rng = np.random.default_rng(1)
    centre = rng.uniform(3, 8, (T, 2))  # x, y frame px
    angle = rng.uniform(-1, 1, T)
    roi = {"pupil_area": rng.uniform(5, 9, T), "pupil_center": centre, "pupil_axes": rng.uniform(1, 4, (T, 2)),
           "pupil_angle": angle, "pupil_roi": np.array([1, 2, 9, 10]), "blink": rng.uniform(0, 1, T),
           "blink_roi": np.array([1, 2, 9, 10]), "running": rng.normal(0, 1, (T, 2)).astype(np.float32),
           "running_roi": np.array([0, 0, 6, 5]), "n_frames": np.array(T)}
    np.savez(tmp_path / "mouse_roi.npz", **roi)
    svd_file = save_movie_svd(tmp_path / "mouse_svd.npz", synthetic_svd("/videos/mouse.mp4"))
    proc = load_proc(export_proc(svd_file, tmp_path / "out"))
    assert [r["rind"] for r in proc["rois"]] == [1, 0, 2, 3]  # the SVD ROI, then pupil, blink, running
    [pupil], [blink], [running] = proc["pupil"], proc["blink"], proc["running"]
    np.testing.assert_allclose(pupil["area"], roi["pupil_area"])
    # the original's com is (y, x) within the ROI; its running traces (dy, dx)
    np.testing.assert_allclose(pupil["com"], np.stack([centre[:, 1] - 2, centre[:, 0] - 1], 1))
    np.testing.assert_allclose(pupil["axdir"][:, :, 0], np.stack([np.sin(angle), np.cos(angle)], 1))
    np.testing.assert_allclose(blink, roi["blink"])
    np.testing.assert_allclose(running, roi["running"][:, ::-1])
    pupil_roi = proc["rois"][1]
    np.testing.assert_array_equal(pupil_roi["yrange"], np.arange(2, 10))
    np.testing.assert_array_equal(pupil_roi["xrange"], np.arange(1, 9))
    # a _roi.npz of another length is refused
    np.savez(tmp_path / "mouse_roi.npz", **(roi | {"n_frames": np.array(T + 1)}))
    result = CliRunner().invoke(app, ["export", "proc", str(svd_file), "--out", str(tmp_path / "out2")])
    assert isinstance(result.exception, JfacemapError) and "mouse_roi.npz: 11 frames" in str(result.exception)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_crafted_proc_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    crafted = tmp_path / "evil_proc.npy"
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|O", "fortran_order": False, "shape": ()})
    crafted.write_bytes(buffer.getvalue() + pickle.dumps({"motSVD": [_RunsCode()]}, protocol=3))
    with pytest.raises(ProcFileError, match=r"evil_proc\.npy: cannot read it safely .*refusing to load"):
        load_proc(crafted)
    assert not (tmp_path / "pwned").exists()
    np.save(tmp_path / "array_proc.npy", np.zeros((3, 2)))
    with pytest.raises(ProcFileError, match=r"array_proc\.npy: not a Facemap _proc\.npy"):
        load_proc(tmp_path / "array_proc.npy")


def test_export_proc_of_a_wrong_file_fails_with_one_line(tmp_path, capsys):
    other = tmp_path / "other_svd.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(SystemExit) as exit_:
        main(["export", "proc", str(other)])
    assert exit_.value.code == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"jfacemap: error: {other}: not a jfacemap movie SVD file"), line


# Runs INSIDE the original's environment. argv: <_proc.npy> <video> <out folder>. Reads the file as its
# GUI does (io.open_proc, plot_trace), then reprocesses the video from it as its batch mode does
# (process.run(proc=...): sbin, fullSVD, rois and the rest come from the dict).
READ_AS_THE_ORIGINAL = r"""
import json, sys
import numpy as np
from scipy.stats import skew
from facemap import process

path, video, out = sys.argv[1:4]
proc = np.load(path, allow_pickle=True).item()
assert proc["filenames"][0][0] and proc["fullSVD"] in (True, False)
for traces in (proc["motSVD"], proc["movSVD"]):
    for trace in traces:
        norm = trace[:, 0].std()
        tr = (trace[:, :10] ** 2).sum(axis=1) ** 0.5 / norm
        tr2 = trace[:, 0] / norm * np.sign(skew(trace[:, 0] / norm))
for r in proc["rois"] or []:
    pos = [r["yrange"][0], r["xrange"][0], r["yrange"][-1] - r["yrange"][0], r["xrange"][-1] - r["xrange"][0]]
    fields = (r["rind"], r["rtype"], r["iROI"], r["color"], r["saturation"], r["ellipse"], r["ivid"])
proc["filenames"] = [[video]]
saved = process.run(proc["filenames"], motSVD=True, movSVD=True, proc=proc, savepath=out)
again = np.load(saved, allow_pickle=True).item()
print(json.dumps({"keys": sorted(proc), "regions": len(again["motSVD"]), "frames": again["motSVD"][0].shape[0],
                  "roi_mask": list(again["motMask_reshape"][1].shape[:2])}))
"""


@pytest.fixture(scope="module")
def original():
    if os.environ.get("JFACEMAP_SKIP_PEERS") == "1":
        pytest.skip("JFACEMAP_SKIP_PEERS=1")
    try:
        facemap_python(build=False)
    except (PeerUnavailable, OSError) as err:
        pytest.skip(f"original facemap environment not built: {err}")


def test_the_original_opens_our_proc(original, tmp_path):
    from jfacemap.io.video import write_video

    rng = np.random.default_rng(1)
    video = write_video(tmp_path / "mouse.mp4", rng.integers(0, 255, (T, H, W), dtype=np.uint8), fps=30)
    ours = export_proc(save_movie_svd(tmp_path / "mouse_svd.npz", synthetic_svd(str(video))), tmp_path)
    (tmp_path / "again").mkdir()
    report = json.loads(run_facemap_script(READ_AS_THE_ORIGINAL, ours, video, tmp_path / "again",
                                           timeout=300).strip().splitlines()[-1])
    assert {"motSVD", "movSVD", "motMask", "avgframe", "rois", "sbin"} <= set(report["keys"])
    assert report["regions"] == 2 and report["frames"] == T  # full frame + our ROI, every frame
