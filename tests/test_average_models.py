"""bench/average_models.py: the weight average of two trackers, and its model folder."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from flax import nnx

from bench.average_models import average_weights, main, training_command
from jfacemap.nets.unet import FacemapUNet
from jfacemap.skeleton import FACEMAP_BODYPARTS
from jfacemap.track.model_store import load_tracker, save_tracker


def _model(seed):
    return FacemapUNet(len(FACEMAP_BODYPARTS), (4, 8, 8), 1, rngs=nnx.Rngs(seed))


def _leaves(model):
    return [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(nnx.state(model))]


def test_average_interpolates_every_variable_and_its_outputs_at_the_ends():
    a, b = _model(0), _model(1)
    # different BatchNorm statistics too, so that they are checked like the params
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 1)).astype(np.float32)
    b(x, train=True)
    mid = average_weights(a, b, 0.25)
    for la, lb, lm in zip(_leaves(a), _leaves(b), _leaves(mid)):
        np.testing.assert_allclose(lm, 0.75 * la + 0.25 * lb, rtol=1e-6, atol=1e-7)
    assert any(not np.allclose(la, lb) for la, lb in zip(_leaves(a), _leaves(b)))
    for w, ref in ((0.0, a), (1.0, b)):
        out, want = average_weights(a, b, w)(x, train=False), ref(x, train=False)
        np.testing.assert_allclose(np.asarray(out.heatmap), np.asarray(want.heatmap), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="not in"):
        average_weights(a, b, 1.5)
    with pytest.raises(ValueError, match="architecture"):
        average_weights(a, FacemapUNet(len(FACEMAP_BODYPARTS), (4, 8, 16), 1, rngs=nnx.Rngs(2)), 0.5)


def test_cli_writes_a_loadable_folder_with_its_lineage_and_compute(tmp_path):
    a, b = _model(0), _model(1)
    save_tracker(tmp_path / "a", a, FACEMAP_BODYPARTS, {"name": "a", "compute_total_seconds": 100.0,
                                                         "lineage": [{"name": "a0"}], "command": "train a"})
    save_tracker(tmp_path / "b", b, FACEMAP_BODYPARTS, {"name": "b", "compute": {"seconds": 20.0}, "command": "train b"})
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--weight-b", "0.5", "--name", "ab",
                 "--out", str(tmp_path / "ab")]) == 0
    model, names, meta = load_tracker(tmp_path / "ab")
    assert list(names) == list(FACEMAP_BODYPARTS) and meta["name"] == "ab"
    assert meta["compute_total_seconds"] == 120.0
    assert [step["name"] for step in meta["lineage"]] == ["a0", "a", "b"]
    assert meta["averaged"]["weight_b"] == 0.5
    on_disk = json.loads((tmp_path / "ab" / "model.json").read_text())
    assert on_disk["weights_sha256"] not in (meta["averaged"]["a_weights_sha256"], meta["averaged"]["b_weights_sha256"])
    for la, lb, lm in zip(_leaves(a), _leaves(b), _leaves(model)):
        np.testing.assert_allclose(lm, 0.5 * (la + lb), rtol=1e-6, atol=1e-7)


def test_an_average_of_an_average_keeps_the_training_run_that_drew_its_data(tmp_path):
    train = "python bench/train_base_model.py --styles wild,lab1 --checkpoint-dir ck"
    save_tracker(tmp_path / "a", _model(0), FACEMAP_BODYPARTS, {"name": "a", "command": "train a"})
    save_tracker(tmp_path / "b", _model(1), FACEMAP_BODYPARTS, {"name": "b", "command": train})
    main([str(tmp_path / "a"), str(tmp_path / "b"), "--weight-b", "0.5", "--name", "ab", "--out", str(tmp_path / "ab")])
    main([str(tmp_path / "a"), str(tmp_path / "ab"), "--weight-b", "0.5", "--name", "aab", "--out", str(tmp_path / "aab")])
    for name in ("ab", "aab"):
        meta = load_tracker(tmp_path / name)[2]
        assert meta["command"].startswith("python -m bench.average_models")
        assert meta["averaged"]["b_command"] == train and training_command(meta) == train
    assert training_command({"command": train}) == train


def test_averaging_models_that_flip_average_keeps_b_s_setting(tmp_path):
    """Flip averaging is a model attribute saved in model.json: copying B's meta into the
    average must not try to set it again (that failed), and the average decodes as B does."""
    a, b = _model(0), _model(1)
    a.flip_average, a.flip_average_below = True, 0.9
    b.flip_average, b.flip_average_below = True, 0.85
    save_tracker(tmp_path / "a", a, FACEMAP_BODYPARTS, {"name": "a", "command": "train a"})
    save_tracker(tmp_path / "b", b, FACEMAP_BODYPARTS, {"name": "b", "command": "train b"})
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--weight-b", "0.3", "--name", "ab",
                 "--out", str(tmp_path / "ab")]) == 0
    model, _, meta = load_tracker(tmp_path / "ab")
    assert (model.flip_average, model.flip_average_below) == (True, 0.85)
    assert (meta["flip_average"], meta["flip_average_below"]) == (True, 0.85)


def test_model_info_keys_are_exactly_what_save_tracker_writes_for_a_model_with_every_option(tmp_path):
    """MODEL_INFO_KEYS (what average_models drops from a copied meta) must not drift from save_tracker."""
    from jfacemap.track.model_store import MODEL_INFO_KEYS
    from jfacemap.track.shape_prior import fit_shape_prior

    model = _model(0)
    layouts = np.random.default_rng(0).normal(100, 20, (6, len(FACEMAP_BODYPARTS), 2))
    model.shape_prior = fit_shape_prior(layouts)
    model.flip_average, model.flip_average_below = True, 0.85
    save_tracker(tmp_path / "m", model, FACEMAP_BODYPARTS)
    assert set(json.loads((tmp_path / "m" / "model.json").read_text())) == set(MODEL_INFO_KEYS)
