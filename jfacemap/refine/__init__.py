"""Human-in-the-loop refinement in the browser (SPEC 1): label frames, fine-tune, repeat, save.

    server = serve("mouse.mp4", model="base", project="refine-project")   # returns at once
    print(server.url)    # open it; server.stop() when done

`jfacemap refine` is the same from a terminal. The page is plain HTML/JS/CSS
in `static/`, served by the standard library (server.py); the labels go to
`<project>/CollectedData.csv` as they are made (project.py).
"""

from jfacemap.refine.server import RefineServer, ServedURL, make_server, serve

__all__ = ["serve", "make_server", "RefineServer", "ServedURL"]
