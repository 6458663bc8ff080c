"""Invariants of the estimators and the mixtures, on inputs drawn by hypothesis.

- ELBO <= IWAE_K <= log p(x): per draw where it is exact (the IWAE bound of a set of log-weights,
  log (1/K) Σ_k exp(w_k), is at least their mean by Jensen, and equals it at K = 1), and in
  expectation against the exact log p(x) of a linear-Gaussian model (closed form) and of a
  Gaussian mixture (enumeration), within 4 standard errors over fixed keys.
- Permuting a mixture's components leaves log p(x) unchanged and permutes the responsibilities;
  permuting the datapoints permutes EM's per-point outputs and leaves the fit unchanged.
- Under `jax.vmap`, a function of one datapoint gives, for a batch of any size, the batch of its
  single results.

Shapes are fixed per test, or drawn from a small set, so that each compiles once or a few times;
`derandomize=True` makes every run try the same examples (and nothing is stored: `database=None`).
"""

import itertools

import distrax
import jax
import jax.numpy as jnp
import numpy as np
from helpers import make_gaussian_mixture, make_linear_gaussian
from hypothesis import given, settings
from hypothesis import strategies as st

import lvmjax
from lvmjax.models import bernoulli_mixture, gaussian_mixture, linear_gaussian

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True, database=None)
LG_PARAMS, LG_X = make_linear_gaussian()  # D = 4, d = 2
GM_PARAMS, GM_X = make_gaussian_mixture()  # K = 3, D = 2
NUM_KEYS = 200  # repetitions of a Monte Carlo estimate, for its standard error
SAMPLE_COUNTS = (1, 4, 32)

seeds = st.integers(0, 2**31 - 1)
shifts = st.floats(-2.0, 2.0)
log_scales = st.floats(-1.5, 1.0)


def gaussian_q(shift, log_scale):
    """q(z) = N(posterior mean + shift, (e^log_scale · posterior sd)²), diagonal: near or far from p(z | x)."""
    posterior = linear_gaussian.posterior(LG_PARAMS, LG_X)
    scale = jnp.sqrt(jnp.diag(posterior.covariance()))
    return distrax.MultivariateNormalDiag(posterior.mean() + shift * scale, jnp.exp(log_scale) * scale)


@jax.jit
def _linear_gaussian_bounds(key, shift, log_scale):
    """For each of NUM_KEYS keys: the K = 32 log-weights, and the ELBO and the IWAE bound of those same
    draws; then the IWAE bounds for SAMPLE_COUNTS (IWAE_1 is the one-sample ELBO), the closed-form ELBO
    and log p(x). The draws are shared across K: z_k comes from fold_in(key, k)."""
    model, q = linear_gaussian.model, gaussian_q(shift, log_scale)

    def one(key):
        return (
            lvmjax.log_weights(key, model, LG_PARAMS, q, LG_X, 32),
            lvmjax.elbo(key, model, LG_PARAMS, q, LG_X, 32),
            jnp.stack([lvmjax.iwae_bound(key, model, LG_PARAMS, q, LG_X, count) for count in SAMPLE_COUNTS]),
        )

    weights, elbos, bounds = jax.vmap(one)(jax.random.split(key, NUM_KEYS))
    return (
        weights,
        elbos,
        bounds.T,
        linear_gaussian.exact_elbo(LG_PARAMS, q, LG_X),
        linear_gaussian.log_marginal(LG_PARAMS, LG_X),
    )


