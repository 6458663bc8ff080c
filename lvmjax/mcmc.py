"""Samples of the posterior p(z | x; θ) by Hamiltonian Monte Carlo, for ONE datapoint.

The other answer to the intractable posterior of the seed texts: where variational
inference fits q(z; φ) ≈ p(z | x; θ) by maximizing the ELBO, Markov chain Monte Carlo
draws from the posterior itself, accurate but computationally expensive. Only the
unnormalized density is needed,

    p(z | x; θ) = p(x, z; θ) / p(x; θ)  ∝  p(x, z; θ),    log p(x, z; θ) = `log_joint(model, params, x, z)`,

so the intractable p(x; θ) never appears. The kernels, the warmup and the diagnostics
are blackjax's: HMC (Neal 2011), NUTS (Hoffman & Gelman 2014), Stan's window adaptation
of the step size and of a diagonal inverse mass matrix, the rank-normalized split R̂
(Vehtari et al. 2021) and the effective sample size (Geyer 1992; Gelman et al. 2013).
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from lvmjax import _validation
from lvmjax.errors import ArgumentError, ArgumentTypeError
from lvmjax.model import LatentVariableModel, log_joint
from lvmjax.types import Array, Params

__all__ = ["MCMCInfo", "PosteriorSamples", "sample_posterior"]


def _blackjax():
    """blackjax, imported on first use: importing it starts JAX's backend, which must wait until a
    multi-process run has called `jax.distributed.initialize` (`lvmjax.parallel`)."""
    import blackjax

    return blackjax


_ALGORITHMS = ("nuts", "hmc")
_MIN_DRAWS_FOR_DIAGNOSTICS = 4  # split R̂ needs two draws in each half of a chain


class MCMCInfo(NamedTuple):
    """What the chains did, and whether their draws can be trusted."""

    acceptance_rate: Array  # shape=(num_chains,): mean over the draws of the acceptance probability
    step_size: Array  # shape=(num_chains,): the leapfrog step size ε that the warmup chose
    inverse_mass_matrix: Array  # shape=(num_chains, *event_shape): diag M⁻¹ that the warmup chose
    num_divergent: Array  # shape=(num_chains,), int32: draws whose energy error exceeded 1000 (divergences)
    mean_integration_steps: Array  # shape=(num_chains,): leapfrog steps (gradients of log p) per draw
    rhat: Array  # shape=event_shape: rank-normalized split R̂ over the chains (Vehtari et al. 2021); ≈ 1
    ess: Array  # shape=event_shape: effective sample size of the mean, over all the chains' draws


class PosteriorSamples(NamedTuple):
    """Draws z ~ p(z | x; θ) of one datapoint, chain by chain, and their diagnostics."""

    samples: Array  # shape=(num_chains, num_samples, *event_shape)
    info: MCMCInfo


def _check_count(value: Any, name: str, minimum: int) -> int:
    """`value` as a Python int >= minimum (0 or 1), with `_validation.check_num_samples`'s messages."""
    if minimum == 0 and isinstance(value, numbers.Integral) and not isinstance(value, bool) and value == 0:
        return 0
    try:
        return _validation.check_num_samples(value, name)
    except ArgumentError:
        raise ArgumentError(f"{name} must be at least {minimum}, got {value}.") from None


def _check_target_acceptance(target_acceptance: Any) -> None:
    if isinstance(target_acceptance, jax.core.Tracer):
        return
    if isinstance(target_acceptance, bool) or not isinstance(target_acceptance, (numbers.Real, jax.Array)):
        raise ArgumentTypeError(
            f"target_acceptance must be a float, got {type(target_acceptance).__name__} {target_acceptance!r}."
        )
    if not 0 < float(target_acceptance) < 1:
        raise ArgumentError(
            f"target_acceptance must be between 0 and 1 (exclusive), got {float(target_acceptance)}; 0.8 is usual."
        )


def _kernel(algorithm: str) -> Any:
    return _blackjax().nuts if algorithm == "nuts" else _blackjax().hmc


