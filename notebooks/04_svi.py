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
# # 4. Stochastic variational inference and amortization
#
# Learning a latent variable model means raising $\sum_i \text{ELBO}(x_i; \theta, \phi_i)$, with
#
# $$\mathcal{L}(x_i; \theta, \phi_i) = \mathbb{E}_{q(z; \phi_i)}[\log p(z, x_i; \theta) - \log q(z;
# \phi_i)],$$
#
# over the model's θ and one variational φ_i per datapoint (seed text, §4). This notebook follows the
# text's steps:
#
# 1. **Gradients with respect to φ.** The expectation is over a distribution that depends on φ. The
#    reparameterization trick and the score-function estimator are both unbiased; their variances,
#    measured against the exact gradient on a model where it is known, differ by more than tenfold.
# 2. **SVI**, the text's algorithm on the binarized digits: a decoder network $p_\theta(x \mid z)$ and
#    1500 separate φ_i; for each minibatch, optimize its φ_i with θ fixed, then take one step on θ.
# 3. **Amortized inference**: an encoder maps x to φ(x) in one pass, trained together with the same
#    decoder (a VAE), and the **amortization gap** it pays for that speed.

# %%
# %matplotlib inline
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import lvmjax
from lvmjax import amortized, data, semi_amortized, svi, training, variational
from lvmjax.models import linear_gaussian

SMALL = os.environ.get("LVMJAX_NOTEBOOK_SMALL") == "1"
NUM_GRADIENTS = 2_000 if SMALL else 20_000  # gradient draws per estimator
INNER_STEPS = (10,) if SMALL else (1, 10)  # φ-steps per θ-step of SVI
SVI_EPOCHS = 2 if SMALL else 30
VAE_EPOCHS = 3 if SMALL else 100
REFINE_STEPS = 20 if SMALL else 200  # φ-steps per test image when refining the encoder's q
MARGINAL_SAMPLES = 100 if SMALL else 2000  # K of the importance-sampled log p(x)

# %% [markdown]
# ## 1. Two unbiased gradients of an expectation
#
# For $q(z; \phi) = \mathcal{N}(\mu, \operatorname{diag} \sigma^2)$, φ = (μ, log σ), we need
# $\nabla_\phi \mathbb{E}_{q(z; \phi)}[r(z)]$ with $r(z) = \log p(x, z) - \log q(z; \phi)$:
#
# - **reparameterization** (the text's §4.2): $z = \mu + \sigma \epsilon = g(\epsilon; \phi)$,
#   $\epsilon \sim \mathcal{N}(0, I)$, so $\nabla_\phi \mathbb{E}_q[r(z)] =
#   \mathbb{E}_\epsilon[\nabla_\phi r(g(\epsilon; \phi))]$: the gradient flows through the sample;
# - **score function** (REINFORCE): $\nabla_\phi \mathbb{E}_q[r(z)] = \mathbb{E}_q[r(z)\, \nabla_\phi
#   \log q(z; \phi)]$ (plus the explicit dependence of r on φ), which needs no derivative of r in z and
#   so works for discrete z too (with K > 1 samples lvmjax subtracts a leave-one-out baseline from r).
#
# Both are `lvmjax.elbo(..., gradient="reparam" | "score")`, which return the same value and differ only
# in their gradient; we draw each with one sample, K = 1. On the linear-Gaussian model of notebook 3
# the ELBO of a Gaussian q is known in closed form (`linear_gaussian.exact_elbo`), so its exact gradient
# is `jax.grad` of that.

# %%
lg_theta = linear_gaussian.Params(
    weight=jnp.array([[1.0, 0.7], [0.8, 1.0], [1.2, 1.0], [0.5, 0.3], [0.3, 0.6]]),
    bias=jnp.zeros(5),
    noise_variance=jnp.full(5, 0.5),
)
_, x_lg = jax.jit(lvmjax.sample, static_argnums=1)(jax.random.key(0), linear_gaussian.model, lg_theta)
family = variational.mean_field_gaussian(2)
phi = {"mean": jnp.array([0.5, -0.5]), "log_scale": jnp.array([-0.5, -0.5])}


