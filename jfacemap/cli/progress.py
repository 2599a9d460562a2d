"""Progress bars for long CLI work, on stderr so stdout stays parseable.

The bar estimates the time left from the rate of this run's own work: steps an
earlier, interrupted run already did (`advance.skip(n)`, e.g. the frames a
resumed `track` finds in its partial file) fill the bar but do not count as
work done now, so the estimate is right after a resume. The bar never hides
the terminal cursor, so no way of stopping the program (Ctrl-C, kill -9) can
leave it hidden.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator, TextIO

import typer

_REDRAW_S = 0.2  # a terminal bar redraws at most this often


class Progress:
    """`advance(n)`: n steps done now; `advance.skip(n)`: n steps an earlier run did."""

    def __init__(self, total: int, label: str, unit: str, stream: TextIO, tty: bool, every_s: float):
        self.total, self.label, self.unit, self.stream, self.tty, self.every_s = total, label, unit, stream, tty, every_s
        self.done = self.skipped = self._shown = 0
        self._start = self._when = time.monotonic()
        self._width = 0  # length of the last bar drawn, to blank it when it shrinks

    def __call__(self, n: int) -> None:
        self.done += n
        self._show()

    def skip(self, n: int) -> None:
        """Steps done before this run (not timed): they fill the bar, not the rate."""
        self.done += n
        self.skipped += n
        self._start = time.monotonic()  # the rate counts from here
        self._show(force=True)

    def seconds_left(self) -> float | None:
        """(total - done) / this run's rate; None until this run has done something."""
        now_done, elapsed = self.done - self.skipped, time.monotonic() - self._start
        if now_done <= 0 or elapsed <= 0:
            return None
        return max(self.total - self.done, 0) * elapsed / now_done

    def line(self) -> str:
        pct = 100 * self.done / self.total if self.total else 100.0
        text = f"{self.done}/{self.total} {self.unit} ({pct:.0f}%)"
        left = self.seconds_left() if self.done < self.total else None
        return text + (f", about {_clock(left)} left" if left is not None else "")

    def _show(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            if force or self.done >= self.total or now - self._when >= _REDRAW_S:
                filled = int(20 * min(self.done / self.total, 1.0)) if self.total else 20
                bar = f"{self.label} [{'#' * filled}{'-' * (20 - filled)}] {self.line()}"
                self.stream.write("\r" + bar.ljust(self._width))
                self.stream.flush()
                self._width, self._when = len(bar), now
            return
        step = max(self.total // 10, 1)
        if force or self.done - self._shown >= step or now - self._when >= self.every_s:
            typer.echo(f"{self.label}: {self.line()}", err=True)
            self._shown, self._when = self.done, now

    def close(self) -> None:
        if self.tty and self._width:
            self._show(force=True)  # where it ended (a throttled last step included)
            self.stream.write("\n")  # end the bar's line: what follows starts on its own
            self.stream.flush()


@contextlib.contextmanager
def progress_bar(total: int, label: str, every_s: float = 30.0, unit: str = "frames") -> Iterator[Progress]:
    """Yield `advance(n)` (a `Progress`); draws a bar of `total` `unit` labelled `label` on stderr.

    When stderr is not a terminal (a log file, a batch job) it prints a plain
    line at most every 10 % of `total` or every `every_s` seconds instead.
    """
    err = typer.get_text_stream("stderr")
    progress = Progress(total, label, unit, err, _is_tty(err), every_s)
    if progress.tty:
        progress._show(force=True)
    try:
        yield progress
    finally:  # also on Ctrl-C or an error: the next line must not land on the bar
        progress.close()


def _clock(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or unusual stream: no bar
        return False


def phase_bars(bars: contextlib.ExitStack, totals: dict[str, tuple[int, str]]):
    """on_progress(phase, n) for work in phases (e.g. the SVD's "sample" then "project"): each phase
    gets its own bar, (total, label) from `totals`, opened in `bars` when the phase starts."""
    shown: dict = {}

    def advance(phase: str, n: int) -> None:
        if phase not in shown:  # a new phase: end the last bar, start its own
            bars.close()
            shown.clear()
            shown[phase] = bars.enter_context(progress_bar(*totals[phase]))
        shown[phase](n)

    return advance
