"""The refinement page's local HTTP server (standard library only) and `serve()` for notebooks.

Routes (URLs in the page are relative, so it also works behind a notebook
proxy that serves it under a path prefix):

    GET  /                  the page            GET  /static/{app,train}.js, style.css
    GET  /frames/<id>.png   a listed frame      GET  /api/state, /api/train
    POST /api/labels        one frame's keypoints
    POST /api/train         start fine-tuning (409 while one runs)
    POST /api/save-model    {"name": ...} into the user models folder

Errors are JSON {"error": "..."} with a 4xx status. Nothing a request sends
becomes a path: static files come from a fixed table, frames by integer id.
POSTs must be `application/json`, which a page on another site cannot send
without the browser asking first (and this server never agrees), so
visiting a malicious site cannot change labels.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Sequence
from urllib.parse import urlsplit, urlunsplit

from jfacemap.io.jsonable import jsonable
from jfacemap.refine.session import RefineSession, RequestError

__all__ = ["RefineServer", "ServedURL", "serve", "make_server", "is_loopback"]

MAX_BODY = 1 << 20
DRAIN_LIMIT = 16 * MAX_BODY  # oversized bodies up to this are read (and dropped) before the 413
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/index.html": ("index.html", "text/html; charset=utf-8"),
          "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/static/train.js": ("train.js", "text/javascript; charset=utf-8"),
          "/static/style.css": ("style.css", "text/css; charset=utf-8")}
FRAME = re.compile(r"/frames/(\d{1,9})\.png")
HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
           "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; script-src 'self'; "
                                      "style-src 'self'; connect-src 'self'"}


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or 'localhost') only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _static(name: str) -> bytes:
    return resources.files("jfacemap.refine").joinpath("static", name).read_bytes()


class _Handler(BaseHTTPRequestHandler):
    server_version = "jfacemap-refine"
    protocol_version = "HTTP/1.1"
    session: RefineSession  # set on the subclass made per server
    quiet = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        if not self.quiet:
            super().log_message(format, *args)

    # ---------------------------------------------------------- replies ---

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        if status >= 400:  # the request's body may be unread: never reuse this connection
            self.close_connection = True
            self.send_header("Connection", "close")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, doc: object) -> None:
        self._send(status, json.dumps(jsonable(doc), allow_nan=False).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": message, "status": status})

    def _body(self) -> object:
        """The request's JSON body; RequestError for a missing, oversized, non-JSON one."""
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(411, "send the body with a Content-Length, not chunked")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise RequestError(411, "a Content-Length header is required")
        if int(length) > MAX_BODY:
            # Read and drop a moderately oversized body first: a client still sending it would
            # otherwise get a reset connection instead of this answer. A huge one is not read.
            left = int(length) if int(length) <= DRAIN_LIMIT else 0
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
            self.close_connection = True
            raise RequestError(413, f"body over {MAX_BODY} bytes")
        raw = self.rfile.read(int(length))
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise RequestError(415, "Content-Type must be application/json")
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RequestError(400, f"malformed JSON: {err}") from err

    # ----------------------------------------------------------- routes ---

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        try:
            if method == "GET":
                self._get(path)
            else:
                self._post(path)
        except RequestError as err:
            self._error(err.status, str(err))
        except Exception as err:  # one bad request must not take the server down
            self._error(500, f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}")

    def _get(self, path: str) -> None:
        if path in STATIC:
            name, content_type = STATIC[path]
            return self._send(200, _static(name), content_type)
        match = FRAME.fullmatch(path)
        if match:
            file = self.session.frame_png(int(match.group(1)))
            try:
                return self._send(200, file.read_bytes(), "image/png")
            except OSError as err:
                raise RequestError(404, f"frame image {match.group(1)} is missing") from err
        if path == "/api/state":
            return self._json(200, self.session.state())
        if path == "/api/train":
            return self._json(200, self.session.job.status())
        if path in ("/api/labels", "/api/save-model"):
            raise RequestError(405, f"{path} takes POST")
        raise RequestError(404, f"no such page: {path}")

    def _post(self, path: str) -> None:
        routes = {"/api/labels": self.session.save_labels, "/api/train": self.session.start_training,
                  "/api/save-model": self.session.save_model}
        if path not in routes:
            if path in STATIC or FRAME.fullmatch(path) or path == "/api/state":
                raise RequestError(405, f"{path} takes GET")
            raise RequestError(404, f"no such endpoint: {path}")
        body = self._body()
        self._json(202 if path == "/api/train" else 200, routes[path](body))

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _refuse(self) -> None:
        self._error(405, f"method {self.command} not allowed")

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _refuse  # noqa: N815


class RefineServer:
    """A running refinement server: `url`, `port`, `session`; `stop()` ends it."""

    def __init__(self, session: RefineSession, host: str = "127.0.0.1", port: int = 0, quiet: bool = True):
        handler = type("Handler", (_Handler,), {"session": session, "quiet": quiet})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.session, self.host = session, host
        self.port = int(self.httpd.server_address[1])
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else ("[::1]" if host == "::" else host)
        self.url = urlunsplit(("http", f"{shown}:{self.port}", "/", "", ""))
        self._thread: threading.Thread | None = None

    def start(self) -> "RefineServer":
        """Serve in a daemon thread and return at once."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="jfacemap-refine", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (Ctrl-C) or stopped."""
        try:
            self.httpd.serve_forever()
        finally:
            self.httpd.server_close()

    def stop(self, wait: float = 120.0) -> None:
        """Stop serving, close the socket, and stop a running training at the end of its
        epoch (waiting up to `wait` seconds for it)."""
        self.session.job.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self.session.job.wait(wait)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RefineServer({self.url!r}, project={str(self.session.project.root)!r})"

    def _repr_html_(self) -> str:
        return f'<a href="{self.url}" target="_blank">jfacemap refine: {self.url}</a>'


def make_server(videos: Sequence[str | os.PathLike] | str | os.PathLike, model: str | os.PathLike | None = None,
                project: str | os.PathLike = "refine-project", *, host: str = "127.0.0.1", port: int = 0,
                quiet: bool = True, **options) -> RefineServer:
    """A server (not yet serving) for `videos`; `options` go to `RefineSession.open`
    (frames, pick, random_fraction, new_frames, epochs, seed)."""
    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    session = RefineSession.open(list(videos), model, project, **options)
    return RefineServer(session, host, port, quiet)


class ServedURL(str):
    """The page's URL, a plain `str`, that also holds its running server:
    `.port`, `.url`, `.server` (the RefineServer) and `.stop()`."""

    server: RefineServer

    def __new__(cls, server: RefineServer) -> "ServedURL":
        url = super().__new__(cls, server.url)
        url.server = server
        return url

    @property
    def url(self) -> str:
        return str.__str__(self)

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self, wait: float = 120.0) -> None:
        self.server.stop(wait)

    def _repr_html_(self) -> str:
        return self.server._repr_html_()


def serve(videos: Sequence[str | os.PathLike] | str | os.PathLike, model: str | os.PathLike | None = None,
          project: str | os.PathLike = "refine-project", *, host: str = "127.0.0.1", port: int = 0,
          **options) -> ServedURL:
    """Start refining `videos` with `model` in `project` without blocking (for
    notebooks) and return the page's URL: the server runs in a daemon thread;
    the returned string's `.stop()` ends it. `port=0` picks a free port."""
    return ServedURL(make_server(videos, model, project, host=host, port=port, **options).start())
