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
# # 8. Beyond the bound: AIS, BDMC and MCMC
#
# The seed texts set variational inference against Markov chain Monte Carlo: "accurate but
# computationally expensive". This notebook makes that sentence concrete, with answers known exactly:
#
# 1. on factor analysis with a 10-dimensional latent, where log p(x) is exact, importance sampling (IS)
#    from the prior against annealed importance sampling (AIS) from the prior at the same number of
#    log-joint evaluations, and AIS's error shrinking as the number of temperatures grows;
# 2. bidirectional Monte Carlo (BDMC) on data simulated from the model, whose two sides bracket log p(x)
#    and close in on it;
# 3. a two-mode, non-Gaussian posterior whose log p(x) is known by quadrature: the ELBO of a Gaussian q
#    stays below it, AIS reaches it, and NUTS draws from both modes;
# 4. and the seconds each estimate took, after compilation.

# %%
# %matplotlib inline
import os
import time

import distrax
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from scipy.special import logsumexp

import lvmjax
from lvmjax import mcmc, variational
from lvmjax.models import linear_gaussian

SMALL = os.environ.get("LVMJAX_NOTEBOOK_SMALL") == "1"
NUM_TEMPERATURES = (10, 300) if SMALL else (3, 10, 30, 100, 300, 1000, 3000)  # T of AIS and BDMC
NUM_CHAINS = 32  # K, the AIS chains of each run
NUM_LEAPFROG_STEPS = 10  # L, per HMC transition of AIS (lvmjax's default)
FIT_STEPS = 300 if SMALL else 1000  # Adam steps of the Gaussian q of section 3
NUTS_SAMPLES, NUTS_WARMUP, NUTS_CHAINS = (1000, 200, 4) if SMALL else (2000, 500, 4)

timings = {}  # seconds of each estimate, after compilation: the table of section 4


def compile_and_run(name, function, *args):
    """Compiles `function` for `args` by jax.jit and runs it; under a `name`, runs it twice more and records
    the fastest of the three runs' seconds (the machine may be busy with other work)."""
    compiled = jax.jit(function).lower(*args).compile()
    seconds = []
    for _ in range(1 if name is None else 3):
        start = time.perf_counter()
        result = jax.block_until_ready(compiled(*args))
        seconds.append(time.perf_counter() - start)
    if name is not None:
        timings[name] = min(seconds)
    return result


# %% [markdown]
# ## 1. AIS against importance sampling, where log p(x) is exact
#
# Factor analysis, $z \sim \mathcal{N}(0, I_{10})$, $x \mid z \sim \mathcal{N}(W z + b, \Psi)$ with
# D = 20 observed dimensions and a small Ψ, so that p(z | x) is far narrower than the prior: a draw of
# the prior rarely lands where the posterior is. IS from a proposal q needs about exp KL(p(z | x) ‖ q)
# draws before its estimate settles (Chatterjee & Diaconis 2018); with q the prior, that is tens of
# millions of draws here, more than any budget below. `linear_gaussian.log_marginal` gives log p(x) in
# closed form.
#
# AIS (Neal 2001) moves K chains along the temperatures $0 = \beta_0 < \dots < \beta_T = 1$ of
# $f_t(z) = p(z)^{1-\beta_t}\, p(x, z)^{\beta_t}$, from the prior to the posterior, one HMC transition
# of L leapfrog steps per temperature, and multiplies each chain's weight by
# $f_t(z_{t-1}) / f_{t-1}(z_{t-1})$ on the way; the mean weight is unbiased for p(x). A run costs about
# K·T·(L + 1) evaluations of log p(x, z) (a gradient counted as one), and IS from the prior gets as many
# draws. The pair (z, x) is drawn from the model: section 2 uses z.