@SETTINGS
@given(seed=seeds, shift=shifts, log_scale=log_scales)
def test_per_draw_the_iwae_bound_is_log_mean_exp_of_the_weights_whose_mean_is_the_elbo(seed, shift, log_scale):
    """log (1/K) Σ_k exp(w_k) >= (1/K) Σ_k w_k for every draw: the IWAE bound is above the ELBO of the
    same draws, not only in expectation; at K = 1 both are the first log-weight."""
    weights, elbo, bounds, _, _ = map(np.asarray, _linear_gaussian_bounds(jax.random.PRNGKey(seed), shift, log_scale))
    weights64 = weights.astype(np.float64)
    tolerance = 1e-6 * np.abs(weights64).max(axis=1) + 1e-6  # float32 rounding of the sums
    iwae = bounds[SAMPLE_COUNTS.index(32)]
    np.testing.assert_array_less(np.abs(iwae - (np.logaddexp.reduce(weights64, axis=1) - np.log(32))), tolerance)
    np.testing.assert_array_less(np.abs(elbo - weights64.mean(axis=1)), tolerance)
    assert np.all(iwae >= elbo - tolerance), (iwae, elbo)
    np.testing.assert_allclose(bounds[SAMPLE_COUNTS.index(1)], weights[:, 0], rtol=1e-6)  # separate programs


def _mean_and_stderr(values):
    values = np.asarray(values, np.float64)
    return values.mean(), values.std(ddof=1) / np.sqrt(len(values))


@SETTINGS
@given(seed=seeds, shift=shifts, log_scale=log_scales)
def test_elbo_below_iwae_below_log_marginal_in_expectation_linear_gaussian(seed, shift, log_scale):
    """E[ELBO] = the closed-form ELBO <= E[IWAE_K] <= E[IWAE_K'] <= log p(x) for K <= K', within 4 standard
    errors; the draws are shared across K, so the differences are paired."""
    _, _, bounds, exact_elbo, log_marginal = _linear_gaussian_bounds(jax.random.PRNGKey(seed), shift, log_scale)
    bounds = np.asarray(bounds, np.float64)
    assert float(exact_elbo) <= float(log_marginal) + 1e-5  # KL(q ‖ p(z | x)) >= 0, exactly
    mean, stderr = _mean_and_stderr(bounds[0])
    assert abs(mean - float(exact_elbo)) <= 4 * stderr + 1e-5  # IWAE_1 is the ELBO: unbiased
    for smaller, larger in itertools.pairwise(bounds):
        mean, stderr = _mean_and_stderr(larger - smaller)
        assert mean >= -4 * stderr - 1e-5, (mean, stderr)
    mean, stderr = _mean_and_stderr(float(log_marginal) - bounds[-1])
    assert mean >= -4 * stderr - 1e-5, (mean, stderr)


@jax.jit
def _mixture_bounds(key, logits):
    """With a categorical q(z): the exact ELBO, and NUM_KEYS draws of (mean log w, log mean exp w) of K = 7
    log-weights, for the Gaussian mixture; its exact log p(x) by enumeration."""
    q = distrax.Categorical(logits=logits)

    def one(key):
        weights = lvmjax.log_weights(key, gaussian_mixture.model, GM_PARAMS, q, GM_X, 7)
        estimate = lvmjax.log_marginal_is(key, gaussian_mixture.model, GM_PARAMS, q, GM_X, 7)
        return jnp.mean(weights), estimate.log_marginal

    elbos, estimates = jax.vmap(one)(jax.random.split(key, NUM_KEYS))
    return (
        elbos,
        estimates,
        lvmjax.elbo_exact(gaussian_mixture.model, GM_PARAMS, q, GM_X),
        lvmjax.log_marginal_exact(gaussian_mixture.model, GM_PARAMS, GM_X),
    )


@SETTINGS
@given(seed=seeds, logits=st.lists(st.floats(-4.0, 4.0), min_size=3, max_size=3))
def test_elbo_below_iwae_below_log_marginal_for_a_discrete_latent(seed, logits):
    """A Gaussian mixture, whose log p(x) is a sum over its 3 components: for any categorical q,
    ELBO_exact(q) <= log p(x) exactly; per draw, log-mean-exp of the weights >= their mean; in
    expectation, the importance-sampled log p̂(x) <= log p(x) and the mean log-weight is the exact ELBO."""
    elbos, estimates, exact_elbo, log_marginal = _mixture_bounds(jax.random.PRNGKey(seed), jnp.asarray(logits))
    elbos, estimates = np.asarray(elbos, np.float64), np.asarray(estimates, np.float64)
    assert float(exact_elbo) <= float(log_marginal) + 1e-5
    assert np.all(estimates >= elbos - 1e-5)
    mean, stderr = _mean_and_stderr(elbos)
    assert abs(mean - float(exact_elbo)) <= 4 * stderr + 1e-5
    mean, stderr = _mean_and_stderr(estimates - float(log_marginal))
    assert mean <= 4 * stderr + 1e-5, (mean, stderr)