def flat(grads):
    return jnp.concatenate([grads["mean"], grads["log_scale"]])  # (μ₁, μ₂, log σ₁, log σ₂)


@jax.jit
def gradients(keys):
    """The exact ∇_φ ELBO, and one Monte Carlo draw of it (K = 1) per key and estimator."""

    def one(key, estimator):
        return flat(
            jax.grad(
                lambda phi: lvmjax.elbo(
                    key, linear_gaussian.model, lg_theta, family.distribution(phi), x_lg, gradient=estimator
                )
            )(phi)
        )

    exact = flat(jax.grad(lambda phi: linear_gaussian.exact_elbo(lg_theta, family.distribution(phi), x_lg))(phi))
    return exact, {
        estimator: jax.vmap(lambda key, estimator=estimator: one(key, estimator))(keys)
        for estimator in ("reparam", "score")
    }


exact_flat, draws = jax.tree_util.tree_map(np.asarray, gradients(jax.random.split(jax.random.key(1), NUM_GRADIENTS)))
print("                 ∂/∂μ₁            ∂/∂μ₂            ∂/∂log σ₁        ∂/∂log σ₂")
print("exact      " + "".join(f"{value:17.3f}" for value in exact_flat))
for estimator, values in draws.items():
    mean, se = values.mean(0), values.std(0, ddof=1) / np.sqrt(NUM_GRADIENTS)
    print(
        f"{estimator:10s} "
        + "".join(f"{m:9.3f} ± {4 * s:5.3f}" for m, s in zip(mean, se, strict=True))
        + "   mean of the draws ± 4 standard errors"
    )
    print(f"{'':10s} " + "".join(f"{sd:17.2f}" for sd in values.std(0)) + "   sd of one draw")
    assert np.all(np.abs(mean - exact_flat) < 4 * se), f"the {estimator} gradient is biased"
ratio = draws["score"].var(0).sum() / draws["reparam"].var(0).sum()
print(f"the score-function gradient has {ratio:.0f} times the variance of the reparameterized one")
assert ratio > 10

# %% [markdown]
# Both estimators average to the exact gradient; the histograms show what a *single* draw, the thing
# an optimizer actually sees, looks like.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), layout="constrained")
for axis, coordinate, label in ((axes[0], 0, "∂ELBO/∂μ₁"), (axes[1], 2, "∂ELBO/∂log σ₁")):
    bins = np.linspace(*np.quantile(draws["score"][:, coordinate], [0.005, 0.995]), 80)
    axis.hist(draws["score"][:, coordinate], bins=bins, alpha=0.6, label="score function")
    axis.hist(draws["reparam"][:, coordinate], bins=bins, alpha=0.6, label="reparameterized")
    axis.axvline(exact_flat[coordinate], color="k", linestyle="--", label="exact")
    axis.set_xlabel(label)
axes[0].legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 2. SVI: one φ_i per datapoint
#
# Now a model whose likelihood is a neural network: z ~ N(0, I_8) and each of the 64 pixels of a
# binarized 8×8 digit is Bernoulli with probability given by a decoder $p_\theta(x \mid z)$ (one hidden
# layer of 128 units; `amortized.make_vae` builds it, and SVI uses only its decoder). Each of the 1500
# training images gets its own $\phi_i = (\mu_i, \log \sigma_i)$. The text's algorithm,
# `svi.svi(..., schedule="inner")`, takes a minibatch of 100 images and
#
# 1. optimizes their φ_i with θ fixed, for `inner_steps` Adam steps (the text says "until
#    convergence"),
# 2. then takes one Adam step on θ at the optimized φ_i.
#
# We compare 1 and 10 inner steps per θ step; an epoch is one compiled `lax.scan` over the 15
# minibatches (`training.make_epoch`). Like every learner of lvmjax, `svi.svi` is a `training.Trainer`:
# `init(key, θ)` makes the state (here drawing φ_1 … φ_N), `step(state, key, batch)` returns the new
# state and an info whose `objective` is the minibatch's mean ELBO.

