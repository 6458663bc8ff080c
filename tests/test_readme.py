"""The README's Python examples run as written, and its quoted values are what they print."""

import pathlib
import re

import jax
import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_examples_run_and_quote_true_values():
    namespace, checked = {}, 0
    with jax.numpy_dtype_promotion("standard"):  # as a user runs them
        for block in python_blocks():
            exec(compile(block, str(README), "exec"), namespace)
            # Each line `expression  # value  comment` must evaluate to the quoted value.
            for expression, quoted in re.findall(r"^(\S.*?\))\s+#\s+(-?\d+\.\d+)\s", block, flags=re.MULTILINE):
                value = float(eval(expression, namespace))
                decimals = len(quoted.split(".")[1])
                assert value == pytest.approx(float(quoted), abs=1.5 * 10**-decimals), expression
                checked += 1
    assert checked == 7
    # The SVI loop moved every φ_i towards its posterior mean.
    phi, data, params = namespace["phi"], namespace["data"], namespace["params"]
    posterior_means = jax.vmap(lambda x: namespace["linear_gaussian"].posterior(params, x).mean())(data)
    np.testing.assert_allclose(phi[0], posterior_means, atol=0.1)
