"""One JAX CPU device per CPU core, so that training splits each batch over
the cores (`train_tracker`'s data parallelism) on a machine without an
accelerator.

Why: XLA:CPU runs most of a training step's elementwise work (BatchNorm,
ReLU, pooling and their gradients) on one thread, so a second core speeds a
step up by ~1.6x; the same cores as separate devices, each with its share of
the batch, give ~1.9x. Measured on 2 pinned cores, batch 8 (mirror-mouse,
`python -m bench.bench_train_real --cores 0,1`): 9.45 s per epoch as one
device, 7.82 s as two (the original program: 8.9-9.0 s). BatchNorm
statistics and gradients are all-reduced over the devices, so a step is the
one-device step over the whole batch (tests/test_devices.py).
"""

from __future__ import annotations

import os

import jax


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. under taskset or a job scheduler)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def use_cpu_cores(n: int | None = None) -> int:
    """Ask JAX for `n` CPU devices (default: `available_cores()`).

    Must run before JAX's first computation in the process; later it changes
    nothing. A device count set in XLA_FLAGS
    (--xla_force_host_platform_device_count) is left as it is. Accelerators
    are unaffected: their devices stay the default ones.
    Returns the number of CPU devices JAX will have (or has)."""
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return len(jax.devices("cpu"))
    n = available_cores() if n is None else int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # the backends are up already: keep what they have
        pass
    return len(jax.devices("cpu"))
