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
# # 1. Latent variable models: the mixture of Gaussians
#
# The mixture of Gaussians is the seed text's "shallow" latent variable model: a discrete latent
# z picks one of K Gaussians, and x is drawn from it. This notebook
#
# - samples from the generative process z → x and draws the density p(x) it defines,
# - fits θ = (π, μ_k, Σ_k) to the samples by EM and checks that the log-likelihood never decreases,
# - reads off the soft clustering p(z = k | x), the density and anomaly scores −log p(x),
# - and shows the two weaknesses that the text names: EM's answer depends on where it starts
#   (restarts land in different local optima), and the number of components K has to be chosen
#   (the training likelihood always prefers more; BIC and held-out data do not).
#
# Everything runs on synthetic 2-D data, so every quantity can be drawn.

# %%
# %matplotlib inline
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Ellipse

import lvmjax
from lvmjax import applications
from lvmjax.models import gaussian_mixture

SMALL = os.environ.get("LVMJAX_NOTEBOOK_SMALL") == "1"
NUM_TRAIN = 400 if SMALL else 1000  # datapoints x_1 … x_N
NUM_RESTARTS = 20 if SMALL else 30  # EM runs from different starts
CANDIDATE_K = (5, 6) if SMALL else tuple(range(1, 9))  # numbers of components to compare
EM_OPTIONS = {"max_iter": 300, "tol": 1e-6}

# %% [markdown]
# ## The generative process
#
# $$z \sim \text{Categorical}(\pi_1, \ldots, \pi_K), \qquad x \mid z = k \sim \mathcal{N}(\mu_k, \Sigma_k),$$
#
# so the marginal of x is the mixture $p(x) = \sum_k p(z = k)\, p(x \mid z = k) = \sum_k \pi_k\,
# \mathcal{N}(x; \mu_k, \Sigma_k)$. In lvmjax the model is a `LatentVariableModel`, a prior p(z; θ) and a
# likelihood p(x | z; θ); `lvmjax.sample` draws z from the first, then x from the second. We pick a θ
# with K = 5 components, one of them small and overlapping its neighbours.

# %%
TRUE_K = 5
weights = jnp.array([0.25, 0.2, 0.2, 0.2, 0.15])
means = jnp.array([[-4.0, 0.0], [0.0, 3.0], [3.5, 0.5], [0.5, -3.0], [1.8, 0.6]])
angles = jnp.array([0.3, -0.6, 1.0, 0.0, 0.8])
axis_scales = jnp.array([[1.2, 0.4], [1.0, 0.5], [0.9, 0.3], [1.5, 0.35], [0.6, 0.6]])
rotations = jnp.stack(
    [jnp.stack([jnp.cos(angles), -jnp.sin(angles)], -1), jnp.stack([jnp.sin(angles), jnp.cos(angles)], -1)], -2
)
covariances = rotations @ jax.vmap(jnp.diag)(axis_scales**2) @ jnp.swapaxes(rotations, 1, 2)
true_theta = gaussian_mixture.Params(logits=jnp.log(weights), means=means, scale_tril=jnp.linalg.cholesky(covariances))

draw = jax.jit(jax.vmap(lambda key: lvmjax.sample(key, gaussian_mixture.model, true_theta)))
z_train, x_train = draw(jax.random.split(jax.random.key(0), NUM_TRAIN))
z_test, x_test = draw(jax.random.split(jax.random.key(1), NUM_TRAIN))

counts = np.bincount(np.asarray(z_train), minlength=TRUE_K)
expected = NUM_TRAIN * np.asarray(weights)
print("datapoints drawn from each component:", counts)
print("expected N·π_k:                      ", expected)
# Each count is Binomial(N, π_k): within four standard deviations of N·π_k.
assert np.all(np.abs(counts - expected) < 4 * np.sqrt(expected * (1 - np.asarray(weights))))

# %% [markdown]
# The density p(x) is `gaussian_mixture.log_marginal`, exact: a log-sum-exp over the K components.
# Left, the samples coloured by the z that generated them; right, log p(x) on a grid.

# %%
grid_1d = np.linspace(-8, 7, 150)
grid = np.stack(np.meshgrid(grid_1d, grid_1d), -1).reshape(-1, 2).astype(np.float32)
log_density = jax.jit(jax.vmap(gaussian_mixture.log_marginal, in_axes=(None, 0)))


