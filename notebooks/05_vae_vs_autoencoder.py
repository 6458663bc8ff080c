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
# # 5. The variational autoencoder versus the autoencoder
#
# The seed text contrasts two ways of training the same pair of networks, an encoder x → z and a
# decoder z → x:
#
# - the **autoencoder** maximizes the reconstruction log-likelihood $\log p_\theta(x \mid z = f(x))$
#   of a deterministic code f(x), and nothing else;
# - the **VAE** maximizes the ELBO, $\mathbb{E}_{q_\phi(z \mid x)}[\log p_\theta(x \mid z)] -
#   \mathrm{KL}(q_\phi(z \mid x) \,\|\, p(z))$: a reconstruction term for a *stochastic* code, plus a
#   term that keeps the codes where the prior p(z) = N(0, I) puts its mass.
#
# Below, identical networks from identical initial weights are trained both ways on the binarized
# 8×8 digits, and compared on what the text says separates them: reconstruction, samples from the
# prior, interpolation between codes, the latent space, and imputing the missing upper half of a digit.

# %%
# %matplotlib inline
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lvmjax
from lvmjax import amortized, applications, data, plots, training
from lvmjax.app import figures as app_figures

SMALL = os.environ.get("LVMJAX_NOTEBOOK_SMALL") == "1"
EPOCHS = 3 if SMALL else 200
IMPUTE_SAMPLES = 100 if SMALL else 1000  # K of the VAE's importance-weighted imputation

# %% [markdown]
# ## The same networks, two objectives
#
# `amortized.make_vae` builds the encoder (64 → 256 → 256 → (μ, log σ) of an 8-dimensional z) and the
# decoder (8 → 256 → 256 → 64 Bernoulli logits). The autoencoder uses the encoder's mean as its code,
# f(x) = μ(x), and ignores σ (`amortized.autoencoder_objective`); the VAE samples z ~ q(z | x) =
# N(μ(x), σ(x)²) with the analytic KL (`amortized.elbo_objective`). Both are trained for the same
# epochs, from the same weights, on the same minibatches.

# %%
digits = data.load_digits()
train, test = jnp.asarray(digits.train), jnp.asarray(digits.test)
shape = digits.image_shape
vae = amortized.make_vae(data_dim=64, latent_dim=8, hidden=(256, 256))
initial = jax.jit(vae.init)(jax.random.key(0))  # one compiled call instead of many small ones
objectives = {"autoencoder": amortized.autoencoder_objective(vae), "VAE": amortized.elbo_objective(vae)}

