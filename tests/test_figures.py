"""Figures read honestly: tracked and true traces on one px scale, the window shown named in
the title, units on every axis, whole-number ticks on counts, nothing <= 0 on a log axis,
and no neuron silently clipped off the VE scatter."""

import re

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.category import StrCategoryFormatter
from matplotlib.collections import PathCollection
from matplotlib.ticker import FixedFormatter

from jfacemap.figures import encode, hmm, pyplot, session
from jfacemap.figures.axes import positive_only, window_label

FPS = 50.0


def _keeping_figures():
    """The figures the plot functions save, kept open (save_figure closes them) for inspection."""
    plt = pyplot()
    close, kept = plt.close, []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plt, "close", kept.append)
        yield kept
    for fig in kept:
        close(fig)


figures = pytest.fixture(_keeping_figures)


def drawn(fig):
    fig.canvas.draw()  # ticks and layout are settled at draw time
    return fig


def keypoints(n=200, k=3, seed=0):
    """(n, k, 3) px: row 0 moves 0.5 px, row 1 60 px, row 2 is never visible."""
    t = np.arange(n) / FPS
    kp = np.full((n, k, 3), np.nan)
    kp[:, 0, 0], kp[:, 0, 1] = 100 + 0.25 * np.sin(6 * t), 50 + 0.25 * np.cos(6 * t)
    kp[:, 1, 0], kp[:, 1, 1] = 120 + 30 * np.sin(t), 200 + 30 * np.cos(t)
    kp[:, :2, 2] = 1.0
    return kp


def test_window_label_and_positive_only():
    assert window_label(500, 6000, 0.02) == "first 10 s of 120 s"
    assert window_label(1000, 1000, 0.02) == "all 20 s"
    values, n_bad = positive_only([1.0, 0.0, -2.0, np.nan, 3.0])
    assert n_bad == 2 and np.isnan(values[[1, 2, 3]]).all() and list(values[[0, 4]]) == [1.0, 3.0]


def test_trace_limits_hold_both_traces_and_a_minimum_span():
    truth = np.array([10.0, 10.5, np.nan])
    lo, hi = session.trace_limits(truth, truth + np.array([1.0, -1.0, 0.0]), min_span=4.0)
    assert lo <= 9.5 and hi >= 11.0 and hi - lo == pytest.approx(4.0)
    lo, hi = session.trace_limits(np.array([0.0, 100.0]), None)
    assert lo < 0 and hi > 100  # the full range, so a tracker's jump is drawn, not clipped
    assert session.trace_limits(np.full(3, np.nan), None) is None


def test_tracked_and_true_traces_share_one_px_axis(tmp_path, figures):
    truth = keypoints()
    tracked = truth + np.random.default_rng(0).normal(0, 1.0, truth.shape)  # 1 px errors
    session.plot_keypoint_traces(tracked, ["eye", "paw", "gone"], FPS, tmp_path / "t.png", seconds=2.0,
                                 reference=truth)
    fig = drawn(figures[-1])
    assert "first 2 s of 4 s" in fig.get_suptitle() and "px" in fig.get_suptitle()
    rows = np.array(fig.axes).reshape(3, 2)
    for k in range(2):
        for c, ax in enumerate(rows[k]):
            true_line, tracked_line = ax.get_lines()
            # Raw px values, not each row rescaled: a 1 px error is drawn as 1 px on the axis.
            np.testing.assert_allclose(true_line.get_ydata(), truth[:100, k, c])
            np.testing.assert_allclose(tracked_line.get_ydata(), tracked[:100, k, c])
            lo, hi = ax.get_ylim()
            both = np.r_[truth[:100, k, c], tracked[:100, k, c]]
            assert lo <= both.min() and hi >= both.max() and hi - lo >= session.MIN_SPAN_PX
            assert "px" in ax.get_ylabel()
    assert not rows[2, 0].get_lines()  # never visible: said, not drawn


def test_cropped_figures_name_their_window(tmp_path, figures):
    n = int(20 * FPS)
    latents = {"transition_matrix": np.eye(3), "whisk_angle": np.zeros(n), "odd": np.ones(n),
               "state": np.zeros(n, int), "fps": np.asarray(FPS)}
    session.plot_latents(latents, FPS, tmp_path / "a.png", seconds=10.0)
    session.plot_latents(latents, FPS, tmp_path / "b.png", seconds=60.0)
    assert "first 10 s of 20 s" in figures[0].get_suptitle()
    assert "all 20 s" in figures[1].get_suptitle()
    assert "(deg)" in figures[0].axes[0].get_ylabel() and "(a.u.)" in figures[0].axes[1].get_ylabel()
    hmm.plot_state_raster(np.arange(1000) % 4, np.arange(4), 0.5, tmp_path / "s.png", seconds=100.0)
    assert "first 100 s of 500 s" in figures[2].axes[0].get_title()
    session.plot_keypoint_traces(keypoints(), ["a", "b", "c"], FPS, tmp_path / "k.png", seconds=10.0)
    assert "all 4 s" in figures[3].get_suptitle()


@pytest.fixture(scope="module")
def every_figure(tmp_path_factory):
    """Every figure function once, drawn (rendering is slow: the checks below share them)."""
    for kept in _keeping_figures():
        all_figures(tmp_path_factory.mktemp("figures"), np.random.default_rng(0))
        yield [drawn(fig) for fig in kept]


