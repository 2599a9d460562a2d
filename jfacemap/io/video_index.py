"""Per-video indexes that make seeking exact: packet timing, clean keyframes, decoded checksums.

Two indexes, each built once per file version (cached in memory, keyed by
resolved path, size and mtime_ns):

- `packets(p)`: one demuxing pass (`-c copy -f framecrc`, no decoding): the
  presentation time of every packet that becomes a shown frame (packets an
  mp4 edit list discards are left out), which of them are keyframes, and
  which keyframes are *clean*: decoding from them gives exactly what decoding
  from frame 0 gives. Clean = an IDR picture (H.264 / HEVC, checked in the
  bitstream with the `trace_headers` filter) or any frame of an intra-only
  stream. Open-GOP I-frames and intra-refresh recovery points are flagged
  "keyframe" by the container but are not clean.
- `frames(p)`: one decoding pass (`-f framecrc` of the gray frames): for each
  packet slot, whether a frame came out of the decoder, whether ffmpeg
  flagged it corrupt (concealed), and the adler32 of its gray bytes, which
  seek-reads check their frames against.

Both passes keep raw timestamps (`-copyts`) so that their times match.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

# Demuxers whose seeks land on a keyframe at or before the asked time.
SEEKABLE = {"mov", "mp4", "matroska", "webm", "avi"}
# NAL unit types of pictures that no later picture can see past (H.264 IDR; HEVC IDR_W_RADL, IDR_N_LP).
_IDR_NAL = {"h264": {5}, "hevc": {19, 20}}
# Lines of ffmpeg's log (at level+warning) that mean a frame was lost or concealed.
TROUBLE = re.compile(r"\] \[(error|fatal)\] |\] \[warning\] (Packet corrupt|corrupt decoded)|concealing \d+ DC")


@dataclass(frozen=True)
class Packets:
    """Timing of the shown frames in presentation order, from the container.

    times: (n,) raw presentation times, s. keys: (m,) sorted indices of
    keyframes; clean: (m,) whether decoding from that keyframe is exact.
    start: the file's start time, s (what `-ss` counts from); seekable:
    whether times are usable for seeking at all.
    """

    times: np.ndarray
    tick: float
    keys: np.ndarray
    clean: np.ndarray
    start: float
    seekable: bool
    codec: str

    @property
    def n(self) -> int:
        return len(self.times)

    def seek_time(self, k: int) -> float:
        """A `-ss` value at which ffmpeg's accurate seek keeps frame k but not k-1.

        ffmpeg rounds the offset to the stream's time base, so a midpoint
        between frames one tick apart (AVI) can round either way; 0.4 ticks
        before frame k rounds onto it, and >= 2 us survives `-ss`'s
        microsecond resolution for very fine time bases.
        """
        gap = self.times[k] - self.times[k - 1]
        return float(self.times[k] - min(max(0.4 * self.tick, 2e-6), gap / 2) - self.start)


@dataclass
class Frames:
    """What sequential decoding from frame 0 gives, per packet slot (n slots).

    outputs: (n,) int, how many frames came out carrying the slot's time (a
    damaged stream can give 0, or 2 where the decoder guessed times); valid:
    (n,) bool, exactly one came out, undamaged; checksum: (n,) uint32 adler32
    of its gray bytes. bad_keys:
    keyframes whose seeks were seen to give other frames (filled by readers).
    """

    outputs: np.ndarray
    valid: np.ndarray
    checksum: np.ndarray
    bad_keys: set = field(default_factory=set)

    @property
    def n(self) -> int:
        return len(self.valid)

    @property
    def undecodable(self) -> tuple[int, ...]:
        return tuple(np.flatnonzero(~self.valid).tolist())


Runner = Callable[[Path, Sequence[str]], subprocess.CompletedProcess]
# Indexes of the last _CACHED videos (a few numbers per frame each): a whole archive never piles up.
_CACHED = 16
_PACKETS: dict[tuple, tuple[Packets | None, str]] = {}
_FRAMES: dict[tuple, Frames] = {}


def _remember(cache: dict, key: tuple, value) -> None:
    cache[key] = value
    while len(cache) > _CACHED:
        cache.pop(next(iter(cache)))  # dicts keep insertion order: the oldest goes


def _key(p: Path) -> tuple:
    st = p.stat()
    return (str(p.resolve()), st.st_size, st.st_mtime_ns)


def _rows(text: str) -> tuple[list[list[str]], dict[str, str]]:
    """framecrc lines as cell lists, and its '#name 0: value' header."""
    rows, head = [], {}
    for line in text.splitlines():
        if line.startswith("#"):
            name, _, value = line[1:].partition(":")
            head[name.split()[0]] = value.strip()
        elif line:
            rows.append([c.strip() for c in line.split(",")])
    return rows, head


def _flags(row: list[str]) -> int:
    """framecrc prints a packet's flags only when they are not just 'keyframe' (1)."""
    for cell in row[6:]:
        if cell.startswith("F="):
            return int(cell[2:], 16)
    return 1


