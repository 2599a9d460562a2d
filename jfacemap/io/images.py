"""Still images: read any format ffmpeg decodes as grayscale; write PNG.

PNG writing needs only zlib, so figures made of pixels (contact sheets,
overlays) need no plotting library.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np

from jfacemap.errors import JfacemapError
from jfacemap.io.atomic import write_bytes_atomic
from jfacemap.io.inputs import existing_file


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of `image`: (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA, uint8."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"PNG needs uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        color_type, channels = 0, 1
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        color_type, channels = (2, 3) if image.shape[2] == 3 else (6, 4)
    else:
        raise ValueError(f"PNG needs (H, W), (H, W, 3) or (H, W, 4) pixels, got shape {image.shape}")
    height, width = image.shape[:2]
    rows = np.ascontiguousarray(image).reshape(height, width * channels)
    # Filter type 0 (none) in front of every scanline.
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 6))
        + _png_chunk(b"IEND", b"")
    )


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write `image` (uint8 gray/RGB/RGBA) as a PNG file, atomically."""
    write_bytes_atomic(path, encode_png(image))
    return Path(path)


class ImageError(JfacemapError):
    """An image cannot be read; the message is one line naming the file."""


def _decode_gray(path: Path, input_params: list[str]) -> np.ndarray | None:
    """First frame of `path` as (H, W) uint8, or None if ffmpeg cannot decode it this way."""
    import imageio_ffmpeg  # here, so PNG writing needs no ffmpeg

    # One plain ffmpeg run (~20 ms) rather than imageio_ffmpeg.read_frames,
    # whose header polling costs ~50 ms per file: label folders hold hundreds.
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", *input_params,
           "-i", str(path), "-map", "0:V:0", "-frames:v", "1",
           "-f", "rawvideo", "-pix_fmt", "gray", "-"]
    res = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL)
    header = res.stderr.decode("utf-8", "replace").partition("Output #0")[2]
    size = re.search(r"Video: rawvideo.*?, (\d+)x(\d+)", header)
    if res.returncode != 0 or not size:
        return None
    width, height = int(size.group(1)), int(size.group(2))
    if len(res.stdout) != width * height:
        return None
    return np.frombuffer(res.stdout, np.uint8).reshape(height, width).copy()


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file (PNG, JPEG, TIFF, BMP, ... anything ffmpeg decodes) as (H, W) uint8 gray.

    Colour becomes luma (ffmpeg's BT.601 weights), alpha is dropped, 16-bit
    is scaled to 8-bit; a multi-frame file gives its first frame.
    """
    p = existing_file(path, "image", ImageError)
    # image2 with pattern_type none reads the name literally ('%' or '*' in it
    # would otherwise be a sequence pattern); other formats (gif, ...) need
    # ffmpeg's own probing.
    image = _decode_gray(p, ["-f", "image2", "-pattern_type", "none"])
    if image is None:
        image = _decode_gray(p, [])
    if image is None:
        raise ImageError(f"{p}: not an image (ffmpeg could not decode it)")
    return image
