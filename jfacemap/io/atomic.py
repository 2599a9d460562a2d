"""Write-to-temporary-then-rename, so no reader ever sees a half-written file.

Every writer in jfacemap goes through `atomic_path`: an interrupted job leaves
either the old file or no file, never a truncated one.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` on success.

    The temporary file lives in the same folder (so the rename is atomic on
    one filesystem) and keeps the final suffix (so tools that choose a format
    from the extension, like ffmpeg, still do). On any exception it is removed
    and `path` is left untouched.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = final.suffix if suffix is None else suffix
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.stem}.", suffix=f".partial{suffix}", dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes 0600 files; outputs should have the usual permissions.
    os.chmod(tmp, 0o666 & ~_UMASK)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_npz_atomic(path: str | os.PathLike, **arrays) -> None:
    """np.savez of `arrays` into `path` atomically; None values are left out, and no
    value may need a pickle (each must be a plain array)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items() if v is not None})
    write_bytes_atomic(path, buffer.getvalue())
