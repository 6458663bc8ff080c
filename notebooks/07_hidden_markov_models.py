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
# # 7. Time series with hidden Markov models
#
# The seed texts' latent variable for a time series is a *path*: one discrete state per time step,
# z_1, …, z_T, following a Markov chain, and each x_t drawn from its state's distribution. The latent
# space has K^T paths, far too many to enumerate, yet log p(x) is exact. This notebook
#
# 1. checks on a small HMM (K = 3, T = 6) that the forward algorithm's O(T K²) sum equals the sum over
#    all 729 paths, by a sequential and by a parallel pass, and that it is a sum of one-step predictions;
# 2. checks forward–backward's smoothed marginals p(z_t | x) against the enumerated posterior and
#    against the gradient of log p(x), and Viterbi's path against the best of the 729;
# 3. fits a 3-state HMM to synthetic sequences of different lengths by Baum–Welch (EM), whose
#    log-likelihood never decreases, and recovers the generating parameters;
# 4. segments the Nile's annual flow 1871–1970 into two regimes, finds the change near 1898, scores
#    the last 20 years given the first 80, forecasts, imputes missing years and flags anomalous ones;
# 5. and, if hmmlearn is installed, checks Baum–Welch against it from the same start.

# %%
# %matplotlib inline
import os
import types
import warnings

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import lvmjax
from lvmjax import plots, time_series
from lvmjax.models import hmm

SMALL = os.environ.get("LVMJAX_NOTEBOOK_SMALL") == "1"
LONG_T = 2_000 if SMALL else 20_000  # one long sequence: sequential against parallel forward pass
SEQUENCE_LENGTHS = (300, 250, 400, 200) if SMALL else (1200, 1000, 1500, 800)  # synthetic sequences for EM
NUM_RESTARTS = 2 if SMALL else 8  # Baum–Welch starts on the synthetic sequences
NILE_RESTARTS = 4 if SMALL else 20  # and on the Nile
FORECAST_SAMPLES = 2_000 if SMALL else 20_000  # draws of the forecast, to check its variance
EM_OPTIONS = {"max_iter": 300, "tol": 1e-6}

# The functions of `hmm` used below, compiled by jax.jit (once per shape of their inputs): on a CPU a
# compiled call is much faster than the same function run one operation at a time.
compiled = types.SimpleNamespace(
    log_marginal=jax.jit(hmm.log_marginal, static_argnames="parallel"),
    predictive_log_likelihoods=jax.jit(hmm.predictive_log_likelihoods),
    posterior_marginals=jax.jit(hmm.posterior_marginals),
    most_likely_states=jax.jit(hmm.most_likely_states),
    impute=jax.jit(hmm.impute),
)

# %% [markdown]
# ## 1. The model, and why a sum over K^T paths is cheap
#
# $$z_1 \sim \text{Categorical}(\pi), \qquad z_t \mid z_{t-1} = i \sim \text{Categorical}(A_{i\cdot}),
# \qquad x_t \mid z_t = k \sim \mathcal{N}(\mu_k, \sigma_k^2).$$
#
# The joint $p(x, z) = \pi_{z_1} p_{z_1}(x_1) \prod_{t \ge 2} A_{z_{t-1} z_t} p_{z_t}(x_t)$ is a chain, so
# the sum over paths can be pushed inside it, one step at a time. The **forward algorithm** carries
# $\alpha_t(j) = p(x_{1:t}, z_t = j)$:
#
# $$\alpha_1(j) = \pi_j\, p_j(x_1), \qquad \alpha_t(j) = p_j(x_t) \sum_i \alpha_{t-1}(i)\, A_{ij}, \qquad
# p(x_{1:T}) = \sum_j \alpha_T(j),$$
#
# K² products per step instead of K^T paths. lvmjax keeps α_t normalized and adds up the logs of the
# normalizers, which are the one-step predictive densities $c_t = p(x_t \mid x_{1:t-1})$, so
# $\log p(x) = \sum_t \log c_t$ never underflows. The same product of per-step matrices
# $M_t(i, j) = A_{ij}\, p_j(x_t)$ can also be multiplied in a tree (`parallel=True`, an associative scan):
# depth O(log T) instead of T, for hardware that runs many small products at once.
#
# The HMM below has three states whose means are −2, 0 and 2.5; `hmm.sample` draws a path and its
# observations. We draw five sequences of `LONG_T` steps at once: the first 6 steps of the first are
# the x of sections 1 and 2, the beginnings of the other four the training data of section 3 (the
# first T steps of a draw are a draw of T steps). `hmm.model(T, emission)` is the same HMM as a core
# `LatentVariableModel` whose latent is the whole path, so the core's `lvmjax.log_marginal_exact` sums
# p(x, z) over every one of the K^T paths, by brute force.

