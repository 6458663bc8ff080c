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
# # 3. The evidence lower bound
#
# The seed text turns the importance-sampling identity $p(x) = \mathbb{E}_{q}[p(x, z) / q(z)]$ into a
# bound by Jensen's inequality, since log is concave:
#
# $$\log p(x) = \log \mathbb{E}_{q}\Big[\frac{p(x, z)}{q(z)}\Big] \;\ge\; \mathbb{E}_{q}\Big[\log
# \frac{p(x, z)}{q(z)}\Big] = \text{ELBO}(x; q),$$
#
# and the gap is exactly a KL divergence: $\log p(x) = \text{ELBO} + \mathrm{KL}(q(z) \,\|\, p(z \mid x))$.
# On the linear-Gaussian model (factor analysis), where log p(x), p(z | x), the ELBO of any Gaussian q
# and the KL are all known in closed form, this notebook checks each step numerically:
#
# - Jensen's inequality on samples of the log-weights,
# - the identity log p(x) = ELBO + KL for several q,
# - the bound tightening as q approaches p(z | x), and stopping short when the family of q cannot
#   reach it,
# - the importance-weighted (IWAE) bound, which tightens with the number of samples K instead.

# %%
# %matplotlib inline
import os

import distrax
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import lvmjax
from lvmjax import variational
from lvmjax.models import linear_gaussian

SMALL = os.environ.get("LVMJAX_NOTEBOOK_SMALL") == "1"
NUM_STEPS = 200 if SMALL else 500  # gradient steps on φ
NUM_REPLICATES = 50 if SMALL else 1000  # independent draws of each Monte Carlo bound
IWAE_SAMPLES = (1, 10, 100) if SMALL else (1, 2, 5, 10, 20, 50, 100, 1000)

# %% [markdown]
# ## The model and its exact answers
#
# $$z \sim \mathcal{N}(0, I_2), \qquad x \mid z \sim \mathcal{N}(W z + b, \Psi), \qquad \Psi \text{
# diagonal},$$
#
# so $p(x) = \mathcal{N}(x; b, W W^\top + \Psi)$ and p(z | x) is Gaussian too
# (`linear_gaussian.log_marginal`, `linear_gaussian.posterior`). The two columns of W are nearly
# parallel: both latents push x in similar directions, so given x they trade off against each other
# and the posterior is strongly correlated.

# %%
theta = linear_gaussian.Params(
    weight=jnp.array([[1.0, 0.7], [0.8, 1.0], [1.2, 1.0], [0.5, 0.3], [0.3, 0.6]]),
    bias=jnp.zeros(5),
    noise_variance=jnp.full(5, 0.5),
)
model = linear_gaussian.model
_, x = jax.jit(lvmjax.sample, static_argnums=1)(jax.random.key(0), model, theta)


@jax.jit
def exact_answers(x):
    """log p(x) and p(z | x), in closed form."""
    return linear_gaussian.log_marginal(theta, x), linear_gaussian.posterior(theta, x)


log_px, posterior = exact_answers(x)
log_px = float(log_px)
post_cov = np.asarray(posterior.covariance())
correlation = post_cov[0, 1] / np.sqrt(post_cov[0, 0] * post_cov[1, 1])
print(f"x = {np.round(np.asarray(x), 3)}")
print(f"exact log p(x) = {log_px:.4f}")
print(f"p(z | x): mean {np.round(np.asarray(posterior.mean()), 3)}, correlation of z_1 and z_2 {correlation:.3f}")

# %% [markdown]
# ## Jensen's inequality, on samples
#
# With $w_k = p(x, z_k) / q(z_k)$ and $z_k \sim q$ (`lvmjax.log_weights`), the average of the
# log-weights estimates the ELBO and the log of the average weight estimates log p(x). Take q to be
# the prior, q(z) = p(z): then $\log w_k = \log p(x \mid z_k)$.


# %%
def exact_bound(q):
    """(ELBO, KL(q ‖ p(z | x))) of a Gaussian q, both in closed form."""
    return linear_gaussian.exact_elbo(theta, q, x), q.kl_divergence(posterior)


prior = model.prior(theta)
log_w, (elbo_prior, kl_prior) = jax.jit(
    lambda key: (lvmjax.log_weights(key, model, theta, prior, x, 100_000), exact_bound(prior))
)(jax.random.key(1))
log_w = np.asarray(log_w, np.float64)
mean_of_logs = log_w.mean()
log_of_mean = np.log(np.mean(np.exp(log_w - log_w.max()))) + log_w.max()
print(f"mean of log w  = {mean_of_logs:.3f}   (exact ELBO of q = p(z): {float(elbo_prior):.3f})")
print(f"log of mean w  = {log_of_mean:.3f}   (exact log p(x): {log_px:.3f})")
print(f"Jensen's gap   = {log_of_mean - mean_of_logs:.3f}   (exact KL(p(z) ‖ p(z | x)): {float(kl_prior):.3f})")
assert mean_of_logs < log_of_mean

