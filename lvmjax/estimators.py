"""Estimators of log p(x; θ) and its lower bounds, for ONE datapoint.

Notation of the seed texts: a model p(x, z; θ) = p(z; θ) p(x | z; θ), a
variational distribution q(z; φ), and the identity

    log p(x; θ) = ELBO(x; θ, φ) + KL(q(z; φ) ‖ p(z | x; θ)).

Every function takes the PRNG key first, works on one datapoint `x` and one
distribution `q`, and is pure: batch with `jax.vmap`, compile with `jax.jit`
(with `num_samples`, `chunk_size` and the string options static).

Sampling convention: the k-th latent z_k (k = 0, 1, ...) is drawn from `q` with
the key `jax.random.fold_in(key, k)`. The draws therefore do not depend on how
many there are or how they are chunked: `log_weights(key, ..., K)[:k]` equals
`log_weights(key, ..., k)`, and a chunked estimate uses the same z_k as an
unchunked one.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import distrax
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from lvmjax import _discrete, _validation
from lvmjax.errors import ArgumentError, ArgumentTypeError
from lvmjax.model import LatentVariableModel, Params, log_joint, log_likelihood
from lvmjax.types import Array

__all__ = [
    "MarginalEstimate",
    "elbo",
    "elbo_exact",
    "iwae_bound",
    "latent_states",
    "log_marginal_exact",
    "log_marginal_is",
    "log_marginal_naive_mc",
    "log_weights",
]


class MarginalEstimate(NamedTuple):
    """A Monte Carlo estimate of log p(x; θ) from K importance weights w_k = p(x, z_k) / q(z_k)."""

    log_marginal: Array  # shape=(): log p̂(x) = log (1/K) Σ_k w_k
    stderr: Array  # shape=(): delta-method standard error of log p̂(x); NaN when K = 1
    ess: Array  # shape=(): effective sample size (Σ_k w_k)² / Σ_k w_k², in [1, K]
    num_samples: Array  # shape=(), int32: K


def _sample_latents(
    key: Array, q: distrax.Distribution, num_samples: int, offset: Array | int = 0
) -> tuple[Array, Array]:
    """z_k ~ q and log q(z_k) for k = offset, ..., offset + num_samples - 1.

    z_k is drawn with the key fold_in(key, k), by distrax's reparameterized
    sampler where q has one (z = μ + σ·ε for Gaussians), so z_k is differentiable
    with respect to q's parameters.
    """
    indices = offset + jnp.arange(num_samples)
    keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, indices)
    return jax.vmap(lambda k: q.sample_and_log_prob(seed=k))(keys)


def _check_inputs(model: LatentVariableModel, params: Params, x: Array, q: distrax.Distribution | None = None) -> None:
    if not isinstance(model, LatentVariableModel):
        raise ArgumentTypeError(f"model must be a LatentVariableModel, got {type(model).__name__}.")
    _validation.check_finite(params, "params")
    _validation.check_finite(x, "x")
    if q is None:
        return
    _validation.check_single_distribution(q, "q")
    _validation.check_finite(q, "q")
    prior = model.prior(params)
    _validation.check_single_distribution(prior, "model.prior(params)")
    if tuple(q.event_shape) != tuple(prior.event_shape):
        raise ArgumentError(
            f"q is a distribution over latents of shape {tuple(q.event_shape)}, but the "
            f"prior's event_shape is {tuple(prior.event_shape)}."
        )
    if _validation.is_discrete(q) != _validation.is_discrete(prior):
        raise ArgumentError(
            f"q draws {q.dtype} latents but the prior draws {prior.dtype} latents; "
            "both must be discrete or both continuous."
        )


def _log_weights(key, model, params, q, x, num_samples, offset=0) -> Array:
    z, log_q = _sample_latents(key, q, num_samples, offset)
    log_p = jax.vmap(lambda z_k: log_joint(model, params, x, z_k))(z)
    return log_p - log_q


def log_weights(
    key: Array, model: LatentVariableModel, params: Params, q: distrax.Distribution, x: Array, num_samples: int
) -> Array:
    """The K importance log-weights of one datapoint.

        log w_k = log p(x, z_k; θ) - log q(z_k; φ),    z_k ~ q(z; φ),  k = 1..K

    Their exponentials are unbiased for p(x; θ): E_q[w_k] = p(x; θ).

    Args:
      key: PRNG key.
      model: the `LatentVariableModel`.
      params: θ.
      q: q(z; φ), a distrax distribution over one latent (batch_shape ()).
      x: one datapoint.
      num_samples: K, a static int >= 1.

    Returns:
      The log-weights, shape (K,).
    """
    num_samples = _validation.check_num_samples(num_samples)
    _check_inputs(model, params, x, q)
    return _log_weights(key, model, params, q, x, num_samples)


def _kl_to_prior(q: distrax.Distribution, prior: distrax.Distribution) -> Array:
    try:
        return q.kl_divergence(prior)
    except NotImplementedError:
        raise ArgumentTypeError(
            "analytic_kl=True needs a closed-form KL(q ‖ p(z)), and distrax has none "
            f"for q = {type(q).__name__} and p(z) = {type(prior).__name__}; use "
            "analytic_kl=False for the Monte Carlo ELBO."
        ) from None


def _not_reparameterizable(q: distrax.Distribution, name: str) -> ValueError:
    return ValueError(
        f"q ({type(q).__name__}) draws discrete latents, which cannot be "
        f"reparameterized, so {name} would give wrong gradients with respect to "
        "q's parameters. Use elbo(..., gradient='score') for score-function "
        "gradients (the same value), or log_marginal_is for the value of the "
        "IWAE bound."
    )


def elbo(
    key: Array,
    model: LatentVariableModel,
    params: Params,
    q: distrax.Distribution,
    x: Array,
    num_samples: int = 1,
    analytic_kl: bool = False,
    gradient: Literal["reparam", "score", "stl"] = "reparam",
) -> Array:
    """Monte Carlo estimate of the evidence lower bound of one datapoint.

        ELBO(x; θ, φ) = E_q[log p(x, z; θ) - log q(z; φ)]
                      = E_q[log p(x | z; θ)] - KL(q(z; φ) ‖ p(z; θ))
                      = log p(x; θ) - KL(q(z; φ) ‖ p(z | x; θ))  <=  log p(x; θ)

    The expectation is the mean over K draws z_k ~ q. With `analytic_kl=True`,
    the second form is used, with distrax's closed-form KL (lower variance).

    Gradients:
      - "reparam" (default): pathwise gradients through z = g(ε; φ) (Kingma &
        Welling 2014); needs a reparameterizable (continuous) q.
      - "score": the same value, with score-function (REINFORCE) gradients with
        respect to φ (Williams 1992; Ranganath et al. 2014),
            ∇_φ ELBO ≈ (1/K) Σ_k (f(z_k) - b_k) ∇_φ log q(z_k; φ) + ∇_φ f(z_k),
        where f is the integrand and b_k = mean_{j≠k} f(z_j) is the
        leave-one-out baseline (Kool et al. 2019); b_k = 0 when K = 1. For
        latents that cannot be reparameterized (discrete ones).
      - "stl": sticking the landing (Roeder et al. 2017): the same value, the
        pathwise gradient with the score term E_q[∇_φ log q(z; φ)] = 0 dropped,
            ∇_φ ≈ (1/K) Σ_k ∇_z [log p(x, z; θ) − log q(z; φ)]|_{z = z_k} ∂z_k / ∂φ
        (log q evaluated with φ held fixed), whose variance vanishes as q reaches the
        posterior. Needs log q of any z (not an IAF) and the Monte Carlo KL.

    Args:
      key: PRNG key.
      model: the `LatentVariableModel`.
      params: θ.
      q: q(z; φ), a distrax distribution over one latent (batch_shape ()).
      x: one datapoint.
      num_samples: K, a static int >= 1.
      analytic_kl: use the closed-form KL(q ‖ p(z)).
      gradient: "reparam", "score" or "stl".

    Returns:
      A scalar: the estimate of the ELBO (unbiased, for any K).
    """
    num_samples = _validation.check_num_samples(num_samples)
    if gradient not in ("reparam", "score", "stl"):
        raise ArgumentError(f"gradient must be 'reparam', 'score' or 'stl', got {gradient!r}.")
    if gradient == "stl" and analytic_kl:
        raise ArgumentError(
            "gradient='stl' drops the score term of log q(z), which the closed-form KL does not have: "
            "use analytic_kl=False."
        )
    _check_inputs(model, params, x, q)
    if gradient != "score" and _validation.is_discrete(q):
        raise _not_reparameterizable(q, f"elbo(..., gradient={gradient!r})")

    z, log_q = _pathwise_latents(key, q, num_samples, gradient)
    if gradient == "score":
        z = jax.lax.stop_gradient(z)
        log_q = jax.vmap(q.log_prob)(z)  # differentiable in φ through log q only

    kl: Array | float
    if analytic_kl:
        kl = _kl_to_prior(q, model.prior(params))
        integrand = jax.vmap(lambda z_k: log_likelihood(model, params, x, z_k))(z)
    else:
        kl = 0.0
        integrand = jax.vmap(lambda z_k: log_joint(model, params, x, z_k))(z) - log_q

    if gradient == "score":
        if num_samples > 1:
            baseline = (jnp.sum(integrand) - integrand) / (num_samples - 1)
        else:
            baseline = jnp.zeros_like(integrand)
        signal = jax.lax.stop_gradient(integrand - baseline)
        # Adds zero to the value and (f - b) ∇ log q to the gradient.
        integrand = integrand + signal * (log_q - jax.lax.stop_gradient(log_q))
    return jnp.mean(integrand) - kl


def _pathwise_latents(key: Array, q: distrax.Distribution, num_samples: int, gradient: str) -> tuple[Array, Array]:
    """`_sample_latents`, with log q(z_k) differentiable in φ only through z_k for gradient="stl"."""
    z, log_q = _sample_latents(key, q, num_samples)
    if gradient == "stl":
        log_q = jax.vmap(_held_fixed(q).log_prob)(z)
    return z, log_q


def _held_fixed(q: distrax.Distribution) -> distrax.Distribution:
    """q with every parameter behind `stop_gradient`: log q(z) then has gradients through z only.

    distrax's Gaussians cache bound methods of their scale bijector, which `jax.tree.map` cannot
    reach, so they are rebuilt from their stopped parameters; a flow's base likewise."""
    stop = jax.lax.stop_gradient
    if isinstance(q, distrax.MultivariateNormalDiag):
        return distrax.MultivariateNormalDiag(stop(q.loc), stop(q.scale_diag))
    if isinstance(q, distrax.MultivariateNormalTri):
        return distrax.MultivariateNormalTri(stop(q.loc), stop(q.scale_tri))
    if isinstance(q, distrax.Transformed):
        return distrax.Transformed(_held_fixed(q.distribution), jax.tree.map(stop, q.bijector))
    return jax.tree.map(stop, q)


