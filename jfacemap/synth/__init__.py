"""Synthetic head-fixed mouse-face sessions: the embedded default data of jfacemap.

    session = make_session(1000, seed=0)          # lab1 look, 256 x 256, 50 Hz
    frames, keypoints = session.render(0, 100)    # uint8 (B, H, W), float32 (B, 15, 3)
    for frames, keypoints in session.iter_chunks(250): ...
    sim = simulate_neural(10_000, 3600.0, seed=0)  # neurons at 3 Hz driven by that behaviour
    files = save_synthetic_session("mouse.mp4", 1000, seed=0)   # video + ground truth + latents on disk
    sim = simulate_neural(2000, None, neural_fps=10.0, session=make_session(15000, seed=0))  # its own neurons
    eye = make_session(1000, seed=3, roi=True); truth = eye.roi_truth()  # known pupil, blinks, treadmill (roi_scene)

Keypoints are in pixels (x right, y down, pixel centres at integers), NaN with
likelihood 0 where a part is out of frame or behind the paw.
"""

from jfacemap.synth.behavior import STATE_NAMES, BehaviorLatents, simulate_behavior
from jfacemap.synth.contact_sheet import contact_sheet, save_contact_sheet
from jfacemap.synth.face import STYLES, FaceParams, render_frames, sample_face_params
from jfacemap.synth.neural import NeuralSimulation, ground_truth_ve, simulate_neural
from jfacemap.synth.export import SessionFiles, save_synthetic_session
from jfacemap.synth.session import SyntheticSession, make_session

__all__ = [
    "STATE_NAMES",
    "STYLES",
    "BehaviorLatents",
    "FaceParams",
    "NeuralSimulation",
    "SessionFiles",
    "SyntheticSession",
    "contact_sheet",
    "ground_truth_ve",
    "make_session",
    "render_frames",
    "sample_face_params",
    "save_contact_sheet",
    "save_synthetic_session",
    "simulate_behavior",
    "simulate_neural",
]
