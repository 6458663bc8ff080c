"""Variational EM for the Gaussian mixture, set beside EM on the same data and from the same θ_0.

The exact identities: ELBO = log-likelihood - KL <= log-likelihood, with
equality when every q(z_i) is the posterior, and EM is coordinate ascent on the
same ELBO. On these well-separated data EM reaches the same maximum from every
k-means++ start, so gradient ascent on the exact ELBO climbs to the maximum EM
reaches and cannot pass it:

    LL_EM - tol  <=  ELBO(θ_VI, φ_VI)  <=  LL(θ_VI)  <=  LL_EM + float32 rounding.

tol is how far 300 Adam steps may stop short, in nats per datapoint: 1e-3 for
the exact ELBO (the run comes within 4e-5). The score-function run's noisy,
constant-step iterates hover around the maximum: its log-likelihood must come
within 1e-2 of EM's (it comes within 1e-3), its ELBO within 2e-2 (6e-3: the
φ_i jitter about the posteriors, a KL of 5e-3).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lvmjax import mixture_vi, svi
from lvmjax.models import gaussian_mixture
from lvmjax.variational import categorical

pytestmark = pytest.mark.standard_promotion  # optax's Adam raises its int32 step count to float powers

KEY = jax.random.PRNGKey(5)
NUM_STEPS = 300


def log_likelihood(params, data):
    """(1/N) Σ_i log p(x_i; θ) by the mixture's closed form."""
    return jnp.mean(jax.vmap(gaussian_mixture.log_marginal, in_axes=(None, 0))(params, data))


def fit(data, estimator, init_params):
    """fit_vi, and the exact mean ELBO and log-likelihood of the result, in one compiled call."""

    def fit_and_evaluate(data, init_params):
        params, info = mixture_vi.fit_vi(KEY, data, 3, estimator, num_steps=NUM_STEPS, init_params=init_params)
        return params, info, mixture_vi.evaluate(params, data, info.variational_logits)

    return jax.jit(fit_and_evaluate)(data, init_params)


@pytest.fixture(scope="module")
def exact_fit():
    """N = 200 points from three well-separated 2-d Gaussians, and fit_vi on the exact ELBO from k-means++."""
    rng = np.random.default_rng(0)
    means = 0.7 * np.array([[0.0, 0.0], [4.0, 4.0], [-4.0, 3.0]])
    scales = np.array([[1.0, 0.5], [0.7, 1.2], [1.2, 0.6]])
    labels = rng.choice(3, size=200, p=[0.5, 0.3, 0.2])
    data = jnp.asarray(rng.normal(size=(200, 2)) * scales[labels] + means[labels], jnp.float32)
    return data, *fit(data, "exact", None)


class Problem(NamedTuple):
    data: jax.Array  # (200, 2)
    start: gaussian_mixture.Params  # θ_0 of the exact fit, from k-means++
    start_log_likelihood: float  # mean log p(x_i; θ_0)
    em: gaussian_mixture.Params  # EM from θ_0, run to convergence
    em_log_likelihood: float  # mean log p(x_i; θ_EM)
    em_start_objective: float  # EM's objective at its first iterate: mean log p(x_i; θ_0) again
    at_posterior: mixture_vi.VIEvaluation  # evaluate(θ_0, data, the posterior logits at θ_0)


@pytest.fixture(scope="module")
def problem(exact_fit):
    """EM on the same data from the same θ_0, run to convergence."""
    data, _, info, _ = exact_fit

    def run_em(data, start):
        em, em_info = gaussian_mixture.fit_em(KEY, data, 3, max_iter=200, tol=0.0, init_params=start)
        at_posterior = mixture_vi.evaluate(start, data, mixture_vi.posterior_logits(start, data))
        return log_likelihood(start, data), em, log_likelihood(em, data), em_info.objective[0], at_posterior

    start_log_likelihood, em, em_log_likelihood, em_start, at_posterior = jax.jit(run_em)(data, info.initial_params)
    problem = Problem(
        data,
        info.initial_params,
        float(start_log_likelihood),
        em,
        float(em_log_likelihood),
        float(em_start),
        at_posterior,
    )
    assert problem.em_log_likelihood > problem.start_log_likelihood + 0.1  # EM has a long way to climb from θ_0
    return problem


@pytest.fixture(scope="module")
def score_fit(problem):
    return fit(problem.data, "score", problem.start)


