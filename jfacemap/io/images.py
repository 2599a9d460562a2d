"""Still images: read any format ffmpeg decodes as grayscale; write PNG.

PNG writing needs only zlib, so figures made of pixels (contact sheets,
overlays) need no plotting library.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

from jfacemap.io.atomic import write_bytes_atomic


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