# %%
NUM_STATES = 3
truth = hmm.Params(
    initial_probs=jnp.array([0.5, 0.3, 0.2]),
    transition_matrix=jnp.array([[0.9, 0.07, 0.03], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]]),
    emission=hmm.GaussianEmission(
        means=jnp.array([[-2.0], [0.0], [2.5]]), covariances=jnp.array([[[0.6**2]], [[0.5**2]], [[0.8**2]]])
    ),
)
all_states, all_x = jax.jit(jax.vmap(lambda key: hmm.sample(key, truth, LONG_T)))(
    jax.random.split(jax.random.key(0), 5)
)
SHORT_T = 6
short_states, short_x = all_states[0, :SHORT_T], all_x[0, :SHORT_T]

chain = hmm.model(SHORT_T, truth.emission)
paths = lvmjax.latent_states(chain, truth)  # every z_{1:6}, (729, 6)
log_joints = jax.jit(jax.vmap(lambda path: lvmjax.log_joint(chain, truth, short_x, path)))(paths)  # log p(x, z)
by_enumeration = float(jax.jit(lvmjax.log_marginal_exact, static_argnums=0)(chain, truth, short_x))
by_forward = float(compiled.log_marginal(truth, short_x))
by_scan = float(compiled.log_marginal(truth, short_x, parallel=True))
per_step = np.asarray(compiled.predictive_log_likelihoods(truth, short_x))

print("x_1:6 =", np.round(np.asarray(short_x[:, 0]), 2), " drawn from the states", np.asarray(short_states))
print(f"log p(x) summed over all {len(paths)} paths:        {by_enumeration:.6f}")
print(f"log p(x) by the forward algorithm (sequential): {by_forward:.6f}")
print(f"log p(x) by the associative scan (parallel):    {by_scan:.6f}")
print(f"Σ_t log p(x_t | x_<t) = {' + '.join(f'({value:.3f})' for value in per_step)} = {per_step.sum():.6f}")
assert paths.shape == (NUM_STATES**SHORT_T, SHORT_T) and len(np.unique(np.asarray(paths), axis=0)) == 729
np.testing.assert_allclose(float(jax.nn.logsumexp(log_joints)), by_enumeration, rtol=1e-6)
np.testing.assert_allclose(by_forward, by_enumeration, rtol=1e-6, atol=1e-5)
np.testing.assert_allclose(by_scan, by_enumeration, rtol=1e-6, atol=1e-5)
np.testing.assert_allclose(per_step.sum(), by_forward, rtol=1e-6, atol=1e-5)

# %% [markdown]
# The brute-force sum costs K^T terms, the forward algorithm T·K² products: 729 against 54 at T = 6;
# at the length of the Nile series of section 4 (T = 100), K^T is a number of 48 digits. The sequential
# and the parallel pass also agree on the whole first sequence, whose T steps the scan combines in
# O(log T) levels, and whose p(x) is far below the smallest positive float32 (about e^−87): only its
# log is representable.

# %%
for steps in (SHORT_T, 20, 100):
    print(f"T = {steps:3d}: K^T = {NUM_STATES**steps:.3g} paths, T·K² = {steps * NUM_STATES**2} products")
assert (NUM_STATES**SHORT_T, SHORT_T * NUM_STATES**2) == (729, 54) and len(str(NUM_STATES**100)) == 48

long_x = all_x[0]
sequential = float(compiled.log_marginal(truth, long_x))
parallel = float(compiled.log_marginal(truth, long_x, parallel=True))
print(
    f"T = {LONG_T}: log p(x) = {sequential:.3f} sequentially, {parallel:.3f} by the scan "
    f"(relative difference {abs(parallel - sequential) / abs(sequential):.1e}; log₂ T = {np.log2(LONG_T):.1f})"
)
np.testing.assert_allclose(parallel, sequential, rtol=2e-5)
assert np.isfinite(sequential) and sequential < np.log(np.finfo(np.float32).tiny)

