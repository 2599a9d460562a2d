"""Test session set-up.

JAX's CPU backend starts here, with its default single device, before any
test runs: `jfacemap train` (run in-process by the CLI tests) asks for one
CPU device per core when it is the first to start JAX
(`jfacemap.track.cpu_devices.use_cpu_cores`), and the tests that compare
outputs bit for bit must not depend on which test ran first. Tests of
several devices run in fresh interpreters (tests/test_devices.py)."""

import jax

jax.devices()
