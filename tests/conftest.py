"""Shared fixtures and hooks, and the XLA flags of every test; the helpers they use are in helpers.py."""

import os

# Most of the suite's time is XLA compiling hundreds of small programs once each. Without LLVM's
# expensive passes and with XLA's older CPU fusion emitters they compile in about half the time and
# compute the same values (to float rounding); the flags reach every subprocess a test starts too.
# XLA reads them when its backend starts, at the first computation, which is after this line.
TEST_XLA_FLAGS = (
    "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true --xla_cpu_use_fusion_emitters=false"
)
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402
from helpers import make_binary_latent, make_gaussian_mixture, make_linear_gaussian  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "standard_promotion: run with JAX's standard dtype promotion instead of the strict one"
    )


@pytest.fixture(autouse=True)
def strict_dtype_promotion(request):
    """Silent dtype upcasts (float32 + float64 -> float64) fail instead of passing unnoticed.

    Tests of code that runs optax schedules or Flax modules opt out with the
    `standard_promotion` mark: those libraries mix integer step counts and floats.
    """
    mode = "standard" if request.node.get_closest_marker("standard_promotion") else "strict"
    with jax.numpy_dtype_promotion(mode):
        yield


@pytest.fixture(scope="module")
def linear_gaussian_setup():
    return make_linear_gaussian()


@pytest.fixture(scope="module")
def gaussian_mixture_setup():
    return make_gaussian_mixture()


@pytest.fixture(scope="module")
def binary_latent_setup():
    return make_binary_latent()