# %%
rng = np.random.default_rng(0)
LATENT_DIM, DATA_DIM = 10, 20
theta = linear_gaussian.Params(
    weight=jnp.asarray(rng.normal(size=(DATA_DIM, LATENT_DIM)), jnp.float32),
    bias=jnp.asarray(rng.normal(size=DATA_DIM), jnp.float32),
    noise_variance=jnp.asarray(0.3 * rng.uniform(0.5, 1.5, size=DATA_DIM), jnp.float32),
)
model = linear_gaussian.model
z_true, x = jax.jit(lvmjax.sample, static_argnums=1)(jax.random.key(1), model, theta)
exact = float(compile_and_run("factor analysis: exact log p(x)", linear_gaussian.log_marginal, theta, x))
posterior_std = np.sqrt(np.diag(np.asarray(linear_gaussian.posterior(theta, x).covariance())))
print(
    f"exact log p(x) = {exact:.3f}; posterior standard deviations {posterior_std.min():.3f}–{posterior_std.max():.3f}"
)
posterior_to_prior = float(linear_gaussian.posterior(theta, x).kl_divergence(linear_gaussian.prior(theta)))
print(f"KL(p(z | x) ‖ p(z)) = {posterior_to_prior:.1f} nats: e^KL = {np.exp(posterior_to_prior):.1e} draws")
assert posterior_std.max() < 0.5  # p(z | x) is much narrower than the prior N(0, I) in every direction
largest_budget = NUM_CHAINS * max(NUM_TEMPERATURES) * (NUM_LEAPFROG_STEPS + 1)
assert np.exp(posterior_to_prior) > 10 * largest_budget  # more than any budget of importance sampling below

# %% [markdown]
# The runs of AIS come from `lvmjax.bdmc` (section 2), whose lower side *is* forward AIS with the first
# half of its key; one standalone `log_marginal_ais` at the largest T checks that, and is the one timed.

# %%
KEY = jax.random.key(2)
key_forward, _ = jax.random.split(KEY)
bdmc_runs, is_runs = {}, {}
for steps in NUM_TEMPERATURES:
    budget = NUM_CHAINS * steps * (NUM_LEAPFROG_STEPS + 1)
    last = steps == NUM_TEMPERATURES[-1]
    bdmc_runs[steps] = compile_and_run(
        f"factor analysis: BDMC, T = {steps}" if last else None,
        lambda key, steps=steps: lvmjax.bdmc(key, model, theta, x, z_true, steps, NUM_CHAINS),
        KEY,
    )
    is_runs[steps] = compile_and_run(
        f"factor analysis: IS from the prior, {budget} draws" if last else None,
        lambda key, budget=budget: lvmjax.log_marginal_is(key, model, theta, linear_gaussian.prior(theta), x, budget),
        jax.random.key(3),
    )
T_MAX = NUM_TEMPERATURES[-1]
ais = compile_and_run(
    f"factor analysis: AIS, T = {T_MAX}",
    lambda key: lvmjax.log_marginal_ais(key, model, theta, x, T_MAX, NUM_CHAINS),
    key_forward,
)
np.testing.assert_allclose(ais.log_marginal, bdmc_runs[T_MAX].lower.log_marginal, rtol=1e-6)


def summary(estimate):
    return float(estimate.log_marginal), float(estimate.stderr), float(estimate.ess)


print(" T     evaluations | AIS: error    se     ESS | IS from the prior: error    se     ESS")
ais_errors, ais_stderrs, is_errors, is_stderrs = [], [], [], []
for steps in NUM_TEMPERATURES:
    (a, a_se, a_ess), (i, i_se, i_ess) = summary(bdmc_runs[steps].lower), summary(is_runs[steps])
    ais_errors.append(a - exact), ais_stderrs.append(a_se), is_errors.append(i - exact), is_stderrs.append(i_se)
    evaluations = NUM_CHAINS * steps * (NUM_LEAPFROG_STEPS + 1)
    print(
        f"{steps:5d} {evaluations:10d} | {a - exact:9.3f} {a_se:6.3f} {a_ess:6.1f}"
        f" | {i - exact:22.3f} {i_se:6.3f} {i_ess:6.1f}"
    )
