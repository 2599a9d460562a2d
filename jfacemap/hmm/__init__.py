"""Gaussian-emission HMMs fitted by gradient ascent on the exact (forward-algorithm) log-likelihood.

    result = run_hmm(features, fps=50.0, n_states=50)     # (T, D) -> fit, Viterbi states, analyses
    result.summary()["lifetime_median_s"]

  inference.py   emissions, forward (scan and associative scan), posteriors, Viterbi, sampling
  fit.py         parameters, Adam / EM fitting, downsampling, multiple sequences
  pipeline.py    run_hmm: split, fit, refine, decode, describe, control
  analysis.py    lifetimes, sparsity, transitions, sequences
  sorting.py     state orderings; controls.py: shuffles and planted sequences
  params_file.py the params.npz a fit is saved as
"""

from jfacemap.exports import lazy_exports

# The paper's settings (SPEC 5), defined once: the defaults of fit_hmm, run_hmm and `jfacemap hmm`.
N_STATES = 50
DOWNSAMPLE = 10  # block-mean factor: 50 Hz -> 5 Hz
LEARNING_RATE = 0.05  # Adam, of the state means (the transitions' default is a tenth)
PATIENCE = 50  # steps without a better test log-likelihood before a fit stops
MAX_STEPS = 2000  # most steps of each of run_hmm's fits
TEST_FRACTION = 0.25  # held out at the end of each segment of the train/test split
REFINE = 3  # rounds of re-seeding unused states and refitting

__all__, __getattr__, __dir__ = lazy_exports(__name__, {
    "HMMResult": "pipeline", "run_hmm": "pipeline", "describe_model": "pipeline",
    "HMMParams": "fit", "init_params": "fit", "fit_hmm": "fit", "fit_hmm_em": "fit", "downsample": "fit",
    "most_likely_states": "fit", "mean_log_likelihood": "fit",
    "gaussian_log_emissions": "inference", "forward": "inference", "log_likelihood": "inference",
    "forward_backward": "inference", "viterbi": "inference", "sample": "inference",
    "state_lifetimes": "analysis", "transition_sparsity": "analysis", "forward_sequence_lengths": "analysis",
    "state_triggered_responses": "analysis",
    "read_params": "params_file", "read_emissions": "params_file",
})