def iwae_bound(
    key: Array,
    model: LatentVariableModel,
    params: Params,
    q: distrax.Distribution,
    x: Array,
    num_samples: int,
    gradient: Literal["reparam", "dreg"] = "reparam",
) -> Array:
    """The importance-weighted bound of Burda et al. (2016) for one datapoint.

        IWAE_K(x) = E[log (1/K) Σ_k p(x, z_k; θ) / q(z_k; φ)],   z_1..z_K ~ q

    ELBO = IWAE_1 <= IWAE_K <= IWAE_K' <= log p(x; θ) for K <= K', and IWAE_K
    tends to log p(x; θ) as K grows. Computed with a log-sum-exp.

    Gradients: "reparam" (default), pathwise through z_k = g(ε_k; φ); or "dreg", the
    doubly reparameterized gradient of Tucker et al. (2019): the same value and the
    same ∇_θ = Σ_k w̃_k ∇_θ log p(x, z_k; θ), with w̃ = softmax(log w), and

        ∇_φ = Σ_k w̃_k² ∇_z log w(z)|_{z = z_k} ∂z_k / ∂φ,   log w(z) = log p(x, z; θ) − log q(z; φ) (φ fixed)

    unbiased for the same ∇_φ, whose variance does not grow with K as the plain
    estimator's signal-to-noise ratio falls (Rainforth et al. 2018). Needs log q of any
    z (not an IAF). θ and φ are told apart by where they act (p or q), not by name, so
    a parameter in both (a VampPrior's encoder) gets both terms.

    Args:
      key: PRNG key.
      model: the `LatentVariableModel`.
      params: θ.
      q: q(z; φ), a reparameterizable distrax distribution over one latent.
      x: one datapoint.
      num_samples: K, a static int >= 1.
      gradient: "reparam" or "dreg".

    Returns:
      A scalar: one draw of log (1/K) Σ_k w_k.
    """
    num_samples = _validation.check_num_samples(num_samples)
    if gradient not in ("reparam", "dreg"):
        raise ArgumentError(f"gradient must be 'reparam' or 'dreg', got {gradient!r}.")
    _check_inputs(model, params, x, q)
    if _validation.is_discrete(q):
        raise _not_reparameterizable(q, "iwae_bound")
    if gradient == "reparam":
        weights = _log_weights(key, model, params, q, x, num_samples)
        return logsumexp(weights) - math.log(num_samples)
    z, _ = _sample_latents(key, q, num_samples)
    fixed_q, fixed_params = _held_fixed(q), jax.lax.stop_gradient(params)

    def log_weight(params, z_k):
        return log_joint(model, params, x, z_k) - fixed_q.log_prob(z_k)

    # The same forward values twice (XLA computes them once): one with gradients to θ, one through z.
    weights_theta = jax.vmap(lambda z_k: log_weight(params, jax.lax.stop_gradient(z_k)))(z)
    weights_path = jax.vmap(lambda z_k: log_weight(fixed_params, z_k))(z)
    squared = jax.lax.stop_gradient(jax.nn.softmax(weights_theta) ** 2)
    path_term = jnp.sum(squared * weights_path)
    return logsumexp(weights_theta) - math.log(num_samples) + path_term - jax.lax.stop_gradient(path_term)