ais_errors, ais_stderrs, is_errors, is_stderrs = map(np.asarray, (ais_errors, ais_stderrs, is_errors, is_stderrs))

# At the largest T, AIS is within 4 of its reported standard errors of the exact value, and that
# standard error is a useful one (not a vacuous few nats).
assert abs(ais_errors[-1]) <= 4 * ais_stderrs[-1] and ais_stderrs[-1] < 1.0
# IS from the prior with as many evaluations is far below, and its reported standard error does not say so.
assert is_errors[-1] < ais_errors[-1] - 5 and abs(is_errors[-1]) > 4 * is_stderrs[-1]
# With few temperatures AIS is biased low by more than its own standard error shows; its error shrinks with T.
assert ais_errors[0] < -4 * ais_stderrs[0]
assert abs(ais_errors[-1]) < abs(ais_errors[0]) / 5 and abs(ais_errors[1]) < abs(ais_errors[0])

# %%
fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
ax.plot(NUM_TEMPERATURES, np.abs(ais_errors), "o-", label="AIS: |error|")
ax.plot(NUM_TEMPERATURES, ais_stderrs, "o--", label="AIS: reported standard error")
ax.plot(NUM_TEMPERATURES, np.abs(is_errors), "s-", label="IS from the prior, same evaluations: |error|")
ax.set(xscale="log", yscale="log", xlabel="temperatures T", ylabel="nats")
ax.set_title(f"log p(x) of factor analysis (d = {LATENT_DIM}), K = {NUM_CHAINS} chains")
ax.legend()
plt.show()

# %% [markdown]
# With few temperatures, one chain's weight dominates (ESS ≈ 1) and the reported standard error, computed
# from those same weights, cannot see the bias: it is small where the error is large. With enough
# temperatures the error falls inside a few standard errors. Importance sampling from the prior, given
# the same number of evaluations, stays ten nats or more short, with a standard error as small as AIS's.
# (At T = 3, AIS is even worse than IS: too few temperatures, and each is too large a step.)
#
# ## 2. BDMC: a bracket from both sides
#
# AIS's log p̂(x) is a stochastic *lower* bound: E[log p̂(x)] ≤ log p(x) by Jensen. Bidirectional Monte
# Carlo (Grosse, Ghahramani & Adams 2015) runs the same chain backwards, from an exact posterior sample
# down to the prior, which gives an unbiased estimate of 1 / p(x) and so a stochastic *upper* bound.
# For data simulated from the model, (z, x) ~ p(z, x), the z is an exact draw of p(z | x): BDMC needs
# nothing else. The gap upper − lower bounds, in expectation, how far AIS falls short, without knowing
# log p(x); here we do know it, and check.

# %%
lower = np.asarray([float(bdmc_runs[steps].lower.log_marginal) for steps in NUM_TEMPERATURES])
upper = np.asarray([float(bdmc_runs[steps].upper.log_marginal) for steps in NUM_TEMPERATURES])
lower_se = np.asarray([float(bdmc_runs[steps].lower.stderr) for steps in NUM_TEMPERATURES])
upper_se = np.asarray([float(bdmc_runs[steps].upper.stderr) for steps in NUM_TEMPERATURES])
gaps = upper - lower
print(f"exact log p(x) = {exact:.3f}")
print(" T     lower (se)          upper (se)          gap")
for steps, low, low_se, up, up_se, gap in zip(NUM_TEMPERATURES, lower, lower_se, upper, upper_se, gaps, strict=True):
    print(f"{steps:5d} {low:9.3f} ({low_se:5.3f})   {up:9.3f} ({up_se:5.3f})   {gap:8.3f}")
assert np.all(lower <= exact + 4 * lower_se) and np.all(upper >= exact - 4 * upper_se)
assert gaps[0] > gaps[-1] and gaps[0] > 10 * gaps[-1] and gaps[-1] < 2.0
assert gaps[-1] > -4 * np.hypot(lower_se[-1], upper_se[-1])  # below 0 only by noise
assert np.all(np.diff(gaps[: min(4, len(gaps))]) < 0)  # it closes step by step while the bias dominates