def _sample_chain(key, log_density, position, num_samples, num_warmup, algorithm, extra, target_acceptance):
    """One chain: the window-adaptation warmup from `position`, then `num_samples` draws."""
    key_warmup, key_sample = jax.random.split(key)
    kernel = _kernel(algorithm)
    if num_warmup > 0:
        warmup = _blackjax().window_adaptation(
            kernel,
            log_density,
            is_mass_matrix_diagonal=True,
            target_acceptance_rate=target_acceptance,
            adaptation_info_fn=_blackjax().adaptation.base.get_filter_adapt_info_fn(),  # keep no warmup trace
            **extra,
        )
        # blackjax builds its schedule as one array of ints and bools, which strict promotion refuses; the
        # draws below are traced in the caller's mode, so a model's silent upcast still fails there.
        with jax.numpy_dtype_promotion("standard"):
            (state, tuned), _ = warmup.run(key_warmup, position, num_steps=num_warmup)
        step_size, inverse_mass_matrix = tuned["step_size"], tuned["inverse_mass_matrix"]
    else:  # blackjax's warmup starts from these: ε = 1, M = I
        state = kernel.init(position, log_density)
        step_size, inverse_mass_matrix = jnp.ones((), position.dtype), jnp.ones_like(position)
    sampler = kernel(log_density, step_size=step_size, inverse_mass_matrix=inverse_mass_matrix, **extra)

    def step(state, key):
        state, info = sampler.step(key, state)
        return state, (state.position, info.acceptance_rate, info.is_divergent, info.num_integration_steps)

    _, (positions, acceptance, divergent, integration_steps) = jax.lax.scan(
        step, state, jax.random.split(key_sample, num_samples)
    )
    summary = (
        jnp.mean(acceptance),
        jnp.asarray(step_size, position.dtype),
        inverse_mass_matrix,
        jnp.sum(divergent, dtype=jnp.int32),
        jnp.mean(integration_steps.astype(position.dtype)),
    )
    return positions, summary


@functools.partial(
    jax.jit,
    static_argnames=("model", "num_samples", "num_warmup", "num_chains", "algorithm", "num_integration_steps"),
)
def _sample_posterior(
    key, model, params, x, target_acceptance, num_samples, num_warmup, num_chains, algorithm, num_integration_steps
):
    prior = model.prior(params)
    event_shape = tuple(prior.event_shape)
    size = math.prod(event_shape)

    def log_density(z_flat):  # the kernels move a vector; the model sees a latent of its own shape
        return log_joint(model, params, x, z_flat.reshape(event_shape))

    extra = {"num_integration_steps": num_integration_steps} if algorithm == "hmc" else {}
    keys = jax.random.split(key, num_chains)
    starts = jax.vmap(lambda k: prior.sample(seed=jax.random.fold_in(k, 0)).reshape(size))(keys)
    chain_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, 1)
    positions, (acceptance, step_size, inverse_mass_matrix, divergent, integration_steps) = jax.vmap(
        lambda k, start: _sample_chain(
            k, log_density, start, num_samples, num_warmup, algorithm, extra, target_acceptance
        )
    )(chain_keys, starts)

    if num_samples >= _MIN_DRAWS_FOR_DIAGNOSTICS:
        # Both squeeze every axis of length 1, so the flat (size,) is reshaped, not assumed.
        with jax.numpy_dtype_promotion("standard"):  # blackjax halves integer ranks with a float
            rhat = _blackjax().diagnostics.rhat(positions).reshape(event_shape)
        ess = _blackjax().diagnostics.effective_sample_size(positions).reshape(event_shape)
    else:
        rhat = ess = jnp.full(event_shape, jnp.nan, positions.dtype)
    info = MCMCInfo(
        acceptance_rate=acceptance,
        step_size=step_size,
        inverse_mass_matrix=inverse_mass_matrix.reshape(num_chains, *event_shape),
        num_divergent=divergent,
        mean_integration_steps=integration_steps,
        rhat=rhat,
        ess=ess,
    )
    return PosteriorSamples(positions.reshape(num_chains, num_samples, *event_shape), info)


