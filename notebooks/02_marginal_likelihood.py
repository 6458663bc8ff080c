# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2. The marginal likelihood, and why it is hard
#
# Learning a latent variable model by maximum likelihood needs $\log p_\theta(x) = \log \sum_z
# p_\theta(x, z)$ for every datapoint. The seed text's argument, computed on a model small enough to
# check every step:
#
# - with |Z| binary latents the sum has $2^{|Z|}$ terms: exact enumeration works for 12 latents and
#   doubles in cost with every one added;
# - almost all of those terms are negligible: p(z | x) sits on a handful of states;
# - so **naive Monte Carlo**, $p(x) = 2^{|Z|}\, \mathbb{E}_{z \sim \text{Uniform}}[p(x, z)]$ (the seed
#   text's "|Z| E[p(x, z)]", with |Z| there counting the states) or $\mathbb{E}_{z \sim p(z)}[p(x \mid z)]$,
#   almost never draws a state that matters, and its estimate is wildly variable;
# - **importance sampling**, $p(x) = \mathbb{E}_{z \sim q}[p(x, z) / q(z)]$ with q close to p(z | x),
#   is accurate with few samples.
#
# Each estimator's spread is measured over many independent runs, as the number of samples K grows,
# against the exact value.

# %%
# %matplotlib inline
import os
import time

import distrax
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from jax.scipy.special import logsumexp

import lvmjax

SMALL = os.environ.get("LVMJAX_NOTEBOOK_SMALL") == "1"
NUM_REPLICATES = 20 if SMALL else 200  # independent runs of each estimator
MAX_SAMPLES = 1_000 if SMALL else 10_000  # the largest K
TIMED_LATENTS = (8, 10, 12) if SMALL else (8, 10, 12, 14, 16, 18, 20)  # |Z| for the cost of enumeration

# %% [markdown]
# ## A model with binary latents
#
# z is a vector of |Z| = 12 binary features, each present with a small prior probability (the seed
# text's hair colour and eye colour), and x is a 16-dimensional measurement of them with Gaussian noise:
#
# $$z_j \sim \text{Bernoulli}(\rho_j), \qquad x \mid z \sim \mathcal{N}(W z + b, \sigma^2 I).$$
#
# A `LatentVariableModel` is just the two functions prior(θ) and likelihood(θ, z), returning distrax
# distributions.

# %%
NUM_LATENTS, DATA_DIM, MAX_LATENTS = 12, 16, 22


def prior(params):
    logits = params["prior_logits"]
    return distrax.Independent(distrax.Bernoulli(logits=logits, dtype=logits.dtype), 1)


def likelihood(params, z):
    return distrax.MultivariateNormalDiag(params["weight"] @ z + params["bias"], params["noise_scale"])


model = lvmjax.LatentVariableModel(prior, likelihood)

rng = np.random.default_rng(0)
presence = rng.uniform(0.1, 0.3, MAX_LATENTS)  # ρ_j
all_params = {  # enough columns for the largest |Z| timed below; the model itself uses the first 12
    "prior_logits": jnp.asarray(np.log(presence) - np.log1p(-presence), jnp.float32),
    "weight": jnp.asarray(rng.normal(size=(DATA_DIM, MAX_LATENTS)), jnp.float32),
    "bias": jnp.zeros(DATA_DIM, jnp.float32),
    "noise_scale": jnp.full(DATA_DIM, 1.0, jnp.float32),
}


def first_latents(params, num_latents):
    return {**params, "prior_logits": params["prior_logits"][:num_latents], "weight": params["weight"][:, :num_latents]}


theta = first_latents(all_params, NUM_LATENTS)
z_true, x = lvmjax.sample(jax.random.key(0), model, theta)
print("the z that generated x:", np.asarray(z_true).astype(int))

# %% [markdown]
# ## Exact enumeration: 2^|Z| terms
#
# $\log p(x) = \log \sum_{z \in \{0, 1\}^{12}} p(x, z)$ is a log-sum-exp over 4096 states
# (`lvmjax.log_marginal_exact`). Below, the same computation timed for models with more latents: every
# latent added doubles the number of states, and the time follows.

# %%
log_marginal_exact = jax.jit(lvmjax.log_marginal_exact, static_argnums=0)
exact = float(log_marginal_exact(model, theta, x))
print(f"exact log p(x) = {exact:.4f}  (a sum over 2^{NUM_LATENTS} = {2**NUM_LATENTS} states)")

seconds = []
for num_latents in TIMED_LATENTS:
    params_d = first_latents(all_params, num_latents)
    log_marginal_exact(model, params_d, x).block_until_ready()  # compile
    runs = []
    for _ in range(3 if num_latents < 16 else 1):
        start = time.perf_counter()
        log_marginal_exact(model, params_d, x).block_until_ready()
        runs.append(time.perf_counter() - start)
    seconds.append(min(runs))
    print(f"|Z| = {num_latents:2d}: {2**num_latents:9d} states, {1e3 * seconds[-1]:8.2f} ms")
