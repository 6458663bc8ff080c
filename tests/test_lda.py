"""Tests of lvmjax.models.lda: topic recovery, the exact ELBO, SVI against CAVI, and scikit-learn's numbers."""

import copy
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
import scipy.special
import scipy.stats
from helpers import TOPIC_CORPUS, make_topic_corpus, matched_cosines

from lvmjax.errors import ArgumentError, DataError
from lvmjax.models import lda

NUM_TOPICS, VOCABULARY, NUM_DOCS, DOC_LENGTH = TOPIC_CORPUS.values()


@pytest.fixture(scope="module")
def corpus():
    return make_topic_corpus(np.float64)


@pytest.fixture(scope="module")
def cavi_fit(corpus):
    with jax.enable_x64(True):
        return lda.fit(jax.random.key(0), corpus[0], NUM_TOPICS, method="cavi", max_iter=40)


@pytest.fixture(scope="module")
def svi_fit(corpus):
    with jax.enable_x64(True):
        return lda.fit(jax.random.key(1), corpus[0], NUM_TOPICS, method="svi", max_iter=30, batch_size=64)


@pytest.mark.parametrize("fit_name", ["cavi_fit", "svi_fit"])
def test_recovers_the_topics(fit_name, corpus, request):
    params, _ = request.getfixturevalue(fit_name)
    with jax.enable_x64(True):
        estimated = np.asarray(lda.topic_word(params))
    np.testing.assert_allclose(estimated.sum(axis=1), 1, rtol=1e-12)
    assert np.all(matched_cosines(estimated, corpus[1]) >= 0.95)


def test_cavi_elbo_never_decreases_float64(cavi_fit):
    _, info = cavi_fit
    trace = np.asarray(info.objective[: int(info.num_iterations)])
    assert trace.dtype == np.float64 and trace.size >= 10 and np.all(np.isfinite(trace))
    assert np.all(np.diff(trace) >= -1e-12 * np.abs(trace[1:]))


def test_cavi_elbo_never_decreases_float32(corpus):
    counts = corpus[0][:60].astype(np.float32)
    params, info = lda.fit(jax.random.key(2), counts, NUM_TOPICS, max_iter=25)
    # A scipy.sparse matrix of the same counts is the same fit.
    sparse_params, _ = lda.fit(jax.random.key(2), scipy.sparse.csr_matrix(counts), NUM_TOPICS, max_iter=25)
    np.testing.assert_array_equal(sparse_params.topic_word, params.topic_word)
    # SVI keeps float32 too, with a last minibatch of 60 - 2 * 25 = 10 documents padded to 25.
    svi_params, svi_info = lda.fit(jax.random.key(2), counts, NUM_TOPICS, method="svi", max_iter=3, batch_size=25)
    assert svi_params.topic_word.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(svi_info.objective)))
    assert params.topic_word.dtype == jnp.float32 and info.objective.dtype == jnp.float32
    trace = np.asarray(info.objective[: int(info.num_iterations)], np.float64)
    # Each ELBO is a sum of ~1e4 float32 terms divided by the word count: rounding of a few hundred eps.
    assert np.all(np.diff(trace) >= -300 * np.finfo(np.float32).eps * np.abs(trace[1:]))


def test_svi_with_the_full_batch_and_unit_step_is_the_cavi_step(corpus, cavi_fit):
    with jax.enable_x64(True):
        documents = lda.as_corpus(corpus[0])
        params = cavi_fit[0]._replace(topic_word=jax.random.gamma(jax.random.key(3), 2.0, (NUM_TOPICS, VOCABULARY)))
        gammas = lda.initial_gammas(jax.random.key(4), NUM_DOCS, NUM_TOPICS, jnp.float64)
        cavi_params, cavi_gammas, _ = jax.jit(lda.cavi_step)(params, documents, gammas)
        svi_params, svi_gammas = jax.jit(lda.svi_step)(
            params, documents, gammas, 1, NUM_DOCS, learning_offset=0.0, learning_decay=0.0
        )
        np.testing.assert_allclose(svi_params.topic_word, cavi_params.topic_word, rtol=1e-13)
        np.testing.assert_allclose(svi_gammas, cavi_gammas, rtol=1e-13)


