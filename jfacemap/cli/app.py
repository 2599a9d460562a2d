"""The `jfacemap` typer app: registers each stage's commands and turns user errors into one line."""

from __future__ import annotations

import os
import sys
import warnings

import typer

from jfacemap.cli import demo, info, synth
from jfacemap.cli import encode, hmm, refine, svd, track, train
from jfacemap.errors import JfacemapError

app = typer.Typer(
    name="jfacemap",
    help="Facemap in JAX: track mouse-face keypoints, relate them to neural activity, model behavioural states.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("demo")(demo.demo)
app.command("synth")(synth.synth)
app.command("info")(info.info)
app.command("track")(track.track)
app.command("train")(train.train)
app.command("finetune")(train.finetune)
app.command("evaluate")(train.evaluate)
app.command("encode")(encode.encode)
app.command("svd")(svd.svd)
app.command("hmm")(hmm.hmm)
app.command("refine")(refine.refine)


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
