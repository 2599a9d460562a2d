"""Keypoint tracking: frames -> keypoints with the Facemap U-Net.

  preprocess.py      per-frame normalisation, crop / pad / resize, keypoint geometry
  decode.py          heatmaps + offsets -> keypoints; training targets
  fast_inference.py  the network rewritten for inference (exact, faster)
  inference.py       the whole chain as one jitted function
  predict.py         videos -> keypoint files: chunked, overlapped, resumable
  augment.py         training augmentation (jitted, per-sample random boxes)
  train.py           loss, optax step, base / finetune recipes, evaluation
  model_store.py     model folders (orbax + model.json), names, original .pt files
  labels.py          labelled frames from DeepLabCut CSV / Facemap h5
  filter.py          outlier detection and filling of keypoint traces
  timescales.py      autoregressive keypoint-timescale analysis
"""

from jfacemap.track.decode import HeatmapTargets, decode_heatmaps, heatmap_targets
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

__all__ = [
    "CropGeometry",
    "HeatmapTargets",
    "PredictFn",
    "apply_geometry",
    "crop_geometry",
    "crop_pad_resize",
    "decode_heatmaps",
    "heatmap_targets",
    "keypoints_to_frame",
    "keypoints_to_network",
    "make_predict_fn",
    "normalize_percentile",
    "preprocess",
]
