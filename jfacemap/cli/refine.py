"""`jfacemap refine`: correct a tracker's keypoints in the browser, fine-tune it, save it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from jfacemap.errors import JfacemapError


def refine(
    videos: Annotated[list[Path], typer.Argument(metavar="VIDEO...", help="Videos to pick frames from.")],
    project: Annotated[Path, typer.Option(metavar="FOLDER", help="Project folder: labels (CollectedData.csv), frame images, "
                                               "trained rounds. Reopen it to go on.")],
    model: Annotated[Optional[str], typer.Option(metavar="MODEL", help="Tracker to start from: a name or a model folder "
                                                      "(default: the project's latest round, else base).")] = None,
    frames: Annotated[int, typer.Option(help="Frames to label in a new project.")] = 20,
    pick: Annotated[str, typer.Option(metavar="random|uncertain|mixed", help="How frames are picked: random, uncertain or mixed.")] = "mixed",
    random_fraction: Annotated[float, typer.Option(help="Share of random frames with --pick mixed.")] = 0.5,
    new_frames: Annotated[int, typer.Option(help="Frames added after each training round.")] = 5,
    epochs: Annotated[Optional[int], typer.Option(help="Fine-tuning epochs (default: the finetune preset's).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on; anything but 127.0.0.1 lets other machines in.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one).")] = 8765,
    seed: Annotated[int, typer.Option(help="Seed for frame picking and training.")] = 0,
) -> None:
    """Serve the refinement page for VIDEOS and print its address (Ctrl-C stops)."""
    from jfacemap.refine.server import is_loopback, make_server

    if not 0 <= port <= 65535:
        raise JfacemapError(f"--port must be in 0..65535, got {port}")
    typer.echo("picking frames and predicting keypoints...", err=True)
    server = make_server(videos, model, project, host=host, port=port, quiet=False, frames=frames, pick=pick,
                         random_fraction=random_fraction, new_frames=new_frames, epochs=epochs, seed=seed)
    if not is_loopback(host):
        typer.echo(f"warning: listening on {host}: anyone who can reach this machine on port {server.port} "
                   "can read and change this project (no password). Prefer 127.0.0.1 and an SSH tunnel.", err=True)
    typer.echo(f"project    {server.session.project.root}")
    typer.echo(f"labels     {server.session.project.labels_path}")
    typer.echo(f"open       {server.url}", )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)