def draw_ellipses(axis, params, colours=None):
    """The 2-standard-deviation ellipse of each component N(μ_k, Σ_k)."""
    covariance = np.asarray(params.scale_tril @ jnp.swapaxes(params.scale_tril, 1, 2))
    for k, (mean, cov) in enumerate(zip(np.asarray(params.means), covariance, strict=True)):
        values, vectors = np.linalg.eigh(cov)
        angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))
        axis.add_patch(
            Ellipse(
                mean,
                *(4 * np.sqrt(values[::-1])),
                angle=angle,
                fill=False,
                linewidth=1.5,
                color=colours[k] if colours is not None else "k",
            )
        )


palette = plt.get_cmap("tab10")(np.arange(10))[:, :3]
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True, sharey=True, layout="constrained")
axes[0].scatter(*np.asarray(x_train).T, c=palette[np.asarray(z_train)], s=6)
draw_ellipses(axes[0], true_theta, palette)
axes[0].set_title("x ~ p(x | z), coloured by z; ellipses: the true N(μ_k, Σ_k)")
image = axes[1].contourf(
    grid_1d,
    grid_1d,
    np.asarray(log_density(true_theta, grid)).reshape(150, 150),
    levels=np.linspace(-14, -1, 14),
    extend="min",
    cmap="viridis",
)
fig.colorbar(image, ax=axes[1], label="log p(x)")
axes[1].set_title("the true density log p(x) = log Σ_k π_k N(x; μ_k, Σ_k)")
for axis in axes:
    axis.set_aspect("equal")
plt.show()

# %% [markdown]
# ## Fitting θ by EM
#
# The marginal log-likelihood $\sum_i \log \sum_k \pi_k \mathcal{N}(x_i; \mu_k, \Sigma_k)$ has a sum inside
# the log, so it has no closed-form maximum. EM alternates an **E-step**, the posterior of each
# datapoint's latent, $r_{ik} = p(z = k \mid x_i; \theta)$, and an **M-step**, the weighted averages
# $\pi_k = \frac{1}{N}\sum_i r_{ik}$, $\mu_k = \sum_i r_{ik} x_i / \sum_i r_{ik}$ and the weighted
# covariances. No iteration decreases the log-likelihood. `gaussian_mixture.fit_em` runs `n_init` starts
# (k-means++ seeds) in parallel and keeps the best; its `EMInfo.objective` is the mean log-likelihood
# per datapoint at each iterate.

# %%
theta, info = gaussian_mixture.fit_em(jax.random.key(0), x_train, TRUE_K, n_init=NUM_RESTARTS, **EM_OPTIONS)
trace = np.asarray(info.objective[: int(info.num_iterations)])
true_log_likelihood = float(gaussian_mixture.e_step(true_theta, x_train)[1])

print(f"EM iterations: {len(trace)}, converged: {bool(info.converged)}")
print(f"mean log-likelihood at the start {trace[0]:.4f}, at the end {trace[-1]:.4f} nats per datapoint")
print(f"mean log-likelihood of the true θ on the same data: {true_log_likelihood:.4f}")
print(f"largest decrease between iterations: {max(0.0, -np.diff(trace).min()):.2e}")
assert np.all(np.diff(trace) > -1e-5), "EM decreased the log-likelihood"
# The maximum-likelihood θ fits its own training data at least as well as the θ that generated it.
assert trace[-1] >= true_log_likelihood - 1e-4

fig, axis = plt.subplots(figsize=(6, 3.5), layout="constrained")
axis.plot(np.arange(len(trace)), trace, marker=".")
axis.axhline(true_log_likelihood, color="C1", linestyle="--", label="true θ")
axis.set_xlabel("EM iteration t")
axis.set_ylabel("(1/N) Σ_i log p(x_i; θ_t)")
axis.legend()
plt.show()

# %% [markdown]
# ## Soft clustering
#
# The E-step's responsibilities $r_{ik} = p(z = k \mid x_i; \theta)$ are a *soft* clustering: a point
# deep inside one component belongs to it with probability near 1, a point where two components overlap
# is split between them. The hard labels $\arg\max_k r_{ik}$ recover the true components up to a
# relabelling, which the adjusted Rand index ignores (1 = the same partition, 0 = chance). Where
# components overlap, even the θ that generated the data cannot tell which one a point came from: its
# own hard labels are the yardstick.

