"""jfacemap: Facemap in JAX.

Stages (each a set of pure functions with a CLI over them):
  io/      video and keypoint files
  synth/   synthetic mouse-face sessions (the embedded default data)
  nets/    Flax NNX networks
  track/   keypoint tracking
  encode/  neural prediction from behaviour
  hmm/     hidden Markov models of behavioural states
"""

from jfacemap.skeleton import ANALYSIS_BODYPARTS, FACEMAP_BODYPARTS

__version__ = "0.1.0"

# The shipped tracker (weights/base) that `track`, `finetune` and the demo use unless told otherwise.
DEFAULT_TRACKER = "base"

# The paper's camera rate (Hz): synthetic sessions are made at it, and a behaviour file without
# timestamps is read at it.
DEFAULT_FPS = 50.0

# Frames a tracked video is decoded in (`track_video`, `jfacemap track --chunk-size`): 20 MB at
# 640x480, and the step a stopped run resumes from.
DEFAULT_CHUNK = 64

__all__ = ["FACEMAP_BODYPARTS", "ANALYSIS_BODYPARTS", "DEFAULT_TRACKER", "DEFAULT_FPS", "DEFAULT_CHUNK",
           "__version__"]