fig, axis = plt.subplots(figsize=(7, 3.5), layout="constrained")
axis.hist(log_w, bins=200, range=(np.quantile(log_w, 0.005), log_w.max()), color="0.6")
axis.axvline(mean_of_logs, color="C0", label="mean of log w ≈ ELBO")
axis.axvline(log_of_mean, color="C3", label="log of mean w ≈ log p(x)")
axis.set_xlabel("log w = log p(x, z) − log q(z),  z ~ q = p(z)")
axis.legend()
plt.show()

# %% [markdown]
# The z that explain x badly have log-weights tens of nats below the rest: they drag the mean of log w
# down, but add almost nothing to the mean of w, which the largest weights carry. That is the gap.
#
# ## log p(x) = ELBO + KL(q ‖ p(z | x)), for any q
#
# Below, five Gaussians q: the prior, three that are wrong in different ways, and the posterior itself.
# For each, the ELBO in closed form (`linear_gaussian.exact_elbo`), the KL to the posterior in closed
# form (distrax), their sum, and the Monte Carlo ELBO of `lvmjax.elbo` ($\frac{1}{K} \sum_k \log w_k$,
# here the mean of many independent draws with K = 100, ± its standard error).

# %%
post_mean = posterior.mean()
candidates = {
    "q = p(z)": prior,
    "right mean, too wide": distrax.MultivariateNormalDiag(post_mean, jnp.ones(2)),
    "right mean, no correlation": distrax.MultivariateNormalDiag(post_mean, jnp.sqrt(jnp.diag(post_cov))),
    "shifted by 0.5": distrax.MultivariateNormalFullCovariance(post_mean + 0.5, posterior.covariance()),
    "q = p(z | x)": posterior,
}
keys = jax.random.split(jax.random.key(2), NUM_REPLICATES)


@jax.jit
def bound_table(keys):
    """For each q: its exact ELBO and KL, and one draw of the Monte Carlo ELBO with K = 100 per key."""
    return {
        name: (*exact_bound(q), jax.vmap(lambda key, q=q: lvmjax.elbo(key, model, theta, q, x, 100))(keys))
        for name, q in candidates.items()
    }


print(f"{'q':28s} {'ELBO':>8s} {'KL':>7s} {'ELBO + KL':>9s} {'MC ELBO':>8s} {'± se':>6s}")
table = bound_table(keys)
for name in candidates:
    elbo, kl, draws = float(table[name][0]), float(table[name][1]), np.asarray(table[name][2])
    stderr = draws.std(ddof=1) / np.sqrt(len(draws))
    print(f"{name:28s} {elbo:8.4f} {kl:7.4f} {elbo + kl:9.4f} {draws.mean():8.4f} {stderr:6.4f}")
    assert abs(elbo + kl - log_px) < 1e-4 * abs(log_px)
    assert abs(draws.mean() - elbo) < 4 * stderr + 1e-5
print(f"{'exact log p(x)':28s} {'':8s} {'':7s} {log_px:9.4f}")

# %% [markdown]
# Every row adds up to log p(x), whatever q is; only the split between ELBO and KL changes, and the
# KL is 0 only for q = p(z | x). Since log p(x) does not depend on q, **maximizing the ELBO over q
# minimizes KL(q ‖ p(z | x))**, without ever evaluating p(z | x).
#
# ## The bound tightens as q approaches the posterior
#
# Slide q along a path from the prior (t = 0) to the posterior (t = 1): the mean from 0 to E[z | x],
# the Cholesky factor of the covariance from I to that of p(z | x).

# %%
post_tril = jnp.linalg.cholesky(posterior.covariance())
path = np.linspace(0, 1, 41)


def along_path(t):
    return exact_bound(distrax.MultivariateNormalTri(t * post_mean, (1 - t) * jnp.eye(2) + t * post_tril))


path_elbo, path_kl = (np.asarray(values) for values in jax.jit(jax.vmap(along_path))(jnp.asarray(path)))
print(
    f"t = 0: ELBO {path_elbo[0]:.3f}, KL {path_kl[0]:.3f};  t = 1: ELBO {path_elbo[-1]:.4f}, "
    f"KL {path_kl[-1]:.1e};  log p(x) {log_px:.4f}"
)
assert np.all(path_elbo <= log_px + 1e-4)
assert np.all(np.diff(path_elbo) > 0) and abs(path_elbo[-1] - log_px) < 1e-4