# %%
log_responsibilities, _ = gaussian_mixture.e_step(theta, x_train)
responsibilities = np.exp(np.asarray(log_responsibilities))
confidence = responsibilities.max(axis=1)
ambiguous = confidence < 0.9
rand_index = applications.adjusted_rand_index(
    np.asarray(z_train), np.asarray(applications.hard_labels(log_responsibilities))
)
true_labels = applications.hard_labels(gaussian_mixture.e_step(true_theta, x_train)[0])
best_rand_index = applications.adjusted_rand_index(np.asarray(z_train), np.asarray(true_labels))
print(
    f"adjusted Rand index of argmax_k r_ik against the true z: {rand_index:.3f} "
    f"(with the true θ's responsibilities: {best_rand_index:.3f})"
)
print(f"{ambiguous.sum()} of {NUM_TRAIN} points ({100 * ambiguous.mean():.1f}%) have max_k r_ik < 0.9")
assert rand_index > best_rand_index - 0.05

# Each point's colour is the responsibility-weighted mix of its components' colours.
fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True, sharey=True, layout="constrained")
axes[0].scatter(*np.asarray(x_train).T, c=np.clip(responsibilities @ palette[:TRUE_K], 0, 1), s=6)
draw_ellipses(axes[0], theta, palette)
axes[0].set_title("colour = Σ_k r_ik · colour_k; ellipses: the fitted θ")
points = axes[1].scatter(*np.asarray(x_train).T, c=confidence, cmap="magma", s=6, vmin=0.2, vmax=1)
fig.colorbar(points, ax=axes[1], label="max_k p(z = k | x)")
axes[1].set_title("how sure the clustering is")
for axis in axes:
    axis.set_aspect("equal")
plt.show()

# %% [markdown]
# ## Density and anomalies
#
# The fitted p(x; θ) is a density, so points in regions of low probability are suspicious: the
# anomaly score of x is $-\log p(x; \theta)$ (`applications.anomaly_scores`). We score fresh datapoints
# from the same process together with a few planted outliers, and flag every point whose score is above
# the 99th percentile of the training scores.

# %%
rng = np.random.default_rng(0)
angle = rng.uniform(0, 2 * np.pi, 12)
outliers = np.stack([6.5 * np.cos(angle), 6.5 * np.sin(angle)], 1).astype(np.float32)
x_scored = jnp.concatenate([x_test, outliers])
is_outlier = np.arange(len(x_scored)) >= len(x_test)

anomaly_scores = jax.jit(applications.anomaly_scores, static_argnums=0)
all_scores = np.asarray(anomaly_scores(gaussian_mixture.log_marginal, theta, jnp.concatenate([x_train, x_scored])))
train_scores, scores = all_scores[:NUM_TRAIN], all_scores[NUM_TRAIN:]
threshold = np.quantile(train_scores, 0.99)
flagged = scores > threshold
print(f"threshold −log p(x) > {threshold:.2f} nats (99th percentile on the training data)")
print(f"planted outliers flagged: {flagged[is_outlier].sum()} of {is_outlier.sum()}")
print(
    f"fresh datapoints flagged: {flagged[~is_outlier].sum()} of {(~is_outlier).sum()} "
    f"({100 * flagged[~is_outlier].mean():.1f}%, about 1% expected)"
)
assert flagged[is_outlier].all()
assert flagged[~is_outlier].mean() < 0.03

fig, axis = plt.subplots(figsize=(6, 5), layout="constrained")
image = axis.contourf(
    grid_1d,
    grid_1d,
    np.asarray(log_density(theta, grid)).reshape(150, 150),
    levels=np.linspace(-14, -1, 14),
    extend="min",
    cmap="viridis",
)
axis.contour(
    grid_1d,
    grid_1d,
    np.asarray(log_density(theta, grid)).reshape(150, 150),
    levels=[-threshold],
    colors="w",
    linewidths=1.5,
)
fig.colorbar(image, ax=axis, label="fitted log p(x; θ)")
axis.scatter(*np.asarray(x_scored)[~flagged].T, s=5, c="k")
axis.scatter(*np.asarray(x_scored)[flagged].T, s=40, facecolors="none", edgecolors="r", label="flagged")
axis.set_title("white line: the anomaly threshold")
axis.set_aspect("equal")
axis.legend(loc="lower left")
plt.show()

# %% [markdown]
# ## Weakness 1: EM depends on where it starts
#
# EM climbs to *a* local maximum of the log-likelihood, the one whose basin it starts in. Run from
# different k-means++ seeds (`n_init=1`, one key each), it stops at different θ with different
# likelihoods; a bad optimum covers several true components with one Gaussian and spends the components
# it saved on splitting another. `fit_em(..., n_init=R)` is the standard remedy: R starts, keep the
# best (which R starts can still miss, so R matters).