# %%
digits = data.load_digits()
train, test = jnp.asarray(digits.train), jnp.asarray(digits.test)
num_train = train.shape[0]
vae = amortized.make_vae(data_dim=64, latent_dim=8, hidden=(128,))
initial = jax.jit(vae.init)(jax.random.key(0))  # θ and the encoder's weights; compiled, one call
theta_optimizer, phi_optimizer = optax.adam(1e-3), optax.adam(3e-2)


def train_epochs(trainer, state, data, num_epochs):
    """Runs `num_epochs` compiled epochs of `trainer`; the mean training objective and the seconds of each."""
    epoch = jax.jit(training.make_epoch(trainer.step, batch_size=100))
    history, seconds = [], []
    for key in jax.random.split(jax.random.key(2), num_epochs):
        start = time.perf_counter()
        state, info = epoch(state, key, data)
        history.append(float(info.objective.mean()))
        seconds.append(time.perf_counter() - start)
    return state, history, np.median(seconds[1:]) if num_epochs > 1 else seconds[0]


runs = {}  # name -> (training ELBO per epoch, seconds per epoch)
for inner_steps in INNER_STEPS:
    trainer = svi.svi(
        vae.model, vae.family, theta_optimizer, phi_optimizer, num_train, analytic_kl=True, inner_steps=inner_steps
    )
    state = jax.jit(trainer.init)(jax.random.key(1), {"decoder": initial["decoder"]})  # φ_1 … φ_N, compiled
    _, history, seconds = train_epochs(trainer, state, (jnp.arange(num_train), train), SVI_EPOCHS)
    runs[f"SVI, {inner_steps} φ-step{'s' if inner_steps > 1 else ''} per θ-step"] = (history, seconds)
    print(
        f"SVI, inner_steps = {inner_steps:2d}: training ELBO after {SVI_EPOCHS} epochs {history[-1]:.2f} nats, "
        f"{seconds:.3f} s per epoch"
    )
if not SMALL:  # a few epochs are too few to separate them
    assert runs["SVI, 10 φ-steps per θ-step"][0][-1] > runs["SVI, 1 φ-step per θ-step"][0][-1] + 1.0

# %% [markdown]
# ## 3. Amortized inference: an encoder
#
# Every θ step above waits for `inner_steps` updates of the minibatch's φ_i; the text's remedy is to
# learn one function $f_\lambda$ with $\phi_i = f_\lambda(x_i)$ instead of N separate φ_i: an encoder
# network, here one hidden layer of 128 units mapping an image to (μ, log σ). Its weights (which lvmjax,
# following the notation $q_\phi(z \mid x)$, calls φ) and θ are trained together on the same ELBO, one
# gradient step on both per minibatch (`amortized.elbo_objective` with `training.gradient_ascent`): a
# variational autoencoder with the same decoder as above.

# %%
trainer = training.gradient_ascent(amortized.elbo_objective(vae), optax.adam(1e-3))
state, history, seconds = train_epochs(trainer, trainer.init(jax.random.key(0), initial), train, VAE_EPOCHS)
params = state.params
runs["VAE (amortized)"] = (history, seconds)
print(f"VAE: training ELBO after {VAE_EPOCHS} epochs {history[-1]:.2f} nats, {seconds:.3f} s per epoch")
assert seconds < runs["SVI, 10 φ-steps per θ-step"][1]

# %% [markdown]
# Left, the training ELBO per epoch; right, the same against the training time (epochs × the median
# seconds per epoch, compilation excluded). With one φ-step per θ-step, each θ update is taken at a q far
# from the best one for the current θ: the bound is loose and θ learns from a poor surrogate. Ten inner
# steps give a tighter bound and a better θ per epoch, at several times the cost of an epoch. The
# encoder needs neither: its φ(x) improves with every step for all images at once.

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
for name, (history, seconds) in runs.items():
    epochs = np.arange(1, len(history) + 1)
    axes[0].plot(epochs, history, label=name)
    axes[1].plot(epochs * seconds, history, label=name)
