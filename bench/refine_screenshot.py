"""docs/refine.png: the refinement page on a synthetic "other lab" video, in headless Chromium.

    python -m bench.refine_screenshot [--out docs/refine.png] [--epochs 4]

Renders a lab2 session, serves it with the shipped `base` model, corrects a
few frames with the ground truth through the HTTP API (as bench/refine_loop.py
does), trains a short round from the page, and photographs the page showing a
corrected frame: the corrections as filled points, the trained model's
predictions as crosses, the strip of frames and the round's before/after error.
Needs chromium, chromedriver and selenium.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.refine_loop import call, correct_with_truth, render_other_lab  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "refine.png")
    ap.add_argument("--corrected", type=int, default=4, help="frames corrected before training")
    ap.add_argument("--epochs", type=int, default=4, help="epochs of the round shown (0: no training)")
    args = ap.parse_args(argv)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from jfacemap.refine import serve

    work = Path(tempfile.mkdtemp(prefix="jfacemap-refine-shot-"))
    video, truth, names = render_other_lab(work, 600)
    server = serve(video, model="base", project=work / "project", frames=12, pick="mixed", new_frames=3)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,940",
                "--force-device-scale-factor=1", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=shutil.which("chromedriver")), options=options)
    try:
        state = call(server.url, "/api/state")
        correct_with_truth(server.url, state["frames"][: args.corrected], truth, names)
        driver.get(server.url)
        deadline = time.time() + 60
        while not driver.execute_script("return document.querySelectorAll('#strip button').length"):
            if time.time() > deadline:
                raise RuntimeError("the page did not load its frames")
            time.sleep(0.2)
        if args.epochs:
            driver.execute_script(f"document.getElementById('epochs').value = {args.epochs};"
                                  "document.getElementById('train').click();")
            deadline = time.time() + 900
            while "after" not in driver.find_element("id", "train-result").text:
                if time.time() > deadline:
                    raise RuntimeError("training did not finish in 15 min")
                time.sleep(1)
        driver.execute_script("document.getElementById('model-name').value = 'my-lab';")
        # show the second corrected frame with the first keypoint selected
        driver.execute_script("document.querySelector('#strip button[data-frame=\"1\"]').click();")
        time.sleep(1.5)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
        print(f"wrote {args.out}")
    finally:
        driver.quit()
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
