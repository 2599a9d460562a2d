"""Movie and motion PCs of a video (SPEC section 4, "SVD of videos"), streamed.

Movie PCs describe frames minus the mean frame, motion PCs the absolute
difference of consecutive (binned) frames minus its mean. Each region (the
whole frame, then every ROI) gets its own PCs. The original's method, in
three steps whose memory does not grow with the video's length:

1. sample: up to `sample_chunks` (15) runs of `sample_size` (1000) consecutive
   frames spread evenly over the video. For each run, region and kind, the
   top `chunk_components` (250) principal components after removing the
   run's own mean, kept scaled by their singular values (rows S_i v_i).
2. masks: the SVD of all runs' scaled components stacked, together with one
   row per run sqrt(n_run) * (run mean - sample mean), which puts back the
   spread between runs that removing each run's mean took out. With no
   truncation this is exactly the SVD of every sampled frame minus the sample
   mean; its top `n_components` right singular vectors are the spatial masks.
3. project: every frame (streamed in chunks) minus the mean, onto the masks.

Means come from the sampled runs (up to 15000 frames; the original averages
1000), so the masks need no extra pass over the video. The projection pass
sums every frame on its way, so `avgframe` / `avgmotion` are the exact means
of the whole video and the PCs are re-centred on them at the end (a linear
correction, pcs -= (exact mean - sample mean) @ masks.T): PCs have zero mean.

Unlike the original (unless `pixel_centre=True`), each frame keeps its mean
over pixels: its scikit-learn PCA centres each frame over pixels, so its
masks are orthogonal to a uniform image and blind to global brightness or
overall motion energy. Like the original, motion row 0 (no previous frame)
repeats row 1 so PCs align with frames, and binning drops the rows/columns
past the last full bin.

Linear algebra: `jfacemap.encode.svd.top_components` (Gram matrices in
float64, blocked over pixels so float64 copies stay small, then `eigh`; the
neural PCs use it too), masks signed by `fix_signs`; the projection, which
dominates long videos, is a jitted JAX matmul.
Memory: one sampled run as float32 (1000 x pixels x 4 B, twice with motion)
and the stacked components (15 x 250 x pixels x 4 B), as in the original;
only the PCs (T x n) grow with the video. On a machine whose cores are
busy, multi-threaded OpenBLAS can make `eigh` 10-50x slower:
OPENBLAS_NUM_THREADS=1 avoids that.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jfacemap.encode.svd import fix_signs, top_components
from jfacemap.errors import JfacemapError
from jfacemap.io.video import iter_chunks, video_info

Box = tuple[int, int, int, int]  # x0, x1, y0, y1 in frame pixels, ends exclusive
KINDS = ("movie", "motion")
_READ_CHUNK = 256


def spatial_bin(frames: np.ndarray, bin_size: int) -> np.ndarray:
    """Mean over bin_size x bin_size blocks: (B, H, W) -> (B, H // bin, W // bin) float32.

    Rows/columns past the last full block are dropped (as the original does).
    """
    frames = np.asarray(frames)
    if bin_size < 1:
        raise ValueError(f"bin size must be >= 1, got {bin_size}")
    b, h, w = frames.shape
    hb, wb = h // bin_size, w // bin_size
    if bin_size == 1:
        return frames.astype(np.float32)
    blocks = frames[:, :hb * bin_size, :wb * bin_size].reshape(b, hb, bin_size, wb, bin_size)
    return blocks.mean(axis=(2, 4), dtype=np.float32)


def check_rois(rois: Sequence[Sequence[int]], height: int, width: int, bin_size: int = 1) -> tuple[Box, ...]:
    """ROIs as (x0, x1, y0, y1) int boxes inside a height x width frame, each at least one bin."""
    boxes = []
    for i, roi in enumerate(rois):
        if len(roi) != 4:
            raise JfacemapError(f"ROI {i}: need 4 numbers x0 x1 y0 y1, got {list(roi)}")
        x0, x1, y0, y1 = (int(v) for v in roi)
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise JfacemapError(f"ROI {i} (x0 x1 y0 y1 = {x0} {x1} {y0} {y1}) is empty or outside "
                                f"the {width}x{height} frame (need 0 <= x0 < x1 <= {width}, 0 <= y0 < y1 <= {height})")
        if x1 - x0 < bin_size or y1 - y0 < bin_size:
            raise JfacemapError(f"ROI {i} ({x1 - x0}x{y1 - y0} px) is smaller than one {bin_size}x{bin_size} bin")
        boxes.append((x0, x1, y0, y1))
    return tuple(boxes)


def region_pixels(frames: np.ndarray, box: Box, bin_size: int) -> np.ndarray:
    """Frames (B, H, W) uint8 cropped to `box`, binned, flattened: (B, P) float32."""
    x0, x1, y0, y1 = box
    binned = spatial_bin(frames[:, y0:y1, x0:x1], bin_size)
    return binned.reshape(len(binned), -1)


def binned_shape(box: Box, bin_size: int) -> tuple[int, int]:
    """(H', W') of a box after binning."""
    x0, x1, y0, y1 = box
    return (y1 - y0) // bin_size, (x1 - x0) // bin_size


class _Sample:
    """Scaled components and means of the sampled runs, for one region and kind."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.means: list[np.ndarray] = []
        self.counts: list[int] = []

    def add(self, x: np.ndarray, k: int) -> None:
        """x: (n, P) float32 data of one run, centred here in place."""
        mean = x.mean(axis=0, dtype=np.float64)
        x -= mean.astype(np.float32)
        s, vt = top_components(x, k)
        self.rows.append(s[:, None].astype(np.float32) * vt)
        self.means.append(mean)
        self.counts.append(len(x))

    def masks(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(masks (r, P) float32 orthonormal rows, singular values (r,), sample mean (P,) float64)."""
        counts = np.asarray(self.counts, np.float64)
        mean = np.average(np.stack(self.means), axis=0, weights=counts)
        spread = np.sqrt(counts)[:, None] * (np.stack(self.means) - mean)
        stacked = np.concatenate([*self.rows, spread.astype(np.float32)])
        s, vt = top_components(stacked, k)
        return fix_signs(vt), s, mean


# ---------------------------------------------------------------- results

@dataclass(frozen=True)
class RegionPCs:
    """PCs of one region. H', W' = binned size; n <= the components asked for; T frames.

    box: (x0, x1, y0, y1) frame pixels. avgframe, avgmotion: (H', W') float32,
    mean binned frame and mean |frame difference| over the whole video.
    *_masks: (n, H', W') float32, orthonormal as (n, H'W') rows. *_pcs: (T, n)
    float32, (frame - avgframe) or (|diff| - avgmotion) projected on the masks.
    *_sv: (n,) singular values of the sampled, mean-removed data. None = not computed.
    """

    box: Box
    avgframe: np.ndarray
    avgmotion: np.ndarray
    movie_masks: np.ndarray | None = None
    movie_pcs: np.ndarray | None = None
    movie_sv: np.ndarray | None = None
    motion_masks: np.ndarray | None = None
    motion_pcs: np.ndarray | None = None
    motion_sv: np.ndarray | None = None


@dataclass(frozen=True)
class MovieSVD:
    """PCs of a video: `full` frame, then one RegionPCs per ROI (in the order given)."""

    video: str
    n_frames: int
    bin_size: int
    full: RegionPCs
    rois: tuple[RegionPCs, ...]
    sample_starts: np.ndarray  # (K,) first frame of each sampled run
    sample_size: int  # frames per sampled run
    pixel_centred: bool = False  # masks fitted with each frame's pixel mean removed (the original's way)

    @property
    def regions(self) -> tuple[RegionPCs, ...]:
        return (self.full, *self.rois)


@dataclass(frozen=True)
class MaskFit:
    """Step 1-2 output: per region, {kind: (masks (n, P), sv (n,), sample mean (P,))}."""

    video: Path
    height: int
    width: int
    bin_size: int
    boxes: tuple[Box, ...]  # full frame first
    masks: tuple[dict, ...]
    sample_starts: np.ndarray
    sample_size: int
    pixel_centred: bool = False


# ---------------------------------------------------------------- steps

def sample_plan(n_frames: int, n_chunks: int = 15, size: int = 1000) -> tuple[np.ndarray, int]:
    """(starts (K,), run length): K = min(n_chunks, n_frames // size) runs spread over the video."""
    if n_frames < 1 or n_chunks < 1 or size < 2:
        raise ValueError(f"need n_frames >= 1, n_chunks >= 1, size >= 2; got {n_frames}, {n_chunks}, {size}")
    size = min(size, n_frames)
    k = max(1, min(n_chunks, n_frames // size))
    return np.floor(np.linspace(0, n_frames - size, k)).astype(np.int64), size


def _runs(path: Path, starts: np.ndarray, size: int, n_frames: int) -> Iterator[np.ndarray]:
    """The frames of each sampled run, (<= size, H, W) uint8, one run in memory at a time.

    Runs that cover much of the video are cut from one sequential read; sparse
    ones are read with a seek each (every seek indexes the file once).
    """
    if len(starts) * size * 2 < n_frames:
        for start in starts:
            chunks = list(iter_chunks(path, size, int(start), int(start) + size))
            if chunks:
                yield np.concatenate(chunks)
        return
    pos, run, fill, i = 0, None, 0, 0
    for chunk in iter_chunks(path, _READ_CHUNK, 0, int(starts[-1]) + size):
        while i < len(starts) and len(chunk):
            lo = max(int(starts[i]) - pos, 0)
            take = chunk[lo:lo + size - fill] if lo < len(chunk) else chunk[:0]
            if len(take):
                run = np.empty((size, *chunk.shape[1:]), np.uint8) if run is None else run
                run[fill:fill + len(take)] = take
                fill += len(take)
            if fill < size:
                break
            yield run
            run, fill, i = None, 0, i + 1
        pos += len(chunk)
    if run is not None and fill > 0:
        yield run[:fill]


def fit_masks(
    video: str | Path, n_components: int = 500, bin_size: int = 1, rois: Sequence[Sequence[int]] = (),
    movie: bool = True, motion: bool = True, sample_chunks: int = 15, sample_size: int = 1000,
    chunk_components: int = 250, pixel_centre: bool = False, on_progress: Callable[[int], None] | None = None,
) -> MaskFit:
    """Steps 1-2: spatial masks from sampled runs. on_progress(n): n more frames sampled.

    pixel_centre: also remove each sampled frame's mean over pixels, as the
    original does; its masks then sum to zero and ignore uniform brightness
    changes (the projection needs no change: such masks are blind to them).
    Warns (UserWarning) when the sampled data supports fewer components than asked.
    """
    if n_components < 1 or chunk_components < 1:
        raise JfacemapError(f"components must be >= 1, got {n_components} and {chunk_components}")
    if not (movie or motion):
        raise JfacemapError("nothing to compute: both movie and motion PCs are switched off")
    info = video_info(video, exact=False)
    boxes = ((0, info.width, 0, info.height), *check_rois(rois, info.height, info.width, bin_size))
    if info.width < bin_size or info.height < bin_size:
        raise JfacemapError(f"{video}: bin {bin_size} is larger than the {info.width}x{info.height} frame")
    if info.n_frames < 2:
        raise JfacemapError(f"{video}: has {info.n_frames} frame; PCs need at least 2")
    starts, size = sample_plan(info.n_frames, sample_chunks, sample_size)
    # A single run is the whole sample: keep as many components as the final SVD will.
    per_run = max(chunk_components, n_components) if len(starts) == 1 else chunk_components
    samples = [{kind: _Sample() for kind in KINDS if (movie, motion)[KINDS.index(kind)]} for _ in boxes]
    for frames in _runs(info.path, starts, size, info.n_frames):
        for box, sample in zip(boxes, samples):
            x = region_pixels(frames, box, bin_size)
            if "motion" in sample and len(x) > 1:
                diff = np.abs(np.diff(x, axis=0))
                sample["motion"].add(diff - diff.mean(axis=1, keepdims=True) if pixel_centre else diff, per_run)
            if "movie" in sample:
                sample["movie"].add(x - x.mean(axis=1, keepdims=True) if pixel_centre else x, per_run)
        if on_progress is not None:
            on_progress(len(frames))
    masks = []
    for r, sample in enumerate(samples):
        fitted = {}
        for kind, acc in sample.items():
            if not acc.counts:
                raise JfacemapError(f"{video}: no frames could be sampled")
            fitted[kind] = acc.masks(n_components)
            kept = len(fitted[kind][1])
            if kept < n_components:
                where = "full frame" if r == 0 else f"ROI {r - 1}"
                warnings.warn(f"{Path(video).name}: {where} {kind} PCs: kept {kept} of {n_components} "
                              f"components (the sampled frames support no more)", stacklevel=2)
        masks.append(fitted)
    return MaskFit(info.path, info.height, info.width, bin_size, boxes, tuple(masks), starts, size, pixel_centre)


@jax.jit
def _project(x: jax.Array, mean: jax.Array, masks_t: jax.Array) -> jax.Array:
    return (x - mean) @ masks_t


class _Rows:
    """A growing (T, n) float32 array: preallocated for the expected frame count."""

    def __init__(self, expected: int, n: int) -> None:
        self.data, self.n = np.empty((max(expected, 1), n), np.float32), 0

    def add(self, rows: np.ndarray) -> None:
        if self.n + len(rows) > len(self.data):
            grown = np.empty((max(2 * len(self.data), self.n + len(rows)), self.data.shape[1]), np.float32)
            grown[:self.n] = self.data[:self.n]
            self.data = grown
        self.data[self.n:self.n + len(rows)] = rows
        self.n += len(rows)

    def array(self) -> np.ndarray:
        return self.data[:self.n]


def project_video(
    fit: MaskFit, read_chunk: int = _READ_CHUNK, on_progress: Callable[[int], None] | None = None,
) -> MovieSVD:
    """Step 3: every frame of `fit.video` onto the masks, `read_chunk` frames at a time.

    on_progress(n): n more frames projected.
    """
    expected = video_info(fit.video, exact=False).n_frames
    state = []
    for box, fitted in zip(fit.boxes, fit.masks):
        p = int(np.prod(binned_shape(box, fit.bin_size)))
        state.append({
            "sum": {kind: np.zeros(p) for kind in KINDS},
            "prev": None,
            "pcs": {kind: _Rows(expected, len(m[1])) for kind, m in fitted.items()},
            "dev": {kind: (jnp.asarray(m[2], jnp.float32), jnp.asarray(m[0].T)) for kind, m in fitted.items()},
        })
    n_frames = 0
    for frames in iter_chunks(fit.video, read_chunk):
        for box, st in zip(fit.boxes, state):
            x = region_pixels(frames, box, fit.bin_size)
            diff = np.abs(np.diff(x if st["prev"] is None else np.concatenate([st["prev"], x]), axis=0))
            st["prev"] = x[-1:]
            for kind, data in (("movie", x), ("motion", diff)):
                st["sum"][kind] += data.sum(axis=0, dtype=np.float64)
                if kind in st["pcs"] and len(data):
                    st["pcs"][kind].add(np.asarray(_project(data, *st["dev"][kind])))
        n_frames += len(frames)
        if on_progress is not None:
            on_progress(len(frames))
    if n_frames < 2:
        raise JfacemapError(f"{fit.video}: decoded {n_frames} frame; PCs need at least 2")
    regions = [_finish(box, fitted, st, n_frames, fit.bin_size) for box, fitted, st in
               zip(fit.boxes, fit.masks, state)]
    return MovieSVD(str(fit.video), n_frames, fit.bin_size, regions[0], tuple(regions[1:]),
                    fit.sample_starts, fit.sample_size, fit.pixel_centred)


def _finish(box: Box, fitted: dict, st: dict, n_frames: int, bin_size: int) -> RegionPCs:
    """Exact means, PCs re-centred on them, motion row 0 filled, masks reshaped."""
    shape = binned_shape(box, bin_size)
    means = {"movie": st["sum"]["movie"] / n_frames, "motion": st["sum"]["motion"] / (n_frames - 1)}
    out = {}
    for kind, (masks, sv, sample_mean) in fitted.items():
        pcs = st["pcs"][kind].array()
        pcs -= ((means[kind] - sample_mean) @ masks.T.astype(np.float64)).astype(np.float32)
        if kind == "motion":  # frame 0 has no previous frame: repeat frame 1's PCs
            pcs = np.concatenate([pcs[:1], pcs])
        out[f"{kind}_masks"] = masks.reshape(len(masks), *shape)
        out[f"{kind}_pcs"] = pcs
        out[f"{kind}_sv"] = sv.astype(np.float32)
    return RegionPCs(box, means["movie"].reshape(shape).astype(np.float32),
                     means["motion"].reshape(shape).astype(np.float32), **out)


def movie_svd(
    video: str | Path, n_components: int = 500, bin_size: int = 1, rois: Sequence[Sequence[int]] = (),
    movie: bool = True, motion: bool = True, sample_chunks: int = 15, sample_size: int = 1000,
    chunk_components: int = 250, pixel_centre: bool = False, read_chunk: int = _READ_CHUNK,
    on_progress: Callable[[str, int], None] | None = None,
) -> MovieSVD:
    """Movie and/or motion PCs of `video` for the full frame and each ROI (x0, x1, y0, y1 px):
    `fit_masks`, then `project_video`. on_progress(phase, n): n more frames sampled (phase
    "sample", `sample_plan`'s runs) or projected ("project", every frame)."""
    def report(phase: str):
        return None if on_progress is None else (lambda n: on_progress(phase, n))

    fit = fit_masks(video, n_components, bin_size, rois, movie, motion, sample_chunks, sample_size,
                    chunk_components, pixel_centre, on_progress=report("sample"))
    return project_video(fit, read_chunk, on_progress=report("project"))