# %% [markdown]
# ## 2. Forward–backward and Viterbi
#
# The posterior over paths, p(z | x) = p(x, z) / p(x), has K^T entries too, but what EM and a reader
# need are its marginals. A **backward** pass, $\beta_t(i) = p(x_{t+1:T} \mid z_t = i)
# = \sum_j A_{ij}\, p_j(x_{t+1})\, \beta_{t+1}(j)$, completes the forward one:
#
# $$p(z_t = k \mid x) = \frac{\alpha_t(k)\, \beta_t(k)}{p(x)}, \qquad
# p(z_t = i, z_{t+1} = j \mid x) = \frac{\alpha_t(i)\, A_{ij}\, p_j(x_{t+1})\, \beta_{t+1}(j)}{p(x)}.$$
#
# (`hmm.posterior_marginals`). Against the 729 paths: each marginal is the total posterior probability
# of the paths that pass through state k at step t.
#
# There is a second route to the same numbers. log p(x) depends on the data only through the table of
# emission log-likelihoods $\ell_t(k) = \log p_k(x_t)$ (`hmm.emission_log_likelihoods`), and
# $\partial \log p(x) / \partial \ell_t(k) = p(z_t = k \mid x)$: differentiating the forward pass in
# reverse *is* the backward pass. To differentiate `hmm.log_marginal` with respect to the table, we
# hand it an HMM that sees nothing but the table: its observation at step t is the symbol t, which
# state k emits with probability $e^{\ell_t(k) - c}$ (a `CategoricalEmission` over T + 1 symbols, the last
# one never observed; the constant c makes each row a distribution and shifts log p(x) by T·c).
#
# **Viterbi** (`hmm.most_likely_states`) replaces the forward algorithm's sums by maxima and follows
# the argmaxes back: the single most probable path, argmax_z p(z | x).

# %%
posterior = compiled.posterior_marginals(truth, short_x)
path_probs = jnp.exp(log_joints - by_enumeration)  # p(z | x) of every path
visits = jax.nn.one_hot(paths, NUM_STATES)  # (729, T, K): 1 where path p is in state k at step t
enumerated_marginals = jnp.einsum("p,ptk->tk", path_probs, visits)
enumerated_pairwise = jnp.einsum("p,pti,ptj->tij", path_probs, visits[:, :-1], visits[:, 1:])


def log_p_of_the_table(log_likelihoods):
    """log p(x) as a function of ℓ_t(k) alone. Step t emits the symbol t, which state k emits with probability
    exp(ℓ_t(k) − c); one more symbol, never emitted, takes the rest of each row's mass. The constant c keeps
    every row's T probabilities below 1/2, and costs log p exactly T·c."""
    num_steps = log_likelihoods.shape[0]
    c = jax.lax.stop_gradient(jnp.max(jax.nn.logsumexp(log_likelihoods, axis=0))) + jnp.log(2.0)
    probs = jnp.exp(log_likelihoods - c).T  # (K, T)
    table = hmm.CategoricalEmission(jnp.concatenate([probs, 1 - probs.sum(axis=1, keepdims=True)], axis=1))
    params = hmm.Params(truth.initial_probs, truth.transition_matrix, table)
    return hmm.log_marginal(params, jnp.arange(num_steps)) + num_steps * c


log_likelihoods = hmm.emission_log_likelihoods(truth.emission, short_x)  # (T, K)
gradient = jax.jit(jax.grad(log_p_of_the_table))(log_likelihoods)
viterbi = np.asarray(compiled.most_likely_states(truth, short_x))
best_path = np.asarray(paths[jnp.argmax(log_joints)])

print("p(z_t = k | x), rows t = 1 … 6, by forward–backward:")
print(np.round(np.asarray(posterior.marginals), 4))
print(
    f"largest difference from the enumerated marginals: {np.abs(posterior.marginals - enumerated_marginals).max():.1e}"
)
print(f"largest difference from the enumerated pairwise:  {np.abs(posterior.pairwise - enumerated_pairwise).max():.1e}")
print(f"largest difference from ∂ log p(x) / ∂ℓ_t(k):      {np.abs(posterior.marginals - gradient).max():.1e}")
print(
    f"Viterbi path {viterbi}, the best of the 729 {best_path}, p(z* | x) = {float(path_probs.max()):.3f}; "
    f"the true path {np.asarray(short_states)}"
)
np.testing.assert_allclose(float(jax.jit(log_p_of_the_table)(log_likelihoods)), by_forward, rtol=1e-6)
np.testing.assert_allclose(posterior.marginals, enumerated_marginals, atol=2e-6)
np.testing.assert_allclose(posterior.pairwise, enumerated_pairwise, atol=2e-6)
np.testing.assert_allclose(gradient, posterior.marginals, atol=2e-6)
np.testing.assert_array_equal(viterbi, best_path)