# %%
finals, fits = [], []
for seed in range(NUM_RESTARTS):
    params, run_info = gaussian_mixture.fit_em(jax.random.key(100 + seed), x_train, TRUE_K, **EM_OPTIONS)
    finals.append(float(run_info.objective[int(run_info.num_iterations) - 1]))
    fits.append(params)
finals = np.array(finals)
best = finals.max()
print("final mean log-likelihood of each restart, sorted:", np.round(np.sort(finals), 3))
print(
    f"{np.sum(finals > best - 1e-3)} of {NUM_RESTARTS} restarts reach the best optimum {best:.4f}; "
    f"the worst stops at {finals.min():.4f}"
)
assert finals.max() - finals.min() > 0.05, "every restart found the same optimum"

fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharex=True, sharey=True, layout="constrained")
for axis, index, name in ((axes[0], finals.argmax(), "best"), (axes[1], finals.argmin(), "worst")):
    axis.scatter(*np.asarray(x_train).T, s=4, c="0.6")
    draw_ellipses(axis, fits[index], palette)
    axis.set_title(f"{name} restart: (1/N) log-likelihood {finals[index]:.3f}")
    axis.set_aspect("equal")
plt.show()

# %% [markdown]
# ## Weakness 2: choosing K
#
# The best training log-likelihood can only improve with more components (a mixture with K + 1
# components contains every mixture with K), so it cannot choose K; only EM's local optima (weakness 1)
# can make a larger K come out worse. Two standard answers are the Bayesian
# information criterion, which charges each free parameter ½ log N nats,
#
# $$\text{BIC}(K) = -2 \sum_i \log p(x_i; \hat\theta_K) + P_K \log N, \qquad
# P_K = (K - 1) + K D + K \tfrac{D (D + 1)}{2},$$
#
# and the log-likelihood of held-out data. `applications.select_gaussian_mixture` fits every candidate
# K and reports both.

# %%
selection = applications.select_gaussian_mixture(
    jax.random.key(0), x_train, x_test, CANDIDATE_K, n_init=NUM_RESTARTS, **EM_OPTIONS
)
bic = np.asarray(selection.bic)
train_log_likelihood = np.asarray(selection.train_log_likelihood)
test_log_likelihood = np.asarray(selection.test_log_likelihood)
for k, b, train, test in zip(CANDIDATE_K, bic, train_log_likelihood, test_log_likelihood, strict=True):
    print(f"K = {k}:  BIC {b:9.1f}   train log-lik {train:7.4f}   held-out log-lik {test:7.4f}")
print(
    f"BIC chooses K = {int(selection.num_components_by_bic)}, "
    f"held-out likelihood K = {int(selection.num_components_by_test)}; the data came from K = {TRUE_K}"
)
fell = [k for k, drop in zip(CANDIDATE_K[1:], np.diff(train_log_likelihood), strict=True) if drop < 0]
if fell:
    print(f"EM stopped in a local optimum at K = {fell}: its training fit is below that of K - 1")
true_index = CANDIDATE_K.index(TRUE_K)
assert train_log_likelihood[true_index + 1 :].max() > train_log_likelihood[true_index]  # more K, better fit
assert int(selection.num_components_by_bic) == TRUE_K

fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), layout="constrained")
axes[0].plot(CANDIDATE_K, bic, marker="o")
axes[0].set_ylabel("BIC (lower is better)")
axes[1].plot(CANDIDATE_K, train_log_likelihood, marker="o", label="training data")
axes[1].plot(CANDIDATE_K, test_log_likelihood, marker="o", label="held-out data")
axes[1].set_ylabel("mean log p(x; θ_K)")
axes[1].legend()
for axis in axes:
    axis.axvline(TRUE_K, color="0.7", linestyle="--")
    axis.set_xlabel("K")
plt.show()

# %% [markdown]
# ## What to take away
#
# A mixture of Gaussians is the simplest latent variable model worth the name: a latent class z and a
# Gaussian per class give a multimodal density whose every piece (p(x), p(z | x), a sample) is a short
# exact computation, because z takes only K values. EM uses exactly that, alternating the exact
# posterior with closed-form averages, and never lowers the likelihood; but "never lower" only
# guarantees a local optimum, which is why the restarts above disagree and `n_init` matters. K itself is
# outside what maximum likelihood can choose: the training fit improves with every component, and a
# penalty (BIC) or held-out data is needed to stop. The same fitted density serves as a soft clustering,
# as a generator, and as an anomaly detector.
