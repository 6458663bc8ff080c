"""Annealed importance sampling and bidirectional Monte Carlo estimates of log p(x; θ), for ONE datapoint.

Annealed importance sampling (AIS; Neal 2001) moves K chains along the geometric path

    f_t(z) = p0(z)^{1 - β_t} p(x, z; θ)^{β_t},    0 = β_0 < β_1 < ... < β_T = 1,

from a normalized base p0 (the prior p(z; θ), or a proposal) to the unnormalized posterior
p(x, z; θ), whose normalizer is p(x; θ). Each chain draws z_0 ~ p0 and, for t = 1..T,

    log w += log f_t(z_{t-1}) - log f_{t-1}(z_{t-1}) = (β_t - β_{t-1}) [log p(x, z_{t-1}; θ) - log p0(z_{t-1})],
    z_t ~ T_t(z_{t-1}, ·),    a Markov kernel that leaves f_t invariant (here one HMC transition),

so that E[w] = p(x; θ) (Neal 2001, §3): AIS is importance sampling on the extended space of
whole trajectories. The last transition, after the last weight update, cannot change the weight
and is not run (T - 1 transitions in all); with T = 1, AIS is importance sampling from p0.

Bidirectional Monte Carlo (BDMC; Grosse, Ghahramani & Adams 2015) runs the same chain backwards,
from an exact posterior sample down to p0, to get a stochastic upper bound to go with AIS's lower
one; Wu et al. (2017) use the pair to evaluate decoder-based generative models.

The chains move by blackjax's HMC kernel (`blackjax.mcmc.hmc.build_kernel`, velocity-Verlet
leapfrog, identity mass matrix) on the latent flattened to a vector; latents must be continuous.
Conventions of the core (`lvmjax.estimators`): key first, one datapoint, `jax.vmap` outside;
`num_steps`, `num_chains`, `num_leapfrog_steps` and `schedule` are static under `jax.jit`.

Sampling convention: with `key_init, key_steps = jax.random.split(key)`, chain k starts from
z_0 drawn with `fold_in(key_init, k)` (the z_k of `lvmjax.log_weights(key_init, ...)`) and makes
its t-th transition with `fold_in(fold_in(key_steps, k), t)`. Without step-size adaptation,
chain k therefore does not depend on how many chains run beside it; with it, the chains share
one adapted step size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import distrax
import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import _validation
from lvmjax.errors import ArgumentError, ArgumentTypeError
from lvmjax.estimators import MarginalEstimate, _check_inputs, _moments, _sample_latents, _summarize
from lvmjax.mcmc import _blackjax
from lvmjax.model import LatentVariableModel, Params, log_joint
from lvmjax.types import Array

__all__ = ["BDMCResult", "ais_log_weights", "annealing_schedule", "bdmc", "log_marginal_ais"]


SCHEDULES = ("sigmoid", "linear")
SIGMOID_SHARPNESS = 4.0  # δ of the sigmoidal schedule (Grosse et al. 2015)
ADAPTATION_RATE = 0.1  # γ of the step-size rule log ε ← log ε + γ (ā - target)


class BDMCResult(NamedTuple):
    """The two sides of bidirectional Monte Carlo, which bracket log p(x; θ) in expectation."""

    lower: MarginalEstimate  # forward AIS from p0: E[lower.log_marginal] <= log p(x; θ)
    upper: MarginalEstimate  # reverse AIS from an exact posterior sample: E[upper.log_marginal] >= log p(x; θ)


def annealing_schedule(num_steps: int, schedule: str = "sigmoid") -> np.ndarray:
    """The inverse temperatures 0 = β_0 < β_1 < ... < β_T = 1 of an annealing path.

        "linear":   β_t = t / T
        "sigmoid":  β_t = (β̃_t - β̃_0) / (β̃_T - β̃_0),   β̃_t = σ(δ (2t/T - 1)),   δ = 4

    The sigmoidal schedule of Grosse et al. (2015, §5) spends more steps near both ends of the
    path, where the intermediate distributions change fastest.

    Args:
      num_steps: T, a static int >= 1.
      schedule: "sigmoid" or "linear".

    Returns:
      A float64 numpy array of shape (T + 1,): static values, cast to the latent's dtype where used.
    """
    num_steps = _validation.check_num_samples(num_steps, "num_steps")
    if schedule not in SCHEDULES:
        raise ArgumentError(f"schedule must be 'sigmoid' or 'linear', got {schedule!r}.")
    fraction = np.arange(num_steps + 1) / num_steps
    if schedule == "linear":
        return fraction
    tilde = 1.0 / (1.0 + np.exp(-SIGMOID_SHARPNESS * (2.0 * fraction - 1.0)))
    betas = (tilde - tilde[0]) / (tilde[-1] - tilde[0])
    betas[0], betas[-1] = 0.0, 1.0  # exactly, whatever the rounding
    return betas


class _Chains(NamedTuple):
    """The K chains of one annealing run, between two temperatures."""

    position: Array  # shape=(K, n): the latents z, flattened
    log_weight: Array  # shape=(K,): log w accumulated so far
    log_step_size: Array  # shape=(): log ε of the next transition, shared by the chains


# log_densities(z) -> (log p0(z), log p(x, z; θ)) of one flattened latent z, shape (n,).
_LogDensities = Callable[[Array], tuple[Array, Array]]


def _anneal(
    keys: Array,
    log_densities: _LogDensities,
    position: Array,
    betas: Array,
    log_step_size: Array,
    fixed_log_step_sizes: Array | None,
    num_leapfrog_steps: int,
    target_acceptance: Array,
) -> tuple[Array, Array]:
    """Runs K chains along β_0, β_1, ..., β_T (increasing for AIS, decreasing for reverse AIS).

    Chain k moves with the keys fold_in(keys[k], t). The transitions at β_t (t = 1..T-1) use the
    adapted step size when `fixed_log_step_sizes` is None, and exp(fixed_log_step_sizes[t - 1]) when
    it is given.

    Returns:
      (log-weights, shape (K,); the log step size each transition used, shape (T - 1,)).
    """
    kernel = _blackjax().mcmc.hmc.build_kernel()
    inverse_mass_matrix = jnp.ones(position.shape[-1], position.dtype)
    adapt = fixed_log_step_sizes is None

    def transition(key, z, log_weight, log_step, beta_previous, beta):
        def log_density(z):
            log_base, log_target = log_densities(z)
            # log f_β = (1 - β) log p0 + β log p(x, z), and the log-ratio that the weight accumulates
            return log_base + beta * (log_target - log_base), log_target - log_base

        (value, log_ratio), grad = jax.value_and_grad(log_density, has_aux=True)(z)
        log_weight = log_weight + (beta - beta_previous) * log_ratio
        state = _blackjax().mcmc.hmc.HMCState(z, value, grad)
        state, info = kernel(
            key,
            state,
            lambda z: log_density(z)[0],
            jnp.exp(log_step),
            inverse_mass_matrix,
            num_leapfrog_steps,
        )
        return state.position, log_weight, info.acceptance_rate

    def step(chains, inputs):
        beta_previous, beta, index, fixed_log_step = inputs
        log_step = chains.log_step_size if adapt else fixed_log_step
        step_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, index)
        position, log_weight, acceptance = jax.vmap(transition, in_axes=(0, 0, 0, None, None, None))(
            step_keys, chains.position, chains.log_weight, log_step, beta_previous, beta
        )
        # One step size for all chains, from their mean acceptance: a chain's own rule would make its
        # kernel depend on where that chain has been, which biases the weights (see ais_log_weights).
        next_log_step = log_step + ADAPTATION_RATE * (jnp.mean(acceptance) - target_acceptance)
        return _Chains(position, log_weight, next_log_step), log_step

    num_transitions = betas.shape[0] - 2
    if fixed_log_step_sizes is None:
        fixed_log_step_sizes = jnp.zeros(num_transitions, betas.dtype)  # unused: the step size adapts
    inputs = (betas[:-2], betas[1:-1], jnp.arange(1, num_transitions + 1), fixed_log_step_sizes)
    num_chains = position.shape[0]
    initial = _Chains(position, jnp.zeros(num_chains, position.dtype), log_step_size)
    chains, log_step_sizes = jax.lax.scan(step, initial, inputs)

    # The last weight update, at z_{T-1}; a transition after it would not change w.
    log_base, log_target = jax.vmap(log_densities)(chains.position)
    log_weight = chains.log_weight + (betas[-1] - betas[-2]) * (log_target - log_base)
    return log_weight, log_step_sizes


class _Problem(NamedTuple):
    """What both directions of a run share, checked once."""

    base: distrax.Distribution  # p0: the proposal, or the prior
    log_densities: _LogDensities
    event_shape: tuple[int, ...]
    betas: Array  # shape=(T + 1,), the latent's dtype
    log_step_size: Array  # shape=(), the latent's dtype
    target_acceptance: Array  # shape=(), the latent's dtype


def _check_open_interval(value, name: str, low: float, high: float) -> None:
    """Checks that a concrete scalar hyperparameter lies in (low, high); traced ones are let through."""
    if isinstance(value, jax.core.Tracer):
        return
    _validation.check_real_array(value, name)
    if jnp.shape(value) != ():
        raise ArgumentError(f"{name} must be a scalar, got shape {jnp.shape(value)}.")
    if not low < float(value) < high:
        raise ArgumentError(f"{name} must be in ({low:g}, {high:g}), got {float(value)!r}.")


def _prepare(
    model: LatentVariableModel,
    params: Params,
    x: Array,
    num_steps: int,
    proposal: distrax.Distribution | None,
    schedule: str,
    num_leapfrog_steps: int,
    step_size: float | Array,
    target_acceptance: float | Array,
) -> _Problem:
    betas = annealing_schedule(num_steps, schedule)
    _validation.check_num_samples(num_leapfrog_steps, "num_leapfrog_steps")
    _check_open_interval(step_size, "step_size", 0.0, math.inf)
    _check_open_interval(target_acceptance, "target_acceptance", 0.0, 1.0)
    _check_inputs(model, params, x)
    prior = model.prior(params)
    _validation.check_single_distribution(prior, "model.prior(params)")
    if _validation.is_discrete(prior):
        raise ArgumentTypeError(
            f"AIS moves the latents by Hamiltonian Monte Carlo, which needs continuous latents, but "
            f"model.prior(params) ({type(prior).__name__}) draws discrete ones; use log_marginal_exact "
            "(enumeration) or log_marginal_is (importance sampling) for this model."
        )
    if proposal is None:
        base = prior
    else:
        _validation.check_single_distribution(proposal, "proposal")
        _validation.check_finite(proposal, "proposal")
        if tuple(proposal.event_shape) != tuple(prior.event_shape):
            raise ArgumentError(
                f"proposal is a distribution over latents of shape {tuple(proposal.event_shape)}, but the "
                f"prior's event_shape is {tuple(prior.event_shape)}."
            )
        if _validation.is_discrete(proposal):
            raise ArgumentTypeError(
                f"proposal ({type(proposal).__name__}) draws discrete latents; AIS needs a continuous proposal."
            )
        base = proposal
    dtype = base.dtype
    event_shape = tuple(prior.event_shape)

    def log_densities(z_flat: Array) -> tuple[Array, Array]:
        z = z_flat.reshape(event_shape)
        return base.log_prob(z), log_joint(model, params, x, z)

    return _Problem(
        base,
        log_densities,
        event_shape,
        jnp.asarray(betas, dtype),
        jnp.log(jnp.asarray(step_size).astype(dtype)),
        jnp.asarray(target_acceptance).astype(dtype),
    )


def _forward(key: Array, problem: _Problem, num_chains: int, adapt_step_size: bool, num_leapfrog_steps: int):
    """Forward AIS from p0 to p(x, z): (log-weights, shape (K,); log step size per transition, shape (T - 1,))."""
    key_init, key_steps = jax.random.split(key)
    z, _ = _sample_latents(key_init, problem.base, num_chains)
    chain_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key_steps, jnp.arange(num_chains))
    fixed = None if adapt_step_size else jnp.full(problem.betas.shape[0] - 2, problem.log_step_size)
    return _anneal(
        chain_keys,
        problem.log_densities,
        z.reshape(num_chains, -1),
        problem.betas,
        problem.log_step_size,
        fixed,
        num_leapfrog_steps,
        problem.target_acceptance,
    )


def ais_log_weights(
    key: Array,
    model: LatentVariableModel,
    params: Params,
    x: Array,
    num_steps: int,
    num_chains: int,
    proposal: distrax.Distribution | None = None,
    schedule: str = "sigmoid",
    num_leapfrog_steps: int = 10,
    step_size: float | Array = 0.1,
    target_acceptance: float | Array = 0.65,
    adapt_step_size: bool = True,
) -> Array:
    """The K log-weights of annealed importance sampling (Neal 2001), one per chain.

        log w_k = Σ_{t=1}^{T} (β_t - β_{t-1}) [log p(x, z_{t-1}^k; θ) - log p0(z_{t-1}^k)],
        z_0^k ~ p0,    z_t^k ~ T_t(z_{t-1}^k, ·),    T_t an HMC transition that leaves
        f_t(z) = p0(z)^{1 - β_t} p(x, z; θ)^{β_t} invariant.

    With `adapt_step_size=False`, every transition uses `step_size`, the kernels do not depend on
    the chains' history, and E[w_k] = p(x; θ) exactly (Neal 2001, §3). With `adapt_step_size=True`
    (the default), the leapfrog step size ε, one for all K chains, is adapted after each transition
    toward `target_acceptance` by the stochastic-approximation rule

        log ε ← log ε + γ (ā_t - target_acceptance),    γ = 0.1,

    where ā_t is the mean over the chains of the transitions' Metropolis acceptance probabilities.
    The kernel at step t then depends on the chains' past, so the weights are only approximately
    unbiased; use `adapt_step_size=False` for the exact estimator (unbiased in p(x; θ)). Sharing ε
    keeps each chain's influence on its own kernel to O(1/K): with one ε per chain, adapted from that
    chain's own acceptances, the kernels favour the regions where the chain already is, and on a
    curved two-mode posterior log p̂(x) came out 0.28 ± 0.03 too HIGH at T = 1000, where the shared rule
    is within 0.03 ± 0.03 (tests/test_ais.py). With p0 = p(z | x; θ) every log-weight is log p(x; θ).

    The run is one `lax.scan` over the temperatures with the chains `vmap`ped inside it, so memory
    does not grow with T. The latent is flattened to a vector for HMC and reshaped for the model.

    Args:
      key: PRNG key.
      model: the `LatentVariableModel`, with continuous latents (real dtype, any event shape).
      params: θ.
      x: one datapoint.
      num_steps: T, the number of temperatures after β_0 = 0, a static int >= 1.
      num_chains: K, a static int >= 1.
      proposal: p0, a continuous distrax distribution over one latent (batch_shape ()), whose
        support covers the posterior's; None (the default) is the prior p(z; θ).
      schedule: "sigmoid" or "linear", see `annealing_schedule`.
      num_leapfrog_steps: L, leapfrog steps per HMC transition, a static int >= 1.
      step_size: the leapfrog step size ε (the initial one, with adaptation), > 0.
      target_acceptance: the acceptance probability the adaptation aims at, in (0, 1).
      adapt_step_size: adapt one ε for all chains (approximately unbiased), or keep it fixed (exact).

    Returns:
      The log-weights, shape (K,).
    """
    num_chains = _validation.check_num_samples(num_chains, "num_chains")
    problem = _prepare(
        model, params, x, num_steps, proposal, schedule, num_leapfrog_steps, step_size, target_acceptance
    )
    log_weights, _ = _forward(key, problem, num_chains, adapt_step_size, num_leapfrog_steps)
    return log_weights


def log_marginal_ais(
    key: Array,
    model: LatentVariableModel,
    params: Params,
    x: Array,
    num_steps: int,
    num_chains: int,
    proposal: distrax.Distribution | None = None,
    schedule: str = "sigmoid",
    num_leapfrog_steps: int = 10,
    step_size: float | Array = 0.1,
    target_acceptance: float | Array = 0.65,
    adapt_step_size: bool = True,
) -> MarginalEstimate:
    """Annealed importance sampling estimate of log p(x; θ) (Neal 2001).

        p̂(x) = (1/K) Σ_k w_k,    w_k the AIS weights of `ais_log_weights`,

    along the geometric path f_t(z) = p0(z)^{1 - β_t} p(x, z; θ)^{β_t}, 0 = β_0 < ... < β_T = 1.
    With `adapt_step_size=False`, p̂(x) is unbiased for p(x; θ) and log p̂(x) is, by Jensen, a
    stochastic lower bound: E[log p̂(x)] <= log p(x; θ). With the default step-size adaptation,
    both hold only approximately (see `ais_log_weights`). The standard error is the
    delta method's over the K independent chains, se(log p̂) = s / (√K p̂), and ESS = (Σ w)² / Σ w²,
    as `MarginalEstimate` defines them (num_samples = K). A run costs about K T (L + 1) gradient
    evaluations of log p(x, z; θ).

    Args:
      key, model, params, x, num_steps, num_chains, proposal, schedule, num_leapfrog_steps,
      step_size, target_acceptance, adapt_step_size: as in `ais_log_weights`.

    Returns:
      A `MarginalEstimate`.
    """
    log_weights = ais_log_weights(
        key,
        model,
        params,
        x,
        num_steps,
        num_chains,
        proposal,
        schedule,
        num_leapfrog_steps,
        step_size,
        target_acceptance,
        adapt_step_size,
    )
    return _summarize(_moments(log_weights), num_chains)


def bdmc(
    key: Array,
    model: LatentVariableModel,
    params: Params,
    x: Array,
    z: Array,
    num_steps: int,
    num_chains: int,
    proposal: distrax.Distribution | None = None,
    schedule: str = "sigmoid",
    num_leapfrog_steps: int = 10,
    step_size: float | Array = 0.1,
    target_acceptance: float | Array = 0.65,
    adapt_step_size: bool = True,
) -> BDMCResult:
    """Bidirectional Monte Carlo: AIS forward and backward, bracketing log p(x; θ) (Grosse et al. 2015).

    Forward, AIS from p0 to p(x, z; θ) as in `log_marginal_ais`: a stochastic lower bound,
    E[lower] <= log p(x; θ). Backward, K chains all start at `z`, an exact sample of p(z | x; θ),
    and run the same path from β_T = 1 down to β_0 = 0, with the same schedule and kernels:

        log v_k = Σ_{t=1}^{T} (β_{t-1} - β_t) [log p(x, z_t^k; θ) - log p0(z_t^k)],    z_T^k = z,
        z_{t-1}^k ~ T_{t-1}(z_t^k, ·)  (t = T..2),

    This is AIS itself, along the reversed path from f_T (normalizer p(x; θ)) to f_0 = p0
    (normalizer 1), so E[v_k] = 1 / p(x; θ); with reversible kernels, as HMC's are, it is the
    reversal of the forward chain (Grosse et al. 2015, §4). Then

        upper = -log (1/K) Σ_k v_k,    E[upper] >= -log E[v] = log p(x; θ)

    by Jensen, with the delta-method standard error of log (1/K) Σ_k v_k, and the ESS of the v_k.
    E[upper - lower] = (log p(x; θ) - E[lower]) + (E[upper] - log p(x; θ)) is a sum of two
    non-negative terms, so the gap bounds, in expectation, how far AIS falls short of log p(x; θ)
    on this datapoint; it shrinks to 0 as T grows. An exact posterior sample is at hand for data
    simulated from the model: (z, x) ~ p(z, x; θ) by `lvmjax.sample` (Grosse et al. 2015, §4;
    Wu et al. 2017, who use it to evaluate decoder-based generative models).

    Step sizes: without adaptation both directions use `step_size`, and both are exact. With
    `adapt_step_size=True`, the forward chains adapt as in `ais_log_weights`, and the reverse run
    uses, at each temperature, the step size the forward run used there: the same kernels, fixed
    given the forward run (which is independent of the reverse one), so the reverse weights stay
    unbiased for 1 / p(x; θ) whatever the forward run's adaptation did.

    Args:
      key: PRNG key; `key_forward, key_reverse = jax.random.split(key)`, and `lower` equals
        `log_marginal_ais(key_forward, ...)`.
      model, params, x: as in `log_marginal_ais`.
      z: one exact sample of p(z | x; θ), of the prior's event shape.
      num_steps, num_chains, proposal, schedule, num_leapfrog_steps, step_size, target_acceptance,
      adapt_step_size: as in `ais_log_weights`.

    Returns:
      A `BDMCResult(lower, upper)` of two `MarginalEstimate`s, each of K chains.
    """
    num_chains = _validation.check_num_samples(num_chains, "num_chains")
    problem = _prepare(
        model, params, x, num_steps, proposal, schedule, num_leapfrog_steps, step_size, target_acceptance
    )
    prior = model.prior(params)
    _validation.check_event_shape(z, prior, "z", "model.prior(params)")
    key_forward, key_reverse = jax.random.split(key)

    forward_log_weights, log_step_sizes = _forward(
        key_forward, problem, num_chains, adapt_step_size, num_leapfrog_steps
    )

    # Backward along the same temperatures, each transition with the step size of the forward one there.
    chain_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key_reverse, jnp.arange(num_chains))
    start = jnp.broadcast_to(
        jnp.asarray(z, problem.betas.dtype).reshape(-1), (num_chains, math.prod(problem.event_shape))
    )
    reverse_log_weights, _ = _anneal(
        chain_keys,
        problem.log_densities,
        start,
        problem.betas[::-1],
        problem.log_step_size,
        log_step_sizes[::-1],
        num_leapfrog_steps,
        problem.target_acceptance,
    )
    reverse = _summarize(_moments(reverse_log_weights), num_chains)
    return BDMCResult(
        lower=_summarize(_moments(forward_log_weights), num_chains),
        upper=reverse._replace(log_marginal=-reverse.log_marginal),
    )