def all_figures(tmp_path, rng):
    """Every figure function once, on small arrays (small counts: where 2.5 ticks would appear)."""
    kp = keypoints()
    session.plot_latents({"whisk_angle": np.zeros(300), "state": np.zeros(300, int)}, FPS, tmp_path / "1.png")
    session.plot_keypoint_traces(kp, ["a", "b", "c"], FPS, tmp_path / "2.png", reference=kp + 0.5)
    session.plot_error_percentiles(np.abs(rng.normal(size=(200, 3))), ["a", "b", "c"], tmp_path / "3.png")
    ve = {"linear": rng.uniform(0, 0.3, 300), "deep": rng.uniform(0, 0.4, 300)}
    encode.plot_variance_explained(ve, rng.uniform(0.2, 0.5, 300), tmp_path / "4.png", best=np.full(300, 0.3))
    encode.plot_example_neurons(rng.normal(size=(2, 50)), {"deep": rng.normal(size=(2, 50))}, np.arange(50) / 3,
                                tmp_path / "5.png")
    A = np.full((4, 4), 0.1) + 0.6 * np.eye(4)
    hmm.plot_transitions(A, np.arange(4), np.array([0.5, 0.8, 1.0]), tmp_path / "6.png", np.array([0.4, 0.7, 1.0]))
    hmm.plot_state_raster(np.arange(100) % 4, np.arange(4), 0.5, tmp_path / "7.png")
    hmm.plot_lifetimes(np.array([0.5, 0.7, 0.8, 2.0]), np.array([0.4, 0.0, np.nan, 1.5]), tmp_path / "8.png",
                       np.array([0.3, 0.3, 0.4, 0.5]))
    hmm.plot_sequence_lengths(np.array([10, 4, 0, 1, 0]), np.array([12, 3, 1, 0, 0]), tmp_path / "9.png")
    hmm.plot_sample_vs_data(rng.normal(size=(40, 5)), rng.normal(size=(30, 5)), rng.normal(size=(4, 5)),
                            np.arange(4), 0.2, tmp_path / "10.png")
    k = 30  # many states: the sparsity curve goes on a log axis
    A = np.full((k, k), 0.5 / (k - 1)) + 0.5 * np.eye(k)
    hmm.plot_transitions(A, np.arange(k), np.linspace(0.1, 1, k - 1), tmp_path / "11.png")


def shows_numbers(axis) -> bool:
    """An axis whose tick labels are visible numbers (not category names, not hidden)."""
    if isinstance(axis.get_major_formatter(), (FixedFormatter, StrCategoryFormatter)):
        return False
    return any(label.get_visible() and label.get_text() for label in axis.get_ticklabels())


def test_every_numeric_axis_says_its_unit(every_figure):
    checked = 0
    for fig in every_figure:
        for ax in fig.axes:
            for axis, label in ((ax.xaxis, ax.get_xlabel()), (ax.yaxis, ax.get_ylabel())):
                if axis is ax.yaxis and shows_numbers(axis):
                    assert label, f"unlabelled y axis in {fig.get_suptitle() or ax.get_title()!r}"
                if label and shows_numbers(axis):
                    assert re.search(r"\(.+\)", label), f"no unit in axis label {label!r}"
                    checked += 1
    assert checked > 30


def test_count_axes_have_whole_number_ticks(tmp_path, figures):
    hmm.plot_lifetimes(np.array([0.5, 0.7, 0.8, 2.0]), np.array([0.4, 0.6, 0.9, 1.5]), tmp_path / "l.png")
    hmm.plot_sequence_lengths(np.array([10, 4, 1]), np.array([12, 3, 1]), tmp_path / "s.png")
    hmm.plot_transitions(np.full((4, 4), 0.25), np.arange(4), np.array([0.5, 0.8, 1.0]), tmp_path / "t.png")
    lifetimes, sequences, transitions = map(drawn, figures)
    for ticks in (lifetimes.axes[0].get_yticks(), sequences.axes[0].get_xticks(), transitions.axes[2].get_xticks()):
        assert len(ticks) >= 2 and np.allclose(ticks, np.round(ticks)), ticks


def test_log_axes_hold_no_line_at_or_below_zero(every_figure):
    log_lines = 0
    for fig in every_figure:
        for ax in fig.axes:
            for line in ax.get_lines():
                for scale, values in ((ax.get_xscale(), line.get_xdata()), (ax.get_yscale(), line.get_ydata())):
                    if scale == "log":
                        values = np.asarray(values, np.float64)
                        assert (values[np.isfinite(values)] > 0).all(), ax.get_title()
                        log_lines += 1
    assert log_lines >= 4
    sequences = next(f for f in every_figure if f.axes[0].get_yscale() == "log")
    assert "not drawn" in sequences.axes[0].get_title()  # the gap is explained


def test_ve_scatter_marks_neurons_beyond_its_axes(tmp_path, figures):
    rng = np.random.default_rng(2)
    explainable = rng.uniform(0.2, 0.5, 400)
    linear, deep = explainable * rng.uniform(0.2, 0.9, 400), explainable * rng.uniform(0.4, 1.0, 400)
    linear[:3], deep[3:5] = 5.0, -4.0  # a few wild neurons (tiny explainable VE in real data)
    explainable[5] = 0.0  # not normalisable: left out, as before
    encode.plot_variance_explained({"linear": linear, "deep": deep}, explainable, tmp_path / "v.png")
    ax = drawn(figures[-1]).axes[1]
    points = np.concatenate([c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)])
    assert len(points) == 399  # every normalisable neuron is drawn, none silently dropped
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    assert (points[:, 0] >= x0).all() and (points[:, 0] <= x1).all()
    assert (points[:, 1] >= y0).all() and (points[:, 1] <= y1).all()
    legend = " ".join(t.get_text() for t in ax.get_legend().get_texts())
    beyond = int(re.search(r"(\d+) beyond the axes", legend).group(1))
    assert beyond >= 5 and "%" in ax.get_xlabel()  # at least the five wild ones, counted
