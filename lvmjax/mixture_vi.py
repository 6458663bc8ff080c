"""Variational inference for the Gaussian mixture: θ and a mean-field q(z_i; φ_i) per datapoint, by gradient ascent.

The seed text's SVI objective (§4.1) for the mixture of `gaussian_mixture`, with
q(z_i; φ_i) = Categorical(softmax(φ_i)) over the assignment of x_i:

    L(θ, φ_1, …, φ_N) = Σ_i ELBO(x_i; θ, φ_i),
    ELBO(x_i; θ, φ_i)  = Σ_k q(z_i = k; φ_i) [log π_k + log N(x_i; μ_k, Σ_k) - log q(z_i = k; φ_i)]
                       = log p(x_i; θ) - KL(q(z_i; φ_i) ‖ p(z_i | x_i; θ))  <=  log p(x_i; θ).

EM is coordinate ascent on the same L (Neal & Hinton 1998): the E-step sets
every q(z_i) to p(z_i | x_i; θ), where the KL is 0 and L is the
log-likelihood; the M-step maximizes L over θ in closed form. Here θ and every
φ_i instead take Adam steps together (the joint schedule of
`svi.make_svi_step`, full batch), on the exact ELBO (`elbo_exact`, a sum
over the K components) or on its score-function estimate (`elbo(...,
gradient="score")`, S draws of z_i). At a maximum of L every q(z_i; φ_i) is the
posterior, so L is the log-likelihood there and θ one of its stationary
points: the points EM converges to. `evaluate` gives both means, to set beside
`gaussian_mixture.fit_em`.

θ is optimized in unconstrained coordinates (`UnconstrainedParams`): L_k's
diagonal is stored as its log, so every step gives a valid covariance.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lvmjax import _validation, svi
from lvmjax.errors import ArgumentError
from lvmjax.estimators import elbo, elbo_exact, log_marginal_exact
from lvmjax.models import gaussian_mixture
from lvmjax.types import Array
from lvmjax.variational import VariationalFamily, categorical

__all__ = [
    "ESTIMATORS",
    "UnconstrainedParams",
    "VIEvaluation",
    "VIInfo",
    "evaluate",
    "fit_vi",
    "local_elbo",
    "make_vi_step",
    "mean_log_likelihood",
    "posterior_logits",
    "to_params",
    "to_unconstrained",
]

Params = gaussian_mixture.Params

ESTIMATORS = ("exact", "score")


class UnconstrainedParams(NamedTuple):
    """θ of a K-component mixture of D-dimensional Gaussians, with every value allowed."""

    logits: Array  # shape=(K,): log π_k up to a constant
    means: Array  # shape=(K, D): μ_k
    log_diag: Array  # shape=(K, D): log of L_k's diagonal
    off_diag: Array  # shape=(K, D, D): L_k below the diagonal; entries on and above it are unused


def to_unconstrained(params: Params) -> UnconstrainedParams:
    """`gaussian_mixture.Params` -> `UnconstrainedParams`; L_k's diagonal must be positive."""
    diagonal = jnp.diagonal(params.scale_tril, axis1=1, axis2=2)
    return UnconstrainedParams(params.logits, params.means, jnp.log(diagonal), jnp.tril(params.scale_tril, -1))


def to_params(unconstrained: UnconstrainedParams) -> Params:
    """The inverse map: L_k = tril(off_diag_k, -1) + diag(exp(log_diag_k))."""
    diagonal = jax.vmap(jnp.diag)(jnp.exp(unconstrained.log_diag))
    scale_tril = jnp.tril(unconstrained.off_diag, -1) + diagonal
    return Params(unconstrained.logits, unconstrained.means, scale_tril)


class VIInfo(NamedTuple):
    """How a `fit_vi` run went."""

    elbo: Array  # shape=(num_steps,): (1/N) Σ_i ELBO(x_i; θ_t, φ_i,t) before step t (estimated for "score")
    log_likelihood: Array  # shape=(num_steps,): (1/N) Σ_i log p(x_i; θ_t), exact
    variational_logits: Array  # shape=(N, K): the final φ_i, q(z_i = k; φ_i) = softmax(φ_i)_k
    initial_params: Params  # θ_0: pass it to `gaussian_mixture.fit_em(..., init_params=...)` to start EM there too