def test_svi_step_matches_scikit_learn_online_update(corpus):
    """ρ_1 = (τ_0 + 1)^(-κ) and the D/|B| scaling as scikit-learn's online `_em_step`, from the same λ and the
    same starting γ (its Gamma(100, 1/100) draw, replayed from a copy of its random state)."""
    sklearn_lda = pytest.importorskip("sklearn.decomposition")
    batch = corpus[0][:50]
    model = sklearn_lda.LatentDirichletAllocation(NUM_TOPICS, random_state=0)
    model._init_latent_vars(VOCABULARY)
    start = model.components_.copy()
    start_gammas = copy.deepcopy(model.random_state_).gamma(100.0, 0.01, (50, NUM_TOPICS))
    model._em_step(batch, total_samples=NUM_DOCS, batch_update=False)
    with jax.enable_x64(True):
        params = lda.Params(jnp.asarray(start), jnp.asarray(1 / NUM_TOPICS), jnp.asarray(1 / NUM_TOPICS))
        updated, _ = lda.svi_step(params, lda.as_corpus(batch), jnp.asarray(start_gammas), 1, NUM_DOCS)
        np.testing.assert_allclose(np.asarray(updated.topic_word), model.components_, rtol=1e-7)


@pytest.fixture(scope="module")
def sklearn_model(corpus):
    sklearn_lda = pytest.importorskip("sklearn.decomposition")
    return sklearn_lda.LatentDirichletAllocation(NUM_TOPICS, random_state=0, max_iter=5).fit(corpus[0])


def sklearn_params(model):
    return lda.Params(
        jnp.asarray(model.components_), jnp.asarray(model.doc_topic_prior_), jnp.asarray(model.topic_word_prior_)
    )


def test_perplexity_matches_scikit_learn(corpus, sklearn_model, cavi_fit):
    counts = corpus[0]
    sklearn_model = copy.deepcopy(sklearn_model)
    with jax.enable_x64(True):
        ours = float(lda.perplexity(sklearn_params(sklearn_model), counts))
        assert ours == pytest.approx(sklearn_model.perplexity(counts), rel=1e-4)
        # And on our λ, written into scikit-learn's model.
        params = cavi_fit[0]
        sklearn_model.components_ = np.asarray(params.topic_word)
        sklearn_model.exp_dirichlet_component_ = np.exp(
            scipy.special.digamma(sklearn_model.components_)
            - scipy.special.digamma(sklearn_model.components_.sum(axis=1, keepdims=True))
        )
        assert float(lda.perplexity(params, counts)) == pytest.approx(sklearn_model.perplexity(counts), rel=1e-4)


@pytest.mark.parametrize("mean_change_tol", [1e-3, 1e-9])
def test_local_step_matches_scikit_learn_e_step(corpus, sklearn_model, mean_change_tol):
    counts = corpus[0]
    model = copy.deepcopy(sklearn_model)
    model.set_params(mean_change_tol=mean_change_tol, max_doc_update_iter=1000)
    model.exp_dirichlet_component_ = np.exp(
        scipy.special.digamma(model.components_) - scipy.special.digamma(model.components_.sum(axis=1, keepdims=True))
    )
    with jax.enable_x64(True):
        options = dict(max_doc_update_iter=1000, mean_change_tol=mean_change_tol)
        gammas = np.asarray(lda.document_gammas(sklearn_params(model), counts, **options))
        proportions = np.asarray(lda.document_topics(sklearn_params(model), counts, **options))
    reference, _ = model._e_step(counts, cal_sstats=False, random_init=False)  # unnormalized: γ
    tolerance = max(1e-3 * mean_change_tol, 1e-9) * 1e3
    np.testing.assert_allclose(gammas, reference, rtol=tolerance)
    np.testing.assert_allclose(proportions, model.transform(counts), rtol=tolerance)
    np.testing.assert_allclose(np.sum(proportions, axis=1), 1, rtol=1e-12)