# %% [markdown]
# The gap closes from about a dozen nats at T = 10 to the size of the standard errors. Once it is that
# small, the two sides of one run, each off by noise, can even cross (a negative gap): the bracket holds in
# expectation, and a single run's gap is meaningful down to its standard errors, not below.

# %%
fig, ax = plt.subplots(figsize=(6.5, 4), layout="constrained")
ax.errorbar(NUM_TEMPERATURES, lower, 2 * lower_se, fmt="o-", capsize=3, label="lower: forward AIS (± 2 se)")
ax.errorbar(NUM_TEMPERATURES, upper, 2 * upper_se, fmt="s-", capsize=3, label="upper: reverse AIS (± 2 se)")
ax.axhline(exact, color="k", lw=1, label="exact log p(x)")
ax.set(xscale="log", xlabel="temperatures T", ylabel="log p(x)", title="BDMC on simulated data")
ax.set_ylim(exact - 12, exact + 12)
ax.legend()
plt.show()

# %% [markdown]
# ## 3. A posterior no Gaussian can fit
#
# $$z \sim \mathcal{N}(0, I_2), \qquad x \mid z \sim \mathcal{N}\big((z_1 z_2,\; z_1 + z_2),\; 0.1^2 I\big),
# \qquad x = (1, 2.3).$$
#
# The likelihood pins z near the two solutions of z₁z₂ = 1, z₁ + z₂ = 2.3, (1.72, 0.58) and
# (0.58, 1.72), and the symmetry z₁ ↔ z₂ gives the two modes equal mass. In two dimensions log p(x)
# is a sum over a grid: 801² points with a spacing of 0.0125, several to the posterior's narrowest
# standard deviation.

# %%
NOISE = 0.1
x2 = jnp.asarray([1.0, 2.3])
noise = {"noise": jnp.asarray(NOISE)}


def curved_prior(params):
    return distrax.MultivariateNormalDiag(jnp.zeros(2), jnp.ones(2))


def curved_likelihood(params, z):
    return distrax.MultivariateNormalDiag(jnp.stack([z[0] * z[1], z[0] + z[1]]), jnp.full(2, params["noise"]))


curved = lvmjax.LatentVariableModel(curved_prior, curved_likelihood)


def log_joint_on_grid(limit=5.0, num_points=801):
    """log p(x, z) on a grid, in float64 numpy, and the grid."""
    grid = np.linspace(-limit, limit, num_points)
    z1, z2 = np.meshgrid(grid, grid, indexing="ij")
    residual = (1.0 - z1 * z2) ** 2 + (2.3 - z1 - z2) ** 2
    return -0.5 * (z1**2 + z2**2 + residual / NOISE**2) - 2 * np.log(2 * np.pi) - 2 * np.log(NOISE), grid


start = time.perf_counter()
grid_log_joint, grid = log_joint_on_grid()
quadrature = float(logsumexp(grid_log_joint) + 2 * np.log(grid[1] - grid[0]))
timings["two modes: quadrature, 801² points"] = time.perf_counter() - start
coarse_log_joint, coarse = log_joint_on_grid(num_points=401)
coarse_quadrature = float(logsumexp(coarse_log_joint) + 2 * np.log(coarse[1] - coarse[0]))
check = float(jax.jit(lambda z: lvmjax.log_joint(curved, noise, x2, z))(jnp.asarray([0.3, -1.2])))
print(f"log p(x) by quadrature: {quadrature:.6f} (half the points: {coarse_quadrature:.6f})")
assert abs(quadrature - coarse_quadrature) < 1e-4  # the grid is fine enough
np.testing.assert_allclose(check, grid_log_joint[424, 304], rtol=1e-5)  # z = (0.3, -1.2)
assert np.allclose(grid[[424, 304]], [0.3, -1.2])