class VIEvaluation(NamedTuple):
    """Mean per datapoint of the two sides of log p(x_i) = ELBO_i + KL_i."""

    elbo: Array  # shape=(): (1/N) Σ_i ELBO(x_i; θ, φ_i), exact
    log_likelihood: Array  # shape=(): (1/N) Σ_i log p(x_i; θ), exact
    kl: Array  # shape=(): (1/N) Σ_i KL(q(z_i; φ_i) ‖ p(z_i | x_i; θ)) = log_likelihood - elbo >= 0


def local_elbo(family: VariationalFamily, estimator: Literal["exact", "score"], num_samples: int = 1):
    """`(key, θ, φ_i, x_i) -> ELBO(x_i; θ, φ_i)` for one datapoint, θ as `UnconstrainedParams`.

    `family` is `variational.categorical(K)`. "exact" sums over the K
    components (`elbo_exact`; the key is unused); "score" averages
    `num_samples` draws of z_i with score-function gradients
    (`elbo(..., gradient="score")`).
    """
    if estimator not in ESTIMATORS:
        raise ArgumentError(f"estimator must be 'exact' or 'score', got {estimator!r}.")

    def exact(key, theta, phi, x):
        del key
        return elbo_exact(gaussian_mixture.model, to_params(theta), family.distribution(phi), x)

    def score(key, theta, phi, x):
        return elbo(
            key, gaussian_mixture.model, to_params(theta), family.distribution(phi), x, num_samples, gradient="score"
        )

    return exact if estimator == "exact" else score


def make_vi_step(
    family: VariationalFamily,
    estimator: Literal["exact", "score"],
    theta_optimizer: optax.GradientTransformation,
    phi_optimizer: optax.GradientTransformation,
    num_samples: int = 1,
) -> Callable[[svi.SVIState, Array, Array], tuple[svi.SVIState, svi.SVIInfo]]:
    """A pure full-batch step `(state, key, data) -> (state, svi.SVIInfo)` on θ and every φ_i together.

        θ   ← θ + theta_optimizer(∇_θ (1/N) Σ_i ELBO(x_i; θ, φ_i))
        φ_i ← φ_i + phi_optimizer(∇_{φ_i} ELBO(x_i; θ, φ_i))

    This is the "joint" schedule of `svi.make_svi_step` with `local_elbo` as
    the local objective and the whole data set as one minibatch (indices
    0 … N-1), so a step whose ELBO or gradient is not finite changes nothing
    and has `info.skipped` True. `family` is `variational.categorical(K)`;
    `state` is an `svi.SVIState` whose θ is `UnconstrainedParams` and whose φ
    is {"logits": (N, K)}; `data` is (N, D); `info.objective` is the mean ELBO
    at the θ and φ before the step.
    """
    joint_step = svi.make_svi_step(
        gaussian_mixture.model,
        family,
        theta_optimizer,
        phi_optimizer,
        schedule="joint",
        local_objective=local_elbo(family, estimator, num_samples),
    )

    def step(state, key, data):
        return joint_step(state, key, (jnp.arange(data.shape[0]), data))

    return step


def mean_log_likelihood(params: Params, data: Array) -> Array:
    """(1/N) Σ_i log p(x_i; θ), each term by `log_marginal_exact` (the sum over z that `elbo_exact` also takes)."""
    return jnp.mean(jax.vmap(lambda x: log_marginal_exact(gaussian_mixture.model, params, x))(data))


def posterior_logits(params: Params, data: Array) -> Array:
    """log p(z_i = k | x_i; θ) for every datapoint: the φ_i that make every ELBO_i tight. (N, K)."""
    return jax.vmap(lambda x: gaussian_mixture.posterior(params, x).logits)(data)


def evaluate(params: Params, data: Array, variational_logits: Array) -> VIEvaluation:
    """The exact mean ELBO of q(z_i; φ_i) = Categorical(softmax(φ_i)) and the exact mean log-likelihood.

        ELBO = (1/N) Σ_i Σ_k q_ik [log p(x_i, z_i = k; θ) - log q_ik],   LL = (1/N) Σ_i log p(x_i; θ)

    ELBO <= LL always, with equality exactly when every q(z_i) is the
    posterior (`posterior_logits`); LL is the objective of `gaussian_mixture.fit_em`.

    Args:
      params: θ, `gaussian_mixture.Params`.
      data: (N, D).
      variational_logits: φ_1 … φ_N, (N, K).

    Returns:
      A `VIEvaluation`.
    """
    family = categorical(variational_logits.shape[1])
    elbos = jax.vmap(lambda phi, x: elbo_exact(gaussian_mixture.model, params, family.distribution(phi), x))(
        {"logits": variational_logits}, data
    )
    log_likelihood = mean_log_likelihood(params, data)
    mean_elbo = jnp.mean(elbos)
    return VIEvaluation(mean_elbo, log_likelihood, log_likelihood - mean_elbo)