def packets(p: Path, run: Runner) -> tuple[Packets | None, str]:
    """The packet index of `p` (None where there is no timing at all) and ffmpeg's log; cached."""
    key = _key(p)
    if key not in _PACKETS:
        _remember(_PACKETS, key, _build_packets(p, run))
    return _PACKETS[key]


def _build_packets(p: Path, run: Runner) -> tuple[Packets | None, str]:
    res = run(p, ["-loglevel", "level+info", "-copyts", *_input(p), "-c", "copy", "-f", "framecrc", "-"])
    return _parse_packets(p, run, res), res.stderr


def _parse_packets(p: Path, run: Runner, res: subprocess.CompletedProcess) -> Packets | None:
    rows, head = _rows(res.stdout.decode("ascii", "replace"))
    tb = re.fullmatch(r"(\d+)/(\d+)", head.get("tb", ""))
    if not tb or not rows:
        return None
    rows = [r for r in rows if not _flags(r) & 4]  # an edit list discards these after decoding
    pts = np.asarray([int(r[2]) for r in rows], dtype=np.int64)
    order = np.argsort(pts, kind="stable")
    ticks = pts[order]
    is_key = np.asarray([_flags(r) & 1 for r in rows], bool)
    keys = np.flatnonzero(is_key[order])
    fmt = re.search(r"Input #0, ([\w,]+), from", res.stderr)
    start = re.search(r"start: (-?[\d.]+)", res.stderr)
    seekable = bool(fmt and SEEKABLE & set(fmt.group(1).split(",")) and start and len(keys)
                    and ticks[0] != np.iinfo(np.int64).min and np.all(np.diff(ticks) > 0)
                    and not _demux_trouble(res.stderr, head.get("codec_id", "")))
    codec = head.get("codec_id", "")
    tick = int(tb.group(1)) / int(tb.group(2))
    clean = _clean_keys(p, run, codec, is_key, pts[is_key], ticks[keys]) if seekable else np.zeros(len(keys), bool)
    return Packets(ticks * tick, tick, keys, clean, float(start.group(1)) if start else 0.0,
                   seekable, codec)


def _demux_trouble(log: str, codec: str) -> bool:
    """The demuxer reported damage (the codec's parser complaining about a slice is the decoder's business)."""
    return any(TROUBLE.search(ln) for ln in log.splitlines() if not ln.startswith(f"[{codec} @"))


def _clean_keys(p: Path, run: Runner, codec: str, is_key: np.ndarray, key_pts: np.ndarray,
                key_ticks: np.ndarray) -> np.ndarray:
    """Which keyframes (in presentation order) decode exactly without what precedes them."""
    if is_key.all():  # intra-only (MJPEG, FFV1, ...): every frame stands alone
        return np.ones(len(key_ticks), bool)
    if codec not in _IDR_NAL:
        return np.zeros(len(key_ticks), bool)
    # The NAL unit types of key packets only; trace_headers logs one "Packet:" line, then its NALs.
    res = run(p, ["-loglevel", "info", *_input(p), "-c", "copy", "-bsf:v",
                  "noise=drop=not(key),trace_headers", "-f", "null", "-"])
    per_packet: list[set[int]] = []
    for line in res.stderr.splitlines():
        if "] Packet: " in line:
            per_packet.append(set())
        elif per_packet and "nal_unit_type" in line:
            per_packet[-1].add(int(line.rsplit("=", 1)[1]))
    if len(per_packet) != len(key_pts):
        return np.zeros(len(key_ticks), bool)
    idr = np.asarray([bool(nals & _IDR_NAL[codec]) for nals in per_packet])
    return idr[np.argsort(key_pts, kind="stable")]


