"""Weight initialisers shared by the networks."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def torch_default_init(fan_in: int):
    """Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for conv
    weights (kaiming_uniform with a=sqrt(5)) and biases, so training from
    scratch starts where the original does.

    With a concrete key the numbers are drawn on the host (numpy, seeded by
    the key's bits): jax.random compiles one XLA program per weight shape,
    which made building the network take 5-20 s on a CPU. Under tracing
    (jit, eval_shape) it falls back to jax.random."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        try:
            bits = np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return jax.random.uniform(key, shape, dtype, -bound, bound)
        rng = np.random.default_rng(bits.astype(np.uint32).ravel().tolist())
        return jnp.asarray(rng.uniform(-bound, bound, shape), dtype=dtype)

    return init