# %% [markdown]
# ## 3. Baum–Welch on synthetic sequences
#
# EM for an HMM (Baum–Welch) takes forward–backward as its E-step, on every sequence at once, and
# re-estimates θ in closed form: π from the marginals at t = 1, each row of A from the expected
# transition counts $\sum_t p(z_t = i, z_{t+1} = j \mid x)$, each state's mean and variance from the
# observations weighted by $p(z_t = k \mid x)$. As for the mixture of notebook 1, no iteration lowers
# the log-likelihood. `hmm.fit_em` takes a list of sequences of different lengths (it pads them and
# counts no transition across the padding), runs `n_init` starts in parallel and keeps the best; its
# `EMInfo.objective` is the mean log-likelihood per time step at each iterate.
#
# The training data: the beginnings of the other four sequences drawn in section 1, of different
# lengths.

# %%
true_states = [np.asarray(all_states[1 + index, :length]) for index, length in enumerate(SEQUENCE_LENGTHS)]
sequences = [np.asarray(all_x[1 + index, :length]) for index, length in enumerate(SEQUENCE_LENGTHS)]
num_steps = sum(SEQUENCE_LENGTHS)

fitted, info = hmm.fit_em(jax.random.key(3), sequences, NUM_STATES, n_init=NUM_RESTARTS, **EM_OPTIONS)
trace = np.asarray(info.objective[: int(info.num_iterations)])
true_objective = sum(float(compiled.log_marginal(truth, x)) for x in sequences) / num_steps
print(f"{len(sequences)} sequences of lengths {SEQUENCE_LENGTHS}, {num_steps} steps")
print(
    f"Baum–Welch: {len(trace)} iterations, converged: {bool(info.converged)}; mean log-likelihood per step "
    f"{trace[0]:.4f} at the start, {trace[-1]:.4f} at the end, {true_objective:.4f} under the true θ"
)
print(f"largest decrease between iterations: {max(0.0, -np.diff(trace).min()):.1e}")
assert np.all(np.diff(trace) >= -1e-6), "Baum–Welch decreased the log-likelihood"
assert trace[-1] >= true_objective - 1e-5  # the maximum-likelihood θ fits its data at least as well as the truth

plots.curves(
    {"θ_t of Baum–Welch": trace, "the true θ": np.full(len(trace), true_objective)},
    "EM iteration t",
    "(1/T) Σ_s log p(x_s; θ_t)",
    title="Baum–Welch on the synthetic sequences",
)

# %% [markdown]
# The states come out in an arbitrary order (any permutation of the labels gives the same
# likelihood), so we match them by their means before comparing. How close should the estimates be?
# With N steps, state k is visited about $n_k = N\, \bar\pi_k$ times, $\bar\pi$ the chain's stationary
# distribution; if the states were seen, a mean's standard error would be $\sigma_k / \sqrt{n_k}$, a
# variance's $\sigma_k^2 \sqrt{2 / n_k}$ and a transition probability's $\sqrt{A_{ij}(1 - A_{ij}) / n_i}$.
# Not seeing the states inflates these, so every estimate must be within 5 of them.

# %%
fitted = jax.tree.map(np.asarray, fitted)
order = np.argsort(fitted.emission.means[:, 0])  # fitted state for each true state (true means ascending)
assert np.all(np.diff(np.asarray(truth.emission.means[:, 0])) > 0)
true_A = np.asarray(truth.transition_matrix)
values, vectors = np.linalg.eig(true_A.T)
stationary = np.real(vectors[:, np.argmax(np.real(values))])
stationary /= stationary.sum()
visits_per_state = num_steps * stationary
true_means, true_variances = np.asarray(truth.emission.means[:, 0]), np.asarray(truth.emission.covariances[:, 0, 0])
estimates = {
    "means μ_k": (fitted.emission.means[order, 0], true_means, np.sqrt(true_variances / visits_per_state)),
    "variances σ_k²": (
        fitted.emission.covariances[order, 0, 0],
        true_variances,
        true_variances * np.sqrt(2 / visits_per_state),
    ),
    "transitions A_ij": (
        fitted.transition_matrix[np.ix_(order, order)],
        true_A,
        np.sqrt(true_A * (1 - true_A) / visits_per_state[:, None]),
    ),
}
for name, (estimate, true_value, stderr) in estimates.items():
    fitted_values, true_values = np.round(estimate.astype(float), 3).tolist(), np.round(true_value.astype(float), 3)
    print(f"{name}: fitted {fitted_values}, true {true_values.tolist()}")
    print(f"  |fitted − true| / standard error, largest: {np.max(np.abs(estimate - true_value) / stderr):.2f}")
    assert np.all(np.abs(estimate - true_value) < 5 * stderr)