trained = {}
for name, objective in objectives.items():
    optimizer = optax.adam(optax.cosine_decay_schedule(1e-3, EPOCHS * (len(train) // 100), alpha=0.05))
    epoch = jax.jit(training.make_epoch(training.make_train_step(objective, optimizer), batch_size=100))
    state = training.init_train_state(initial, optimizer)
    for key in jax.random.split(jax.random.key(1), EPOCHS):
        state, metrics = epoch(state, key, train)
    trained[name] = state.params
    print(f"{name:12s}: training objective after {EPOCHS} epochs {float(metrics.objective.mean()):7.2f} nats per image")

# %% [markdown]
# The two objectives are different quantities (a reconstruction log-likelihood and a bound on log p(x)),
# so these numbers are not comparable. What each model does with its networks is.
#
# ## Reconstruction
#
# Both models reconstruct an image as the decoder's pixel probabilities at the code of its mean,
# E[x | z = μ(x)] (`amortized.reconstruct`). The reconstruction log-likelihood log p(x | z = μ(x)), on
# the training images and on the 297 test images the models never saw:

# %%
chosen = np.array([np.flatnonzero(digits.test_labels == label)[0] for label in range(10)])  # one per digit
observed = applications.top_half_missing(shape)  # the upper half of every image is missing


@jax.jit
def evaluate(params):
    """Everything below that needs only the trained weights: one compiled program for both models."""

    def reconstruction_log_likelihood(x):
        return lvmjax.log_likelihood(vae.model, params, x, amortized.encode_mean(vae, params, x))

    def reconstruct(x):
        return amortized.reconstruct(vae, params, x)

    pairs = test[chosen[np.array([[0, 1], [3, 8], [4, 7]])]]  # three pairs of digits: 0→1, 3→8, 4→7
    return {
        "train_log_likelihood": jax.vmap(reconstruction_log_likelihood)(train),
        "test_log_likelihood": jax.vmap(reconstruction_log_likelihood)(test),
        "reconstructions": jax.vmap(reconstruct)(test[chosen]),
        "samples": jax.vmap(lambda key: amortized.generate(key, vae, params))(jax.random.split(jax.random.key(2), 100)),
        "interpolations": jax.vmap(lambda pair: amortized.interpolate(vae, params, pair[0], pair[1], 10))(pairs),
        "test_codes": jax.vmap(lambda x: amortized.encode_mean(vae, params, x))(test),
        "train_codes": jax.vmap(lambda x: amortized.encode_mean(vae, params, x))(train),
        # The autoencoder's only way to fill in pixels: reconstruct the image with the missing half grey.
        "filled_reconstructions": jax.vmap(reconstruct)(jnp.where(observed, test, 0.5)),
    }


results = {name: jax.tree_util.tree_map(np.asarray, evaluate(params)) for name, params in trained.items()}
for name, result in results.items():
    print(
        f"{name:12s}: log p(x | z = μ(x)) = {result['train_log_likelihood'].mean():7.2f} on the training "
        f"images, {result['test_log_likelihood'].mean():7.2f} on the test images"
    )
ae, vae_result = results["autoencoder"], results["VAE"]
if not SMALL:
    # The autoencoder wins on the images it was trained on and loses on new ones.
    assert ae["train_log_likelihood"].mean() > vae_result["train_log_likelihood"].mean()
    assert ae["test_log_likelihood"].mean() < vae_result["test_log_likelihood"].mean()

plots.image_rows(
    {
        "test image": np.asarray(test[chosen]),
        "autoencoder": ae["reconstructions"],
        "VAE": vae_result["reconstructions"],
    },
    shape,
    title="reconstructions E[x | z = μ(x)]",
)

# %% [markdown]
# Trained on reconstruction alone, the autoencoder's 8 real numbers per image have room to memorize
# the 1500 training images almost exactly; nothing in its objective asks the codes of new images to
# make sense. The VAE's noise on z and its KL term stop it from encoding the finest detail, which costs
# it on the training images and pays off on the test images.
#
# ## Samples from the prior
#
# A generative model generates by ancestral sampling: z ~ p(z) = N(0, I), then x ~ p(x | z)
# (`amortized.generate` shows the pixel probabilities E[x | z]). The decoder of the autoencoder can be
# fed the same z, but its codes were never asked to look like N(0, I): below, the spread
# of the codes μ(x) of the training images, to set beside the prior's standard deviation of 1, and how
# far each sample (thresholded at ½) is from its nearest training image, in pixels that differ.

# %%
binary_train = np.asarray(train, bool)


def nearest_training_distance(images):
    """For each image (probabilities, thresholded at ½), the pixels in which the nearest training image differs."""
    return (np.asarray(images)[:, None, :] > 0.5) != binary_train[None]


distance_to_data = {}
for name, result in results.items():
    distance_to_data[name] = nearest_training_distance(result["samples"]).sum(-1).min(-1)
    print(
        f"{name:12s}: sd of the codes per dimension {np.round(result['train_codes'].std(0), 2)}; "
        f"samples differ from their nearest training image in {distance_to_data[name].mean():.1f} of 64 pixels"
    )
if not SMALL:
    assert distance_to_data["VAE"].mean() < distance_to_data["autoencoder"].mean()
    assert np.all(vae_result["train_codes"].std(0) < 1.5)

plots.image_rows(
    {"autoencoder": ae["samples"][:20], "VAE": vae_result["samples"][:20]}, shape, title="decoded z ~ N(0, I)"
)

# %% [markdown]
# ## Interpolation
#
# The straight line between the codes of two test digits, decoded at ten points
# (`amortized.interpolate`), and two numbers per model: how far the images inside the paths are from
# the nearest training image, and how abruptly a path changes (the share of its total change made in
# its largest single step; 11% would be perfectly even).

# %%
rows = {}
for index, (first, second) in enumerate([(0, 1), (3, 8), (4, 7)]):
    for name, result in results.items():
        rows[f"{name} {first}→{second}"] = result["interpolations"][index]
plots.image_rows(rows, shape, title="decoded codes along (1 − t) f(x_a) + t f(x_b)")

# %%
for name, result in results.items():
    inside = result["interpolations"][:, 1:-1].reshape(-1, 64)  # without the two ends
    steps = np.abs(np.diff(result["interpolations"], axis=1)).sum(-1)  # (pairs, 9): change per step
    print(
        f"{name:12s}: interpolated images differ from their nearest training image in "
        f"{nearest_training_distance(inside).sum(-1).min(-1).mean():.1f} of 64 pixels; the largest of the 9 "
        f"steps makes {100 * (steps.max(1) / steps.sum(1)).mean():.0f}% of the change along a path"
    )

# %% [markdown]
# On these small images the text's contrast is milder than for sampling: between the codes of two
# real digits both decoders produce digit-like images, and the autoencoder's path moves in only
# slightly larger jumps, its images drawn in near-certain black and white. The difference is *where* the
# paths run. Between two data codes the autoencoder stays among codes it was trained on; the prior's
# samples, which land anywhere within a few units of the origin, show what its decoder does elsewhere.
#
# ## The latent space, coloured by digit
#
# The codes μ(x) of the test images, projected on their first two principal axes
# (`app_figures.principal_plane`, an SVD of the centred codes, which keeps the largest spread of the 8
# dimensions), coloured by the digit's label.
# How well the codes separate the digits is measured by the labels of their neighbours: the fraction of
# test images whose five nearest training codes mostly carry their own label.

# %%
panels = []
for name, result in results.items():
    embedding, explained = app_figures.principal_plane(result["test_codes"])
    distances = np.linalg.norm(result["test_codes"][:, None] - result["train_codes"][None], axis=-1)
    neighbours = digits.train_labels[np.argsort(distances, axis=1)[:, :5]]
    votes = np.array([np.bincount(row, minlength=10).argmax() for row in neighbours])
    accuracy = np.mean(votes == digits.test_labels)
    print(
        f"{name:12s}: 5-nearest-neighbour label accuracy of the codes {accuracy:.3f}; "
        f"the plane holds {100 * sum(explained):.0f}% of their variance"
    )
    panels.append(
        plots.latent_scatter(embedding, digits.test_labels, title=f"{name}: test codes μ(x), principal plane")
    )
panels[0]

# %%
panels[1]

# %% [markdown]
# Both encoders group the digits by label about equally well; what differs is the scale. The VAE's
# codes sit within a few units of the origin, where N(0, I) puts its mass; the autoencoder's spread over
# tens of units (note the axes), so almost all of the prior's samples fall in the small region at the
# centre of its code space.

# %% [markdown]
# ## Imputing the upper half of a digit
#
# The seed text's example: the upper half of an image is missing, and the model should fill it in. The
# VAE is a model of p(x), so the answer is the conditional mean $E[x_m \mid x_o] =
# \mathbb{E}_{p(z \mid x_o)}[E[x_m \mid z]]$, with the posterior given the observed half only; in
# `applications.impute_vae` importance weighting corrects the encoder's guess (it sees the image with
# the missing half grey) toward that posterior. The autoencoder has no prior p(z), hence no p(x) to
# condition, only the reconstruction of the grey-filled image. The yardstick: each missing pixel's mean
# over the training images, which ignores the observed half. Errors are squared differences between the
# filled-in probability and the true 0/1 pixel, over all 297 test images.

# %%
impute = jax.jit(
    jax.vmap(lambda key, x: applications.impute_vae(key, vae, trained["VAE"], x, observed, IMPUTE_SAMPLES)[1])
)
imputed = np.asarray(impute(jax.random.split(jax.random.key(3), len(test)), test))
missing = ~np.asarray(observed)
truth = np.asarray(test)


def squared_error(filled):
    return float(np.mean((filled[:, missing] - truth[:, missing]) ** 2))


errors = {
    "training mean": squared_error(np.broadcast_to(np.asarray(train).mean(0), truth.shape)),
    "autoencoder, reconstruct the filled image": squared_error(ae["filled_reconstructions"]),
    "VAE, reconstruct the filled image": squared_error(vae_result["filled_reconstructions"]),
    "VAE, E[x_m | x_o] (impute_vae)": squared_error(imputed),
}
for name, error in errors.items():
    print(f"{name:42s} {error:.4f}")
if not SMALL:
    assert errors["VAE, E[x_m | x_o] (impute_vae)"] < errors["training mean"]
    assert errors["training mean"] < errors["autoencoder, reconstruct the filled image"]

plots.imputation_grid(
    truth[chosen],
    np.broadcast_to(np.asarray(observed), (10, 64)),
    {"autoencoder": np.where(observed, truth[chosen], ae["filled_reconstructions"][chosen]), "VAE": imputed[chosen]},
    shape,
    title="upper half missing (red)",
)

# %% [markdown]
# ## What to take away
#
# The two models share every weight shape and differ only in their objective, and that difference is
# the whole story. The autoencoder's reconstruction objective lets it place codes anywhere and memorize
# its training set, so it reconstructs those images best but new ones worse, and its decoder is not a
# generative model: z ~ N(0, I) lands between its scattered codes. The VAE's KL term makes the codes of
# the data fill the prior, which is what makes sampling from it and a probabilistic p(x) work;
# with a density in hand, filling in a missing half is conditioning, E[x_m | x_o], which beats the
# pixel means, whereas "reconstruct the grey-filled image" is a guess that neither model makes well.
