"""Progress bars for long CLI work, on stderr so stdout stays parseable."""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Iterator

import typer


@contextlib.contextmanager
def progress_bar(total: int, label: str, every_s: float = 30.0) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n)`; draws a bar of `total` steps labelled `label` on stderr.

    When stderr is not a terminal (a log file, a batch job) it prints a plain
    line at most every 10 % of `total` or every `every_s` seconds instead.
    """
    err = typer.get_text_stream("stderr")
    if _is_tty(err):
        with typer.progressbar(length=total, label=label, file=err) as bar:
            yield bar.update
        return
    state = {"done": 0, "shown": 0, "when": time.monotonic()}

    def advance(n: int) -> None:
        state["done"] += n
        now = time.monotonic()
        step = max(total // 10, 1)
        if state["done"] - state["shown"] >= step or now - state["when"] >= every_s:
            pct = 100 * state["done"] / total if total else 100.0
            typer.echo(f"{label}: {state['done']}/{total} frames ({pct:.0f}%)", err=True)
            state["shown"], state["when"] = state["done"], now

    yield advance


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or unusual stream: no bar
        return False