# The fitted model segments the sequences about as well as the truth does: Viterbi against the true states.
true_label = np.argsort(order)  # the true state of each fitted state
accuracy = {
    name: np.mean(
        np.concatenate([relabel[np.asarray(compiled.most_likely_states(params, x))] for x in sequences])
        == np.concatenate(true_states)
    )
    for name, params, relabel in (("fitted", fitted, true_label), ("true", truth, np.arange(NUM_STATES)))
}
print(
    f"Viterbi paths equal to the true states at {100 * accuracy['fitted']:.1f}% of the steps with the fitted θ, "
    f"{100 * accuracy['true']:.1f}% with the true θ"
)
assert accuracy["fitted"] > accuracy["true"] - 0.01

# %% [markdown]
# The first 200 steps of the first sequence, coloured by the fitted model's Viterbi state (relabelled to
# the true states' order), above the smoothed p(z_t = k | x):

# %%
first = sequences[0][:200]
first_marginals = np.asarray(compiled.posterior_marginals(fitted, first).marginals)[:, order]
plots.segmented_series(
    first,
    true_label[np.asarray(compiled.most_likely_states(fitted, first))],
    first_marginals,
    title="a synthetic sequence, segmented",
)

# %% [markdown]
# ## 4. The Nile, 1871–1970
#
# The annual flow of the Nile at Aswan (10⁸ m³) is the classic change-point series: the flow drops
# around 1898, when work on the first Aswan dam began.
# `time_series.load_sequences("nile")` ships it split in time: the first 80 years (1871–1950) to
# train on, the last 20 (1951–1970) to test, scored *given* the 80 before them
# (`test_follows_train`). A 2-state Gaussian HMM is a model with two regimes and a small chance of
# switching each year; a 1-state "HMM" is a single Gaussian, every year independent.

# %%
nile = time_series.load_sequences("nile")
flow = np.concatenate([nile.train, nile.test])  # (100, 1)
years = time_series.NILE_FIRST_YEAR + np.arange(len(flow))
num_train = int(nile.train_lengths.sum())
assert nile.test_follows_train and len(flow) == 100 and num_train == 80 and years[num_train] == 1951

nile_fits = {
    num_states: hmm.fit_em(jax.random.key(4), nile.train, num_states, n_init=NILE_RESTARTS, **EM_OPTIONS)[0]
    for num_states in (1, 2)
}
nile_fit = jax.tree.map(np.asarray, nile_fits[2])
high, low = np.argsort(-nile_fit.emission.means[:, 0])
regime_means = nile_fit.emission.means[[high, low], 0]
regime_sds = np.sqrt(nile_fit.emission.covariances[[high, low], 0, 0])
print(
    f"2 states: the high regime's flow {regime_means[0]:.0f} ± {regime_sds[0]:.0f}, "
    f"the low regime's {regime_means[1]:.0f} ± {regime_sds[1]:.0f} (mean ± sd)"
)
print(
    f"p(high → low) = {nile_fit.transition_matrix[high, low]:.4f} a year, "
    f"p(low → high) = {nile_fit.transition_matrix[low, high]:.1e}"
)

path = np.asarray(compiled.most_likely_states(nile_fit, flow))
smoothed = np.asarray(compiled.posterior_marginals(nile_fit, flow).marginals)
change = int(np.argmax(path == low))  # the first year in the low regime
change_year = int(years[change])
print(f"the Viterbi path of all 100 years: high 1871–{change_year - 1}, low {change_year}–1970")
assert np.all(path[:change] == high) and np.all(path[change:] == low)  # one change, high to low
assert 1897 <= change_year <= 1900
# Maximum likelihood puts no mass on what the 80 years never show (a return to the high regime), and
# about one switch in the high regime's 28 years.
assert nile_fit.transition_matrix[low, high] < 1e-4
assert abs(nile_fit.transition_matrix[high, low] - 1 / change) < 0.005
uncertain = years[smoothed.max(axis=1) < 0.99]
print("years whose regime has posterior probability below 0.99:", uncertain)
assert len(uncertain) and np.all((uncertain >= change_year - 3) & (uncertain <= change_year + 2))