def sample_posterior(
    key: Array,
    model: LatentVariableModel,
    params: Params,
    x: Array,
    num_samples: int,
    num_warmup: int = 500,
    num_chains: int = 4,
    algorithm: Literal["nuts", "hmc"] = "nuts",
    num_integration_steps: int = 10,
    target_acceptance: float = 0.8,
) -> PosteriorSamples:
    """Draws from the posterior of one datapoint by Hamiltonian Monte Carlo, with diagnostics.

        z ~ p(z | x; θ) ∝ p(x, z; θ) = exp U(z),    U(z) = log p(z; θ) + log p(x | z; θ)

    HMC (Duane et al. 1987; Neal 2011) adds a momentum r ~ N(0, M) and follows the
    Hamiltonian H(z, r) = -U(z) + ½ rᵀ M⁻¹ r with L leapfrog steps of size ε,

        r ← r + (ε/2) ∇U(z),    z ← z + ε M⁻¹ r,    r ← r + (ε/2) ∇U(z),

    then accepts the end point with probability min(1, exp(H(z, r) - H(z', r'))), which
    leaves p(z | x; θ) invariant. NUTS (Hoffman & Gelman 2014) chooses L itself,
    doubling the trajectory until it turns back on itself (the no-U-turn criterion),
    and draws the next state from the whole trajectory.

    Each of `num_chains` chains starts from its own draw of the prior p(z; θ) and is
    warmed up for `num_warmup` steps by blackjax's window adaptation (Stan's schedule,
    Carpenter et al. 2017): dual averaging (Hoffman & Gelman 2014, §3.2; Nesterov 2009)
    moves ε towards the `target_acceptance` rate, and the variances of the chain's
    positions in doubling windows give a diagonal M⁻¹. Then `num_samples` draws follow
    in a `lax.scan`, with ε and M⁻¹ fixed; the chains run under `jax.vmap`.
    `num_warmup=0` skips the warmup: the chains start at their prior draws, with ε = 1 and
    M = I.

    HMC's trajectories have the fixed length εL. In a Gaussian posterior whose standard
    deviations M⁻¹ has scaled to 1, the dynamics oscillate with period 2π, and for εL near
    it each draw lands close to where it started: the chains barely move (ESS ≈ 10 of 4000
    draws on a 3-dimensional factor-analysis posterior with the default L = 10, ε ≈ 0.7).
    `rhat` and `ess` show it; NUTS, which stops where the trajectory turns, avoids it.

    Diagnostics (_blackjax().diagnostics), per coordinate of z:
      - `rhat`: the rank-normalized split R̂ (Vehtari, Gelman, Simpson, Carpenter &
        Bürkner 2021): each chain is split in half, the draws are replaced by the normal
        scores of their ranks, and R̂ = √(V̂ / W) compares the pooled variance V̂ with the
        within-chain variance W (Gelman & Rubin 1992), the larger of its value for the
        draws and for their distance to the median. Near 1 when the chains agree;
        Vehtari et al. recommend trusting the draws only below 1.01.
      - `ess`: the effective sample size of the mean over all the chains' draws,
        S_eff = M N / τ̂ with τ̂ = 1 + 2 Σ_t ρ̂_t and the autocorrelations ρ̂_t pooled
        over chains and truncated by Geyer's (1992) initial monotone sequence (Gelman et
        al., Bayesian Data Analysis, 3rd ed., §11.5; Stan's estimator). The Monte Carlo
        standard error of the posterior mean of z_j is about sd(z_j | x) / √S_eff_j.
      Both are NaN when `num_samples` < 4.

    The posterior mean and covariance are those of the draws: `samples.mean((0, 1))`, and
    the covariance of `samples.reshape(-1, *event_shape)`.

    Compile with `jax.jit(sample_posterior, static_argnames=("model", "num_samples",
    "num_warmup", "num_chains", "algorithm", "num_integration_steps"))`; batch over
    datapoints (and keys) with `jax.vmap`. Unjitted, it compiles once per model and set
    of sizes.

    Args:
      key: PRNG key.
      model: the `LatentVariableModel`, with continuous latents (any event shape: the
        kernels move them flattened to a vector).
      params: θ.
      x: one datapoint.
      num_samples: N, draws per chain after the warmup, a static int >= 1.
      num_warmup: warmup (adaptation) steps per chain, a static int >= 0; not returned.
      num_chains: M, independent chains, a static int >= 1 (R̂ compares them: use >= 2).
      algorithm: "nuts" (the number of leapfrog steps chosen per draw) or "hmc" (fixed).
      num_integration_steps: L, the leapfrog steps of each HMC draw (ignored by NUTS).
      target_acceptance: the acceptance rate the warmup aims ε at, in (0, 1).

    Returns:
      `PosteriorSamples`: `samples`, shape (M, N, *event_shape), and `MCMCInfo`.

    Raises:
      ArgumentTypeError: for a discrete prior (HMC needs gradients with respect to z), or
        counts that are not static ints.
      ArgumentError: for counts out of range, an unknown algorithm, a target acceptance
        outside (0, 1), or NaN or inf in params or x (checked where concrete).
    """
    num_samples = _check_count(num_samples, "num_samples", minimum=1)
    num_warmup = _check_count(num_warmup, "num_warmup", minimum=0)
    num_chains = _check_count(num_chains, "num_chains", minimum=1)
    num_integration_steps = _check_count(num_integration_steps, "num_integration_steps", minimum=1)
    if algorithm not in _ALGORITHMS:
        raise ArgumentError(f"algorithm must be 'nuts' or 'hmc', got {algorithm!r}.")
    _check_target_acceptance(target_acceptance)
    if not isinstance(model, LatentVariableModel):
        raise ArgumentTypeError(f"model must be a LatentVariableModel, got {type(model).__name__}.")
    _validation.check_finite(params, "params")
    _validation.check_finite(x, "x")
    prior = model.prior(params)
    _validation.check_single_distribution(prior, "model.prior(params)")
    if _validation.is_discrete(prior):
        raise ArgumentTypeError(
            f"sample_posterior needs continuous latents, but the prior ({type(prior).__name__}) draws discrete "
            "ones, which Hamiltonian Monte Carlo cannot move along a gradient; sum over them exactly with "
            "log_marginal_exact (and p(z | x) = exp(log_joint - log_marginal_exact)), or use importance "
            "sampling (log_marginal_is)."
        )
    return _sample_posterior(
        key,
        model,
        params,
        x,
        target_acceptance,
        num_samples=num_samples,
        num_warmup=num_warmup,
        num_chains=num_chains,
        algorithm=algorithm,
        num_integration_steps=num_integration_steps,
    )