def test_elbo_terms_against_enumeration():
    """One document of three words (w = 0, 1, 1), K = 2, V = 3: every term of the ELBO from scipy, with the
    2^3 topic assignments of the three tokens enumerated."""
    alpha, eta = 0.7, 0.4
    lam = np.array([[1.3, 0.6, 2.1], [0.9, 1.7, 0.5]])
    gamma = np.array([1.4, 2.6])
    tokens = [0, 1, 1]
    elog_beta = scipy.special.digamma(lam) - scipy.special.digamma(lam.sum(axis=1, keepdims=True))
    elog_theta = scipy.special.digamma(gamma) - scipy.special.digamma(gamma.sum())
    phi = scipy.special.softmax(elog_theta[None, :] + elog_beta[:, tokens].T, axis=1)  # (3 tokens, K)

    log_p_words = log_p_topics = entropy_z = 0.0
    for assignment in itertools.product(range(2), repeat=3):
        q_z = np.prod([phi[n, k] for n, k in enumerate(assignment)])
        log_p_words += q_z * sum(elog_beta[k, tokens[n]] for n, k in enumerate(assignment))
        log_p_topics += q_z * sum(elog_theta[k] for k in assignment)
        entropy_z -= q_z * np.log(q_z)

    def log_dirichlet_expected(prior, elog):  # E_q[log Dir(x; prior 1)] for E_q[log x] = elog
        size = elog.shape[-1]
        return scipy.special.gammaln(size * prior) - size * scipy.special.gammaln(prior) + (prior - 1) * elog.sum()

    expected = {
        "log_p_words": log_p_words,
        "log_p_topics": log_p_topics,
        "log_p_theta": log_dirichlet_expected(alpha, elog_theta),
        "log_p_beta": sum(log_dirichlet_expected(eta, row) for row in elog_beta),
        "entropy_z": entropy_z,
        "entropy_theta": scipy.stats.dirichlet(gamma).entropy(),
        "entropy_beta": sum(scipy.stats.dirichlet(row).entropy() for row in lam),
    }
    with jax.enable_x64(True):
        params = lda.Params(jnp.asarray(lam), jnp.asarray(alpha), jnp.asarray(eta))
        documents = lda.as_corpus(np.array([[1.0, 2.0, 0.0]]))
        terms = jax.jit(lda.elbo_terms)(params, documents, jnp.asarray(gamma[None, :]))
        total = jax.jit(lda.elbo)(params, documents, jnp.asarray(gamma[None, :]))
    for name, value in expected.items():
        assert float(getattr(terms, name)) == pytest.approx(value, rel=1e-10, abs=1e-12), name
    assert float(total) == pytest.approx(sum(expected.values()), rel=1e-10)


def test_sparse_and_dense_corpora_agree(corpus):
    counts = corpus[0][:20]
    with jax.enable_x64(True):
        dense, sparse = lda.as_corpus(counts), lda.as_corpus(scipy.sparse.csr_matrix(counts))
        np.testing.assert_array_equal(dense.word_ids, sparse.word_ids)
        np.testing.assert_array_equal(dense.counts, sparse.counts)
        # Explicitly stored zeros and duplicate entries of a sparse matrix are no words, and add up.
        coo = scipy.sparse.coo_matrix(([0.0, 1.0, 2.0], ([0, 0, 0], [1, 2, 2])), shape=(1, 3))
        single = lda.as_corpus(coo)
        np.testing.assert_array_equal(single.word_ids, [[2]])
        np.testing.assert_array_equal(single.counts, [[3.0]])
        assert coo.nnz == 3  # the input is left as it was
        assert dense.word_ids.dtype == jnp.int32 and dense.counts.dtype == jnp.float64
        # The padding has count 0, and the counts add up to the documents' lengths.
        np.testing.assert_array_equal(np.asarray(dense.counts).sum(axis=1), counts.sum(axis=1))


@pytest.mark.parametrize(
    ("counts", "error", "match"),
    [
        (np.array([[1.0, -1.0, 2.0]]), DataError, "negative values"),
        (np.array([[1.0, 0.5, 2.0]]), DataError, "not whole numbers"),
        (np.array([[1.0, np.nan, 2.0]]), DataError, "NaN or infinite"),
        (np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]]), DataError, "have no words"),
        (np.array([1.0, 0.0, 2.0]), ArgumentError, "must be 2-D"),
        (scipy.sparse.csr_matrix(np.array([[1.0, 0.0], [0.0, 0.0]])), DataError, "have no words"),
    ],
)
def test_bad_counts(counts, error, match):
    with pytest.raises(error, match=match):
        lda.as_corpus(counts)
    with pytest.raises(error, match=match):
        lda.fit(jax.random.key(0), counts, 1)


def test_more_topics_than_words():
    with pytest.raises(ArgumentError, match="num_topics=4 is more than the vocabulary's 3 words"):
        lda.fit(jax.random.key(0), np.ones((2, 3)), 4)


