"""The refinement page in a real headless Chromium: drag, hide, undo, keyboard, train.

Needs Debian's `chromium` and `chromium-driver` and the `selenium` package
(`.ci/run` installs them). Without them the test is skipped, unless
JFACEMAP_REQUIRE_BROWSER=1 (set by CI) makes their absence a failure.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from refine_data import BODYPARTS, get_json, make_tiny_model, make_video  # noqa: E402

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
DRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401

    MISSING = [n for n, found in (("chromium", CHROMIUM), ("chromedriver", DRIVER)) if not found]
except ImportError:
    MISSING = ["selenium"]
if MISSING and os.environ.get("JFACEMAP_REQUIRE_BROWSER"):
    raise RuntimeError(f"browser test required but {', '.join(MISSING)} not installed")
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)} (apt-get install chromium "
                                                      "chromium-driver; pip install selenium)")


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--force-device-scale-factor=1", "--no-first-run"):
        options.add_argument(arg)
    # An explicit driver path: Selenium Manager is never asked to download anything.
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def _wait(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value is not None and not (isinstance(value, (bool, np.bool_, str)) and not value):
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _row(csv: Path, name: str) -> np.ndarray | None:
    from jfacemap.io.keypoints import read_dlc_csv

    if not csv.exists():
        return None
    table = read_dlc_csv(csv)
    return table.keypoints[table.index.index(name), :, :2] if name in table.index else None


def test_page_drag_hide_undo_and_train(browser, tmp_path, monkeypatch):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from jfacemap.refine import serve

    monkeypatch.setenv("JFACEMAP_HOME", str(tmp_path / "home"))
    video, model = make_video(tmp_path / "clip.mp4"), make_tiny_model(tmp_path / "tiny")
    server = serve(video, model=str(model), project=tmp_path / "project", frames=4, pick="random", new_frames=1)
    try:
        browser.get(server.url)
        js = browser.execute_script
        _wait(lambda: js("return window.refine.frames.length") == 4, what="the state")
        _, state = get_json(server.url, path="/api/state")
        csv = Path(state["labels"])
        f0 = state["frames"][0]
        name = f"labeled-data/clip/img{f0['index']:06d}.png"
        canvas = browser.find_element(By.ID, "canvas")
        _wait(lambda: js("return document.querySelectorAll('#strip img').length") == 4, what="the strip")

        # Shift+click puts the selected keypoint (1 = nose) where clicked: a known place to drag from.
        size = canvas.size
        ActionChains(browser).send_keys("1").perform()
        ActionChains(browser).key_down(Keys.SHIFT).move_to_element_with_offset(canvas, 0, 0).click() \
            .key_up(Keys.SHIFT).perform()
        start = _wait(lambda: _row(csv, name), what="the first save")
        view = js("return window.refine.view")
        expected = (size["width"] / 2 - view["x"]) / view["scale"] - 0.5
        assert abs(start[0, 0] - expected) <= 1.0 / view["scale"]

        # drag it by (dx, dy) screen px: the CSV moves by (dx, dy) / scale image px
        point = js("return window.refine.screenPoint(0)")
        dx, dy = 37, -23
        ActionChains(browser).move_to_element_with_offset(
            canvas, round(point["x"] - size["width"] / 2), round(point["y"] - size["height"] / 2)) \
            .click_and_hold().move_by_offset(15, -5).move_by_offset(dx - 15, dy + 5).release().perform()
        moved = _wait(lambda: (r := _row(csv, name)) is not None and r[0, 0] != start[0, 0] and r, what="the drag")
        scale = js("return window.refine.view.scale")
        np.testing.assert_allclose(moved[0] - start[0], [dx / scale, dy / scale], atol=1e-6)
        np.testing.assert_array_equal(moved[1:], start[1:])  # nothing else moved

        # mark "eye" not visible with its checkbox, undo (Ctrl+Z), then hide it with the V key
        browser.find_element(By.CSS_SELECTOR, '#keypoints li[data-k="1"] input.visible').click()
        _wait(lambda: np.isnan(_row(csv, name)[1]).all(), what="eye hidden")
        ActionChains(browser).key_down(Keys.CONTROL).send_keys("z").key_up(Keys.CONTROL).perform()
        _wait(lambda: np.isfinite(_row(csv, name)[1]).all(), what="undo")
        ActionChains(browser).send_keys("2").send_keys("v").perform()
        hidden = _wait(lambda: np.isnan((r := _row(csv, name))[1]).all() and r, what="eye hidden by key")
        assert np.isfinite(hidden[[0, 2]]).all() and BODYPARTS[1] == "eye"
        assert "corrected" in browser.find_element(By.CSS_SELECTOR, '#strip button[data-frame="0"]').get_attribute("class")

        # next frame by keyboard; a reload shows the saved corrections
        ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
        assert f"frame {state['frames'][1]['index']} " in browser.find_element(By.ID, "frame-info").text
        browser.refresh()
        _wait(lambda: js("return window.refine.frames.length") == 4, what="the reload")
        shown = js("return window.refine.frames[0].keypoints")
        assert [p["visible"] for p in shown] == [True, False, True]
        assert shown[0]["x"] == pytest.approx(moved[0, 0])

        # train one epoch from the page and see the progress reach the end
        epochs = browser.find_element(By.ID, "epochs")
        epochs.clear()
        epochs.send_keys("1")
        browser.find_element(By.ID, "train").click()
        result = _wait(lambda: "after" in (t := browser.find_element(By.ID, "train-result").text) and t,
                       timeout=90, what="training")
        assert "1 corrected frame" in result
        bar = browser.find_element(By.ID, "train-progress")
        assert bar.get_attribute("value") == bar.get_attribute("max") == "1"
        _wait(lambda: js("return window.refine.frames.length") == 5, what="the new frame")
        assert js("return document.querySelectorAll('#strip button.new').length") == 1
        logs = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not logs, logs
    except Exception:
        browser.save_screenshot(str(tmp_path / "failure.png"))
        raise
    finally:
        server.stop()