class _WeightMoments(NamedTuple):
    """Running mean and sum of squared deviations of weights w_k, kept as w_k / exp(log_scale)."""

    log_scale: Array  # shape=(): the largest log-weight so far
    num_weights: Array  # shape=(): number of weights so far (not `count`, which would shadow tuple.count)
    mean: Array  # shape=(): mean of w_k / exp(log_scale)
    sum_squared_deviations: Array  # shape=(): Σ (w_k - mean)² / exp(2 log_scale)


def _moments(weights: Array) -> _WeightMoments:
    """Moments of one chunk of log-weights; centring first avoids cancellation."""
    log_scale = jnp.max(weights)
    scaled = jnp.exp(weights - log_scale)
    mean = jnp.mean(scaled)
    count = jnp.asarray(weights.shape[0], weights.dtype)
    return _WeightMoments(log_scale, count, mean, jnp.sum(jnp.square(scaled - mean)))


def _combine(first: _WeightMoments, second: _WeightMoments) -> _WeightMoments:
    """Moments of the union of two sets of weights (Chan, Golub & LeVeque 1979)."""
    log_scale = jnp.maximum(first.log_scale, second.log_scale)
    factor_first = jnp.exp(first.log_scale - log_scale)
    factor_second = jnp.exp(second.log_scale - log_scale)
    mean_first, mean_second = first.mean * factor_first, second.mean * factor_second
    count = first.num_weights + second.num_weights
    delta = mean_second - mean_first
    mean = mean_first + delta * second.num_weights / count
    sum_squared_deviations = (
        first.sum_squared_deviations * factor_first**2
        + second.sum_squared_deviations * factor_second**2
        + delta**2 * first.num_weights * second.num_weights / count
    )
    return _WeightMoments(log_scale, count, mean, sum_squared_deviations)


