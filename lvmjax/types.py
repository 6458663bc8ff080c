"""The type aliases shared by every module of lvmjax, declared once.

They document intent, not structure: JAX's pytrees are not expressible as
static types, so `Params` is `Any`, and the checker accepts any pytree there.
"""

from collections.abc import Callable
from typing import Any, TypeAlias

import jax

__all__ = ["Array", "Objective", "PRNGKey", "Params"]

Array: TypeAlias = jax.Array
"""A JAX array (what `jax.numpy` functions return)."""

Params: TypeAlias = Any
"""A pytree of parameters: a model's θ, a variational family's φ, or {"encoder": φ, "decoder": θ}."""

PRNGKey: TypeAlias = jax.Array
"""A JAX random key, as `jax.random.key(seed)` makes (a typed key array; legacy uint32 keys are accepted too)."""

Objective: TypeAlias = Callable[[PRNGKey, Params, Array], Array]
"""`objective(key, params, x)`: a scalar to maximize for ONE datapoint x, e.g. its ELBO or IWAE bound."""
