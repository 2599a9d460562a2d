"""Neural prediction from behaviour: keypoints or movie PCs -> neural activity.

    result = encode_recording(spks, neural_times, behavior, behavior_times, xpos=xpos, ypos=ypos)
    result.summary["normalized_ve_deep"]; result.features   # (T_video, 256) deep behavioural features
    write_encode_outputs("encode/", result, behavior, behavior_times, neural_times)

  pipeline.py        encode_recording: split, neural PCs, linear and deep models, metrics
  outputs.py         the folder `jfacemap encode` writes
  align.py           timestamps, smoothing, resampling, train/test segments
  neural_pcs.py      z-scoring, neural SVD, prediction targets
  linear.py          reduced-rank regression
  deep.py            training and running the deep encoder (jfacemap.nets.encoder)
  metrics.py         variance explained, peer-predicted explainable variance, normalisation
  clusters.py        scaled k-means of neurons, locality
  movie_pcs.py       movie / motion SVD of video regions, streamed
  proc_export.py     movie / motion SVD as the original Facemap's _proc.npy
"""

from jfacemap.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "EncodeResult": "pipeline", "encode_recording": "pipeline", "deep_recipe": "pipeline",
    "write_encode_outputs": "outputs",
    "segment_split": "align", "check_timestamps": "align", "resample": "align",
    "zscore": "neural_pcs", "neural_svd": "neural_pcs", "predicted_activity": "neural_pcs",
    "reduced_rank_regression": "linear", "rrr_predict": "linear",
    "EncoderRecipe": "deep", "train_encoder": "deep", "predict_neural": "deep", "behavioural_features": "deep",
    "save_encoder": "deep", "load_encoder": "deep",
    "variance_explained": "metrics", "peer_explainable_variance": "metrics", "normalized_ve": "metrics",
    "scaled_kmeans": "clusters",
    "movie_svd": "movie_pcs", "MovieSVD": "movie_pcs", "save_movie_svd": "movie_pcs_store",
    "load_movie_svd": "movie_pcs_store",
    "export_proc": "proc_export", "proc_from_svd": "proc_export",
})