# %% [markdown]
# **The ELBO.** A full-rank Gaussian q, started at one mode and fitted by maximizing the ELBO (Adam on the
# reparameterized Monte Carlo ELBO, K = 16), stays at that mode: KL(q ‖ p) is mode-seeking. A q on one
# of two modes of equal mass has KL(q ‖ p(z | x)) of about log 2 or more, so its ELBO is at least about
# log 2 = 0.69 nats below log p(x), however well it fits its mode; the curvature of the mode adds more.

# %%
family = variational.full_rank_gaussian(2)
fit_optimizer = optax.adam(optax.cosine_decay_schedule(0.05, FIT_STEPS, alpha=0.01))
ELBO_SAMPLES = 100_000


def fit_at_one_mode(key):
    """FIT_STEPS Adam steps from q = N((1.7, 0.6), 0.1² I); then the ELBO of q from ELBO_SAMPLES draws."""
    phi = {"mean": jnp.array([1.7, 0.6]), "log_diag": jnp.log(jnp.full(2, 0.1)), "off_diag": jnp.zeros((2, 2))}

    def step(carry, key):
        phi, state = carry
        grads = jax.grad(lambda phi: -lvmjax.elbo(key, curved, noise, family.distribution(phi), x2, 16))(phi)
        updates, state = fit_optimizer.update(grads, state, phi)
        return (optax.apply_updates(phi, updates), state), None

    key_fit, key_elbo = jax.random.split(key)
    (phi, _), _ = jax.lax.scan(step, (phi, fit_optimizer.init(phi)), jax.random.split(key_fit, FIT_STEPS))
    log_weights = lvmjax.log_weights(key_elbo, curved, noise, family.distribution(phi), x2, ELBO_SAMPLES)
    return phi, jnp.mean(log_weights), jnp.std(log_weights) / jnp.sqrt(ELBO_SAMPLES)


phi, fitted_elbo, elbo_se = compile_and_run("two modes: fit q and its ELBO", fit_at_one_mode, jax.random.key(4))
q = family.distribution(phi)
fitted_elbo, elbo_se = float(fitted_elbo), float(elbo_se)
print(f"q = N(({float(q.mean()[0]):.3f}, {float(q.mean()[1]):.3f}), ·); ELBO = {fitted_elbo:.4f} ± {elbo_se:.4f}")
print(f"log p(x) − ELBO = {quadrature - fitted_elbo:.3f} nats (log 2 = {np.log(2):.3f})")
assert float(q.mean()[0]) > float(q.mean()[1]) + 0.5  # it stayed at the mode where it started
assert fitted_elbo + 4 * elbo_se < quadrature - 0.9 * np.log(2)

# %% [markdown]
# **AIS** from the prior needs no family: its chains anneal into both modes. 1000 temperatures and 16
# chains, as in lvmjax's own test of this posterior.

# %%
AIS_STEPS, AIS_CHAINS = 1000, 16
curved_ais = compile_and_run(
    f"two modes: AIS, T = {AIS_STEPS}, K = {AIS_CHAINS}",
    lambda key: lvmjax.log_marginal_ais(key, curved, noise, x2, AIS_STEPS, AIS_CHAINS),
    jax.random.key(5),
)
curved_log_marginal, curved_se, curved_ess = summary(curved_ais)
print(f"AIS: {curved_log_marginal:.4f} ± {curved_se:.4f} (ESS {curved_ess:.1f} of {AIS_CHAINS})")
print(f"quadrature: {quadrature:.4f}")
assert abs(curved_log_marginal - quadrature) <= 4 * curved_se and curved_se < 0.3
assert curved_log_marginal - 4 * curved_se > fitted_elbo  # well above the bound of the fitted Gaussian