def test_counts_over_another_vocabulary(cavi_fit):
    with pytest.raises(ArgumentError, match="counts has 4 words"), jax.enable_x64(True):
        lda.perplexity(cavi_fit[0], np.ones((2, 4)))


def test_bad_fit_options():
    with pytest.raises(ArgumentError, match="method must be one of"):
        lda.fit(jax.random.key(0), np.ones((2, 3)), 2, method="gibbs")
    with pytest.raises(ArgumentError, match="batch_size must be an int >= 1"):
        lda.fit(jax.random.key(0), np.ones((2, 3)), 2, method="svi", batch_size=0)
    with pytest.raises(ArgumentError, match="doc_topic_prior must be a finite number > 0"):
        lda.fit(jax.random.key(0), np.ones((2, 3)), 2, doc_topic_prior=-1.0)


def test_document_elbos_and_the_global_terms_sum_to_the_elbo(corpus, cavi_fit):
    with jax.enable_x64(True):
        params = cavi_fit[0]
        batch = lda.as_corpus(corpus[0])
        gammas = lda.document_gammas(params, batch)
        by_document = jax.vmap(lda.document_elbo, in_axes=(None, 0, 0, 0))(params, batch.word_ids, batch.counts, gammas)
        terms = lda.elbo_terms(params, batch, gammas)
        np.testing.assert_allclose(
            float(jnp.sum(by_document) + terms.log_p_beta + terms.entropy_beta),
            float(lda.elbo(params, batch, gammas)),
            rtol=1e-12,
        )


def test_restarted_local_steps_are_kept_only_if_they_raise_the_elbo(corpus, cavi_fit):
    """restart_gammas keeps the local steps restarted from a fresh draw (ones without a key) if their ELBO is
    at least the previous γ's, and the previous γ otherwise, so the ELBO never falls below its value there."""
    with jax.enable_x64(True):
        params = cavi_fit[0]
        batch = lda.as_corpus(corpus[0])
        num_docs = batch.counts.shape[0]
        key = jax.random.key(3)
        restarted = lda.e_step(params, batch, lda.initial_gammas(key, num_docs, NUM_TOPICS, jnp.float64))[0]
        np.testing.assert_array_equal(lda.restart_gammas(key, params, batch, restarted * 5), restarted)
        from_ones = lda.e_step(params, batch, jnp.ones((num_docs, NUM_TOPICS)))[0]
        np.testing.assert_array_equal(lda.restart_gammas(None, params, batch, restarted * 5), from_ones)
        # The restarts' local optimum, perturbed: the restarted γ are no better than it, so it is kept.
        optimum = lda.e_step(params, batch, restarted, 100, 1e-12)[0]
        assert float(lda.elbo(params, batch, optimum)) >= float(lda.elbo(params, batch, restarted))
        np.testing.assert_array_equal(lda.restart_gammas(key, params, batch, optimum), optimum)


def test_word_probabilities_are_the_topic_proportions_times_the_topics(corpus, cavi_fit):
    params = cavi_fit[0]
    with jax.enable_x64(True):
        probabilities = np.asarray(lda.word_probabilities(params, corpus[0][:5]))
        expected = np.asarray(lda.document_topics(params, corpus[0][:5])) @ np.asarray(lda.topic_word(params))
    np.testing.assert_allclose(probabilities, expected, rtol=1e-12)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-12)


def test_the_batched_local_steps_are_each_documents_own_loop(corpus, cavi_fit):
    """e_step runs documents in rounds so that none waits for the slowest; each still runs its own loop."""
    with jax.enable_x64(True):
        params = cavi_fit[0]
        batch = lda.as_corpus(corpus[0])
        start = lda.initial_gammas(jax.random.key(5), batch.counts.shape[0], NUM_TOPICS, jnp.float64)
        for max_iter, tol in ((100, 1e-3), (100, 1e-9), (3, 1e-3), (0, 1e-3)):
            batched = lda.e_step(params, batch, start, max_iter, tol)[0]
            one_by_one = jax.vmap(lda.local_step, in_axes=(None, 0, 0, 0, None, None))(
                params, batch.word_ids, batch.counts, start, max_iter, tol
            )
            np.testing.assert_allclose(batched, one_by_one, rtol=1e-12, atol=0)