def fit_vi(
    key: Array,
    data: Array,
    num_components: int,
    estimator: Literal["exact", "score"] = "exact",
    num_steps: int = 500,
    learning_rate: float = 0.02,
    phi_learning_rate: float = 0.1,
    num_samples: int = 8,
    init_params: Params | None = None,
) -> tuple[Params, VIInfo]:
    """A Gaussian mixture fitted by variational EM: Adam ascent of Σ_i ELBO(x_i; θ, φ_i) in θ and every φ_i.

    θ_0 is `init_params`, or else `gaussian_mixture.initial_params(key_init,
    data, K)` (k-means++, as in `fit_em`) with `key_init, key_steps =
    jax.random.split(key)`; `VIInfo.initial_params` holds it, for `fit_em` to
    start from the same point. Each q(z_i; φ_i) starts at the posterior
    p(z_i | x_i; θ_0), so the run starts where EM's first E-step puts it, with
    the ELBO equal to the log-likelihood. Then `num_steps` full-batch joint
    steps (`make_vi_step`) run inside one `lax.scan`, the score-function draws
    of step t from `jax.random.split(key_steps, num_steps)[t]`.

    Args:
      key: PRNG key for the k-means++ seeding and the score-function draws.
      data: (N, D), finite.
      num_components: K, between 1 and N.
      estimator: "exact" (`elbo_exact`, K terms per datapoint) or "score"
        (`elbo(..., gradient="score")` with `num_samples` draws).
      num_steps: gradient steps.
      learning_rate: Adam's step size for θ (in unconstrained coordinates).
      phi_learning_rate: Adam's step size for every φ_i.
      num_samples: S, draws per datapoint and step for "score".
      init_params: θ_0 instead of k-means++ (L_k with a positive diagonal).

    Returns:
      (θ as `gaussian_mixture.Params`, `VIInfo`).
    """
    if estimator not in ESTIMATORS:
        raise ArgumentError(f"estimator must be 'exact' or 'score', got {estimator!r}.")
    data = _validation.check_data_matrix(data)
    _validation.check_num_components(num_components, data.shape[0])
    if init_params is not None and tuple(jnp.shape(init_params.means)) != (num_components, data.shape[1]):
        raise ArgumentError(
            f"init_params has means of shape {tuple(jnp.shape(init_params.means))}, but "
            f"num_components={num_components} and the data have {data.shape[1]} columns."
        )
    num_steps = _validation.check_num_samples(num_steps, "num_steps")
    num_samples = _validation.check_num_samples(num_samples)
    return _fit_vi(
        key, data, num_components, estimator, num_steps, learning_rate, phi_learning_rate, num_samples, init_params
    )


@functools.partial(jax.jit, static_argnames=("num_components", "estimator", "num_steps", "num_samples"))
def _fit_vi(
    key, data, num_components, estimator, num_steps, learning_rate, phi_learning_rate, num_samples, init_params
):
    key_init, key_steps = jax.random.split(key)
    params = init_params if init_params is not None else gaussian_mixture.initial_params(key_init, data, num_components)
    theta = to_unconstrained(params)
    phi = {"logits": posterior_logits(params, data)}
    theta_optimizer, phi_optimizer = optax.adam(learning_rate), optax.adam(phi_learning_rate)
    state = svi.SVIState(
        theta, theta_optimizer.init(theta), phi, jax.vmap(phi_optimizer.init)(phi), jnp.zeros((), jnp.int32)
    )
    step = make_vi_step(categorical(num_components), estimator, theta_optimizer, phi_optimizer, num_samples)

    def body(state, step_key):
        log_likelihood = mean_log_likelihood(to_params(state.theta), data)
        state, info = step(state, step_key, data)
        return state, (info.objective, log_likelihood)

    state, (elbos, log_likelihoods) = jax.lax.scan(body, state, jax.random.split(key_steps, num_steps))
    return to_params(state.theta), VIInfo(elbos, log_likelihoods, state.phi["logits"], params)
