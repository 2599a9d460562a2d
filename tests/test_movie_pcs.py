"""Movie / motion PCs (SPEC 4): streamed results against one-shot float64 numpy SVDs."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from jfacemap.cli.svd import parse_roi, svd
from jfacemap.encode.movie_pcs import _runs, check_rois, movie_svd, sample_plan, spatial_bin
from jfacemap.encode.svd import top_components
from jfacemap.encode.movie_pcs_store import load_movie_svd, save_movie_svd
from jfacemap.io.video import write_video

T, H, W = 120, 32, 32
ROI = (4, 28, 2, 26)  # x0, x1, y0, y1


def make_frames(seed: int = 0) -> np.ndarray:
    """Six smooth patterns with random-walk amplitudes plus pixel noise: full rank, a clear top 6."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:H, :W]
    patterns = np.stack([np.sin(x / (3 + i) + i) * np.cos(y / (4 + i)) for i in range(6)])
    amplitudes = rng.standard_normal((T, 6)).cumsum(axis=0) * 3
    frames = 120 + 2 * np.einsum("tk,khw->thw", amplitudes, patterns) + rng.normal(0, 6, (T, H, W))
    return np.clip(frames, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    frames = make_frames()
    path = tmp_path_factory.mktemp("svd") / "clip.mkv"
    write_video(path, frames, fps=50.0, lossless=True)  # lossless: the reference uses these exact pixels
    return path, frames.astype(np.float64)


def run(path, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = movie_svd(path, **kw)
    return result, [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


@pytest.fixture(scope="module")
def single(clip):
    """All frames in one sampled run, more components than the rank, awkward read chunks."""
    return run(clip[0], n_components=400, rois=[ROI], read_chunk=37)


def flat(masks):
    return masks.reshape(len(masks), -1).astype(np.float64)


_REFERENCES: dict = {}


def reference(x):
    """(Vt, S) of x minus its mean, float64 numpy (cached: LAPACK is slow on the loaded test machine)."""
    key = hashlib.sha1(x.tobytes()).hexdigest() + str(x.shape)
    if key not in _REFERENCES:
        _, s, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
        _REFERENCES[key] = vt, s
    return _REFERENCES[key]


def cosines(a, b):
    """Cosines of the principal angles between the row spaces of a and b (orthonormal rows each)."""
    return np.linalg.svd(a @ b.T, compute_uv=False)


def numpy_bin(frames, b):
    """Block means by explicit loops over the bin offsets (independent of reshape)."""
    hb, wb = frames.shape[1] // b, frames.shape[2] // b
    out = np.zeros((len(frames), hb, wb))
    for dy in range(b):
        for dx in range(b):
            out += frames[:, dy:hb * b:b, dx:wb * b:b]
    return out / b**2


def check_region(region, x, kind, rank):
    """Masks span x's full SVD, singular values match, PCs = one-shot projection, mean exact."""
    data = x if kind == "movie" else np.abs(np.diff(x, axis=0))
    vt, s = reference(data)
    masks = flat(getattr(region, f"{kind}_masks"))
    pcs = getattr(region, f"{kind}_pcs")
    rank = min(rank, data.shape[1])
    assert masks.shape[0] == rank
    np.testing.assert_allclose(masks @ masks.T, np.eye(rank), atol=1e-5)
    assert cosines(masks, vt[:rank]).min() > 1 - 1e-6
    np.testing.assert_allclose(getattr(region, f"{kind}_sv"), s[:rank], rtol=1e-5, atol=1e-5 * s[0])
    # Top components one by one (distinct singular values): same vector up to sign.
    np.testing.assert_allclose(np.abs(np.sum(masks[:6] * vt[:6], axis=1)), 1, atol=1e-6)
    mean = getattr(region, "avgframe" if kind == "movie" else "avgmotion").ravel()
    np.testing.assert_allclose(mean, data.mean(axis=0), atol=1e-4)
    projected = (data - data.mean(axis=0)) @ masks.T
    if kind == "motion":
        assert pcs.shape == (len(x), rank) and np.array_equal(pcs[0], pcs[1])
        pcs = pcs[1:]
    np.testing.assert_allclose(pcs, projected, atol=2e-5 * np.abs(projected).max())


def test_spatial_bin_matches_loop_reference():
    frames = np.random.default_rng(1).integers(0, 256, (3, 13, 11), dtype=np.uint8)
    for b in (1, 2, 3, 5):
        np.testing.assert_allclose(spatial_bin(frames, b), numpy_bin(frames.astype(np.float64), b), atol=1e-4)
    with pytest.raises(ValueError, match="bin size"):
        spatial_bin(frames, 0)


@pytest.mark.parametrize("shape", [(40, 300), (300, 40)])
def test_top_components_match_numpy_svd(shape):
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    s, vt = top_components(x, 30)
    _, s_ref, vt_ref = np.linalg.svd(x.astype(np.float64), full_matrices=False)
    np.testing.assert_allclose(s, s_ref[:30], rtol=1e-5)
    np.testing.assert_allclose(np.abs(np.sum(vt * vt_ref[:30], axis=1)), 1, atol=1e-5)


def test_top_components_drop_numerically_zero_directions():
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((50, 3)) @ rng.standard_normal((3, 200))).astype(np.float32)
    s, vt = top_components(x, 10)
    assert len(s) == 3 and vt.shape == (3, 200)
    assert len(top_components(np.zeros((5, 8), np.float32), 4)[0]) == 0


def test_sample_plan_spreads_non_overlapping_runs():
    starts, size = sample_plan(994)
    assert size == 994 and starts.tolist() == [0]
    starts, size = sample_plan(3500)
    assert size == 1000 and starts.tolist() == [0, 1250, 2500]
    starts, size = sample_plan(100_000)
    assert len(starts) == 15 and starts[0] == 0 and starts[-1] == 99_000
    assert np.all(np.diff(starts) >= size)


@pytest.mark.parametrize("n_frames", [T, 10 * T])  # one sequential read / a seek per run
def test_sampled_runs_are_the_right_frames(clip, n_frames):
    starts = np.array([0, 47, 90])
    runs = list(_runs(clip[0], starts, 30, n_frames))
    assert len(runs) == 3
    for start, frames in zip(starts, runs):
        np.testing.assert_array_equal(frames, clip[1][start:start + 30])


def test_movie_pcs_equal_full_svd_of_mean_removed_movie(clip, single):
    result, warned = single
    assert result.n_frames == T and result.full.movie_pcs.shape == (T, T - 1)
    check_region(result.full, clip[1].reshape(T, -1), "movie", T - 1)
    assert any(f"kept {T - 1} of 400" in w for w in warned)
    np.testing.assert_allclose(result.full.movie_pcs.mean(axis=0), 0, atol=1e-2)


def test_motion_pcs_equal_full_svd_of_abs_frame_differences(clip, single):
    result = single[0]
    assert result.full.motion_pcs.shape == (T, T - 2)  # T - 1 differences, minus their mean
    check_region(result.full, clip[1].reshape(T, -1), "motion", T - 2)


def test_roi_gets_its_own_pcs(clip, single):
    x0, x1, y0, y1 = ROI
    crop = clip[1][:, y0:y1, x0:x1].reshape(T, -1)
    region = single[0].rois[0]
    assert region.box == ROI and region.movie_masks.shape[1:] == (y1 - y0, x1 - x0)
    check_region(region, crop, "movie", T - 1)
    check_region(region, crop, "motion", T - 2)


def test_binning_equals_reshape_mean_reference(clip):
    result, _ = run(clip[0], n_components=400, bin_size=2, rois=[ROI])
    binned = numpy_bin(clip[1], 2)
    assert result.full.avgframe.shape == (H // 2, W // 2)
    check_region(result.full, binned.reshape(T, -1), "movie", T - 1)
    check_region(result.full, binned.reshape(T, -1), "motion", T - 2)
    x0, x1, y0, y1 = ROI
    check_region(result.rois[0], numpy_bin(clip[1][:, y0:y1, x0:x1], 2).reshape(T, -1), "movie", T - 1)


def test_several_runs_without_truncation_are_exact(clip):
    """Per-run SVDs + the between-run spread rows reproduce the SVD of all sampled data."""
    result, _ = run(clip[0], n_components=400, sample_size=60, sample_chunks=2, chunk_components=60)
    x = clip[1].reshape(T, -1)
    vt, s = reference(x)
    masks = flat(result.full.movie_masks)
    assert cosines(masks, vt[:T - 1]).min() > 1 - 1e-6
    np.testing.assert_allclose(result.full.movie_sv, s[:T - 1], rtol=1e-5, atol=1e-5 * s[0])
    # Motion samples only the differences inside each run, not the one across the boundary.
    diffs = np.concatenate([np.abs(np.diff(x[a:a + 60], axis=0)) for a in (0, 60)])
    vt_m, s_m = reference(diffs)
    assert cosines(flat(result.full.motion_masks), vt_m[:len(diffs) - 1]).min() > 1 - 1e-6
    np.testing.assert_allclose(result.full.motion_sv, s_m[:len(diffs) - 1], rtol=1e-5, atol=1e-5 * s_m[0])


def test_truncated_runs_keep_the_top_components(clip):
    """The original's regime: few components per run; the strong top components still match."""
    result, warned = run(clip[0], n_components=5, sample_size=30, sample_chunks=4, chunk_components=12,
                         motion=False)
    assert result.full.motion_masks is None and not warned
    vt, _ = reference(clip[1].reshape(T, -1))
    assert cosines(flat(result.full.movie_masks), vt[:5]).min() > 0.999


def test_partial_sample_pcs_are_centred_on_the_whole_video(clip):
    """Runs cover frames 0-29 and 90-119 only; means and PCs still use every frame."""
    result, _ = run(clip[0], n_components=10, sample_size=30, sample_chunks=2, chunk_components=12)
    assert result.sample_starts.tolist() == [0, 90]
    x = clip[1].reshape(T, -1)
    for kind, data in (("movie", x), ("motion", np.abs(np.diff(x, axis=0)))):
        region = result.full
        mean = getattr(region, "avgframe" if kind == "movie" else "avgmotion").ravel()
        np.testing.assert_allclose(mean, data.mean(axis=0), atol=1e-4)
        projected = (data - data.mean(axis=0)) @ flat(getattr(region, f"{kind}_masks")).T
        pcs = getattr(region, f"{kind}_pcs")[1 if kind == "motion" else 0:]
        np.testing.assert_allclose(pcs, projected, atol=2e-5 * np.abs(projected).max())


def test_pixel_centre_reproduces_the_originals_frame_centring(clip):
    result, _ = run(clip[0], n_components=20, pixel_centre=True)
    x = clip[1].reshape(T, -1)
    for kind, data in (("movie", x), ("motion", np.abs(np.diff(x, axis=0)))):
        masks = flat(getattr(result.full, f"{kind}_masks"))
        np.testing.assert_allclose(masks.sum(axis=1), 0, atol=1e-4)  # blind to a uniform image
        vt, _ = reference(data - data.mean(axis=1, keepdims=True))
        assert cosines(masks, vt[:20]).min() > 1 - 1e-6
        projected = (data - data.mean(axis=0)) @ masks.T
        pcs = getattr(result.full, f"{kind}_pcs")[1 if kind == "motion" else 0:]
        np.testing.assert_allclose(pcs, projected, atol=2e-5 * np.abs(projected).max())


def test_rois_outside_the_frame_or_below_one_bin_are_refused():
    assert check_rois([(0, 32, 0, 32), ROI], H, W) == ((0, 32, 0, 32), ROI)
    for bad in [(0, 33, 0, 10), (10, 10, 0, 5), (-1, 5, 0, 5), (0, 5, 20, 10)]:
        with pytest.raises(ValueError, match="outside the 32x32 frame"):
            check_rois([bad], H, W)
    with pytest.raises(ValueError, match="smaller than one 4x4 bin"):
        check_rois([(0, 3, 0, 10)], H, W, bin_size=4)


def test_save_load_round_trip_without_pickle(tmp_path, single):
    result = single[0]
    path = save_movie_svd(tmp_path / "x_svd.npz", result)
    with np.load(path, allow_pickle=False) as data:  # plain arrays only
        assert data["movie_masks"].shape == (T - 1, H, W) and data["roi0_motion_pcs"].shape == (T, T - 2)
    back = load_movie_svd(path)
    assert (back.video, back.n_frames, back.bin_size) == (result.video, T, 1)
    for a, b in zip(result.regions, back.regions):
        assert a.box == b.box
        for key in ("avgframe", "avgmotion", "movie_masks", "movie_pcs", "movie_sv", "motion_masks",
                    "motion_pcs", "motion_sv"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    np.save(tmp_path / "proc.npy", {"motSVD": 1}, allow_pickle=True)  # the original's pickled dict
    for bad in (tmp_path / "proc.npy", tmp_path / "missing.npz"):
        with pytest.raises(ValueError) as err:
            load_movie_svd(bad)
        assert len(str(err.value).splitlines()) == 1


@pytest.fixture()
def cli():
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command("svd")(svd)
    app.command("other")(lambda: None)  # two commands: `svd` stays a subcommand
    return lambda *args: CliRunner().invoke(app, ["svd", *map(str, args)])


def test_cli_writes_one_file_atomically(clip, tmp_path, cli):
    out = tmp_path / "out"
    result = cli(clip[0], "--out", out, "-n", 20, "--bin", 2, "--roi", "4,28,2,26", "--no-motion")
    assert result.exit_code == 0, result.output
    assert "clip_svd.npz" in result.stdout and "movie 20 PCs + 1 ROI" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["clip_svd.npz"]  # no temporary left behind
    saved = load_movie_svd(out / "clip_svd.npz")
    assert saved.full.movie_masks.shape == (20, H // 2, W // 2) and saved.full.motion_masks is None
    assert saved.rois[0].box == ROI and saved.rois[0].movie_pcs.shape == (T, 20)


def test_cli_failed_write_leaves_the_old_file(clip, tmp_path, cli, monkeypatch):
    out = tmp_path / "out"
    (out).mkdir()
    (out / "clip_svd.npz").write_bytes(b"old")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    result = cli(clip[0], "--out", out, "-n", 3, "--bin", 4, "--no-movie")
    assert isinstance(result.exception, OSError)
    assert sorted(p.name for p in out.iterdir()) == ["clip_svd.npz"]
    assert (out / "clip_svd.npz").read_bytes() == b"old"


@pytest.mark.parametrize("args, message", [
    (["{missing}"], "no such file"),
    (["{bad}"], "not a video"),
    (["{clip}", "--roi", "0,33,0,10"], "outside the 32x32 frame"),
    (["{clip}", "--roi", "1,2,3"], "need four integers"),
    (["{clip}", "--no-motion", "--no-movie"], "nothing to compute"),
    (["{clip}", "--components", "0"], "must be >= 1"),
])
def test_cli_bad_inputs_fail_with_one_line(clip, tmp_path, cli, args, message):
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    paths = {"missing": tmp_path / "nope.mp4", "bad": tmp_path / "bad.mp4", "clip": clip[0]}
    result = cli(*(a.format(**paths) for a in args))
    assert isinstance(result.exception, ValueError), result.output
    text = str(result.exception)
    assert message in text and len(text.splitlines()) == 1
    assert not list(tmp_path.glob("*_svd.npz"))


def test_parse_roi_accepts_commas_or_spaces():
    assert parse_roi("1,2,3,4") == parse_roi(" 1 2, 3 4") == (1, 2, 3, 4)