def _summarize(moments: _WeightMoments, num_samples: int) -> MarginalEstimate:
    """MarginalEstimate from the moments of the K weights."""
    mean_square = jnp.square(moments.mean)
    # Var(p̂) / p̂² = s² / (K p̂²), with the sample variance s² = Σ (w_k - p̂)² / (K - 1).
    if num_samples > 1:
        relative_variance = moments.sum_squared_deviations / (num_samples - 1) / mean_square
        stderr = jnp.sqrt(relative_variance / num_samples)
    else:
        stderr = jnp.full_like(moments.mean, jnp.nan)
    # (Σ w)² / Σ w² = K p̂² / (p̂² + Σ (w - p̂)² / K)
    ess = num_samples * mean_square / (mean_square + moments.sum_squared_deviations / num_samples)
    return MarginalEstimate(
        log_marginal=jnp.log(moments.mean) + moments.log_scale,
        stderr=stderr,
        ess=ess,
        num_samples=jnp.asarray(num_samples, jnp.int32),
    )


def log_marginal_is(
    key: Array,
    model: LatentVariableModel,
    params: Params,
    q: distrax.Distribution,
    x: Array,
    num_samples: int,
    chunk_size: int | None = None,
) -> MarginalEstimate:
    """Importance-sampled estimate of log p(x; θ) with proposal q.

        p(x; θ) = E_{z ~ q}[p(x, z; θ) / q(z)] ≈ (1/K) Σ_k w_k,   w_k = p(x, z_k; θ) / q(z_k)

    p̂(x) is unbiased for p(x; θ); its log is a consistent (and, by Jensen,
    downward-biased) estimate of log p(x; θ). The standard error is the delta
    method's, se(log p̂) = se(p̂) / p̂ = s / (√K p̂), with s² the sample variance
    of the weights; the effective sample size is ESS = (Σ_k w_k)² / Σ_k w_k².
    Weights are handled relative to the largest one and their moments are
    accumulated centred, so both are accurate even when all weights agree.

    With `chunk_size`, the K samples are drawn and reduced `chunk_size` at a time
    (a streaming log-sum-exp inside `lax.scan`), so memory does not grow with K.
    The chunked estimate uses the same z_k as the unchunked one.

    Args:
      key: PRNG key.
      model: the `LatentVariableModel`.
      params: θ.
      q: the proposal q(z), a distrax distribution over one latent; any q whose
        support covers p(z | x) (discrete ones included).
      x: one datapoint.
      num_samples: K, a static int >= 1.
      chunk_size: None (all K at once) or a static divisor of K.

    Returns:
      A `MarginalEstimate`.
    """
    num_samples = _validation.check_num_samples(num_samples)
    chunk_size = _validation.check_chunk_size(chunk_size, num_samples)
    _check_inputs(model, params, x, q)

    if chunk_size is None:
        weights = _log_weights(key, model, params, q, x, num_samples)
        return _summarize(_moments(weights), num_samples)

    def add_chunk(moments, start):
        weights = _log_weights(key, model, params, q, x, chunk_size, start)
        return _combine(moments, _moments(weights)), None

    first = _moments(_log_weights(key, model, params, q, x, chunk_size))
    starts = jnp.arange(chunk_size, num_samples, chunk_size)
    moments, _ = jax.lax.scan(add_chunk, first, starts)
    return _summarize(moments, num_samples)


