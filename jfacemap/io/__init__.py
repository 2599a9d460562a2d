"""Files in and out: videos, keypoint files, neural recordings, stage outputs. Only io/ and cli/ open files
themselves; the stages write their outputs through the writers here.

    for frames in iter_chunks("mouse.mp4", chunk_size=500): ...      # (B, H, W) uint8
    keypoints, bodyparts = read_facemap_pose("mouse_FacemapPose.h5")   # (T, K, 3) x, y, likelihood
"""

from jfacemap.exports import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "VideoError": "video", "video_info": "video", "iter_chunks": "video", "read_frames": "video",
    "write_video": "video",
    "read_facemap_pose": "keypoints", "write_facemap_pose": "keypoints", "read_dlc_csv": "keypoints",
    "write_dlc_csv": "keypoints", "read_keypoints": "keypoints", "read_dlc_h5": "dlc_h5",
    "read_neural": "neural", "read_behavior": "behavior", "read_timestamps": "behavior",
    "keypoint_coordinates": "behavior",
    "load_features": "hmm_outputs", "write_hmm_outputs": "hmm_outputs",
    "export_pose": "pose_export", "write_dlc_h5": "dlc_export", "write_pose_nwb": "nwb_pose",
    "read_pose_nwb": "nwb_pose", "load_proc": "facemap_proc", "save_proc": "facemap_proc",
})