fig, axis = plt.subplots(figsize=(7, 3.5), layout="constrained")
axis.plot(path, path_elbo, label="ELBO(q_t)")
axis.axhline(log_px, color="k", linestyle="--", label="log p(x)")
axis.fill_between(path, path_elbo, log_px, color="C3", alpha=0.2, label="KL(q_t ‖ p(z | x))")
axis.set_xlabel("t: q_t from p(z) (t = 0) to p(z | x) (t = 1)")
axis.set_ylabel("nats")
axis.legend()
plt.show()

# %% [markdown]
# ## Maximizing the ELBO over a family q(z; φ)
#
# In practice p(z | x) is unknown and q is searched for within a family by stochastic gradient ascent
# on the Monte Carlo ELBO (reparameterized: z = μ + L ε, so the gradient flows through the samples),
# here Adam with a step size that decays to a hundredth of its start, so that the Monte Carlo noise
# of the gradients averages out. Two families from `lvmjax.variational`:
#
# - `full_rank_gaussian`: N(μ, L Lᵀ), which contains the posterior, so the KL can reach 0;
# - `mean_field_gaussian`: N(μ, diag σ²), which cannot represent the correlation of z_1 and z_2. The best
#   it can do has the right mean and variances $1 / \Lambda_{jj}$ (Λ the posterior precision), and its
#   KL to the posterior, $-\tfrac{1}{2}\log(1 - \rho^2)$ for correlation ρ, is the gap that remains: the
#   *approximation gap* of the family.

# %%
families = {
    "full-rank Gaussian": variational.full_rank_gaussian(2),
    "mean-field Gaussian": variational.mean_field_gaussian(2),
}
optimizer = optax.adam(optax.cosine_decay_schedule(0.1, NUM_STEPS, alpha=0.01))


def fit(family, key):
    """NUM_STEPS Adam steps on φ of the Monte Carlo ELBO (K = 16); the exact ELBO after each step."""

    def negative_elbo(phi, key):
        return -lvmjax.elbo(key, model, theta, family.distribution(phi), x, num_samples=16)

    def step(carry, key):
        phi, opt_state = carry
        grads = jax.grad(negative_elbo)(phi, key)
        updates, opt_state = optimizer.update(grads, opt_state, phi)
        phi = optax.apply_updates(phi, updates)
        return (phi, opt_state), linear_gaussian.exact_elbo(theta, family.distribution(phi), x)

    phi = family.init(key)
    (phi, _), trace = jax.lax.scan(step, (phi, optimizer.init(phi)), jax.random.split(key, NUM_STEPS))
    return phi, trace


fits = jax.jit(lambda key: {name: fit(family, key) for name, family in families.items()})(jax.random.key(3))
fitted, traces = {}, {}
for name, (phi, trace) in fits.items():
    fitted[name], traces[name] = families[name].distribution(phi), np.asarray(trace)
    print(
        f"{name:20s}: ELBO {traces[name][-1]:.4f}, KL(q ‖ p(z | x)) = log p(x) − ELBO = {log_px - traces[name][-1]:.4f}"
    )
precision = np.linalg.inv(post_cov)
best_mean_field = distrax.MultivariateNormalDiag(post_mean, jnp.asarray(1 / np.sqrt(np.diag(precision))))
best_gap = float(jax.jit(exact_bound)(best_mean_field)[1])
print(
    f"best mean-field q in closed form: KL = {best_gap:.4f} = −½ log(1 − ρ²) = {-0.5 * np.log(1 - correlation**2):.4f}"
)
assert log_px - traces["full-rank Gaussian"][-1] < 0.01
assert abs((log_px - traces["mean-field Gaussian"][-1]) - best_gap) < 0.02

# %% [markdown]
# Left, the exact ELBO of the current q during the optimization; right, the contours of p(z | x) and of
# the two fitted q. The mean-field q sits on the posterior's mean but, unable to tilt, shrinks to fit
# inside it: KL(q ‖ p) penalizes q for putting mass where p has little, not for missing some of p.

# %%
grid_1d = np.linspace(-2.5, 2.5, 120)
grid = jnp.asarray(np.stack(np.meshgrid(grid_1d, grid_1d), -1).reshape(-1, 2), jnp.float32)
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
for index, (name, trace) in enumerate(traces.items()):
    axes[0].plot(np.arange(1, NUM_STEPS + 1), trace, color=f"C{index}", label=name)