# %% [markdown]
# The segmentation: the flow coloured by the Viterbi state, the smoothed p(z_t | x) below, the test
# years after the dashed line. The regime is certain, p(z_t | x) > 0.99, everywhere but in the few
# years around the change.

# %%
plots.segmented_series(
    flow,
    np.where(path == high, 0, 1),
    smoothed[:, [high, low]],
    boundary=num_train,
    times=years,
    title="the Nile at Aswan, 1871–1970: state 0 the high regime, state 1 the low one",
)

# %% [markdown]
# ### The held-out years, given the training years
#
# The score of the 20 test years is their predictive density given the 80 before them, which the
# forward algorithm gives two ways:
#
# $$\log p(x_{81:100} \mid x_{1:80}) = \log p(x_{1:100}) - \log p(x_{1:80})
# = \sum_{t = 81}^{100} \log p(x_t \mid x_{1:t-1}).$$
#
# Per year, the negative is the held-out NLL. The two-regime model should beat the single Gaussian on
# it: the test years all lie in the low regime, and the single Gaussian, fitted to both regimes, puts
# its mean between them. The BIC, $-2 \log p(x_{1:80}) + P \log 80$ with P free parameters
# (`hmm.num_free_parameters`), says the same from the training years alone.

# %%
held_out_nll, bic = {}, {}
for num_states, params in nile_fits.items():
    train_log_p = float(compiled.log_marginal(params, nile.train))
    all_log_p = float(compiled.log_marginal(params, flow))
    predictive = np.asarray(compiled.predictive_log_likelihoods(params, flow))
    test_log_p = all_log_p - train_log_p
    np.testing.assert_allclose(test_log_p, predictive[num_train:].sum(), rtol=0, atol=1e-5 * abs(all_log_p))
    np.testing.assert_allclose(train_log_p, predictive[:num_train].sum(), rtol=0, atol=1e-5 * abs(all_log_p))
    held_out_nll[num_states] = -test_log_p / (len(flow) - num_train)
    bic[num_states] = -2 * train_log_p + hmm.num_free_parameters(num_states, 1, "gaussian") * np.log(num_train)
    print(
        f"{num_states} state{'s' if num_states > 1 else ' '}: log p(x_1:80) {train_log_p:8.2f}, "
        f"log p(x_81:100 | x_1:80) {test_log_p:8.2f} (Σ of the per-step predictive: "
        f"{predictive[num_train:].sum():8.2f}); held-out NLL {held_out_nll[num_states]:.3f} nats a year, "
        f"BIC {bic[num_states]:.1f}"
    )
single_mean = float(nile_fits[1].emission.means[0, 0])
print(f"the single Gaussian's mean: {single_mean:.0f}")
assert regime_means[1] < single_mean < regime_means[0] and np.all(path[num_train:] == low)
assert held_out_nll[2] < held_out_nll[1] and bic[2] < bic[1]

# %% [markdown]
# ### A forecast
#
# `hmm.predict(θ, x, h)` is the forecast distribution of each of the next h years given the series: the
# filtered state at 1970 carried forward by A, $p(z_{T+h} \mid x) = p(z_T \mid x) A^h$, and a mixture of
# the regimes' Gaussians with those weights (a distrax mixture, whose `variance()` adds the spread of the
# regime means to the regimes' own variances, the law of total variance; draws from it agree). The
# maximum-likelihood A all but never leaves the low regime (a chance of 5·10⁻⁸ a year, printed above),
# so its forecast is the low regime's Gaussian, year after year. That near-zero is a statement about 80
# years of data, not about the river: a Dirichlet prior on each row of A (`transition_prior=2.0`, one
# pseudo-count of every transition; MAP-EM) keeps a return possible, and its forecast drifts up and
# widens as the chance of a switch accumulates.

# %%
FORECAST_YEARS = 10
map_fit, _ = hmm.fit_em(jax.random.key(4), nile.train, 2, n_init=NILE_RESTARTS, transition_prior=2.0, **EM_OPTIONS)


