"""Write tests/data/facemap_proc/original_proc.npy with the original Facemap's own code.

Runs in the original's environment (bench/peers.py builds it):

    $(python -c "from bench.peers import facemap_python; print(facemap_python())") \
        tests/data/facemap_proc/make_fixture.py

A tiny synthetic video (16 x 24 pixels, 12 frames, written with OpenCV) goes
through `facemap.process.run` with bin 2, motion and movie SVD, the full
frame and one motion-SVD ROI (the ROI dict as its GUI's `roi_to_dict` makes
it), saved by its own `process.save` (numpy < 2 pickling). The video is
deleted afterwards: the test reads only the .npy.
"""

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
from facemap import process

HERE = Path(__file__).resolve().parent
T, H, W = 12, 16, 24

with tempfile.TemporaryDirectory() as tmp:
    video = os.path.join(tmp, "original.avi")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"MJPG"), 30, (W, H), isColor=False)
    rng = np.random.default_rng(0)
    base = rng.integers(0, 200, (H, W)).astype(np.float32)
    for t in range(T):
        wave = 40 * np.sin(t / 3 + np.arange(W) / 5)[None, :] * (np.arange(H)[:, None] > 6)
        writer.write(np.clip(base + wave, 0, 255).astype(np.uint8))
    writer.release()
    roi = {"rind": 1, "rtype": "motion SVD", "iROI": 0, "ivid": 0, "color": (0.0, 255.0, 0.0),
           "yrange": np.arange(2, 12), "xrange": np.arange(4, 20), "saturation": 0.0, "pupil_sigma": 0,
           "ellipse": np.ones((10, 16), bool)}
    settings = {"sbin": 2, "fullSVD": True, "save_mat": False, "rois": [roi], "sy": 0, "sx": 0}
    saved = process.run([[video]], motSVD=True, movSVD=True, proc=settings, savepath=tmp)
    proc = np.load(saved, allow_pickle=True).item()
    proc["filenames"] = [["original.avi"]]  # not the temporary folder's path
    proc["save_path"] = None
    process.save(proc, savepath=str(HERE))
