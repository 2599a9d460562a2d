"""Keypoint tracking: frames -> keypoints with the Facemap U-Net.

  preprocess.py      per-frame normalisation, crop / pad / resize, keypoint geometry
  decode.py          heatmaps + offsets -> keypoints; training targets; mirrored outputs mapped back
  shape_prior.py     a face's keypoint layout as a prior on the decoder (peaks that make a face)
  fast_inference.py  the network rewritten for inference (exact, faster)
  inference.py       the whole chain as one jitted function
  predict.py         videos -> keypoint files: chunked, overlapped, resumable
  cluster.py         many videos on Dask distributed, one task per video (the `cluster` extra)
  augment.py         training augmentation (jitted, per-sample random boxes)
  train.py           loss, optax step, base / finetune recipes, evaluation
  model_store.py     model folders (orbax + model.json), names, original .pt files
  labels.py          labelled frames from DeepLabCut CSV / Facemap h5
  filter.py          outlier detection and filling of keypoint traces
  timescales.py      autoregressive keypoint-timescale analysis

    model, bodyparts, meta = load_tracker("base")
    keypoints = track_video("mouse.mp4", model, bodyparts)     # (T, K, 3) x, y, likelihood
    filled, report = filter_keypoints(keypoints, fps=50.0)
"""

from jfacemap.exports import lazy_exports

from jfacemap.track.decode import HeatmapTargets, average_with_mirror, decode_heatmaps, heatmap_targets
from jfacemap.track.shape_prior import ShapePrior, decode_with_shape_prior, fit_shape_prior
from jfacemap.track.inference import PredictFn, make_predict_fn
from jfacemap.track.preprocess import (
    CropGeometry,
    apply_geometry,
    crop_geometry,
    crop_pad_resize,
    keypoints_to_frame,
    keypoints_to_network,
    normalize_percentile,
    preprocess,
)

_LAZY = {
    "track_video": "predict", "track_videos": "predict", "output_path": "predict",
    "load_tracker": "model_store", "list_trackers": "model_store", "save_tracker": "model_store",
    "train_tracker": "train", "evaluate_tracker": "train", "get_recipe": "train",
    "filter_keypoints": "filter", "outlier_report": "filter",
    "load_labelled_frames": "labels", "keypoint_timescales": "timescales",
}
_lazy_all, __getattr__, _ = lazy_exports(__name__, _LAZY)

__all__ = _lazy_all + [
    "CropGeometry",
    "HeatmapTargets",
    "PredictFn",
    "ShapePrior",
    "apply_geometry",
    "average_with_mirror",
    "crop_geometry",
    "crop_pad_resize",
    "decode_heatmaps",
    "decode_with_shape_prior",
    "fit_shape_prior",
    "heatmap_targets",
    "keypoints_to_frame",
    "keypoints_to_network",
    "make_predict_fn",
    "normalize_percentile",
    "preprocess",
]