def log_marginal_naive_mc(
    key: Array,
    model: LatentVariableModel,
    params: Params,
    x: Array,
    num_samples: int,
    chunk_size: int | None = None,
    proposal: Literal["prior", "uniform"] = "prior",
) -> MarginalEstimate:
    """Naive Monte Carlo estimate of log p(x; θ), with no knowledge of x in the proposal.

    proposal="prior":
        p(x; θ) = E_{z ~ p(z; θ)}[p(x | z; θ)] ≈ (1/K) Σ_k p(x | z_k; θ)
    proposal="uniform" (a finite discrete latent space Z only, the seed text's form):
        p(x; θ) = |Z| E_{z ~ Uniform(Z)}[p(x, z; θ)] ≈ |Z| (1/K) Σ_k p(x, z_k; θ)

    Both are importance sampling with a proposal that ignores x; they are
    unbiased for p(x; θ) but, when p(z | x) is concentrated, almost every z_k
    misses it and the variance is enormous. Compare `log_marginal_is` with a
    proposal close to p(z | x).

    Args:
      key: PRNG key.
      model: the `LatentVariableModel`.
      params: θ.
      x: one datapoint.
      num_samples: K, a static int >= 1.
      chunk_size: None or a static divisor of K (see `log_marginal_is`).
      proposal: "prior" or "uniform".

    Returns:
      A `MarginalEstimate`.
    """
    _check_inputs(model, params, x)
    prior = model.prior(params)
    if proposal == "prior":
        q = prior
    elif proposal == "uniform":
        _validation.check_single_distribution(prior, "model.prior(params)")
        try:
            q = _discrete.uniform_over_support(prior)
        except TypeError as error:
            raise ArgumentTypeError(f"proposal='uniform' needs {error}") from None
    else:
        raise ArgumentError(f"proposal must be 'prior' or 'uniform', got {proposal!r}.")
    return log_marginal_is(key, model, params, q, x, num_samples, chunk_size)