@jax.jit
def forecast(params, x, key):
    """The mean and variance of each of the next FORECAST_YEARS years, and FORECAST_SAMPLES draws of them."""
    distribution = hmm.predict(params, x, FORECAST_YEARS)
    assert distribution.batch_shape == (FORECAST_YEARS,)
    draws = distribution.sample(seed=key, sample_shape=FORECAST_SAMPLES)
    return distribution.mean()[:, 0], distribution.variance()[:, 0], draws[:, :, 0]


forecasts = {}
for name, params in (("maximum likelihood", nile_fit), ("MAP, transition_prior=2", map_fit)):
    mean, variance, draws = jax.tree.map(np.asarray, forecast(params, flow, jax.random.key(5)))
    sd = np.sqrt(variance)
    # The mixture's moments against the draws': 5 standard errors, from the draws' own second and fourth moments.
    fourth = np.mean((draws - draws.mean(0)) ** 4, axis=0)
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * sd / np.sqrt(FORECAST_SAMPLES))
    assert np.all(np.abs(draws.var(0) - variance) < 5 * np.sqrt((fourth - draws.var(0) ** 2) / FORECAST_SAMPLES))
    forecasts[name] = mean, sd
    print(f"{name}: forecast 1971–1980, mean {np.round(mean).astype(int)}, sd {np.round(sd).astype(int)}")
np.testing.assert_allclose(forecasts["maximum likelihood"][0], regime_means[1], rtol=1e-4)  # flat, the low mean
assert np.all(np.diff(forecasts["MAP, transition_prior=2"][0]) > 0)  # MAP: rising
assert np.all(np.diff(forecasts["MAP, transition_prior=2"][1]) > 0)  # and widening

future = years[-1] + 1 + np.arange(FORECAST_YEARS)
fig, axis = plt.subplots(figsize=(8, 3.5), layout="constrained")
axis.plot(years[-40:], flow[-40:, 0], color="0.4", marker=".", label="observed")
for index, (name, (mean, sd)) in enumerate(forecasts.items()):
    axis.plot(future, mean, color=f"C{index}", marker="o", label=f"forecast mean, {name}")
    axis.fill_between(future, mean - 2 * sd, mean + 2 * sd, color=f"C{index}", alpha=0.2, label="± 2 sd")
axis.axvline(years[-1] + 0.5, color="k", linestyle="--")
axis.set_xlabel("year")
axis.set_ylabel("flow (10⁸ m³)")
axis.legend(fontsize=8, loc="upper left", ncols=2)
plt.show()

# %% [markdown]
# ### Missing years and anomalous years
#
# A missing year is an unobserved step: its emission term is 1, so the forward–backward pass sums it
# out, and `hmm.impute` fills it with its posterior mean $E[x_t \mid x_{\text{obs}}] = \sum_k p(z_t = k
# \mid x_{\text{obs}})\, \mu_k$, a weighted average of the regime means, so always between them.
# Below, five years are hidden: one in each regime, the low flood of 1913, and 1898 and 1899 together,
# at the change, where the posterior cannot say which regime they belong to.
#
# The anomaly score of a year is its surprise given the years before it, $-\log p(x_t \mid x_{1:t-1})$
# (the negated `hmm.predictive_log_likelihoods`, with θ fitted to the first 80 years): a year is judged
# by what the years before it predicted, not by the years after it.

# %%
missing_years = np.array([1885, 1898, 1899, 1913, 1950])
observed = ~np.isin(years, missing_years)
filled, posterior_of_missing = jax.tree.map(np.asarray, compiled.impute(nile_fit, flow, observed))
np.testing.assert_array_equal(filled[observed], flow[observed])  # the observed years are unchanged
missing = ~observed
for year, value, actual, probs in zip(
    years[missing], filled[missing, 0], flow[missing, 0], posterior_of_missing[missing], strict=True
):
    print(f"{year}: imputed {value:6.1f} (p(high regime | x_obs) = {probs[high]:.3f}), actual {actual:.0f}")
np.testing.assert_allclose(
    filled[missing, 0], posterior_of_missing[missing] @ nile_fit.emission.means[:, 0], rtol=1e-5
)  # Σ_k p(z_t = k | x_obs) μ_k
rounding = 1e-5 * regime_means[0]  # float32: the posterior weights sum to 1 to about 1e-6
assert np.all((filled[missing, 0] >= regime_means[1] - rounding) & (filled[missing, 0] <= regime_means[0] + rounding))
at_change = np.isin(years, [1898, 1899])
assert np.all((posterior_of_missing[at_change, high] > 0.1) & (posterior_of_missing[at_change, high] < 0.9))

