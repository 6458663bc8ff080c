"""Hidden Markov models: the forward algorithm against enumeration of all K^T paths, forward–backward against
the enumerated posterior and the gradient identity, Viterbi against brute force, Baum–Welch against hmmlearn."""

import itertools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lvmjax
from lvmjax.models import hmm

KEY = jax.random.key(0)
NUM_STATES, NUM_STEPS = 3, 6
INITIAL = jnp.array([0.5, 0.3, 0.2])
TRANSITION = jnp.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]])
EMISSIONS = {
    "gaussian-full": hmm.GaussianEmission(
        jnp.array([[0.0, 0.0], [2.0, 1.0], [-1.0, 3.0]]),
        jnp.array([[[1.0, 0.3], [0.3, 1.0]], [[0.5, -0.1], [-0.1, 0.8]], [[2.0, 0.0], [0.0, 0.4]]]),
    ),
    "gaussian-diag": hmm.GaussianEmission(
        jnp.array([[0.0, 0.0], [2.0, 1.0], [-1.0, 3.0]]), jnp.array([[1.0, 0.5], [0.3, 2.0], [0.7, 0.7]])
    ),
    "categorical": hmm.CategoricalEmission(jnp.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])),
    "poisson": hmm.PoissonEmission(jnp.array([[1.0, 5.0], [3.0, 0.5], [10.0, 2.0]])),
}


def params_of(name):
    return hmm.Params(INITIAL, TRANSITION, EMISSIONS[name])


def all_paths():
    return jnp.array(list(itertools.product(range(NUM_STATES), repeat=NUM_STEPS)), jnp.int32)


def brute_force_log_joints(params, x):
    """log p(x, z) of every one of the K^T paths, written out from the definition."""
    log_likelihoods = hmm.emission_log_likelihoods(params.emission, x)  # (T, K)

    def log_joint(path):
        log_prior = jnp.log(params.initial_probs[path[0]]) + jnp.sum(
            jnp.log(params.transition_matrix[path[:-1], path[1:]])
        )
        return log_prior + jnp.sum(log_likelihoods[jnp.arange(NUM_STEPS), path])

    return jax.vmap(log_joint)(all_paths())


@pytest.fixture(scope="module", params=list(EMISSIONS))
def sequence(request):
    params = params_of(request.param)
    _, x = hmm.sample(jax.random.fold_in(KEY, list(EMISSIONS).index(request.param)), params, NUM_STEPS)
    return params, x