seconds_per_state = seconds[-1] / 2 ** TIMED_LATENTS[-1]
years = seconds_per_state * 2.0**64 / (3600 * 24 * 365)
print(f"at {1e9 * seconds_per_state:.1f} ns per state, 64 binary latents would take {years:.1e} years")

fig, axis = plt.subplots(figsize=(6, 3.5), layout="constrained")
axis.semilogy(TIMED_LATENTS, seconds, marker="o", label="measured")
axis.semilogy(TIMED_LATENTS, seconds_per_state * 2.0 ** np.array(TIMED_LATENTS), "--", label="∝ 2^|Z|")
axis.set_xlabel("number of binary latents |Z|")
axis.set_ylabel("seconds for log p(x)")
axis.legend()
plt.show()

# %% [markdown]
# ## Where the terms are
#
# The posterior $p(z \mid x) = p(x, z) / p(x)$ over all 4096 states (`lvmjax.latent_states` lists
# them, in the order `log_marginal_exact` sums them) shows why summing them is wasteful: almost all of
# its mass is on a few states, and the rest contribute next to nothing.

# %%
states = np.asarray(lvmjax.latent_states(model, theta))  # the 4096 vectors z ∈ {0, 1}^12
log_joints = jax.jit(jax.vmap(lambda z: lvmjax.log_joint(model, theta, x, z)))(states)
posterior = np.exp(np.asarray(log_joints, np.float64) - exact)
order = np.argsort(-posterior)
cumulative = np.cumsum(posterior[order])
needed = int(np.searchsorted(cumulative, 0.99)) + 1
print(f"Σ_z p(z | x) = {posterior.sum():.6f}")
print(
    f"the {needed} most probable states of {2**NUM_LATENTS} hold 99% of p(z | x); "
    f"the most probable is the true z: {bool(np.all(states[order[0]] == np.asarray(z_true)))}"
)
print(f"p(x, z) of the median state is 10^{(np.median(np.asarray(log_joints)) - exact) / np.log(10):.1f} × p(x)")
assert needed < 0.01 * 2**NUM_LATENTS

fig, axis = plt.subplots(figsize=(6, 3.5), layout="constrained")
axis.semilogy(np.arange(1, 2**NUM_LATENTS + 1), posterior[order])
axis.set_xscale("log")
axis.set_xlabel("state z, from most to least probable")
axis.set_ylabel("p(z | x)")
plt.show()

# %% [markdown]
# ## Three Monte Carlo estimators
#
# All three are importance sampling, $\hat p(x) = \frac{1}{K} \sum_{k} w_k$ with
# $w_k = p(x, z_k) / q(z_k)$ and $z_k \sim q$, which is unbiased for any q that covers p(z | x):
#
# | estimator | proposal q(z) | weight $w_k$ |
# | --- | --- | --- |
# | naive MC, uniform (the seed text's) | uniform over all states | $2^{\lvert Z \rvert}\, p(x, z_k)$ |
# | naive MC, prior | p(z) | $p(x \mid z_k)$ |
# | importance sampling | q close to p(z \| x) | $p(x, z_k) / q(z_k)$ |
#
# The best q is p(z | x) itself: then every $w_k = p(x)$ and one sample is exact. Finding a good q is
# the subject of the next notebook (the ELBO); here we take a product of independent Bernoullis with
# the exact posterior marginals $p(z_j = 1 \mid x)$, which this small model lets us compute. All three
# proposals are products of Bernoullis, so one compiled function draws the K log-weights
# (`lvmjax.log_weights`) for any of them. By lvmjax's sampling convention the first k of K draws are
# the draws of a run with k samples, so one run with K = 10,000 gives the estimates for every smaller K.

# %%
marginals = posterior @ states  # p(z_j = 1 | x)
proposal_logits = {
    "naive MC, uniform": jnp.zeros(NUM_LATENTS, jnp.float32),
    "naive MC, prior": theta["prior_logits"],
    "importance sampling": jnp.asarray(np.log(marginals) - np.log1p(-marginals), jnp.float32),
}


@jax.jit
def replicate_log_weights(logits, keys):
    """log w_k for k = 1 … MAX_SAMPLES, one row per key: (replicates, MAX_SAMPLES)."""
    q = distrax.Independent(distrax.Bernoulli(logits=logits, dtype=jnp.float32), 1)
    return jax.lax.map(lambda key: lvmjax.log_weights(key, model, theta, q, x, MAX_SAMPLES), keys)


sample_sizes = np.unique(np.logspace(0, np.log10(MAX_SAMPLES), 13).astype(int))
keys = jax.random.split(jax.random.key(1), NUM_REPLICATES)
estimates = {}  # name -> (len(sample_sizes), NUM_REPLICATES) estimates of log p(x)
for name, logits in proposal_logits.items():
    log_w = np.asarray(replicate_log_weights(logits, keys), np.float64)
    estimates[name] = np.stack([logsumexp(log_w[:, :k], axis=1) - np.log(k) for k in sample_sizes])

