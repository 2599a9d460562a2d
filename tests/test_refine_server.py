"""`jfacemap refine`'s HTTP contract over real HTTP: every endpoint, bad requests, path escapes, concurrency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refine_data import BODYPARTS, HEIGHT, WIDTH, get_json, make_tiny_model, make_video, request  # noqa: E402

N_PICK = 6


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("refine-inputs")
    return make_video(root / "clip.mp4"), make_tiny_model(root / "tiny")


@pytest.fixture(scope="module")
def models_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("jfacemap-home")
    old = os.environ.get("JFACEMAP_HOME")
    os.environ["JFACEMAP_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("JFACEMAP_HOME", None)
    else:
        os.environ["JFACEMAP_HOME"] = old


def _serve(inputs, project, **kw):
    from jfacemap.refine import serve

    video, model = inputs
    return serve([video], model=str(model), project=project, frames=N_PICK, new_frames=2, **kw)


@pytest.fixture(scope="module")
def server(inputs, models_home, tmp_path_factory):
    srv = _serve(inputs, tmp_path_factory.mktemp("project"), pick="mixed")
    yield srv
    srv.stop()


def test_serve_returns_the_url_without_blocking(server):
    assert isinstance(server, str) and server == server.url == f"http://127.0.0.1:{server.port}/"
    status, _, page = request(server, "GET", "/")
    assert status == 200 and b"<html" in page.lower()


def _labels_body(frame: dict, dx: float = 0.0, hidden: tuple[str, ...] = ()) -> dict:
    return {"frame": frame["id"], "keypoints": [
        {"name": p["name"], "visible": False} if p["name"] in hidden else
        {"name": p["name"], "x": min(max(p["x"] + dx, 0), frame["width"] - 1),
         "y": min(max(p["y"], 0), frame["height"] - 1), "visible": True}
        for p in frame["predicted"]]}


def test_state_shows_model_predictions_on_the_picked_frames(server, inputs):
    from jfacemap.io.video import read_frames
    from jfacemap.track.inference import make_predict_fn
    from jfacemap.track.model_store import load_tracker

    status, state = get_json(server.url, path="/api/state")
    assert status == 200
    assert state["bodyparts"] == BODYPARTS
    frames = state["frames"]
    assert len(frames) == N_PICK and len({f["index"] for f in frames}) == N_PICK
    video, model_dir = inputs
    images = read_frames(video, [f["index"] for f in frames])
    model, _, _ = load_tracker(model_dir)
    expected = np.asarray(make_predict_fn(model, None, (HEIGHT, WIDTH))(images))
    for f, kp in zip(frames, expected):
        assert (f["width"], f["height"], f["video"], f["corrected"]) == (WIDTH, HEIGHT, "clip.mp4", False)
        got = np.array([[p["x"], p["y"], p["likelihood"]] for p in f["keypoints"]], dtype=float)  # null -> NaN
        np.testing.assert_allclose(got, kp, atol=1e-3)
        # A keypoint without a heatmap peak (NaN, likelihood 0) starts out not visible.
        assert [p["visible"] for p in f["keypoints"]] == list(np.isfinite(kp[:, 0]))
        assert all(p["source"] == "model" for p in f["keypoints"])


def test_frame_images_are_the_video_frames(server, inputs, tmp_path):
    from jfacemap.io.images import read_image
    from jfacemap.io.video import read_frames

    _, state = get_json(server.url, path="/api/state")
    f = state["frames"][2]
    status, headers, body = request(server.url, path="/" + f["image"])
    assert status == 200 and headers["Content-Type"] == "image/png"
    (tmp_path / "got.png").write_bytes(body)
    np.testing.assert_array_equal(read_image(tmp_path / "got.png"), read_frames(inputs[0], [f["index"]])[0])


def test_page_is_self_contained(server):
    status, headers, page = request(server.url, path="/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<canvas id="canvas"' in page and b'src="static/app.js"' in page
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    for path, kind in (("/static/app.js", "text/javascript"), ("/static/train.js", "text/javascript"),
                       ("/static/style.css", "text/css")):
        status, headers, body = request(server.url, path=path)
        assert status == 200 and headers["Content-Type"].startswith(kind) and len(body) > 1000
        assert b"http://" not in body and b"https://" not in body  # nothing fetched from elsewhere
    assert b"http://" not in page and b"https://" not in page


def test_labels_are_saved_as_a_deeplabcut_csv_finetune_can_read(server, inputs):
    from jfacemap.io.keypoints import read_dlc_csv
    from jfacemap.io.video import read_frames
    from jfacemap.track.labels import load_labelled_frames

    _, state = get_json(server.url, path="/api/state")
    f = state["frames"][1]
    body = _labels_body(f, dx=3.25, hidden=("eye",))
    status, saved = get_json(server.url, "POST", "/api/labels", body)
    assert status == 200 and saved["corrected"]
    csv = Path(state["labels"])
    table = read_dlc_csv(csv)
    row = table.index.index(f"labeled-data/clip/img{f['index']:06d}.png")
    sent = {p["name"]: p for p in body["keypoints"]}
    for k, name in enumerate(table.bodyparts):
        if name == "eye":
            assert np.isnan(table.keypoints[row, k, :2]).all()
        else:
            assert table.keypoints[row, k, :2].tolist() == [sent[name]["x"], sent[name]["y"]]
    # what the state shows after a reload
    _, again = get_json(server.url, path="/api/state")
    shown = again["frames"][1]["keypoints"]
    assert [p["source"] for p in shown] == ["user"] * 3 and [p["visible"] for p in shown] == [True, False, True]
    # `jfacemap finetune CollectedData.csv` gets the frames and labels
    images, kp, names, _ = load_labelled_frames(csv)
    assert names == BODYPARTS
    np.testing.assert_array_equal(images[table.index.index(table.index[row])], read_frames(inputs[0], [f["index"]])[0])


BAD_LABELS = [
    ("malformed json", dict(raw=b'{"frame": 0, "keypoints": [', headers=None), 400, "malformed JSON"),
    ("not an object", dict(raw=b"[1, 2]", headers=None), 400, "JSON object"),
    ("frame not an int", dict(body={"frame": "0", "keypoints": []}), 400, "integer"),
    ("no such frame", dict(body={"frame": 999, "keypoints": []}), 404, "no frame"),
    ("unknown bodypart", dict(body="unknown"), 400, "unknown bodypart 'tail'"),
    ("missing bodypart", dict(body="missing"), 400, "missing bodyparts paw"),
    ("twice", dict(body="twice"), 400, "given twice"),
    ("outside the frame", dict(body="outside"), 400, "outside the 64x48 frame"),
    ("negative", dict(body="negative"), 400, "outside"),
    ("x as text", dict(body="text"), 400, "finite numbers"),
    ("visible not bool", dict(body="visible"), 400, "true or false"),
    ("wrong content type", dict(raw=b"{}", headers={"Content-Type": "text/plain"}), 415, "application/json"),
    ("too big", dict(raw=b" " * (1 << 20 + 1), headers=None), 413, "body over"),
]


def _bad_body(kind: str, frame: dict) -> dict:
    body = _labels_body(frame)
    points = body["keypoints"]
    if kind == "unknown":
        points[0]["name"] = "tail"
    elif kind == "missing":
        points.pop()
    elif kind == "twice":
        points[2]["name"] = "nose"
    elif kind == "outside":
        points[0]["x"] = WIDTH + 3.0
    elif kind == "negative":
        points[1]["y"] = -2.0
    elif kind == "text":
        points[0]["x"] = "12"
    elif kind == "visible":
        points[0]["visible"] = "yes"
    return body


@pytest.mark.parametrize("name, how, code, message", BAD_LABELS, ids=[b[0] for b in BAD_LABELS])
def test_bad_label_requests_get_a_4xx_and_leave_the_csv_alone(server, name, how, code, message):
    _, state = get_json(server.url, path="/api/state")
    csv = Path(state["labels"])
    before = csv.read_bytes() if csv.exists() else None
    body = how.get("body")
    if isinstance(body, str):
        body = _bad_body(body, state["frames"][0])
    status, headers, data = request(server.url, "POST", "/api/labels", body, raw=how.get("raw"),
                                    headers=how.get("headers"))
    assert status == code, data
    assert headers["Content-Type"] == "application/json"
    assert message in json.loads(data)["error"]
    assert (csv.read_bytes() if csv.exists() else None) == before


def test_missing_content_length_is_refused(server):
    import socket

    host, port = server.url.split("//")[1].rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /api/labels HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\r\n")
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 411")


ESCAPES = ["/frames/../../../../etc/passwd", "/static/../server.py", "/static/..%2fserver.py",
           "/static/%2e%2e/%2e%2e/refine.json", "//etc/passwd", "/etc/passwd", "/refine.json",
           "/CollectedData.csv", "/frames/-1.png", "/frames/0.png/../../refine.json", "/frames/%30.png",
           "/static/", "/static/index.html/..", "http://evil/etc/passwd", "/labeled-data/clip/img000001.png"]


@pytest.mark.parametrize("path", ESCAPES)
def test_no_path_reads_a_file_it_should_not(server, path):
    status, _, data = request(server.url, path=path)
    assert status == 404, (path, status)
    assert b"root:" not in data and b"jfacemap-refine" not in data and b"\x89PNG" not in data


def test_methods_and_unknown_routes(server):
    assert request(server.url, "PUT", "/api/labels", {})[0] == 405
    assert request(server.url, "DELETE", "/api/state")[0] == 405
    assert request(server.url, "OPTIONS", "/api/labels")[0] == 405  # no CORS preflight is ever granted
    assert request(server.url, path="/api/labels")[0] == 405
    assert request(server.url, "POST", "/api/state", {})[0] == 405
    assert request(server.url, "POST", "/api/nothing", {})[0] == 404
    assert request(server.url, path="/frames/99.png")[0] == 404


def test_concurrent_saves_keep_the_csv_whole(server):
    from jfacemap.io.keypoints import read_dlc_csv

    _, state = get_json(server.url, path="/api/state")
    frames = state["frames"][:4]
    results = []

    def post(i: int) -> None:
        f = frames[i % len(frames)]
        results.append(get_json(server.url, "POST", "/api/labels", _labels_body(f, dx=0.5 * (i // len(frames))))[0])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 24
    table = read_dlc_csv(Path(state["labels"]))  # parses: never a half-written file
    names = {f"labeled-data/clip/img{f['index']:06d}.png" for f in frames}
    assert names <= set(table.index) and len(table.index) == len(set(table.index))
    assert not list(Path(state["project"]).glob(".*partial*"))
    # each row holds one of the bodies sent for its frame, whole (x of every point moved alike)
    for f in frames:
        row = table.keypoints[table.index.index(f"labeled-data/clip/img{f['index']:06d}.png"), :, 0]
        shifts = row - np.array([min(max(p["x"], 0), WIDTH - 1) for p in f["predicted"]])
        free = [k for k, p in enumerate(f["predicted"]) if 0 < p["x"] < WIDTH - 4]
        if len(free) > 1:
            assert np.ptp(shifts[free]) < 1e-9


def test_symlinks_out_of_the_project_are_refused(inputs, models_home, tmp_path):
    srv = _serve(inputs, tmp_path / "project", pick="random")
    try:
        _, state = get_json(srv.url, path="/api/state")
        secret = tmp_path / "secret.txt"
        secret.write_text("secret")
        image = Path(state["project"]) / "labeled-data" / "clip" / f"img{state['frames'][0]['index']:06d}.png"
        image.unlink()
        image.symlink_to(secret)
        status, _, data = request(srv.url, path="/frames/0.png")
        assert status == 403 and b"secret" not in data
        csv = Path(state["labels"])
        csv.symlink_to(secret)
        status, _ = get_json(srv.url, "POST", "/api/labels", _labels_body(state["frames"][1]))
        assert status == 403 and secret.read_text() == "secret"
        csv.unlink()
        # training before any correction is refused too
        assert get_json(srv.url, "POST", "/api/train", {"epochs": 1})[0] == 400
    finally:
        srv.stop()


def test_train_round_then_save_model(server, inputs, models_home):
    from jfacemap.io.video import read_frames
    from jfacemap.track.model_store import load_tracker, resolve_model
    from jfacemap.track.train import evaluate_tracker

    _, state = get_json(server.url, path="/api/state")
    f = state["frames"][0]
    assert get_json(server.url, "POST", "/api/labels", _labels_body(f, dx=2.0))[0] == 200
    assert get_json(server.url, "POST", "/api/train", {"epochs": 0})[0] == 400
    status, started = get_json(server.url, "POST", "/api/train", {"epochs": 2})
    assert status == 202 and started["state"] == "running"
    status, refused = get_json(server.url, "POST", "/api/train", {"epochs": 2})
    assert status == 409 and "already running" in refused["error"]
    assert get_json(server.url, "POST", "/api/save-model", {"name": "mid-training"})[0] == 409
    deadline = time.time() + 120
    while (job := get_json(server.url, path="/api/train")[1])["state"] == "running":
        assert time.time() < deadline
        time.sleep(0.3)
    assert job["state"] == "done", job
    assert [h["epoch"] for h in job["history"]] == [0, 1] and job["epoch"] == job["epochs"] == 2
    result = job["result"]
    # the errors it reports, recomputed from the files it wrote
    from jfacemap.track.labels import load_labelled_frames

    images, kp, _, table = load_labelled_frames(Path(state["labels"]))
    old, _, _ = load_tracker(inputs[1])
    new, _, _ = load_tracker(result["model"])
    assert result["frames"] == len(images)
    assert result["before"]["mean_px"] == pytest.approx(evaluate_tracker(old, images, kp, BODYPARTS)["mean_px"], rel=1e-4)
    assert result["after"]["mean_px"] == pytest.approx(evaluate_tracker(new, images, kp, BODYPARTS)["mean_px"], rel=1e-4)
    # the page now shows the new model's predictions, on the old frames and on new ones
    _, after = get_json(server.url, path="/api/state")
    assert len(after["frames"]) == len(state["frames"]) + 2 and after["model"] == result["model"]
    assert [g["round"] for g in after["frames"][-2:]] == [1, 1]
    g = after["frames"][-1]
    from jfacemap.track.inference import make_predict_fn

    expected = np.asarray(make_predict_fn(new, None, (HEIGHT, WIDTH))(read_frames(inputs[0], [g["index"]])))[0]
    np.testing.assert_allclose([[p["x"], p["y"]] for p in g["predicted"]], expected[:, :2], atol=1e-3)
    # save it under a name that `--model NAME` finds
    for bad, code in (("../escape", 400), ("/abs", 400), ("", 400), ("base", 409), ("facemap", 409), (7, 400)):
        assert get_json(server.url, "POST", "/api/save-model", {"name": bad})[0] == code, bad
    status, saved = get_json(server.url, "POST", "/api/save-model", {"name": "my-refined"})
    assert status == 200 and resolve_model("my-refined") == Path(saved["path"])
    assert Path(saved["path"]).parent == models_home / "models"
    assert get_json(server.url, "POST", "/api/save-model", {"name": "my-refined"})[0] == 409
    assert get_json(server.url, "POST", "/api/save-model", {"name": "my-refined", "overwrite": True})[0] == 200
    again, _, _ = load_tracker("my-refined")
    probe = read_frames(inputs[0], [3])
    np.testing.assert_allclose(np.asarray(make_predict_fn(again, None, (HEIGHT, WIDTH))(probe)),
                               np.asarray(make_predict_fn(new, None, (HEIGHT, WIDTH))(probe)), atol=1e-5)


def test_reopening_the_project_shows_the_saved_corrections(inputs, models_home, tmp_path):
    srv = _serve(inputs, tmp_path / "p", pick="random")
    _, state = get_json(srv.url, path="/api/state")
    body = _labels_body(state["frames"][3], dx=-1.5, hidden=("paw",))
    assert get_json(srv.url, "POST", "/api/labels", body)[0] == 200
    srv.stop()
    srv = _serve(inputs, tmp_path / "p", pick="uncertain")  # the frames are the project's, not re-picked
    try:
        _, again = get_json(srv.url, path="/api/state")
        assert [f["index"] for f in again["frames"]] == [f["index"] for f in state["frames"]]
        shown = again["frames"][3]["keypoints"]
        assert [p["source"] for p in shown] == ["user"] * 3 and not shown[2]["visible"]
        assert [shown[k]["x"] for k in (0, 1)] == [body["keypoints"][k]["x"] for k in (0, 1)]
        assert sum(f["corrected"] for f in again["frames"]) == 1
    finally:
        srv.stop()


def test_cli_prints_the_url_and_serves(inputs, tmp_path):
    from jfacemap.refine.server import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    video, model = inputs
    cmd = [sys.executable, "-m", "jfacemap.cli.app", "refine", str(video), "--model", str(model),
           "--project", str(tmp_path / "cli"), "--frames", "3", "--pick", "random", "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.time() + 90
        while url is None and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("open"):
                url = line.split()[1]
        assert url and url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.poll() is not None else url
        status, state = get_json(url, path="/api/state")
        assert status == 200 and len(state["frames"]) == 3
    finally:
        proc.terminate()
        proc.wait(10)