def latent_states(model: LatentVariableModel, params: Params) -> Array:
    """Every state z ∈ Z of a finite discrete latent space, stacked: the terms of Σ_z p(x, z; θ).

    For d independent Bernoulli latents the 2^d vectors of 0s and 1s, in binary
    order with z_1 the most significant; for a Categorical of K classes the
    indices 0 … K - 1 (one-hot rows for a OneHotCategorical). `log_marginal_exact`
    sums over exactly these states, so p(z | x) = exp(log p(x, z) - log p(x))
    over them sums to 1.

    Args:
      model: a `LatentVariableModel` whose prior is a Categorical,
        OneHotCategorical, Bernoulli, or Independent of one of them.
      params: θ.

    Returns:
      An array of shape (|Z|, *event_shape of z), of the prior's sample dtype.

    Raises:
      TypeError: for a prior that is not finite and discrete.
      ValueError: beyond 2^22 states, more than enumeration allows.
    """
    prior = model.prior(params)
    _validation.check_single_distribution(prior, "model.prior(params)")
    try:
        return _discrete.support(prior)
    except TypeError as error:
        raise ArgumentTypeError(f"latent_states needs {error}") from None


def log_marginal_exact(model: LatentVariableModel, params: Params, x: Array) -> Array:
    """Exact log p(x; θ) for a finite discrete latent space, by enumerating every state.

        log p(x; θ) = log Σ_{z ∈ Z} p(x, z; θ)

    Z is every state of the prior: the K components of a categorical, or the
    2^d states of d independent Bernoulli latents. The cost grows with |Z|.

    Args:
      model: a `LatentVariableModel` whose prior is a Categorical,
        OneHotCategorical, Bernoulli, or Independent of one of them.
      params: θ.
      x: one datapoint.

    Returns:
      A scalar.
    """
    _check_inputs(model, params, x)
    prior = model.prior(params)
    _validation.check_single_distribution(prior, "model.prior(params)")
    try:
        states = _discrete.support(prior)
    except TypeError as error:
        raise ArgumentTypeError(f"log_marginal_exact needs {error}") from None
    return logsumexp(jax.vmap(lambda z: log_joint(model, params, x, z))(states))


def elbo_exact(model: LatentVariableModel, params: Params, q: distrax.Distribution, x: Array) -> Array:
    """The ELBO of one datapoint with the expectation over a finite discrete q computed exactly.

        ELBO(x; θ, φ) = Σ_{z ∈ Z} q(z; φ) [log p(x, z; θ) - log q(z; φ)]
                      = Σ_z q(z; φ) log p(x, z; θ) + H(q(z; φ))
                      = log p(x; θ) - KL(q(z; φ) ‖ p(z | x; θ))  <=  log p(x; θ)

    (seed text, §3.3 and §4.1). Z is every state of q: the K classes of a
    categorical, or the 2^d states of d independent Bernoulli latents; terms
    with q(z) = 0 count as 0 (0 log 0 = 0). No sampling, so the value and its
    gradients with respect to θ and φ are exact; it is the quantity that
    `elbo(..., gradient="score")` estimates without bias. With q = p(z | x; θ)
    it equals `log_marginal_exact`, and EM is coordinate ascent on its sum over
    the data. The cost grows with |Z|.

    Args:
      model: the `LatentVariableModel`, with a discrete prior.
      params: θ.
      q: q(z; φ), a Categorical, OneHotCategorical, Bernoulli, or Independent of
        one of them, over one latent (batch_shape ()).
      x: one datapoint.

    Returns:
      A scalar.

    Raises:
      TypeError: if q is not a distribution over a finite set (e.g. a Gaussian);
        use `elbo` for a Monte Carlo estimate instead.
    """
    _validation.check_single_distribution(q, "q")
    try:
        states = _discrete.support(q)
    except TypeError:
        raise ArgumentTypeError(
            "elbo_exact sums over every state of q, so q must be a finite discrete "
            "distribution (Categorical, OneHotCategorical, Bernoulli, or Independent of one "
            f"of them), got {type(q).__name__}; use elbo(...) for a Monte Carlo estimate."
        ) from None
    _check_inputs(model, params, x, q)
    log_q = jax.vmap(q.log_prob)(states)
    log_p = jax.vmap(lambda z: log_joint(model, params, x, z))(states)
    probs = jnp.exp(log_q)
    # 0 log 0 = 0: states outside q's support add nothing, to the value or to the gradient.
    inside = probs > 0
    integrand = jnp.where(inside, log_p - jnp.where(inside, log_q, 0.0), 0.0)
    return jnp.sum(probs * integrand)