for name, values in estimates.items():
    missed = np.mean(values < exact - np.log(10), axis=1)  # p̂(x) below p(x) / 10
    print(
        f"{name:20s} K = 10: mean log p̂ {values[sample_sizes == 10].mean():8.3f}, spread (sd) "
        f"{values[sample_sizes == 10].std():6.3f}, runs with p̂ < p/10: {100 * missed[sample_sizes == 10][0]:3.0f}%"
        f" | K = {MAX_SAMPLES}: mean {values[-1].mean():8.3f}, sd {values[-1].std():6.3f}"
    )
print(f"{'exact':20s} {exact:.3f}")

# %% [markdown]
# Left: the mean of $\log \hat p(x)$ over the runs with ± one standard deviation, against the exact
# value; right: the standard deviation of $\log \hat p(x)$ as K grows. The naive estimators are unbiased
# for p(x), yet almost every run *under*-estimates it: the rare runs that hit a probable state
# overestimate by a lot, and the average of p̂ is right only over very many runs. Taking the log adds
# Jensen's downward bias, $\mathbb{E}[\log \hat p] \le \log \mathbb{E}[\hat p] = \log p$, large whenever p̂
# is variable.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
for index, (name, values) in enumerate(estimates.items()):
    mean, spread = values.mean(axis=1), values.std(axis=1)
    axes[0].plot(sample_sizes, mean, marker=".", color=f"C{index}", label=name)
    axes[0].fill_between(sample_sizes, mean - spread, mean + spread, color=f"C{index}", alpha=0.2)
    axes[1].loglog(sample_sizes, spread, marker=".", color=f"C{index}", label=name)
axes[0].axhline(exact, color="k", linestyle="--", label="exact log p(x)")
axes[0].set_xscale("log")
axes[0].set_ylim(exact - 30, exact + 5)
axes[0].set_ylabel("log p̂(x), mean ± sd over runs")
last_spread = estimates["importance sampling"][-1].std()
axes[1].loglog(sample_sizes, last_spread * np.sqrt(sample_sizes[-1] / sample_sizes), "k:", label="∝ 1/√K")
axes[1].set_ylabel("sd of log p̂(x) over runs")
for axis in axes:
    axis.set_xlabel("K (samples)")
    axis.legend(fontsize=8)
plt.show()

spread = {name: values.std(axis=1) for name, values in estimates.items()}
bias = {name: values.mean(axis=1) - exact for name, values in estimates.items()}
beyond_one = sample_sizes >= 10
assert np.all(spread["importance sampling"][beyond_one] < spread["naive MC, prior"][beyond_one])
assert np.all(spread["importance sampling"][beyond_one] < spread["naive MC, uniform"][beyond_one])
assert abs(bias["importance sampling"][-1]) < 0.05
assert bias["naive MC, uniform"][sample_sizes == 10][0] < -1  # low by more than a nat
assert np.all(bias["importance sampling"] < 0.02)  # Jensen: never above, up to Monte Carlo error

# %% [markdown]
# ## Knowing when not to trust an estimate
#
# A single run does not show its own error unless it reports it. `lvmjax.log_marginal_naive_mc` and
# `lvmjax.log_marginal_is` return a `MarginalEstimate` with the delta-method standard error and the
# effective sample size $\text{ESS} = (\sum_k w_k)^2 / \sum_k w_k^2$, the number of draws that
# effectively carry the estimate. One run of each with K = 1000:

# %%
NUM_SAMPLES = 1000
q_importance = distrax.Independent(
    distrax.Bernoulli(logits=proposal_logits["importance sampling"], dtype=jnp.float32), 1
)
single_runs = {
    "naive MC, uniform": jax.jit(
        lambda key: lvmjax.log_marginal_naive_mc(key, model, theta, x, NUM_SAMPLES, proposal="uniform")
    ),
    "naive MC, prior": jax.jit(lambda key: lvmjax.log_marginal_naive_mc(key, model, theta, x, NUM_SAMPLES)),
    "importance sampling": jax.jit(lambda key: lvmjax.log_marginal_is(key, model, theta, q_importance, x, NUM_SAMPLES)),
}
ess = {}
print(f"{'':20s} {'log p̂(x)':>9s} {'± se':>7s} {'error':>7s} {'ESS':>8s}")
for name, run in single_runs.items():
    result = run(jax.random.key(2))
    ess[name] = float(result.ess)
    print(
        f"{name:20s} {float(result.log_marginal):9.3f} {float(result.stderr):7.3f} "
        f"{float(result.log_marginal) - exact:7.3f} {ess[name]:8.1f}"
    )
print(f"{'exact':20s} {exact:9.3f}")
assert ess["importance sampling"] > 10 * max(ess["naive MC, uniform"], ess["naive MC, prior"])

# %% [markdown]
# ## What to take away
#
# The marginal likelihood is a sum (or integral) over every latent state, and the number of states is
# exponential in the number of latents: the exact answer is in reach for 12 binary latents and out of
# reach long before 64. Sampling replaces the sum by an average, but *which* distribution the samples
# come from decides everything: p(x, z) is negligible almost everywhere, so uniform or prior samples
# rarely land on the few states that carry p(z | x), and naive Monte Carlo is unbiased in principle yet
# low by nats in almost every run. Importance sampling from a q near the posterior puts the samples
# where the mass is, and its effective sample size says so. Getting such a q is the job of the ELBO.