def _input(p: Path) -> list[str]:
    return ["-noautorotate", "-fflags", "+discardcorrupt", "-i", str(p),
            "-map", "0:V:0", "-an", "-sn", "-dn"]


def frames(p: Path, run: Runner, index: Packets | None) -> Frames | None:
    """The decoded-frame index of `p` (cached); None where frames cannot be matched to packets."""
    key = _key(p)
    if key not in _FRAMES:
        built = _build_frames(p, run, index)
        if built is None:
            return None
        _remember(_FRAMES, key, built)
    return _FRAMES[key]


def _decode_pass(p: Path, run: Runner, debug: bool) -> subprocess.CompletedProcess:
    # -enc_time_base demux keeps the stream's own time base: the encoder's default (1/fps) would round VFR times.
    return run(p, ["-loglevel", "level+info" if debug else "level+warning", *(["-debug_ts"] if debug else []),
                   "-copyts", *_input(p), "-fps_mode", "passthrough", "-enc_time_base:v", "demux",
                   "-pix_fmt", "gray", "-f", "framecrc", "-"])


def _build_frames(p: Path, run: Runner, index: Packets | None) -> Frames | None:
    if index is None or not index.seekable:
        return None
    res = _decode_pass(p, run, debug=False)
    rows, head = _rows(res.stdout.decode("ascii", "replace"))
    tb = re.fullmatch(r"(\d+)/(\d+)", head.get("tb", ""))
    if not tb or not rows:
        return None
    times = np.asarray([int(r[2]) for r in rows], np.int64) * (int(tb.group(1)) / int(tb.group(2)))
    slot = _match(index.times, times, index.tick)
    if slot is None:
        return None
    outputs = np.bincount(slot, minlength=index.n)
    checksum = np.zeros(index.n, np.uint32)
    checksum[slot] = [int(r[5], 16) for r in rows]
    valid = outputs == 1
    if "corrupt decoded frame" in res.stderr:  # concealed: find which, from the decoder's own log
        valid[_concealed(p, run, index)] = False
    return Frames(outputs, valid, checksum)


def _match(slots: np.ndarray, times: np.ndarray, tick: float) -> np.ndarray | None:
    """Slot of each decoded frame time (nondecreasing), or None if some time has no packet."""
    if len(times) == 0:
        return np.zeros(0, np.int64)
    at = np.clip(np.searchsorted(slots, times), 0, len(slots) - 1)
    near = np.where(np.abs(slots[np.maximum(at - 1, 0)] - times) < np.abs(slots[at] - times),
                    np.maximum(at - 1, 0), at)
    if np.any(np.abs(slots[near] - times) > 0.5 * tick + 1e-9) or np.any(np.diff(near) < 0):
        return None
    return near


def _concealed(p: Path, run: Runner, index: Packets) -> np.ndarray:
    """Slots whose frames ffmpeg flagged corrupt: "corrupt decoded frame" comes just before
    the decoder's "decoder -> pts_time:" line for that frame (one thread logs both)."""
    res = _decode_pass(p, run, debug=True)
    bad, flagged = [], False
    for line in res.stderr.splitlines():
        if "corrupt decoded frame" in line:
            flagged = True
        elif flagged and "decoder -> " in line:
            t = re.search(r"pts_time:(-?[\d.]+)", line)
            if t:
                bad.append(float(t.group(1)))
            flagged = False
    if not bad:
        return np.zeros(0, np.int64)
    at = np.clip(np.searchsorted(index.times, np.asarray(bad) - 0.5 * index.tick), 0, index.n - 1)
    return at