scores = -np.asarray(compiled.predictive_log_likelihoods(nile_fit, flow))
ranked = np.argsort(-scores)
print(
    "the most anomalous years:", ", ".join(f"{years[t]} ({flow[t, 0]:.0f}: {scores[t]:.2f} nats)" for t in ranked[:4])
)
most_anomalous = int(years[ranked[0]])
print(f"the most anomalous year is {most_anomalous}, the century's lowest flow")
assert most_anomalous == 1913 and flow[ranked[0], 0] == flow.min()

fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True, height_ratios=(2, 1), layout="constrained")
axes[0].plot(years, np.where(observed, flow[:, 0], np.nan), color="0.6", marker=".", label="observed")
axes[0].scatter(years[missing], flow[missing, 0], color="k", marker="x", zorder=3, label="hidden (actual)")
axes[0].scatter(years[missing], filled[missing, 0], color="C3", zorder=3, label="imputed")
for index, mean in enumerate(regime_means):
    axes[0].axhline(mean, color="0.7", linestyle=":", zorder=0, label="regime means" if index == 0 else None)
axes[0].set_ylabel("flow (10⁸ m³)")
axes[0].legend(fontsize=8)
axes[1].bar(years, scores, color=np.where(np.arange(len(years)) == ranked[0], "C3", "C0"))
axes[1].set_ylabel("−log p(x_t | x_<t)")
axes[1].set_xlabel("year")
plt.show()

# %% [markdown]
# ## 5. Against hmmlearn
#
# hmmlearn is the established Python library of HMMs (Baum–Welch in float64 NumPy). From the same start
# (`hmm.initial_params`, which starts as hmmlearn does) and with no covariance floor on either side, ten
# iterations on the Nile's training years give the same log-likelihood at every iterate, to float32
# rounding. hmmlearn is in lvmjax's `test` extra, not a dependency of the library; without it this cell
# says so and moves on.

# %%
try:
    from hmmlearn.hmm import GaussianHMM
except ImportError:
    GaussianHMM = None
    print("hmmlearn is not installed (pip install hmmlearn): the comparison is skipped.")

if GaussianHMM is not None:
    iterations = 10
    start = hmm.initial_params(jax.random.key(6), nile.train[None], 2)
    _, ours = hmm.fit_em(
        jax.random.key(6), nile.train, 2, max_iter=iterations, tol=-1.0, reg_covar=0.0, init_params=start
    )
    peer = GaussianHMM(
        2, covariance_type="full", covars_prior=0.0, min_covar=0.0, n_iter=iterations, tol=-np.inf, init_params=""
    )  # init_params="": start where we say
    peer.startprob_ = np.asarray(start.initial_probs, np.float64)
    peer.transmat_ = np.asarray(start.transition_matrix, np.float64)
    peer.means_ = np.asarray(start.emission.means, np.float64)
    peer.covars_ = np.asarray(start.emission.covariances, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hmmlearn's notes on a fixed number of iterations
        peer.fit(nile.train.astype(np.float64))
    theirs = np.asarray(peer.monitor_.history) / num_train  # log p(x) per step at each iterate
    print("iteration   lvmjax      hmmlearn")
    for iteration, (a, b) in enumerate(zip(np.asarray(ours.objective), theirs, strict=True)):
        print(f"{iteration:9d}   {a:.6f}   {b:.6f}")
    np.testing.assert_allclose(np.asarray(ours.objective), theirs, rtol=2e-5, atol=2e-5)

# %% [markdown]
# ## What to take away
#
# An HMM's latent is a whole path of K^T possibilities, yet everything about it is exact and cheap,
# because the joint is a chain: the forward algorithm sums the paths in O(T K²) and, as a by-product,
# gives the one-step predictive densities that make up log p(x); the backward pass, or equally the
# gradient of log p(x), gives the posterior marginals; Viterbi the single best path. The same
# quantities do the practical work. Baum–Welch is EM with forward–backward as its E-step, never lowers
# the likelihood and recovers the generating HMM from enough data. On the Nile, two regimes find the
# change near 1898, predict the held-out 20 years better than one Gaussian, forecast, impute missing
# years, and flag 1913 as the most surprising year of the century. And the maximum-likelihood transition
# matrix shows the usual weakness of maximum likelihood on little data: an event never observed gets
# probability (almost) zero, which a prior repairs.
