"""The hand-written-gradient layers (`jfacemap.nets.layers`) against the
library layers they replace, values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jfacemap.nets.layers import (
    batch_norm_train,
    conv3x3_of_upsampled,
    conv3x3_one_channel,
    max_pool_3x3_s2,
    subpixel_kernels,
)


def _reference_pool(x):
    return nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (1, 7, 5, 2), (3, 16, 12, 1)])
def test_max_pool_values_and_gradient_match_reduce_window(shape):
    x = jax.random.normal(jax.random.key(0), shape)
    out, vjp = jax.vjp(max_pool_3x3_s2, x)
    ref, ref_vjp = jax.vjp(_reference_pool, x)
    np.testing.assert_array_equal(out, ref)
    g = jax.random.normal(jax.random.key(1), out.shape)
    np.testing.assert_allclose(vjp(g)[0], ref_vjp(g)[0], atol=1e-6)


def test_max_pool_gradient_with_ties_goes_to_one_element():
    # A constant image: every window ties; the gradient must still sum to the
    # output gradient's sum (one winner per window), as torch routes it.
    x = jnp.ones((1, 6, 6, 1))
    _, vjp = jax.vjp(max_pool_3x3_s2, x)
    _, ref_vjp = jax.vjp(_reference_pool, x)
    g = jnp.arange(9.0).reshape(1, 3, 3, 1) + 1
    dx = vjp(g)[0]
    assert float(dx.sum()) == pytest.approx(float(g.sum()))
    np.testing.assert_allclose(dx, ref_vjp(g)[0])


@pytest.mark.parametrize("relu", [False, True])
def test_batch_norm_matches_nnx_batchnorm_in_train_mode(relu):
    c = 5
    x = 3 * jax.random.normal(jax.random.key(0), (4, 6, 6, c)) + 2
    scale = jax.random.normal(jax.random.key(1), (c,))
    bias = jax.random.normal(jax.random.key(2), (c,))
    g = jax.random.normal(jax.random.key(3), x.shape)

    def ours(x, scale, bias):
        return batch_norm_train(x, scale, bias, 1e-5, relu)[0]

    def reference(x, scale, bias):
        bn = nnx.BatchNorm(c, use_running_average=False, use_fast_variance=False, rngs=nnx.Rngs(0))
        bn.scale[...] = scale
        bn.bias[...] = bias
        y = bn(x)
        return jax.nn.relu(y) if relu else y

    y, vjp = jax.vjp(ours, x, scale, bias)
    y_ref, ref_vjp = jax.vjp(reference, x, scale, bias)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    for got, want in zip(vjp(g), ref_vjp(g)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    _, mean, var = batch_norm_train(x, scale, bias, 1e-5, relu)
    np.testing.assert_allclose(mean, np.asarray(x, np.float64).mean((0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(var, np.asarray(x, np.float64).var((0, 1, 2)), rtol=1e-4)


def test_one_channel_conv_matches_lax_conv_and_its_gradients():
    x = jax.random.normal(jax.random.key(0), (2, 9, 7, 1))
    k = jax.random.normal(jax.random.key(1), (3, 3, 1, 4))

    def reference(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            precision=jax.lax.Precision.HIGHEST)

    y, vjp = jax.vjp(conv3x3_one_channel, x, k)
    y_ref, ref_vjp = jax.vjp(reference, x, k)
    np.testing.assert_allclose(y, y_ref, atol=1e-5)
    g = jax.random.normal(jax.random.key(2), y.shape)
    for got, want in zip(vjp(g), ref_vjp(g)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 5, 6, 3), (1, 1, 4, 2)])
def test_conv_of_upsampled_map_matches_direct_form_and_gradients(shape):
    """conv3x3(nearest_x2(z)) computed at low resolution equals the direct
    form, and so do its gradients (to the kernel, through the sub-pixel fold)."""
    z = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), (3, 3, shape[-1], 4))

    def ours(z, w):
        return conv3x3_of_upsampled(z, subpixel_kernels(w))

    def direct(z, w):
        up = jnp.repeat(jnp.repeat(z, 2, axis=1), 2, axis=2)
        return jax.lax.conv_general_dilated(up, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                            precision=jax.lax.Precision.HIGHEST)

    y, vjp = jax.vjp(ours, z, w)
    y_ref, ref_vjp = jax.vjp(direct, z, w)
    assert y.shape == (shape[0], 2 * shape[1], 2 * shape[2], 4)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    g = jax.random.normal(jax.random.key(2), y.shape)
    for got, want in zip(vjp(g), ref_vjp(g)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_unet_train_mode_matches_library_layers():
    """The whole network in train mode: outputs, parameter gradients and
    running statistics equal those of the same network built from the library
    layers (nnx.BatchNorm, nnx.max_pool, nnx.Conv)."""
    from jfacemap.nets import unet

    model = unet.FacemapUNet(3, (4, 8, 8), n_upsample=1, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(5), (2, 32, 32, 1))

    def loss(model, x):
        out = model(x, train=True)
        return sum(jnp.sum(o * w) for o, w in zip(out, (1.0, 0.3, -0.7)))

    def run(model):
        graphdef, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
        m = nnx.merge(graphdef, params, stats)
        value, grads = nnx.value_and_grad(loss, argnums=nnx.DiffState(0, nnx.Param))(m, x)
        return value, grads, nnx.state(m, nnx.BatchStat)

    ours = run(model)

    def library_unit(self, x, use_running_average=None):
        x = self.norm(x, use_running_average=use_running_average)
        return self.conv(jax.nn.relu(x) if self.relu else x)

    def library_upsampled_unit(self, low, skip):
        up = jnp.repeat(jnp.repeat(low, 2, axis=1), 2, axis=2)
        return library_unit(self, jnp.concatenate([up, skip], axis=-1), use_running_average=False)

    patched = pytest.MonkeyPatch()
    patched.setattr(unet.BNConv, "__call__", library_unit)
    patched.setattr(unet.BNConv, "on_upsampled_train", library_upsampled_unit)
    patched.setattr(unet, "max_pool_3x3_s2", _reference_pool)
    try:
        ref = run(model)
    finally:
        patched.undo()
    np.testing.assert_allclose(ours[0], ref[0], rtol=1e-5)
    for a, b in zip(jax.tree.leaves(ours[1]), jax.tree.leaves(ref[1])):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-4)
    for a, b in zip(jax.tree.leaves(ours[2]), jax.tree.leaves(ref[2])):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