axes[0].set_xlabel("epoch")
axes[1].set_xlabel("training seconds")
for axis in axes:
    axis.set_ylabel("training ELBO per image (nats)")
    axis.set_ylim(min(history[-1] for history, _ in runs.values()) - 15, None)
axes[0].legend()
plt.show()

# %% [markdown]
# ## The amortization gap
#
# The encoder answers in one pass, but it is one function for all x, so for a given x its φ(x) need not
# be the best φ for that x. With q* the best member of the family for x (found by starting at φ(x) and
# optimizing further, `semi_amortized.refine`), the gap of the VAE's bound splits in two (Cremer, Li & Duvenaud
# 2018):
#
# $$\log p(x) - \text{ELBO}(q_{\phi(x)}) = \underbrace{\log p(x) - \text{ELBO}(q^*)}_{\text{approximation
# gap: the family}} + \underbrace{\text{ELBO}(q^*) - \text{ELBO}(q_{\phi(x)})}_{\text{amortization gap:
# the encoder}}.$$
#
# `semi_amortized.amortization_gap` computes both for every test image, with log p(x) importance-sampled from q*.

# %%
gap = jax.jit(
    semi_amortized.amortization_gap, static_argnames=("amortized", "refine_steps", "marginal_samples", "chunk_size")
)(jax.random.key(7), vae, params, test, refine_steps=REFINE_STEPS, marginal_samples=MARGINAL_SAMPLES, chunk_size=100)
log_px = float(gap.log_marginal.mean())
amortized_elbo, refined_elbo = float(gap.amortized_elbo.mean()), float(gap.refined_elbo.mean())
print(f"mean over {test.shape[0]} test images (nats):")
print(
    f"  log p(x) (importance sampling, K = {MARGINAL_SAMPLES}) {log_px:8.3f} "
    f"± {float(jnp.sqrt(jnp.sum(gap.log_marginal_stderr**2))) / test.shape[0]:.3f}"
)
print(f"  ELBO of q* (refined, {REFINE_STEPS} steps)            {refined_elbo:8.3f}")
print(f"  ELBO of the encoder's q                       {amortized_elbo:8.3f}")
print(
    f"  approximation gap {float(gap.approximation_gap.mean()):.3f} + amortization gap "
    f"{float(gap.amortization_gap.mean()):.3f} = {log_px - amortized_elbo:.3f}"
)
assert np.all(np.asarray(gap.refined_elbo) >= np.asarray(gap.amortized_elbo))
assert float(gap.amortization_gap.mean()) > 0.05
assert float(gap.approximation_gap.mean()) > 0

fig, axis = plt.subplots(figsize=(7, 3.5), layout="constrained")
bins = np.linspace(0, np.quantile(np.concatenate([gap.approximation_gap, gap.amortization_gap]), 0.99), 40)
axis.hist(np.asarray(gap.approximation_gap), bins=bins, alpha=0.6, label="approximation gap")
axis.hist(np.asarray(gap.amortization_gap), bins=bins, alpha=0.6, label="amortization gap")
axis.set_xlabel("nats, per test image")
axis.legend()
plt.show()

# %% [markdown]
# ## What to take away
#
# Gradients with respect to φ are the crux of variational learning: both estimators are unbiased, but
# the reparameterization trick differentiates through the sample and is far less noisy than the score
# function, which only sees how likely the sample was. With them, SVI learns θ by the text's nested
# loop, and the loop's weak point is visible: the inner optimization over φ_i has to be good for the θ
# step to be, so every θ step costs many φ steps (and a new datapoint needs an optimization of its own).
# An encoder amortizes that work into one network evaluation per datapoint and learns faster per
# second; the price is the amortization gap, the part of the bound lost because one function of x
# cannot be the best φ for every x, which refining its output per datapoint buys back.