# --- Permutations -----------------------------------------------------------------------


NUM_DATA = 40


def random_gaussian_mixture(seed, num_components=4, data_dim=2):
    """θ of a mixture of 4 separated Gaussians in 2-D, and 40 datapoints drawn from it (each component
    has a few, so that no covariance EM fits to them is near-singular)."""
    rng = np.random.default_rng(seed)
    tril = np.tril(rng.normal(size=(num_components, data_dim, data_dim)) * 0.3)
    tril[:, np.arange(data_dim), np.arange(data_dim)] = rng.uniform(0.5, 1.5, (num_components, data_dim))
    means = 4 * np.stack([np.cos(np.arange(num_components)), np.sin(np.arange(num_components))], axis=1)
    labels = np.arange(NUM_DATA) % num_components
    data = means[labels] + np.einsum("nde,ne->nd", tril[labels], rng.normal(size=(NUM_DATA, data_dim)))
    params = gaussian_mixture.Params(
        jnp.asarray(rng.normal(size=num_components), jnp.float32),
        jnp.asarray(means + rng.normal(size=means.shape), jnp.float32),
        jnp.asarray(tril, jnp.float32),
    )
    return params, jnp.asarray(data, jnp.float32)


def random_bernoulli_mixture(seed, num_components=4, data_dim=6):
    rng = np.random.default_rng(seed)
    params = bernoulli_mixture.Params(
        jnp.asarray(rng.normal(size=num_components), jnp.float32),
        jnp.asarray(2 * rng.normal(size=(num_components, data_dim)), jnp.float32),
    )
    return params, jnp.asarray(rng.uniform(size=(NUM_DATA, data_dim)) < 0.5, jnp.float32)


MIXTURES = {
    "gaussian": (gaussian_mixture, random_gaussian_mixture),
    "bernoulli": (bernoulli_mixture, random_bernoulli_mixture),
}


@jax.jit
def _mixture_outputs(gaussian_params, gaussian_data, bernoulli_params, bernoulli_data):
    """Per model: (log p(x_i), log r_ik of the posterior, log r_ik of the E-step, mean log-likelihood)."""
    outputs = {}
    for name, params, data in (
        ("gaussian", gaussian_params, gaussian_data),
        ("bernoulli", bernoulli_params, bernoulli_data),
    ):
        module = MIXTURES[name][0]
        log_marginals = jax.vmap(module.log_marginal, in_axes=(None, 0))(params, data)
        posteriors = jax.vmap(lambda x, module=module, params=params: module.posterior(params, x).logits)(data)
        outputs[name] = (log_marginals, posteriors, *module.e_step(params, data))
    return outputs


def permute_components(params, order):
    return jax.tree_util.tree_map(lambda leaf: leaf[np.asarray(order)], params)