def test_unconstrained_coordinates_round_trip_and_always_give_a_valid_scale_tril(problem):
    start = problem.start
    for got, want in zip(mixture_vi.to_params(mixture_vi.to_unconstrained(start)), start, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    rng = np.random.default_rng(1)
    arbitrary = mixture_vi.UnconstrainedParams(
        *(jnp.asarray(rng.normal(size=shape) * 5, jnp.float32) for shape in [(3,), (3, 2), (3, 2), (3, 2, 2)])
    )
    scale_tril = mixture_vi.to_params(arbitrary).scale_tril
    np.testing.assert_array_equal(scale_tril, jnp.tril(scale_tril))
    assert np.all(jnp.diagonal(scale_tril, axis1=1, axis2=2) > 0)


def test_vi_starts_where_em_does_with_the_elbo_equal_to_the_log_likelihood(problem, exact_fit):
    _, _, info, _ = exact_fit
    assert info.elbo.shape == info.log_likelihood.shape == (NUM_STEPS,)
    np.testing.assert_allclose(problem.em_start_objective, problem.start_log_likelihood, rtol=0, atol=1e-5)
    np.testing.assert_allclose(info.log_likelihood[0], problem.start_log_likelihood, rtol=0, atol=1e-5)
    np.testing.assert_allclose(info.elbo[0], problem.start_log_likelihood, rtol=0, atol=1e-5)


def test_the_exact_elbo_never_exceeds_the_log_likelihood(exact_fit):
    _, _, info, evaluation = exact_fit
    assert np.all(info.elbo <= info.log_likelihood + 1e-5)
    assert float(evaluation.elbo) <= float(evaluation.log_likelihood) + 1e-5
    np.testing.assert_allclose(evaluation.kl, evaluation.log_likelihood - evaluation.elbo, rtol=0, atol=1e-6)


def test_exact_elbo_vi_reaches_the_log_likelihood_of_em(problem, exact_fit):
    _, params, _, evaluation = exact_fit
    assert float(evaluation.elbo) >= problem.em_log_likelihood - 1e-3
    assert float(evaluation.log_likelihood) <= problem.em_log_likelihood + 1e-4  # the same maximum, not a better one
    np.testing.assert_allclose(params.means, problem.em.means, atol=1e-2)
    np.testing.assert_allclose(jax.nn.softmax(params.logits), jax.nn.softmax(problem.em.logits), atol=1e-2)


def test_score_function_vi_gets_close_to_em(problem, score_fit):
    _, info, evaluation = score_fit
    gain = problem.em_log_likelihood - problem.start_log_likelihood
    assert float(evaluation.log_likelihood) >= problem.start_log_likelihood + 0.9 * gain
    assert float(evaluation.log_likelihood) >= problem.em_log_likelihood - 1e-2
    assert float(evaluation.log_likelihood) <= problem.em_log_likelihood + 1e-4
    assert float(evaluation.elbo) >= problem.em_log_likelihood - 2e-2
    assert float(evaluation.kl) >= -1e-6
    # the trace holds Monte Carlo estimates of ELBOs, which lie below the log-likelihood; noisy, but near it
    assert abs(float(jnp.mean(info.elbo[-100:])) - problem.em_log_likelihood) <= 3e-2


def test_evaluate_at_the_posterior_is_tight(problem):
    evaluation = problem.at_posterior
    np.testing.assert_allclose(evaluation.log_likelihood, problem.start_log_likelihood, rtol=0, atol=1e-5)
    np.testing.assert_allclose(evaluation.elbo, problem.start_log_likelihood, rtol=0, atol=1e-5)
    np.testing.assert_allclose(evaluation.kl, 0.0, atol=1e-5)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"estimator": "reparam"}, ValueError),
        ({"num_steps": 0}, ValueError),
        ({"num_samples": 1.5}, TypeError),
        ({"num_components": 0}, ValueError),
        ({"num_components": 2, "init_params": "the θ_0 of 3 components"}, ValueError),
    ],
)
def test_bad_arguments_are_refused_before_compiling(problem, options, error):
    arguments = {"num_components": 3, **options}
    if "init_params" in arguments:
        arguments["init_params"] = problem.start
    with pytest.raises(error):
        mixture_vi.fit_vi(KEY, problem.data, **arguments)


def test_a_non_finite_vi_step_changes_nothing_and_says_so(problem):
    """make_vi_step is SVI's guarded joint step: a step whose ELBO is not finite leaves θ, every φ_i and
    both optimizer states as they were; a finite one applies, its objective the exact mean ELBO before it."""
    family = categorical(3)
    theta_optimizer, phi_optimizer = optax.adam(0.02), optax.adam(0.1)
    theta = mixture_vi.to_unconstrained(problem.start)
    phi = {"logits": mixture_vi.posterior_logits(problem.start, problem.data)}
    state = svi.SVIState(
        theta, theta_optimizer.init(theta), phi, jax.vmap(phi_optimizer.init)(phi), jnp.zeros((), jnp.int32)
    )
    step = jax.jit(mixture_vi.make_vi_step(family, "exact", theta_optimizer, phi_optimizer))
    after, info = step(state, KEY, problem.data.at[3, 0].set(jnp.nan))
    assert bool(info.skipped) and int(after.step) == 0
    for left, right in zip(jax.tree.leaves(after), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(np.asarray(left), np.asarray(right))
    after, info = step(state, KEY, problem.data)
    assert not bool(info.skipped) and int(after.step) == 1 and int(info.inner_steps) == 1
    np.testing.assert_allclose(info.objective, problem.at_posterior.elbo, rtol=0, atol=1e-5)
