"""Small videos on which seeking goes wrong, made with the ffmpeg binary imageio-ffmpeg ships.

Every frame differs (a moving test pattern with temporal noise), so a frame
read at the wrong index, or decoded without its references, cannot pass.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np

# testsrc2 moves and carries a frame counter; temporal noise makes every frame unique.
SOURCE = "testsrc2=size=96x64:rate=30,noise=alls=40:allf=t+u"
X264 = ["-c:v", "libx264", "-pix_fmt", "yuv420p"]

# name -> (file name, frames, ffmpeg output options)
RECIPES: dict[str, tuple[str, int, list[str]]] = {
    "long_gop": ("long_gop.mp4", 600, [*X264, "-bf", "3", "-x264-params", "keyint=250:min-keyint=250:scenecut=0"]),
    "open_gop": ("open_gop.mp4", 500, [*X264, "-bf", "4", "-x264-params",
                                       "open-gop=1:keyint=90:min-keyint=90:scenecut=0:b-pyramid=normal"]),
    "open_gop_mkv": ("open_gop.mkv", 400, [*X264, "-bf", "3", "-x264-params", "open-gop=1:keyint=70:scenecut=0"]),
    "high444": ("high444.mp4", 500, ["-c:v", "libx264", "-pix_fmt", "yuv444p", "-profile:v", "high444",
                                     "-bf", "3", "-x264-params", "keyint=300:scenecut=0:open-gop=1"]),
    # No IDR after frame 0: every "keyframe" is a recovery point whose picture needs earlier ones.
    "intra_refresh": ("intra_refresh.mp4", 600, [*X264, "-bf", "0", "-x264-params", "intra-refresh=1:keyint=60"]),
    "intra_refresh444": ("intra_refresh444.mp4", 500, ["-c:v", "libx264", "-pix_fmt", "yuv444p", "-profile:v",
                                                       "high444", "-x264-params", "intra-refresh=1:keyint=250"]),
    # Irregular timestamps: a jump at frame 100, then growing gaps.
    "vfr": ("vfr.mkv", 400, ["-vf", "setpts='(N+if(gte(N,100),7,0)+if(gte(N,300),N/50,0))/30/TB'",
                             "-fps_mode", "passthrough", *X264, "-bf", "2", "-x264-params", "keyint=70:scenecut=0"]),
    "mjpeg": ("mjpeg.avi", 300, ["-c:v", "mjpeg", "-q:v", "5"]),
    # The first presentation time is 7.3 s, not 0.
    "late_start": ("late_start.mp4", 400, ["-vf", "setpts=PTS+7.3/TB", *X264, "-bf", "3",
                                           "-x264-params", "keyint=250:scenecut=0"]),
}


def ffmpeg(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
                           "-y", *args], check=True, capture_output=True)


def make(folder: Path, name: str) -> Path:
    """Write the video of recipe `name` into `folder`."""
    file, n, options = RECIPES[name]
    out = folder / file
    ffmpeg("-f", "lavfi", "-i", SOURCE, "-frames:v", str(n), *options, str(out))
    return out


def make_edit_list(folder: Path, long_gop: Path) -> Path:
    """Cut from mid-GOP with `-ss` + `-c copy`: the mp4 keeps pre-roll packets behind an edit list."""
    out = folder / "edit_list.mp4"
    ffmpeg("-ss", "3.37", "-i", str(long_gop), "-c", "copy", str(out))
    return out


def packet_rows(path: Path) -> list[tuple[int, int, bool]]:
    """(pts, size, keyframe) of each video packet in decode order (no decoding)."""
    res = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path),
                          "-map", "0:V:0", "-c", "copy", "-f", "framecrc", "-"], capture_output=True, check=True)
    rows = []
    for line in res.stdout.decode().splitlines():
        if line and not line.startswith("#"):
            cells = [c.strip() for c in line.split(",")]
            rows.append((int(cells[2]), int(cells[4]), not any(c.startswith("F=") for c in cells[6:])))
    return rows


def packet_payload(path: Path, n: int) -> bytes:
    """The stored bytes of video packet `n` (decode order)."""
    res = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
                          "-i", str(path), "-map", "0:V:0", "-c", "copy", "-bsf:v", f"noise=drop=not(eq(n\\,{n}))",
                          "-f", "data", "-"], capture_output=True, check=True)
    return res.stdout


def make_corrupt(folder: Path, n_frames: int = 300, n_bad: int = 4) -> tuple[Path, Path, list[int]]:
    """An h264 mkv and a copy with `n_bad` B-frame packets overwritten by noise.

    B-frames here are not references (no B-pyramid), so only the overwritten
    frames differ from the intact video's. Returns (intact, corrupt, the
    presentation indices of the overwritten packets).
    """
    intact = folder / "intact.mkv"
    ffmpeg("-f", "lavfi", "-i", SOURCE, "-frames:v", str(n_frames), *X264, "-bf", "2",
           "-x264-params", "keyint=100:scenecut=0:b-pyramid=none:b-adapt=0", str(intact))
    rows = packet_rows(intact)
    order = np.argsort([r[0] for r in rows], kind="stable")
    shown_at = np.empty(len(rows), int)
    shown_at[order] = np.arange(len(rows))
    # A B-frame is shown before a packet decoded earlier.
    b_frames = [i for i in range(1, len(rows)) if rows[i][0] < max(r[0] for r in rows[:i])]
    picks = [b_frames[j] for j in np.linspace(len(b_frames) // 4, 3 * len(b_frames) // 4, n_bad).astype(int)]
    data = bytearray(intact.read_bytes())
    corrupt = folder / "corrupt.mkv"
    for j, i in enumerate(picks):
        payload = packet_payload(intact, i)
        at = data.find(payload)
        assert at > 0 and data.find(payload, at + 1) < 0 and len(payload) > 120
        if j % 2:  # noise over the slice data: decoded concealed, flagged corrupt
            data[at:at + len(payload)] = _flagged_noise(bytes(data), at, payload, corrupt)
        else:  # zeros where the slice header starts: the decoder drops the frame
            data[at + 5: at + 13] = bytes(8)
    corrupt.write_bytes(bytes(data))
    return intact, corrupt, sorted(int(shown_at[i]) for i in picks)


def _flagged_noise(data: bytes, at: int, payload: bytes, scratch: Path) -> bytes:
    """`payload` with noise after its slice header that ffmpeg reports as damage.

    Not every noise pattern is reported (ffmpeg 9 decodes some without a word,
    and no reader could flag those), so seeds are tried until one is.
    """
    n = len(payload)
    for seed in range(50):
        noisy = payload[:16] + np.random.default_rng(seed).integers(0, 256, n - 16, dtype=np.uint8).tobytes()
        scratch.write_bytes(data[:at] + noisy + data[at + n:])
        res = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "warning",
                              "-i", str(scratch), "-f", "null", "-"], capture_output=True, text=True)
        if "error while decoding" in res.stderr or "corrupt decoded" in res.stderr:
            return noisy
    raise AssertionError("no noise pattern that ffmpeg reports as damage")
