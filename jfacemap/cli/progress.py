"""Progress bars for long CLI work, on stderr so stdout stays parseable."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import typer


@contextlib.contextmanager
def progress_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n)`; draws a bar of `total` steps labelled `label` on stderr."""
    with typer.progressbar(length=total, label=label, file=typer.get_text_stream("stderr")) as bar:
        yield bar.update