axes[0].axhline(log_px, color="k", linestyle="--", label="log p(x)")
axes[0].set_ylim(log_px - 3, log_px + 0.3)
axes[0].set_xlabel("Adam step on φ")
axes[0].set_ylabel("ELBO(q_φ)")
axes[0].legend()
shown = {"p(z | x)": posterior, **fitted}
densities = jax.jit(lambda shown: {name: jnp.exp(jax.vmap(q.log_prob)(grid)) for name, q in shown.items()})(shown)
for index, name in enumerate(shown):
    density = np.asarray(densities[name]).reshape(120, 120)
    axes[1].contour(
        grid_1d, grid_1d, density, levels=density.max() * np.array([0.1, 0.4, 0.8]), colors=["k", "C0", "C1"][index]
    )
    axes[1].plot([], [], color=["k", "C0", "C1"][index], label=name)
axes[1].set_xlabel("z₁")
axes[1].set_ylabel("z₂")
axes[1].set_aspect("equal")
axes[1].legend()
plt.show()

# %% [markdown]
# ## The IWAE bound: tightening with K instead
#
# Jensen's inequality applied to an average of K weights instead of one gives the importance-weighted
# bound of Burda et al. (2016),
#
# $$\text{IWAE}_K(x) = \mathbb{E}_{z_1, \ldots, z_K \sim q}\Big[\log \frac{1}{K} \sum_{k=1}^K
# \frac{p(x, z_k)}{q(z_k)}\Big], \qquad \text{ELBO} = \text{IWAE}_1 \le \text{IWAE}_K \le
# \text{IWAE}_{K'} \le \log p(x) \text{ for } K \le K'.$$
#
# It tightens even with a q that cannot reach the posterior: here the fitted mean-field q, whose ELBO
# falls short of log p(x) by its approximation gap. Each point is the mean of many independent draws of
# `lvmjax.iwae_bound`.

# %%
q_mean_field = fitted["mean-field Gaussian"]


@jax.jit
def iwae_draws(keys):
    """For each K, one draw of the IWAE bound per key."""
    return [
        jax.vmap(lambda key, k=k: lvmjax.iwae_bound(key, model, theta, q_mean_field, x, k))(keys) for k in IWAE_SAMPLES
    ]


iwae_mean, iwae_se = [], []
for num_samples, bounds in zip(IWAE_SAMPLES, iwae_draws(keys), strict=True):
    bounds = np.asarray(bounds)
    iwae_mean.append(bounds.mean())
    iwae_se.append(bounds.std(ddof=1) / np.sqrt(len(bounds)))
    print(
        f"K = {num_samples:4d}: IWAE_K = {iwae_mean[-1]:.4f} ± {iwae_se[-1]:.4f}   "
        f"(log p(x) − IWAE_K = {log_px - iwae_mean[-1]:.4f})"
    )
iwae_mean, iwae_se = np.array(iwae_mean), np.array(iwae_se)
elbo_mean_field = float(jax.jit(exact_bound)(q_mean_field)[0])
assert abs(iwae_mean[0] - elbo_mean_field) < 4 * iwae_se[0]  # IWAE_1 is the ELBO
assert np.all(np.diff(iwae_mean) > -3 * np.sqrt(iwae_se[1:] ** 2 + iwae_se[:-1] ** 2))  # rises with K
assert np.all(iwae_mean < log_px + 4 * iwae_se)  # and stays below log p(x)
assert log_px - iwae_mean[-1] < 0.2 * (log_px - elbo_mean_field)  # most of the gap closed

fig, axis = plt.subplots(figsize=(7, 3.5), layout="constrained")
axis.errorbar(IWAE_SAMPLES, iwae_mean, yerr=2 * iwae_se, marker="o", capsize=3, label="IWAE_K, mean-field q")
axis.axhline(log_px, color="k", linestyle="--", label="log p(x)")
axis.axhline(elbo_mean_field, color="C1", linestyle=":", label="ELBO of the mean-field q")
axis.set_xscale("log")
axis.set_xlabel("K")
axis.set_ylabel("nats")
axis.legend()
plt.show()

# %% [markdown]
# ## What to take away
#
# The ELBO is what is left of log p(x) after pushing the log inside the expectation, and the amount
# lost is exactly KL(q ‖ p(z | x)): the table shows the two always sum to log p(x). That identity is
# why the ELBO is a sensible objective: raising it over q can only move q toward the posterior, and
# when the family contains the posterior the bound becomes an equality. When it does not, as with a
# mean-field q and a correlated posterior, the optimum keeps a gap that no amount of optimization
# removes; more samples in the IWAE bound close most of it without changing the family, at K times
# the cost per evaluation.
