"""The `jfacemap` typer app: registers each stage's commands and turns user errors into one line.

Help reads as plain words: flags show no value type, other values show a
metavar (FILE, FOLDER, INTEGER, ...), arguments their name in capitals;
`-h` is `--help` everywhere. Ctrl-C exits 130 with one line saying what a
rerun does.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional, get_args, get_origin

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

import jfacemap
from jfacemap.cli import demo, info, synth
from jfacemap.cli import encode, export, hmm, live, refine, roi, svd, timescales, track, train
from jfacemap.errors import JfacemapError

CONTEXT = {"help_option_names": ["-h", "--help"]}

# What a rerun does after Ctrl-C, for the commands that keep their finished work.
RESUME_HINTS = {
    "track": "the frames tracked so far are saved (every --chunk-size frames, in <output>.partial): "
             "rerun the same command to resume from there",
    "train": "the epoch checkpoints are kept (OUT/checkpoints): rerun the same command to resume from the last one",
}
RESUME_HINTS["finetune"] = RESUME_HINTS["train"]
RESUME_HINTS["roi"] = ("the traces measured so far are saved (in <video>_roi.npz.partial): "
                       "rerun the same command to resume from there")
RESUME_HINTS["live"] = "the keypoints tracked so far are in the h5 log"

_METAVARS = {int: "INTEGER", float: "NUMBER", str: "TEXT", Path: "PATH"}


def _metavar(annotation: Any) -> str:
    """A value's metavar from its type: INTEGER, NUMBER, TEXT, PATH (tuples: one per element)."""
    args = get_args(annotation)
    if get_origin(annotation) is tuple:
        return " ".join(_metavar(a) for a in args)
    if get_origin(annotation) is list and args:
        return _metavar(args[0])
    return _METAVARS.get(annotation, "VALUE")


class _PlainArgument(TyperArgument):
    """An argument shown by its metavar alone: `VIDEO...`, not `{videos}...` and `<list[Path]>`."""

    def display_type_rich(self, ctx):
        return None

    def _usage_display_name(self) -> str:
        name = self.metavar or self.name.upper()
        return name if self.required else f"[{name}]"


def _plain(params: list) -> list:
    """Give typer's parameters plain metavars (it would print `<bool>`, `<int>`, `{out}`); idempotent."""
    for param in params:
        if isinstance(param, TyperOption) and param.metavar is None:
            descriptor = getattr(param, "type_descriptor", None)
            param.metavar = "" if param.is_flag or param.count else _metavar(getattr(descriptor, "annotation", None))
        elif isinstance(param, TyperArgument) and not isinstance(param, _PlainArgument):
            if param.metavar is None:
                param.metavar = param.name.upper() + ("..." if param.nargs != 1 else "")
            # typer has no hook for an argument's class; ours only changes how it is displayed
            param.__class__ = _PlainArgument
    return params


class PlainCommand(TyperCommand):
    """A command with plain help, and one line (exit 130) on Ctrl-C."""

    def get_params(self, ctx):
        return _plain(super().get_params(ctx))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as err:
            hint = RESUME_HINTS.get(ctx.info_name or "")
            typer.echo(f"jfacemap: interrupted{'; ' + hint if hint else ''}", err=True)
            raise typer.Exit(130) from err


class PlainGroup(TyperGroup):
    """The app's group with plain help."""

    def get_params(self, ctx):
        return _plain(super().get_params(ctx))


app = typer.Typer(
    name="jfacemap",
    help="Facemap in JAX: track mouse-face keypoints, relate them to neural activity, model behavioural states.",
    cls=PlainGroup,
    context_settings=CONTEXT,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"jfacemap {jfacemap.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """Facemap in JAX: track mouse-face keypoints, relate them to neural activity, model behavioural states."""


for _name, _function in (("demo", demo.demo), ("synth", synth.synth), ("info", info.info), ("track", track.track),
                         ("train", train.train), ("finetune", train.finetune), ("evaluate", train.evaluate),
                         ("encode", encode.encode), ("svd", svd.svd), ("timescales", timescales.timescales),
                         ("hmm", hmm.hmm), ("refine", refine.refine), ("export", export.export),
                         ("roi", roi.roi), ("live", live.live)):
    app.command(_name, cls=PlainCommand, context_settings=CONTEXT)(_function)


def is_user_error(error: BaseException) -> bool:
    """A JfacemapError (bad input, said in one line) or an OS error; anything else is a bug."""
    return isinstance(error, (JfacemapError, OSError))


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one line (`JFACEMAP_DEBUG=1` for the traceback);
    any other exception is a bug and propagates with its traceback."""
    # JAX warns on every fork once its threads run; ours are ffmpeg's fork+exec, which is safe.
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
    try:
        app(args=argv, prog_name="jfacemap")
    except Exception as error:
        if not is_user_error(error) or os.environ.get("JFACEMAP_DEBUG"):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        typer.echo(f"jfacemap: error: {message}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