# %% [markdown]
# **NUTS** (`lvmjax.mcmc.sample_posterior`, blackjax's no-U-turn sampler after Stan's window adaptation)
# draws from p(z | x) itself, with four chains started at draws of the prior. The modes are joined by a
# curved ridge, and NUTS follows it: each chain visits both modes, so the chains agree. The ridge is slow
# to cross, so the draws are correlated: the effective sample size is a few percent of the draws, above 50;
# R̂ is below 1.1 at the small size and below 1.03 at the full size (Vehtari et al. 2021 ask for 1.01
# before trusting the draws: more draws get there). By symmetry each mode holds half the mass.

# %%
nuts = compile_and_run(
    f"two modes: NUTS, {NUTS_CHAINS} × ({NUTS_WARMUP} warmup + {NUTS_SAMPLES}) draws",
    lambda key: mcmc.sample_posterior(key, curved, noise, x2, NUTS_SAMPLES, NUTS_WARMUP, NUTS_CHAINS),
    jax.random.key(6),
)
samples = np.asarray(nuts.samples)  # (chains, draws, 2)
in_first_mode = samples[..., 0] > samples[..., 1]  # z_1 > z_2: the mode near (1.72, 0.58)
rhat, ess = np.asarray(nuts.info.rhat), np.asarray(nuts.info.ess)
print(f"R̂ = {np.round(rhat, 3)}, ESS = {np.round(ess, 1)} of {samples.shape[0] * samples.shape[1]} draws")
print(f"acceptance rates {np.round(np.asarray(nuts.info.acceptance_rate), 3)}")
print(f"divergences {np.asarray(nuts.info.num_divergent)}")
print(f"fraction of each chain's draws with z_1 > z_2: {np.round(in_first_mode.mean(axis=1), 3)}")
assert np.all(rhat < 1.1) and np.all(ess > 50) and (SMALL or np.all(rhat < 1.03))
assert np.all(np.asarray(nuts.info.num_divergent) == 0)
assert np.all((in_first_mode.mean(axis=1) > 0.1) & (in_first_mode.mean(axis=1) < 0.9))  # each chain, both modes
assert abs(in_first_mode.mean() - 0.5) < 0.2

# %%
fig, ax = plt.subplots(figsize=(5.5, 5), layout="constrained")
posterior_density = np.exp(grid_log_joint - grid_log_joint.max())
window = (grid > -0.5) & (grid < 3.0)
window_density = posterior_density[np.ix_(window, window)].T  # contour wants rows of z_2
for chain in range(samples.shape[0]):
    ax.scatter(samples[chain, :, 0], samples[chain, :, 1], s=3, alpha=0.3, label=f"NUTS chain {chain + 1}")
levels = [0.01, 0.1, 0.3, 0.6, 0.9]  # of the density's peak
ax.contour(grid[window], grid[window], window_density, levels=levels, colors="k", linewidths=0.8, zorder=3)
ax.plot(*np.asarray(q.mean()), "*", color="gold", mec="k", ms=14, zorder=4, label="mean of the fitted Gaussian q")
ax.set(xlabel="$z_1$", ylabel="$z_2$", title="p(z | x): contours and NUTS draws", aspect="equal")
ax.legend(loc="upper right", fontsize=8)
plt.show()

# %% [markdown]
# ## 4. The price
#
# The seconds of one run of each estimate, after compilation: the fastest of three runs of the compiled
# call, on whatever machine runs this notebook (they are printed, not checked). The closed-form log p(x)
# costs one small linear solve. The grid is cheap in two dimensions, but it would need 801^d points in d
# dimensions. AIS and BDMC cost K·T·(L + 1) gradient evaluations per datapoint (BDMC twice that), and NUTS
# a trajectory of leapfrog steps per draw. Multiplied by every datapoint of a test set, or by every step of
# a training loop, that is the "computationally expensive" of the seed texts: the ELBO is cheap enough to
# train on, and AIS and BDMC are kept for evaluation.

# %%
print(f"{'estimate':62s} seconds")
for name, seconds in timings.items():
    print(f"{name:62s} {seconds:8.4f}")
print(f"NUTS: {float(np.mean(nuts.info.mean_integration_steps)):.1f} leapfrog steps per draw on average")
