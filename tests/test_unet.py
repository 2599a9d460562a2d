"""FacemapUNet: size, shapes, any number of keypoints, BatchNorm modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jfacemap.nets.convert import torch_key_map, unet_from_torch_state_dict, unet_to_torch_state_dict
from jfacemap.nets.unet import FacemapUNet, count_parameters, with_new_heads

# Encoder + decoder + 3 heads of (64 K weights + K biases); 1,561,631 for K = 15.
_BODY_PARAMS = 1_558_706


def _abstract(k, **kw):  # shapes only: no weights drawn, fast
    return nnx.eval_shape(lambda: FacemapUNet(k, rngs=nnx.Rngs(0), **kw))


def test_parameter_count_matches_original():
    assert count_parameters(_abstract(15)) == 1_561_631
    assert count_parameters(FacemapUNet(15, rngs=nnx.Rngs(0))) == 1_561_631


@pytest.mark.parametrize("k", [1, 4, 22])
def test_parameter_count_any_k(k):
    assert count_parameters(_abstract(k)) == _BODY_PARAMS + 3 * (64 * k + k)


def test_output_shapes_256():
    model = FacemapUNet(15, rngs=nnx.Rngs(0))
    out = model(jnp.zeros((2, 256, 256, 1), jnp.float32))
    assert [a.shape for a in out] == [(2, 64, 64, 15)] * 3
    assert all(a.dtype == jnp.float32 for a in out)
    assert float(out.heatmap.min()) >= 0.0  # ReLU


@pytest.mark.parametrize("k", [1, 3])
def test_any_k_and_small_inputs(k):
    # The grid is input / 4 for any input divisible by 16.
    model = FacemapUNet(k, rngs=nnx.Rngs(1))
    out = model(jax.random.normal(jax.random.key(0), (1, 32, 48, 1)))
    assert [a.shape for a in out] == [(1, 8, 12, k)] * 3
    assert model.downsample == 4


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_keypoints"):
        _abstract(0)
    with pytest.raises(ValueError, match="n_upsample"):
        _abstract(3, n_upsample=5)


def _randomise_running_stats(model, seed=0):
    keys = iter(jax.random.split(jax.random.key(seed), 200))
    for _, (var, _) in torch_key_map(model).items():
        if isinstance(var, nnx.BatchStat):
            var.set_value(jax.random.uniform(next(keys), var.get_value().shape, minval=0.5, maxval=1.5))


@nnx.jit
def _forward(model, x):  # one compile per mode instead of op-by-op dispatch
    return model(x)


def test_eval_uses_running_stats_train_uses_batch_stats():
    model = FacemapUNet(2, channels=(4, 8, 8), n_upsample=1, rngs=nnx.Rngs(0))
    _randomise_running_stats(model)
    x = jax.random.normal(jax.random.key(1), (4, 16, 16, 1))
    other = x.at[1:].set(5.0 * x[1:] + 3.0)  # same first image, different batch

    model.eval()
    before = jax.tree_util.tree_map(np.asarray, nnx.state(model, nnx.BatchStat))
    a, b = _forward(model, x), _forward(model, other)
    np.testing.assert_allclose(a.offset_x[0], b.offset_x[0], rtol=1e-6)  # per-sample in eval
    after = jax.tree_util.tree_map(np.asarray, nnx.state(model, nnx.BatchStat))
    jax.tree_util.tree_map(np.testing.assert_array_equal, before, after)  # no updates

    model.train()
    assert not model.use_running_average and not model.encoder[0].unit0.norm.use_running_average
    a, b = _forward(model, x), _forward(model, other)
    assert not np.allclose(a.offset_x[0], b.offset_x[0])  # batch statistics
    changed = jax.tree_util.tree_map(lambda u, v: not np.allclose(u, v), after, nnx.state(model, nnx.BatchStat))
    assert all(jax.tree_util.tree_leaves(changed))  # every running stat moved
    # torch momentum 0.1: running = 0.9 running + 0.1 batch mean (the first BN sees the
    # images themselves); two train calls above, so two updates.
    bn0 = model.encoder[0].unit0.norm
    expected = after["encoder"][0]["unit0"]["norm"]["mean"]
    for batch in (x, other):
        expected = 0.9 * expected + 0.1 * np.asarray(jnp.mean(batch, axis=(0, 1, 2)))
    np.testing.assert_allclose(np.asarray(bn0.mean.get_value()), expected, rtol=1e-5)
    # Train-mode heatmaps are normalised to sum ~10 per keypoint, as in the original.
    np.testing.assert_allclose(np.asarray(a.heatmap.sum(axis=(1, 2))), 10.0, rtol=1e-3)


def test_train_override_per_call():
    model = FacemapUNet(2, channels=(4, 8, 8), n_upsample=1, rngs=nnx.Rngs(0))
    _randomise_running_stats(model)
    x = jax.random.normal(jax.random.key(2), (2, 16, 16, 1))
    eval_out = model(x)  # built in eval mode
    train_out = model(x, train=True)
    assert model.use_running_average  # the call did not change the mode
    assert not np.allclose(eval_out.offset_y, train_out.offset_y)
    np.testing.assert_allclose(model(x, train=False).offset_y, eval_out.offset_y, rtol=1e-6)


def test_torch_state_dict_round_trip_and_strictness():
    model = FacemapUNet(3, rngs=nnx.Rngs(3))
    _randomise_running_stats(model, seed=4)
    sd = unet_to_torch_state_dict(model)
    assert len(sd) == 90 and sd["Conv.conv0.conv.conv_0.1.weight"].shape == (16, 1, 3, 3)
    assert sd["Conv2_1x1.conv2.weight"].shape == (3, 64, 1, 1)
    again = unet_from_torch_state_dict(sd, n_keypoints=3)
    assert again.channels == model.channels and again.n_upsample == model.n_upsample
    back = unet_to_torch_state_dict(again)
    assert list(back) == list(sd)
    for key in sd:
        np.testing.assert_array_equal(back[key], sd[key])

    with pytest.raises(ValueError, match="expected 15"):
        unet_from_torch_state_dict(sd, n_keypoints=15)
    broken = dict(sd)
    del broken["Up_conv.upconv1.conv.conv_1.0.running_var"]
    broken["Conv.conv0.extra"] = np.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \['Up_conv.upconv1.conv.conv_1.0.running_var'\].*"
                       r"unexpected keys \['Conv.conv0.extra'\]"):
        unet_from_torch_state_dict(broken)


def test_initial_weights_follow_torch_defaults():
    # Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) like torch's Conv2d; reproducible per seed.
    a, b = FacemapUNet(2, rngs=nnx.Rngs(0)), FacemapUNet(2, rngs=nnx.Rngs(0))
    kernel = np.asarray(a.encoder[2].unit0.conv.kernel.get_value())  # fan_in = 32 * 9
    bound = 1 / np.sqrt(32 * 9)
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.95 * bound
    assert np.std(kernel) == pytest.approx(bound / np.sqrt(3), rel=0.05)
    np.testing.assert_array_equal(kernel, b.encoder[2].unit0.conv.kernel.get_value())
    other = FacemapUNet(2, rngs=nnx.Rngs(1)).encoder[2].unit0.conv.kernel.get_value()
    assert not np.array_equal(kernel, other)
    assert np.abs(np.asarray(a.heatmap_head.bias.get_value())).max() <= 1 / 8  # fan_in 64


def test_with_new_heads_keeps_shared_bodyparts_and_the_body():
    model = FacemapUNet(3, (8, 8, 16, 16, 16), rngs=nnx.Rngs(1))
    model.eval()
    tuned = with_new_heads(model, ["a", "b", "c"], ["c", "x", "a", "y"], seed=5)
    x = jax.random.uniform(jax.random.key(0), (2, 64, 64, 1))
    old, new = model(x), tuned(x)
    assert new.heatmap.shape[-1] == 4 and tuned.n_keypoints == 4
    for i, j in ((2, 0), (0, 2)):  # c and a keep their heads
        for field in ("heatmap", "offset_x", "offset_y"):
            np.testing.assert_allclose(getattr(new, field)[..., j], getattr(old, field)[..., i], rtol=1e-5, atol=1e-6)
    # new bodyparts get fresh heads, and the source model is untouched
    assert not np.allclose(new.offset_x[..., 1], old.offset_x[..., 1])
    np.testing.assert_array_equal(model(x).offset_x, old.offset_x)
    with pytest.raises(ValueError, match="3 keypoints"):
        with_new_heads(model, ["a", "b"], ["a"])