@SETTINGS
@given(seed=seeds, order=st.permutations(range(4)))
def test_permuting_the_components_leaves_log_p_and_permutes_the_responsibilities(seed, order):
    (gaussian, gaussian_data), (bernoulli, bernoulli_data) = (
        random_gaussian_mixture(seed),
        random_bernoulli_mixture(seed),
    )
    before = _mixture_outputs(gaussian, gaussian_data, bernoulli, bernoulli_data)
    after = _mixture_outputs(
        permute_components(gaussian, order), gaussian_data, permute_components(bernoulli, order), bernoulli_data
    )
    for name in MIXTURES:
        log_marginals, posteriors, log_responsibilities, mean_log_likelihood = before[name]
        permuted = after[name]
        np.testing.assert_allclose(permuted[0], log_marginals, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(permuted[1], posteriors[:, np.asarray(order)], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(permuted[2], log_responsibilities[:, np.asarray(order)], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(permuted[3], mean_log_likelihood, rtol=1e-5)


@jax.jit
def _em_from_a_fixed_start(gaussian_start, gaussian_data, bernoulli_start, bernoulli_data):
    """Five EM iterations of each mixture from θ_0 that does not depend on the data's order:
    (θ_5, the E-step's log r_ik at θ_5, the objective trace)."""
    gaussian, info = gaussian_mixture.fit_em(
        jax.random.PRNGKey(0), gaussian_data, 4, "full", max_iter=5, tol=0.0, init_params=gaussian_start
    )
    gaussian_trace = info.objective

    def bernoulli_step(params, _):
        log_responsibilities, mean_log_likelihood = bernoulli_mixture.e_step(params, bernoulli_data)
        return bernoulli_mixture.m_step(bernoulli_data, log_responsibilities), mean_log_likelihood

    bernoulli, bernoulli_trace = jax.lax.scan(bernoulli_step, bernoulli_start, None, length=5)
    return {
        "gaussian": (gaussian, gaussian_mixture.e_step(gaussian, gaussian_data)[0], gaussian_trace),
        "bernoulli": (bernoulli, bernoulli_mixture.e_step(bernoulli, bernoulli_data)[0], bernoulli_trace),
    }


@SETTINGS
@given(seed=seeds, order=st.permutations(range(NUM_DATA)))
def test_permuting_the_datapoints_permutes_em_s_outputs_and_leaves_the_fit(seed, order):
    (gaussian, gaussian_data), (bernoulli, bernoulli_data) = (
        random_gaussian_mixture(seed),
        random_bernoulli_mixture(seed),
    )
    order = np.asarray(order)
    before = _em_from_a_fixed_start(gaussian, gaussian_data, bernoulli, bernoulli_data)
    after = _em_from_a_fixed_start(gaussian, gaussian_data[order], bernoulli, bernoulli_data[order])
    for name in MIXTURES:
        (params, log_responsibilities, trace), (permuted_params, permuted_responsibilities, permuted_trace) = (
            before[name],
            after[name],
        )
        for leaf, permuted_leaf in zip(
            jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(permuted_params), strict=True
        ):
            np.testing.assert_allclose(permuted_leaf, leaf, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(permuted_responsibilities, log_responsibilities[order], rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(permuted_trace, trace, rtol=1e-5)


# --- vmap: the batch of the single results ----------------------------------------------


SINGLE = {  # functions of (key, one datapoint) of the linear-Gaussian model (D = 4)
    "linear_gaussian.log_marginal": lambda key, x: linear_gaussian.log_marginal(LG_PARAMS, x),
    "log_marginal_is": lambda key, x: lvmjax.log_marginal_is(
        key, linear_gaussian.model, LG_PARAMS, linear_gaussian.posterior(LG_PARAMS, x), x, 8
    ),
}


def _all(key, x):
    return {name: fn(key, x) for name, fn in SINGLE.items()}


_single = jax.jit(_all)
_batched = jax.jit(jax.vmap(_all))


@settings(max_examples=10, deadline=None, derandomize=True, database=None)
@given(seed=seeds, batch_size=st.sampled_from([1, 5]))
def test_a_vmapped_function_of_one_datapoint_gives_the_batch_of_its_single_results(seed, batch_size):
    rng = np.random.default_rng(seed)
    keys = jax.random.split(jax.random.PRNGKey(seed), batch_size)
    batch = jnp.asarray(np.asarray(LG_X) + rng.normal(size=(batch_size, 4)), jnp.float32)
    batched = _batched(keys, batch)
    singles = [_single(keys[i], batch[i]) for i in range(batch_size)]
    for name in SINGLE:
        expected = jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *[single[name] for single in singles])
        for got, want in zip(
            jax.tree_util.tree_leaves(batched[name]), jax.tree_util.tree_leaves(expected), strict=True
        ):
            assert got.shape == (batch_size, *np.shape(want)[1:])
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)