def test_forward_algorithm_equals_the_sum_over_every_path(sequence):
    params, x = sequence
    exact = jax.nn.logsumexp(brute_force_log_joints(params, x))
    np.testing.assert_allclose(hmm.log_marginal(params, x), exact, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(hmm.log_marginal(params, x, parallel=True), exact, rtol=1e-6, atol=1e-5)
    # The same sum by the core's enumeration of the state path as a latent variable.
    core = lvmjax.log_marginal_exact(hmm.model(NUM_STEPS, params.emission), params, x)
    np.testing.assert_allclose(core, exact, rtol=1e-6, atol=1e-5)


def test_predictive_log_likelihoods_sum_to_the_marginal(sequence):
    params, x = sequence
    per_step = hmm.predictive_log_likelihoods(params, x)
    np.testing.assert_allclose(jnp.sum(per_step), hmm.log_marginal(params, x), rtol=1e-6)
    # The first step's predictive is the mixture Σ_k π_k p_k(x_1).
    first = jax.nn.logsumexp(jnp.log(params.initial_probs) + hmm.emission_log_likelihoods(params.emission, x)[0])
    np.testing.assert_allclose(per_step[0], first, rtol=1e-6)


def test_forward_backward_equals_the_enumerated_posterior(sequence):
    params, x = sequence
    log_joints = brute_force_log_joints(params, x)
    path_probs = jnp.exp(log_joints - jax.nn.logsumexp(log_joints))
    paths = all_paths()
    one_hot = jax.nn.one_hot(paths, NUM_STATES)  # (K^T, T, K)
    expected_marginals = jnp.einsum("p,ptk->tk", path_probs, one_hot)
    expected_pairwise = jnp.einsum("p,pti,ptj->tij", path_probs, one_hot[:, :-1], one_hot[:, 1:])
    posterior = hmm.posterior_marginals(params, x)
    np.testing.assert_allclose(posterior.marginals, expected_marginals, atol=2e-6)
    np.testing.assert_allclose(posterior.pairwise, expected_pairwise, atol=2e-6)
    np.testing.assert_allclose(posterior.log_marginal, hmm.log_marginal(params, x), rtol=1e-6)


def test_smoothed_marginals_are_the_gradient_of_log_p_x_in_the_emission_log_likelihoods(sequence):
    params, x = sequence
    log_likelihoods = hmm.emission_log_likelihoods(params.emission, x)
    gradient = jax.grad(lambda values: jnp.sum(hmm._forward(INITIAL, TRANSITION, values)[1]))(log_likelihoods)
    np.testing.assert_allclose(gradient, hmm.posterior_marginals(params, x).marginals, atol=2e-6)


def test_viterbi_is_the_most_probable_path(sequence):
    params, x = sequence
    best = all_paths()[jnp.argmax(brute_force_log_joints(params, x))]
    np.testing.assert_array_equal(hmm.most_likely_states(params, x), best)


def test_unobserved_steps_are_summed_out(sequence):
    params, x = sequence
    observed = jnp.array([True, False, True, True, False, True])
    log_joints = brute_force_log_joints(params, x)
    # Σ over the missing x_t of p(x, z) leaves the terms of the observed steps: recompute them directly.
    log_likelihoods = jnp.where(observed[:, None], hmm.emission_log_likelihoods(params.emission, x), 0.0)

    def log_joint(path):
        log_prior = jnp.log(INITIAL[path[0]]) + jnp.sum(jnp.log(TRANSITION[path[:-1], path[1:]]))
        return log_prior + jnp.sum(log_likelihoods[jnp.arange(NUM_STEPS), path])

    expected = jax.nn.logsumexp(jax.vmap(log_joint)(all_paths()))
    assert not np.isclose(expected, jax.nn.logsumexp(log_joints))
    np.testing.assert_allclose(hmm.log_marginal(params, x, observed), expected, rtol=1e-6)
    np.testing.assert_allclose(hmm.log_marginal(params, x, observed, parallel=True), expected, rtol=1e-6)


def test_a_long_sequence_sequential_equals_parallel():
    params = params_of("gaussian-full")
    _, x = hmm.sample(KEY, params, 5000)
    sequential = jax.jit(hmm.log_marginal)(params, x)
    parallel = jax.jit(lambda params, x: hmm.log_marginal(params, x, parallel=True))(params, x)
    assert np.isfinite(sequential)
    np.testing.assert_allclose(parallel, sequential, rtol=2e-5)


def test_prediction_propagates_the_filtered_state_through_the_transitions():
    params = params_of("gaussian-diag")
    _, x = hmm.sample(KEY, params, 40)
    forecast = hmm.predict(params, x, 3)
    assert forecast.batch_shape == (3,)
    filtered = hmm.filtered_marginals(params, x)[-1]
    for horizon in range(1, 4):
        state_probs = filtered @ jnp.linalg.matrix_power(TRANSITION, horizon)
        np.testing.assert_allclose(forecast.mean()[horizon - 1], state_probs @ params.emission.means, rtol=1e-5)
    # The one-step forecast's density at x_{T+1} is the predictive the forward pass computes.
    extended = jnp.concatenate([x, x[-1:] + 0.5])
    expected = hmm.predictive_log_likelihoods(params, extended)[-1]
    np.testing.assert_allclose(forecast.log_prob(jnp.broadcast_to(extended[-1], (3, 2)))[0], expected, rtol=1e-5)


def test_imputation_is_the_posterior_mean_of_the_missing_steps():
    params = params_of("gaussian-full")
    _, x = hmm.sample(KEY, params, 20)
    observed = jnp.ones(20, bool).at[jnp.array([3, 4, 11])].set(False)
    filled, marginals = hmm.impute(params, x, observed)
    np.testing.assert_array_equal(filled[observed], x[observed])
    np.testing.assert_allclose(filled[3], marginals[3] @ params.emission.means, rtol=1e-5)
    np.testing.assert_allclose(marginals, hmm.posterior_marginals(params, x, observed).marginals, atol=1e-6)


def test_samples_follow_the_chain():
    params = params_of("categorical")
    states, observations = jax.jit(hmm.sample, static_argnums=2)(KEY, params, 20000)
    counts = np.zeros((3, 3))
    np.add.at(counts, (np.asarray(states[:-1]), np.asarray(states[1:])), 1)
    empirical = counts / counts.sum(axis=1, keepdims=True)
    # Each row's entries are binomial proportions: 5 standard errors.
    stderr = np.sqrt(TRANSITION * (1 - TRANSITION) / counts.sum(axis=1, keepdims=True))
    assert np.all(np.abs(empirical - TRANSITION) < 5 * stderr)
    emitted = np.zeros((3, 3))
    np.add.at(emitted, (np.asarray(states), np.asarray(observations)), 1)
    probs = EMISSIONS["categorical"].probs
    stderr = np.sqrt(probs * (1 - probs) / emitted.sum(axis=1, keepdims=True))
    assert np.all(np.abs(emitted / emitted.sum(axis=1, keepdims=True) - probs) < 5 * stderr)


def test_the_state_path_prior_samples_and_enumerates():
    prior = hmm.StatePath(INITIAL, TRANSITION, 4)
    paths = lvmjax.latent_states(hmm.model(4, EMISSIONS["poisson"]), params_of("poisson"))
    assert paths.shape == (81, 4)
    np.testing.assert_allclose(jnp.sum(jnp.exp(jax.vmap(prior.log_prob)(paths))), 1.0, rtol=1e-6)
    draws = prior.sample(seed=KEY, sample_shape=(3,))
    assert draws.shape == (3, 4) and draws.dtype == jnp.int32


# --- Baum–Welch ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gaussian_sequences():
    params = params_of("gaussian-full")
    lengths = [1200, 1000, 1500, 800]
    sequences = [hmm.sample(jax.random.key(seed), params, length)[1] for seed, length in enumerate(lengths)]
    return params, [np.asarray(sequence) for sequence in sequences]


@pytest.fixture(scope="module")
def gaussian_fit(gaussian_sequences):
    _, sequences = gaussian_sequences
    return hmm.fit_em(KEY, sequences, 3, max_iter=200, tol=1e-6, n_init=4)


def test_baum_welch_never_decreases_the_log_likelihood(gaussian_fit):
    _, info = gaussian_fit
    trace = np.asarray(info.objective[: int(info.num_iterations)])
    assert len(trace) > 5
    assert np.all(np.diff(trace) >= -1e-6)


def test_baum_welch_recovers_the_generating_parameters(gaussian_sequences, gaussian_fit):
    truth, _ = gaussian_sequences
    params, _ = jax.tree.map(np.asarray, gaussian_fit)
    # Match the states by their means (a permutation), then compare every parameter. With 4,500 steps, about
    # 900 or more in each state (its stationary share), a transition probability's standard error is at most 0.016,
    # a mean's about 0.05: the tolerances are about 3 of them.
    order = [int(np.argmin(np.sum((params.emission.means - mean) ** 2, axis=1))) for mean in truth.emission.means]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(params.emission.means[order], truth.emission.means, atol=0.15)
    np.testing.assert_allclose(params.transition_matrix[np.ix_(order, order)], TRANSITION, atol=0.05)
    np.testing.assert_allclose(params.emission.covariances[order], truth.emission.covariances, atol=0.2)


def test_padded_batch_with_lengths_equals_the_list_of_sequences(gaussian_sequences):
    _, sequences = gaussian_sequences
    padded = np.zeros((len(sequences), 1500, 2), np.float32)
    for index, sequence in enumerate(sequences):
        padded[index, : len(sequence)] = sequence
        padded[index, len(sequence) :] = 1e3  # padding, absurd on purpose: it must not count
    lengths = np.array([len(sequence) for sequence in sequences])
    from_list = hmm.fit_em(KEY, sequences, 3, max_iter=5, tol=-1.0)
    from_batch = hmm.fit_em(KEY, padded, 3, lengths=lengths, max_iter=5, tol=-1.0)
    np.testing.assert_allclose(from_batch[1].objective, from_list[1].objective, rtol=1e-5)
    np.testing.assert_allclose(from_batch[0].transition_matrix, from_list[0].transition_matrix, atol=1e-5)


def test_dirichlet_priors_give_map_em_whose_objective_never_decreases(gaussian_sequences):
    _, sequences = gaussian_sequences
    ml, _ = hmm.fit_em(KEY, sequences[:1], 3, max_iter=50, tol=-1.0)
    params, info = hmm.fit_em(KEY, sequences[:1], 3, max_iter=50, tol=-1.0, transition_prior=50.0)
    trace = np.asarray(info.objective)
    assert np.all(np.diff(trace) >= -1e-6)
    # A strong symmetric prior pulls every transition row toward uniform.
    uniform = np.full((3, 3), 1 / 3)
    assert np.abs(params.transition_matrix - uniform).max() < np.abs(ml.transition_matrix - uniform).max()


@pytest.mark.parametrize("name", ["gaussian-full", "gaussian-diag", "categorical", "poisson"])
def test_baum_welch_matches_hmmlearn_from_the_same_start(name):
    hmmlearn = pytest.importorskip("hmmlearn.hmm")
    truth = params_of(name)
    sequences = [np.asarray(hmm.sample(jax.random.key(seed), truth, 150 + 20 * seed)[1]) for seed in range(4)]
    emission, covariance = name.split("-") if "-" in name else (name, "full")
    start = hmm.initial_params(
        jax.random.key(1),
        hmm.as_padded_batch(sequences, None, emission)[0],
        3,
        emission,
        covariance,
        np.array([len(sequence) for sequence in sequences]),
        num_categories=3,
    )
    iterations = 10
    _, info = hmm.fit_em(
        KEY, sequences, 3, emission, covariance, max_iter=iterations, tol=-1.0, reg_covar=0.0, init_params=start
    )
    options = {"n_iter": iterations, "tol": -np.inf, "init_params": ""}
    if emission == "gaussian":
        peer = hmmlearn.GaussianHMM(3, covariance_type=covariance, covars_prior=0.0, min_covar=0.0, **options)
        peer.means_, peer.covars_ = np.asarray(start.emission.means), np.asarray(start.emission.covariances)
    elif emission == "categorical":
        peer = hmmlearn.CategoricalHMM(3, **options)
        peer.emissionprob_ = np.asarray(start.emission.probs, np.float64)
    else:
        peer = hmmlearn.PoissonHMM(3, lambdas_prior=0.0, lambdas_weight=0.0, **options)
        peer.lambdas_ = np.asarray(start.emission.rates, np.float64)
    peer.startprob_ = np.asarray(start.initial_probs, np.float64)
    peer.transmat_ = np.asarray(start.transition_matrix, np.float64)
    data = np.concatenate(sequences).astype(np.float64)
    data = data[:, None] if data.ndim == 1 else data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer.fit(data.astype(np.int64) if emission == "categorical" else data, [len(s) for s in sequences])
    expected = np.asarray(peer.monitor_.history) / len(data)  # log p(x) per step at each iterate
    np.testing.assert_allclose(np.asarray(info.objective), expected, rtol=2e-5, atol=2e-5)


def test_num_free_parameters():
    assert hmm.num_free_parameters(3, 2, "gaussian", "full") == 2 + 6 + 3 * (2 + 3)
    assert hmm.num_free_parameters(3, 2, "gaussian", "diag") == 2 + 6 + 3 * (2 + 2)
    assert hmm.num_free_parameters(3, 4, "categorical") == 2 + 6 + 3 * 3
    assert hmm.num_free_parameters(3, 2, "poisson") == 2 + 6 + 3 * 2


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: hmm.fit_em(KEY, [np.ones((1, 2))], 1), "at least 2 time steps"),
        (lambda: hmm.fit_em(KEY, [np.array([[0.0, np.nan], [1.0, 2.0]])], 1), "non-finite"),
        (lambda: hmm.fit_em(KEY, [np.array([[0.0, np.inf], [1.0, 2.0]])], 1), "non-finite"),
        (lambda: hmm.fit_em(KEY, [np.array([1.0, -2.0, 3.0])], 2, "poisson"), "non-negative integer counts"),
        (lambda: hmm.fit_em(KEY, [np.array([1.0, 2.5, 3.0])], 2, "poisson"), "non-negative integer counts"),
        (lambda: hmm.fit_em(KEY, [np.array([0, 1, -1])], 2, "categorical"), "non-negative integer categories"),
        (lambda: hmm.fit_em(KEY, [np.ones((3, 2))], 4), r"between 1 and the number of time steps \(3\)"),
        (lambda: hmm.fit_em(KEY, [np.ones((3, 2))], 2, "bernoulli"), "emission must be one of"),
        (lambda: hmm.fit_em(KEY, [np.ones((3, 2))], 2, covariance_type="spherical"), "covariance_type"),
        (lambda: hmm.fit_em(KEY, [np.ones((3, 2))], 2, transition_prior=0.5), "transition_prior must be at least"),
        (lambda: hmm.fit_em(KEY, [], 2), "sequences is empty"),
        (lambda: hmm.fit_em(KEY, [np.ones((3, 2)), np.ones((3, 3))], 2), "same number of columns"),
        (
            lambda: hmm.check_params(hmm.Params(INITIAL, TRANSITION.at[0, 0].set(0.5), EMISSIONS["poisson"])),
            "every row of params.transition_matrix must sum to 1, but row 0 sums to 0.7",
        ),
        (
            lambda: hmm.check_params(hmm.Params(INITIAL * 2, TRANSITION, EMISSIONS["poisson"])),
            "params.initial_probs must sum to 1|every row of params.initial_probs",
        ),
        (lambda: hmm.sample(KEY, params_of("poisson"), 0), "num_steps must be a positive int"),
        (lambda: hmm.predict(params_of("poisson"), jnp.ones((3, 2)), 0), "steps must be a positive int"),
    ],
)
def test_bad_input_gets_one_clear_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: hmm.log_marginal(params_of("gaussian-full"), jnp.ones((4, 3))), r"shape \(T, 2\), got \(4, 3\)"),
        (lambda: hmm.log_marginal(params_of("gaussian-full"), jnp.ones((2, 4, 2))), "jax.vmap over a batch"),
        (lambda: hmm.log_marginal(params_of("categorical"), jnp.ones((4, 2), jnp.int32)), r"\(T,\) category"),
        (lambda: hmm.log_marginal(params_of("poisson"), jnp.array([[1.0, jnp.nan]])), "non-finite"),
        (lambda: hmm.most_likely_states(params_of("poisson"), jnp.ones((3, 2)), jnp.ones(4, bool)), "observed must"),
        (
            lambda: hmm.log_marginal(hmm.Params(INITIAL, TRANSITION * 0.5, EMISSIONS["poisson"]), jnp.ones((3, 2))),
            "every row of params.transition_matrix must sum to 1",
        ),
    ],
)
def test_every_function_of_one_sequence_checks_its_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_the_core_estimators_run_on_the_hmm():
    """Importance sampling from the prior over paths (the core's `log_marginal_is`, K = 20,000) agrees with the
    forward algorithm within 4 of its standard errors."""
    params = params_of("categorical")
    _, x = hmm.sample(KEY, params, NUM_STEPS)
    lvm = hmm.model(NUM_STEPS, params.emission)
    exact = hmm.log_marginal(params, x)
    estimate = lvmjax.log_marginal_is(KEY, lvm, params, lvm.prior(params), x, 20000)
    assert 0 < estimate.stderr < 0.05 and abs(estimate.log_marginal - exact) < 4 * estimate.stderr
