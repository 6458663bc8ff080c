"""`lvmjax.figures` and the masks of `applications.observed_mask`: what sample, impute and plot compute."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import linear_bernoulli_vae

from lvmjax import app, applications
from lvmjax.app import figures as app_figures
from lvmjax.app import registry
from lvmjax.errors import RunError
from lvmjax.models import bernoulli_mixture


def test_the_masks_hide_exactly_the_named_half():
    top = applications.observed_mask("top-half", 35, (7, 5)).reshape(7, 5)
    assert not top[:3].any() and top[3:].all()  # of 7 rows, the 3 upper ones are missing
    bottom = applications.observed_mask("bottom-half", 35, (7, 5)).reshape(7, 5)
    assert bottom[:4].all() and not bottom[4:].any()
    left = applications.observed_mask("left-half", 35, (7, 5)).reshape(7, 5)
    assert not left[:, :2].any() and left[:, 2:].all()
    right = applications.observed_mask("right-half", 35, (7, 5)).reshape(7, 5)
    assert right[:, :3].all() and not right[:, 3:].any()
    # Even sides: opposite halves are complements, and top-half is the seed text's mask.
    np.testing.assert_array_equal(
        applications.observed_mask("top-half", 64, (8, 8)), ~applications.observed_mask("bottom-half", 64, (8, 8))
    )
    np.testing.assert_array_equal(
        applications.observed_mask("top-half", 64, (8, 8)), np.asarray(applications.top_half_missing((8, 8)))
    )
    first = applications.observed_mask("random", 9, key=jax.random.PRNGKey(3))
    assert first.shape == (9,) and (~first).sum() == 4
    np.testing.assert_array_equal(first, applications.observed_mask("random", 9, key=jax.random.PRNGKey(3)))
    assert any(
        not np.array_equal(first, applications.observed_mask("random", 9, key=jax.random.PRNGKey(seed)))
        for seed in range(4, 8)
    )


@pytest.mark.parametrize(
    "name, shape, message",
    [
        ("upper", (8, 8), "unknown mask 'upper'"),
        ("top-half", None, "needs images"),
        ("left-half", (4, 4), "have 16 entries, not D = 64"),
    ],
)
def test_a_mask_that_cannot_apply_is_refused(name, shape, message):
    with pytest.raises(ValueError, match=message):
        applications.observed_mask(name, 64, shape)


def run_of(model, params, data_dim, image_shape, vae=None):
    return app.Run(app.FitConfig(model=model), params, data_dim, image_shape, vae, registry.get(model))


def test_generated_mixture_images_are_its_prototypes_in_proportion_to_the_weights():
    probs = np.array([[0.1, 0.9, 0.9, 0.1], [0.8, 0.8, 0.2, 0.2], [0.5, 0.05, 0.95, 0.5]], np.float32)
    weights = np.array([0.5, 0.3, 0.2])
    params = {"logits": jnp.log(jnp.asarray(weights, jnp.float32)), "probs_logits": jnp.log(probs / (1 - probs))}
    run = run_of("mob", params, 4, (2, 2))
    num = 4000
    images = app_figures.generate(jax.random.PRNGKey(0), run, num)
    distances = np.abs(images[:, None, :] - probs[None]).max(axis=2)
    assert distances.min(axis=1).max() < 1e-6  # every image is one of the three prototypes
    counts = np.bincount(distances.argmin(axis=1), minlength=3)
    standard_errors = np.sqrt(weights * (1 - weights) / num)
    assert np.all(np.abs(counts / num - weights) < 4 * standard_errors), counts / num
    draws = app_figures.generate(jax.random.PRNGKey(0), run, 50, draw=True)
    assert set(np.unique(draws)) <= {0.0, 1.0}
    with pytest.raises(RunError, match="at least 1"):
        app_figures.generate(jax.random.PRNGKey(0), run, 0)


def test_svi_imputation_weighs_prior_draws_by_the_likelihood_of_the_observed_pixels():
    """svi has no encoder: z_k ~ p(z), so w_k = p(x_o | z_k) and E[x_m | x_o] ≈ Σ_k w̄_k σ(W z_k + b)_m."""
    vae, params = linear_bernoulli_vae()
    run = run_of("svi", {"decoder": params["decoder"], "phi": None}, 16, (4, 4), vae)
    data = np.asarray(np.random.default_rng(0).random((3, 16)) < 0.5, np.float32)
    observed = applications.observed_mask("top-half", 16, (4, 4))
    key, num_samples = jax.random.PRNGKey(1), 256
    imputed = app_figures.impute(key, run, data, observed, num_samples)

    weight = np.asarray(params["decoder"]["weight"], np.float64)
    bias = np.asarray(params["decoder"]["bias"], np.float64)
    for row in range(3):
        row_key = jax.random.fold_in(key, row)
        keys = jax.vmap(jax.random.fold_in, (None, 0))(row_key, jnp.arange(num_samples))
        z = np.asarray(jax.vmap(lambda k: jax.random.normal(k, (2,)))(keys), np.float64)
        probs = 1 / (1 + np.exp(-(z @ weight.T + bias)))
        x_o = data[row][observed].astype(np.float64)
        log_weights = np.sum(x_o * np.log(probs[:, observed]) + (1 - x_o) * np.log1p(-probs[:, observed]), axis=1)
        weights = np.exp(log_weights - log_weights.max())
        expected = np.where(observed, data[row], weights @ probs / weights.sum())
        np.testing.assert_allclose(imputed[row], expected, rtol=1e-4, atol=1e-6)


def test_imputation_under_the_mixture_is_the_exact_one_and_the_autoencoder_has_none():
    params = bernoulli_mixture.Params(
        logits=jnp.zeros(2), probs_logits=jnp.asarray(np.random.default_rng(1).normal(size=(2, 4)), jnp.float32)
    )
    run = run_of("mob", params._asdict(), 4, (2, 2))
    data = np.array([[1, 0, 1, 1], [0, 0, 1, 0]], np.float32)
    observed = applications.observed_mask("top-half", 4, (2, 2))
    imputed = app_figures.impute(None, run, data, observed)
    for row in range(2):
        expected = applications.impute_bernoulli_mixture(params, data[row], observed)[1]
        np.testing.assert_allclose(imputed[row], expected, rtol=1e-6)
    with pytest.raises(RunError, match=r"shape \(N, 4\)"):
        app_figures.impute(None, run, data[:, :3], observed)
    with pytest.raises(RunError, match="no prior p\\(z\\)"):
        app_figures.impute(None, run_of("ae", {}, 4, (2, 2)), data, observed)


def test_the_principal_plane_of_planar_points_keeps_their_distances():
    rng = np.random.default_rng(0)
    plane = rng.normal(size=(50, 2)) * np.array([3.0, 1.0])
    rotation = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    points = np.column_stack([plane, np.zeros((50, 2))]) @ rotation.T + 5.0
    projected, ratio = app_figures.principal_plane(points)
    original = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.testing.assert_allclose(np.linalg.norm(projected[:, None] - projected[None], axis=2), original, atol=1e-9)
    np.testing.assert_allclose(sum(ratio), 1.0)
    assert ratio[0] > ratio[1]
    np.testing.assert_allclose(projected.mean(axis=0), 0.0, atol=1e-12)
