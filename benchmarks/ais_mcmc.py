"""Annealed importance sampling against TFP, and NUTS against NumPyro, on one factor-analysis model.

    python -m benchmarks.ais_mcmc [--only ais|nuts] [--datapoints N] [--steps T] [--chains K]
                                  [--leapfrog L] [--step-size EPS] [--draws S] [--warmup W]
                                  [--nuts-chains C] [--repeats R] [--json FILE] [--quick]

The model (both parts): factor analysis with latent d = 10 and D = 50, z ~ N(0, I_d),
x | z ~ N(W z + b, diag Ψ), W_ij ~ N(0, 1 / d), b_j ~ N(0, 1), Ψ_j ~ U(0.5, 1.5) (seeded),
data drawn from the model; float32 throughout. Its posterior is Gaussian, with standard
deviations from 0.28 to 0.53 along its axes (printed in the workload), and log p(x) is
exact (`linear_gaussian.log_marginal`).

AIS (`ais_throughput`): N = 32 datapoints, T = 1,000 temperatures, K = 16 chains from the
prior, L = 10 leapfrog steps of a fixed ε = 0.1 (lvmjax's default), identity mass matrix, the linear schedule
β_t = t / T, on both sides:

- lvmjax `log_marginal_ais(..., schedule="linear", adapt_step_size=False)`, `jax.vmap`ped
  over the datapoints inside one `jax.jit`;
- TFP-on-JAX `tfp.mcmc.sample_annealed_importance_chain(T, log p0, log p(x, ·), z_0,
  lambda f: tfp.mcmc.HamiltonianMonteCarlo(f, ε, L))`, its K chains the leading axis of the
  state, also `jax.vmap`ped over the datapoints inside one `jax.jit` (its `tf.while_loop`
  is a `lax.while_loop` there, which vmaps), on the same log-densities as lvmjax (the model's
  distrax prior and `lvmjax.log_joint`, vmapped over the chains); a second TFP row runs it on a
  hand-written jnp log-density instead, to show what the density code costs. TFP's path is the
  same linear interpolation of log-densities, with the weight update before each transition; it
  makes T transitions (the last one, at β = 1, after the last weight update) where lvmjax makes
  T - 1, a difference of 0.1%.
  TFP's HMC starts each transition from the log-density and gradient cached by the previous one,
  computed at the previous temperature, so its Metropolis test is off by Δβ (log p(x, z) - log p0(z))
  and chains far from the posterior are rejected: a bias that shrinks as T grows (see RESULTS.md).
  Its log p̂(x) and standard error are computed from its log-weights by lvmjax's own formula
  (log-mean-exp, delta method), so the estimators differ only in the chains.

Throughput is datapoints × temperatures × chains per second (steady state); the quality of each
side is the mean over the datapoints of |log p̂(x) - log p(x)| and of the reported standard error.

NUTS (`nuts_ess`): the posterior of one datapoint, C = 4 chains, 500 warmup steps (Stan's window
adaptation of ε and a diagonal mass matrix, target acceptance 0.8, tree depth ≤ 10 on both
sides), S = 1,000 draws per chain:

- lvmjax `sample_posterior(..., algorithm="nuts")` (blackjax underneath), jitted;
- NumPyro `MCMC(NUTS(model), num_warmup=500, num_samples=1000, num_chains=4,
  chain_method="vectorized", jit_model_args=True, progress_bar=False)` on the same model written
  in NumPyro, x passed as a model argument so that a second `run` reuses the compiled sampler.

Quality: the minimum over the d coordinates of the effective sample size, each side by its own
estimator (lvmjax's `info.ess`, blackjax's; NumPyro's `effective_sample_size`) and both by one
(NumPyro's `numpyro.diagnostics.effective_sample_size` applied to both sample arrays), and that
min ESS per steady-state second. The goal is ESS/s, not seconds: NUTS's cost per draw depends on
the tree depth each side's adaptation reaches.

Seconds are steady state: the median of `--repeats` calls after a warm-up call (tracing and
compilation, shown apart), the two sides' calls interleaved so that a passing load falls on both.
NumPyro's `MCMC.run` traces and compiles its warmup and sampling loops again on every call (its
`fori_collect` jits a new closure each time), so its steady state includes that; the seconds JAX
reports compiling during its timed runs (`jax.monitoring`) are shown apart in the note.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import sys
from importlib.metadata import version

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import Row, machine, not_installed, print_rows
from benchmarks.hmm_em import _quiet, timed_together
from lvmjax.ais import log_marginal_ais
from lvmjax.estimators import _moments, _summarize
from lvmjax.mcmc import sample_posterior
from lvmjax.model import log_joint, sample
from lvmjax.models import linear_gaussian

PARAMS_SEED, DATA_SEED, RUN_SEED = 0, 1, 2

QUICK_AIS = dict(num_data=2, num_steps=50, num_chains=4, repeats=1)
QUICK_NUTS = dict(num_warmup=50, num_samples=50, num_chains=2, repeats=1)


_COMPILE_SECONDS = [0.0]
_LISTENING = [False]


def _compile_seconds() -> float:
    """Seconds JAX has spent tracing, lowering and compiling since the first call (jax.monitoring)."""
    if not _LISTENING[0]:

        def listen(event: str, duration: float, **kwargs) -> None:
            if event.startswith("/jax/core/compile/"):
                _COMPILE_SECONDS[0] += duration

        jax.monitoring.register_event_duration_secs_listener(listen)
        _LISTENING[0] = True
    return _COMPILE_SECONDS[0]


def _has(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def true_params(latent_dim: int = 10, data_dim: int = 50, seed: int = PARAMS_SEED) -> linear_gaussian.Params:
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(data_dim, latent_dim)) / math.sqrt(latent_dim)
    bias = rng.normal(size=data_dim)
    noise = rng.uniform(0.5, 1.5, size=data_dim)
    as32 = lambda array: jnp.asarray(array, jnp.float32)  # noqa: E731
    return linear_gaussian.Params(as32(weight), as32(bias), as32(noise))


def sample_data(params: linear_gaussian.Params, num_data: int, seed: int = DATA_SEED) -> jax.Array:
    keys = jax.random.split(jax.random.key(seed), num_data)
    _, x = jax.vmap(lambda key: sample(key, linear_gaussian.model, params))(keys)
    return x


def posterior_sd_range(params: linear_gaussian.Params) -> tuple[float, float]:
    """The smallest and largest posterior standard deviation along the eigenvectors (the same for every x)."""
    precision = np.eye(params.weight.shape[1]) + np.asarray(params.weight.T / params.noise_variance @ params.weight)
    sds = 1 / np.sqrt(np.linalg.eigvalsh(precision))
    return float(sds.min()), float(sds.max())


def _log_joint(params: linear_gaussian.Params, x: jax.Array, z: jax.Array) -> jax.Array:
    """log p(x, z; θ) of latents z with any leading batch axes, written in jnp (the second TFP row)."""
    mean = z @ params.weight.T + params.bias
    log_likelihood = -0.5 * jnp.sum(
        jnp.square(x - mean) / params.noise_variance + jnp.log(2 * jnp.pi * params.noise_variance), axis=-1
    )
    return log_likelihood + _log_prior(z)


def _log_prior(z: jax.Array) -> jax.Array:
    return -0.5 * jnp.sum(jnp.square(z) + jnp.log(2 * jnp.pi), axis=-1)


def _summary(log_marginals: np.ndarray, stderrs: np.ndarray, exact: np.ndarray) -> str:
    return f"mean |log p̂ - log p| {np.mean(np.abs(log_marginals - exact)):.3f}, mean se {np.mean(stderrs):.3f}"


def run_ais(
    num_data=32,
    num_steps=1_000,
    num_chains=16,
    num_leapfrog_steps=10,
    step_size=0.1,
    latent_dim=10,
    data_dim=50,
    repeats=3,
) -> list[Row]:
    """lvmjax's AIS against TFP's on the same datapoints, temperatures, chains and HMC kernel: one `Row`."""
    import tensorflow_probability.substrates.jax as tfp

    params = true_params(latent_dim, data_dim)
    data = sample_data(params, num_data)
    exact = np.asarray(jax.vmap(linear_gaussian.log_marginal, in_axes=(None, 0))(params, data))
    keys = jax.random.split(jax.random.key(RUN_SEED), num_data)

    @jax.jit
    def ours(params, data, keys):
        estimate = jax.vmap(
            lambda key, x: log_marginal_ais(
                key,
                linear_gaussian.model,
                params,
                x,
                num_steps,
                num_chains,
                schedule="linear",
                num_leapfrog_steps=num_leapfrog_steps,
                step_size=step_size,
                adapt_step_size=False,
            )
        )(keys, data)
        return estimate.log_marginal, estimate.stderr

    prior = linear_gaussian.prior(params)
    densities = {  # (log p0(z), log p(x, z; θ)) of a (K, d) batch of latents
        "tfp": lambda x: (prior.log_prob, jax.vmap(lambda z: log_joint(linear_gaussian.model, params, x, z))),
        "tfp_jnp": lambda x: (_log_prior, lambda z: _log_joint(params, x, z)),
    }

    def tfp_estimate(name):
        def one(params, x, key):
            key_init, key_chain = jax.random.split(key)
            start = jax.random.normal(key_init, (num_chains, latent_dim), jnp.float32)
            proposal_log_prob, target_log_prob = densities[name](x)
            _, log_weights, _ = tfp.mcmc.sample_annealed_importance_chain(
                num_steps=num_steps,
                proposal_log_prob_fn=proposal_log_prob,
                target_log_prob_fn=target_log_prob,
                current_state=start,
                make_kernel_fn=lambda log_prob: tfp.mcmc.HamiltonianMonteCarlo(
                    log_prob, step_size=step_size, num_leapfrog_steps=num_leapfrog_steps
                ),
                seed=key_chain,
            )
            estimate = _summarize(_moments(log_weights), num_chains)
            return estimate.log_marginal, estimate.stderr

        # TFP's JAX substrate calls jnp.shape(None) while it traces: a DeprecationWarning, silenced here.
        return jax.jit(_quiet(jax.vmap(one, in_axes=(None, 0, 0))))

    results = {}

    def call(name, fn):
        def once():
            results[name] = jax.block_until_ready(fn(params, data, keys))

        return once

    fns = {"lvmjax": call("lvmjax", ours)} | {name: call(name, tfp_estimate(name)) for name in densities}
    seconds = timed_together(fns, repeats)
    work = num_data * num_steps * num_chains
    low, high = posterior_sd_range(params)
    workload = (
        f"AIS log p(x) of N = {num_data} datapoints (vmapped, jitted, both sides), T = {num_steps:,} linear "
        f"temperatures, K = {num_chains} chains, HMC L = {num_leapfrog_steps}, fixed ε = {step_size}; factor "
        f"analysis d = {latent_dim}, D = {data_dim} (posterior sd {low:.3f}–{high:.3f}), float32; quality: "
        "N·T·K per second, mean |error| against the exact log p(x), mean reported stderr"
    )
    first, ours_seconds = seconds["lvmjax"]
    quality = lambda name: (  # noqa: E731
        f"{work / seconds[name][1]:,.0f} N·T·K/s; " + _summary(*map(np.asarray, results[name]), exact)
    )
    peers = {
        "tfp": "vmapped; lvmjax's distrax densities",
        "tfp_jnp": "vmapped; hand-written jnp densities",
    }
    return [
        Row(
            "ais_throughput",
            workload,
            ours_seconds,
            first - ours_seconds,
            f"tfp {tfp.__version__} ({peers[name]})",
            seconds[name][1],
            quality("lvmjax"),
            quality(name),
            f"tfp compile {seconds[name][0] - seconds[name][1]:.2f} s; mean exact log p(x) {np.mean(exact):.3f}",
        )
        for name in peers
    ]


def _numpyro_model(weight, bias, noise_variance, x=None):
    import numpyro
    import numpyro.distributions as dist

    latent_dim = weight.shape[1]
    z = numpyro.sample("z", dist.Normal(jnp.zeros(latent_dim), 1.0).to_event(1))
    numpyro.sample("x", dist.Normal(weight @ z + bias, jnp.sqrt(noise_variance)).to_event(1), obs=x)


def run_nuts(num_warmup=500, num_samples=1_000, num_chains=4, latent_dim=10, data_dim=50, repeats=3) -> list[Row]:
    """lvmjax's NUTS against NumPyro's on the posterior of one datapoint: one `Row`."""
    params = true_params(latent_dim, data_dim)
    x = sample_data(params, 1)[0]
    key = jax.random.key(RUN_SEED)
    results = {}

    def ours():
        results["lvmjax"] = jax.block_until_ready(
            sample_posterior(
                key, linear_gaussian.model, params, x, num_samples, num_warmup, num_chains, algorithm="nuts"
            )
        )

    fns = {"lvmjax": ours}
    compiling: list[float] = []
    use_numpyro = _has("numpyro")
    if use_numpyro:
        from numpyro.diagnostics import effective_sample_size
        from numpyro.infer import MCMC, NUTS

        mcmc = MCMC(
            NUTS(_numpyro_model),
            num_warmup=num_warmup,
            num_samples=num_samples,
            num_chains=num_chains,
            chain_method="vectorized",
            jit_model_args=True,
            progress_bar=False,
        )

        def theirs():
            begin = _compile_seconds()
            mcmc.run(key, params.weight, params.bias, params.noise_variance, x, extra_fields=("num_steps",))
            results["numpyro"] = jax.block_until_ready(mcmc.get_samples(group_by_chain=True)["z"])
            compiling.append(_compile_seconds() - begin)

        fns["numpyro"] = theirs
    seconds = timed_together(fns, repeats)
    first, ours_seconds = seconds["lvmjax"]
    samples = results["lvmjax"]
    ours_ess = float(jnp.min(samples.info.ess))
    low, high = posterior_sd_range(params)
    workload = (
        f"NUTS posterior of one datapoint, {num_chains} chains × ({num_warmup} warmup + {num_samples:,} draws), "
        f"target acceptance 0.8, diagonal mass matrix; factor analysis d = {latent_dim}, D = {data_dim} "
        f"(posterior sd {low:.3f}–{high:.3f}), float32; quality: min ESS over z (own estimator / NumPyro's on "
        "both), min ESS per second by the common estimator"
    )
    steps = float(jnp.mean(samples.info.mean_integration_steps))
    row = Row("nuts_ess", workload, ours_seconds, first - ours_seconds, "numpyro", None)
    if not use_numpyro:
        row.lvmjax_quality = f"min ESS {ours_ess:.0f} (blackjax), {ours_ess / ours_seconds:.0f}/s"
        row.note = not_installed("numpyro")
        return [row]
    common_ours = float(np.min(effective_sample_size(np.asarray(samples.samples))))
    theirs_samples = np.asarray(results["numpyro"])
    common_theirs = float(np.min(effective_sample_size(theirs_samples)))
    peer_first, theirs_seconds = seconds["numpyro"]
    extra = mcmc.get_extra_fields(group_by_chain=True)
    theirs_steps = float(np.mean(extra["num_steps"])) if "num_steps" in extra else math.nan
    row.peer = f"numpyro {version('numpyro')} (vectorized)"
    row.peer_seconds = theirs_seconds
    row.lvmjax_quality = (
        f"min ESS {ours_ess:.0f} (blackjax) / {common_ours:.0f} (numpyro est.); "
        f"{common_ours / ours_seconds:.0f} ESS/s; {steps:.1f} leapfrog/draw"
    )
    row.peer_quality = (
        f"min ESS {common_theirs:.0f} (numpyro est.); {common_theirs / theirs_seconds:.0f} ESS/s; "
        f"{theirs_steps:.1f} leapfrog/draw"
    )
    steady_compile = float(np.median(compiling[1:])) if len(compiling) > 1 else math.nan
    row.note = (
        f"numpyro first run {peer_first:.2f} s; each later run spends a median {steady_compile:.2f} s of its "
        f"{theirs_seconds:.2f} s compiling (jax.monitoring), {theirs_seconds - steady_compile:.2f} s sampling"
    )
    return [row]


def main(argv=None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("ais", "nuts"), help="run only the AIS or only the NUTS benchmark")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs, measures nothing")
    parser.add_argument("--datapoints", type=int, default=32, help="N of AIS (default 32)")
    parser.add_argument("--steps", type=int, default=1_000, help="T, AIS temperatures (default 1000)")
    parser.add_argument("--chains", type=int, default=16, help="K, AIS chains (default 16)")
    parser.add_argument("--leapfrog", type=int, default=10, help="L, leapfrog steps per AIS transition (default 10)")
    parser.add_argument("--step-size", type=float, default=0.1, help="fixed AIS leapfrog step size (default 0.1)")
    parser.add_argument("--draws", type=int, default=1_000, help="NUTS draws per chain (default 1000)")
    parser.add_argument("--warmup", type=int, default=500, help="NUTS warmup steps (default 500)")
    parser.add_argument("--nuts-chains", type=int, default=4, help="NUTS chains (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each side (default 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows, the machine and the load to FILE")
    args = parser.parse_args(argv)
    if args.quick:
        ais, nuts = QUICK_AIS, QUICK_NUTS
    else:
        ais = dict(
            num_data=args.datapoints,
            num_steps=args.steps,
            num_chains=args.chains,
            num_leapfrog_steps=args.leapfrog,
            step_size=args.step_size,
            repeats=args.repeats,
        )
        nuts = dict(num_warmup=args.warmup, num_samples=args.draws, num_chains=args.nuts_chains, repeats=args.repeats)
    load_before = os.getloadavg()
    rows = []
    if args.only in (None, "ais"):
        rows += run_ais(**ais)
    if args.only in (None, "nuts"):
        rows += run_nuts(**nuts)
    load_after = os.getloadavg()
    print_rows(rows)
    for row in rows:
        if row.note:
            print(f"{row.benchmark} ({row.peer}): {row.note}")
    print(f"load average (1, 5, 15 min): before {load_before}, after {load_after}")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(
                {
                    "machine": f"{machine()}, jax {jax.__version__}",
                    "load_before": load_before,
                    "load_after": load_after,
                    "quick": args.quick,
                    "rows": [dataclasses.asdict(row) | {"ratio": row.ratio} for row in rows],
                },
                file,
                indent=2,
            )
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
