"""The error every video reader and writer raises, shared by `video` and `video_writer`."""

from __future__ import annotations

from jfacemap.errors import JfacemapError


class VideoError(JfacemapError):
    """A video cannot be read or written; the message is one line naming the file."""


def last_line(text: str) -> str:
    """The last non-empty line of ffmpeg's output (its reason), or 'no message'."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"
