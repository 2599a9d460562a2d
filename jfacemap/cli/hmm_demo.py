"""The demo's HMM stage: behavioural states from the encode stage's deep features (SPEC section 5)."""

from __future__ import annotations

from jfacemap.cli.progress import progress_bar
from jfacemap.figures import have_matplotlib

DEMO_STATES = 20
DEMO_MAX_STEPS = 300  # early stopping on the test blocks usually ends the fit well before
DEMO_REFINE = 3       # rounds of re-seeding unused states (jfacemap.hmm.refine)


def stage_hmm(report, ctx) -> None:
    """Fit DEMO_STATES states to the deep encoder's 256 features (10x downsampled) and a
    temporally shuffled control; report lifetimes, test log-likelihood and forward sequences."""
    from jfacemap.cli.hmm import load_features, write_hmm_outputs
    from jfacemap.hmm.pipeline import run_hmm

    title = "HMM (behavioural states)"
    source = ctx.out / "encode" / "features.npz"
    if not source.is_file():
        report.section(title, [f"skipped: no deep features at {source} (the encode stage writes them)"])
        return
    x, fps, _ = load_features(source)
    total = 2 * (1 + DEMO_REFINE) * DEMO_MAX_STEPS
    with progress_bar(total, f"fitting {DEMO_STATES} HMM states") as advance:
        done = [0]

        def on_step(fit_index, step, train_ll, test_ll):
            target = fit_index * DEMO_MAX_STEPS + step + 1
            advance(target - done[0])
            done[0] = target

        result = run_hmm(x, fps, DEMO_STATES, max_steps=DEMO_MAX_STEPS, refine=DEMO_REFINE, seed=ctx.seed,
                         control=True, on_step=on_step)
        advance(total - done[0])
    paths = write_hmm_outputs(ctx.out / "hmm", result, {"features": str(source), "kind": "deep features"},
                              figures=False)
    s, c = result.summary(), result.summary()["control"]
    numbers = {k: s[k] for k in ("n_states", "states_used", "train_loglik", "test_loglik", "sigma2", "steps",
                                 "lifetime_median_s", "lifetime_min_s", "lifetime_max_s", "run_median_s",
                                 "sparsity_top5", "mean_sequence_length", "mean_sequence_length_shuffled",
                                 "seconds")}
    numbers |= {"control_test_loglik": c["test_loglik"], "control_lifetime_median_s": c["lifetime_median_s"],
                "control_sparsity_top5": c["sparsity_top5"]}
    near = s["near_weighted"]
    lines = [
        f"{DEMO_STATES} states on {s['n_features']} deep features, {x.shape[0]} frames at {fps:g} Hz -> "
        f"{s['n_timepoints']} timepoints at {s['model_fps']:g} Hz; {s['split']}",
        f"test log-likelihood {s['test_loglik']:.2f} nats/timepoint vs {c['test_loglik']:.2f} for the same model "
        f"fitted to time-shuffled data ({s['steps']} and {c['steps']} steps)",
        f"state lifetimes: median {s['lifetime_median_s']:.2f} s (range {s['lifetime_min_s']:.2f}-"
        f"{s['lifetime_max_s']:.2f} s); shuffled control median {c['lifetime_median_s']:.2f} s",
        f"transition sparsity: top 5 next states hold {100 * s['sparsity_top5']:.0f}% "
        f"(shuffled control {100 * c['sparsity_top5']:.0f}%)",
        f"near transitions (weighted): forward {near['forward']:.2f}, reverse {near['reverse']:.2f}, "
        f"chance {near['chance']:.3f}",
        f"forward sequences: mean {s['mean_sequence_length']:.2f} states vs {s['mean_sequence_length_shuffled']:.2f} "
        f"for shuffled runs",
        f"outputs in {ctx.out / 'hmm'} ({s['seconds']:.0f} s)",
    ]
    if have_matplotlib():
        from jfacemap.figures.hmm import plot_hmm_figures

        for figure in plot_hmm_figures(result, ctx.out, prefix="hmm_"):
            report.figure(figure)
    report.section(title, lines, numbers | {"outputs": sorted(p.name for p in paths.values())})
