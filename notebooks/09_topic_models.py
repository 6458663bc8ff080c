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
# # 9. Topic models
#
# The seed texts name topic modeling as one of the main uses of latent variable models: latent
# Dirichlet allocation (LDA) uncovers the thematic structure of a corpus from nothing but its word
# counts. Each document is a mixture of K topics, each topic a distribution over the V words of the
# vocabulary; neither the topics nor any document's mixture is observed. The seed texts' SVI schedule,
# the local φ_i of a minibatch first and then a step on the global θ, is Hoffman et al.'s stochastic
# variational inference for exactly this model. This notebook
#
# 1. draws a small corpus from LDA with K = 3 known topics, checks the ELBO of a 2-word document
#    against an independent computation and against the exact log p(w), checks that the per-document
#    ELBOs and the global terms add up to `lda.elbo`, and that the local step's γ is a fixed point;
# 2. fits it by coordinate ascent (CAVI), whose ELBO never decreases, and recovers the three topics;
# 3. checks that one SVI step on the full batch with step size ρ = 1 *is* the CAVI update, and that SVI
#    on minibatches reaches the perplexity of CAVI;
# 4. fits LDA to the prose of SciPy's docstrings: its topics and their coherence, the topics of each
#    subpackage, the held-out perplexity (by the bound and by document completion), and, if
#    scikit-learn is installed, its perplexity of the same topics;
# 5. and trains ProdLDA, the same kind of model fitted as a variational autoencoder, on the same
#    corpus, and sets its topics and perplexities beside LDA's.

# %%
# %matplotlib inline
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import scipy.special
import scipy.stats
from scipy.optimize import linear_sum_assignment

from lvmjax import plots, prodlda, text
from lvmjax.models import lda, topics

SMALL = os.environ.get("LVMJAX_NOTEBOOK_SMALL") == "1"
SYNTHETIC_DOCS = 300 if SMALL else 1_000  # training documents of the synthetic corpus (and a third as many to test)
PRIOR_DRAWS = 200_000 if SMALL else 2_000_000  # Monte Carlo draws of p(w) for the 2-word document
SVI_PASSES = 30 if SMALL else 100  # passes over the synthetic corpus
NUM_TOPICS = 12  # of the scipy-docs corpus
CAVI_ITERATIONS = 25 if SMALL else 300  # the most CAVI iterations on scipy-docs
PRODLDA_EPOCHS = 20 if SMALL else 150
NUM_TOP_WORDS = 10  # shown per topic, and scored by NPMI

# %% [markdown]
# ## 1. The generative process, and an ELBO with no approximation in it
#
# K topics β_1, …, β_K over V words; document d has N_d words w_d1, …, w_dN_d:
#
# $$\beta_k \sim \text{Dir}(\eta), \qquad \theta_d \sim \text{Dir}(\alpha), \qquad
# z_{dn} \mid \theta_d \sim \text{Cat}(\theta_d), \qquad w_{dn} \mid z_{dn} = k \sim \text{Cat}(\beta_k).$$
#
# The latent variables are the global topics β and, per document, the proportions θ_d and one topic
# z_dn per word. The posterior has no closed form, so lvmjax fits the mean-field family
# q(β_k) = Dir(λ_k), q(θ_d) = Dir(γ_d), q(z_dn) = Cat(φ_dn) (Blei, Ng & Jordan 2003). Every term of
# its ELBO is an expectation of a log-Dirichlet or log-categorical density, known in closed form
# through $\mathbb{E}[\log \theta_{dk}] = \psi(\gamma_{dk}) - \psi(\sum_j \gamma_{dj})$, so the ELBO is
# exact: no Monte Carlo in it. Given λ and γ_d the best φ_dn is
# $\varphi_{dnk} \propto \exp(\mathbb{E}[\log \theta_{dk}] + \mathbb{E}[\log \beta_{k w_{dn}}])$, which makes
# the ELBO a function of (λ, γ) alone: `lda.elbo(params, corpus, gammas)`.
#
# The synthetic corpus: K = 3 topics over V = 24 words, each topic with 90% of its mass on its own 8
# words, α = 0.5, documents of 60 words.

# %%
K, V, DOC_LENGTH, ALPHA = 3, 24, 60, 0.5
rng = np.random.default_rng(0)
true_topics = np.full((K, V), 0.1 / V)
for topic in range(K):
    true_topics[topic, 8 * topic : 8 * (topic + 1)] += 0.9 / 8
true_topics /= true_topics.sum(axis=1, keepdims=True)
num_synthetic = SYNTHETIC_DOCS + SYNTHETIC_DOCS // 3
true_proportions = rng.dirichlet(np.full(K, ALPHA), num_synthetic)  # θ_d
# Each word: z_dn ~ Cat(θ_d), then w_dn ~ Cat(β_z); the counts of a document are Mult(N_d, θ_d β).
synthetic = np.stack([rng.multinomial(DOC_LENGTH, theta @ true_topics) for theta in true_proportions])
synthetic = synthetic.astype(np.float32)
synthetic_train, synthetic_test = synthetic[:SYNTHETIC_DOCS], synthetic[SYNTHETIC_DOCS:]
print(f"{len(synthetic_train)} training and {len(synthetic_test)} test documents of {DOC_LENGTH} words over V = {V}")
print("the first document's θ:", np.round(true_proportions[0], 3), " its counts:", synthetic[0].astype(int))
assert np.all(synthetic.sum(axis=1) == DOC_LENGTH)

# %% [markdown]
# ### The ELBO of a 2-word document, three ways
#
# A corpus of one document with the two words w = (0, 1), K = 3, V = 4, at an arbitrary λ and γ.
# Independently of lvmjax (scipy's digamma, scipy's Dirichlet entropy), and enumerating the K² = 9
# topic assignments of the two words under q(z) = φ_1 φ_2:
#
# $$\text{ELBO} = \sum_{z_1, z_2} q(z) \big(\mathbb{E}[\log p(w \mid z, \beta)] + \mathbb{E}[\log p(z \mid \theta)]
# - \log q(z)\big) + \mathbb{E}[\log p(\theta \mid \alpha)] + \mathbb{H}[q(\theta)]
# + \textstyle\sum_k \big(\mathbb{E}[\log p(\beta_k \mid \eta)] + \mathbb{H}[q(\beta_k)]\big).$$
#
# For two words, log p(w) itself is a closed form: $p(w) = \sum_{k, j} \mathbb{E}[\theta_k \theta_j]\,
# \mathbb{E}[\beta_{k w_1} \beta_{j w_2}]$, with the Dirichlet moments
# $\mathbb{E}[\theta_k \theta_j] = \alpha(\alpha + [k = j]) / (K\alpha (K\alpha + 1))$ and, for w_1 ≠ w_2,
# $\mathbb{E}[\beta_{k w_1} \beta_{j w_2}] = 1 / V^2$ if k ≠ j (independent topics) and
# $\eta^2 / (V\eta (V\eta + 1))$ if k = j. A Monte Carlo average of $p(w \mid \theta, \beta)$ over draws
# from the prior checks it, and the ELBO must lie below it at every (λ, γ), also after CAVI has
# raised it as far as it goes on this document.

# %%
TOY_K, TOY_V, TOY_ALPHA, TOY_ETA = 3, 4, 0.5, 0.3
toy_words = np.array([0, 1])
toy_lambda = np.array([[1.3, 0.6, 2.1, 0.8], [0.9, 1.7, 0.5, 1.1], [0.4, 0.7, 1.2, 2.0]])
toy_gamma = np.array([1.4, 2.6, 0.9])


def independent_elbo(lam, gamma):
    """The ELBO of the one document w = toy_words, by scipy and by enumerating its 9 topic assignments."""
    elog_beta = scipy.special.digamma(lam) - scipy.special.digamma(lam.sum(axis=1, keepdims=True))
    elog_theta = scipy.special.digamma(gamma) - scipy.special.digamma(gamma.sum())
    phi = scipy.special.softmax(elog_theta + elog_beta[:, toy_words].T, axis=1)  # (2 words, K), the optimal φ
    total = 0.0
    for z in np.ndindex(TOY_K, TOY_K):
        q_z = phi[0, z[0]] * phi[1, z[1]]
        total += q_z * sum(elog_beta[z[n], toy_words[n]] + elog_theta[z[n]] - np.log(phi[n, z[n]]) for n in range(2))
    log_prior_theta = scipy.special.gammaln(TOY_K * TOY_ALPHA) - TOY_K * scipy.special.gammaln(TOY_ALPHA)
    total += log_prior_theta + (TOY_ALPHA - 1) * elog_theta.sum() + scipy.stats.dirichlet(gamma).entropy()
    log_prior_beta = scipy.special.gammaln(TOY_V * TOY_ETA) - TOY_V * scipy.special.gammaln(TOY_ETA)
    for topic in range(TOY_K):
        total += log_prior_beta + (TOY_ETA - 1) * elog_beta[topic].sum() + scipy.stats.dirichlet(lam[topic]).entropy()
    return total


pairs = np.add.outer(np.arange(TOY_K), np.zeros(TOY_K)) == np.arange(TOY_K)  # [k = j]
theta_moments = TOY_ALPHA * (TOY_ALPHA + pairs) / (TOY_K * TOY_ALPHA * (TOY_K * TOY_ALPHA + 1))
beta_moments = np.where(pairs, TOY_ETA**2 / (TOY_V * TOY_ETA * (TOY_V * TOY_ETA + 1)), 1 / TOY_V**2)
exact_log_p = float(np.log(np.sum(theta_moments * beta_moments)))
draws = np.random.default_rng(1)
theta_draws = draws.dirichlet(np.full(TOY_K, TOY_ALPHA), PRIOR_DRAWS)  # (S, K)
beta_draws = draws.gamma(TOY_ETA, size=(PRIOR_DRAWS, TOY_K, TOY_V))
beta_draws /= beta_draws.sum(axis=2, keepdims=True)  # (S, K, V), each row a Dir(η) draw
likelihoods = np.prod(np.einsum("sk,skn->sn", theta_draws, beta_draws[:, :, toy_words]), axis=1)  # p(w | θ, β)
monte_carlo, standard_error = likelihoods.mean(), likelihoods.std() / np.sqrt(PRIOR_DRAWS)

toy_counts = np.zeros((1, TOY_V), np.float32)
toy_counts[0, toy_words] = 1
toy_corpus = lda.as_corpus(toy_counts)
toy_params = lda.Params(jnp.asarray(toy_lambda, jnp.float32), jnp.asarray(TOY_ALPHA), jnp.asarray(TOY_ETA))
by_lvmjax = float(lda.elbo(toy_params, toy_corpus, jnp.asarray(toy_gamma[None], jnp.float32)))
by_scipy = independent_elbo(toy_lambda, toy_gamma)

cavi_step = jax.jit(lda.cavi_step)
params, gammas, toy_trace = toy_params, jnp.ones((1, TOY_K)), []
for _ in range(50):
    params, gammas, bound = cavi_step(params, toy_corpus, gammas)  # the ELBO at the old λ and the new γ
    toy_trace.append(float(bound))
print(f"ELBO at the arbitrary (λ, γ): {by_lvmjax:.6f} by lda.elbo, {by_scipy:.6f} by scipy and enumeration")
print(f"ELBO after 50 CAVI iterations on this one document: {toy_trace[-1]:.6f}")
print(
    f"log p(w) = {exact_log_p:.6f} exactly; by {PRIOR_DRAWS} draws from the prior "
    f"{np.log(monte_carlo):.6f} ± {standard_error / monte_carlo:.6f}"
)
np.testing.assert_allclose(by_lvmjax, by_scipy, rtol=1e-6)
np.testing.assert_allclose(
    toy_trace[-1],
    independent_elbo(np.asarray(params.topic_word, np.float64), np.asarray(gammas[0], np.float64)),
    rtol=1e-5,
)
assert abs(monte_carlo - np.exp(exact_log_p)) < 5 * standard_error
assert by_lvmjax < toy_trace[-1] < exact_log_p  # CAVI raised the bound, which stays below log p(w)

# %% [markdown]
# The gap that remains, log p(w) − ELBO, is KL(q ‖ p(β, θ, z | w)): the mean-field q cannot hold the
# posterior's dependence between θ, β and the z's.
#
# ### Per-document ELBOs, and the local fixed point
#
# The ELBO splits into one term per document, ELBO_d (its words, its z's and its θ_d;
# `lda.document_elbo`), plus the global terms of β, $\mathbb{E}[\log p(\beta \mid \eta)] + \mathbb{H}[q(\beta)]$
# (`lda.elbo_terms`). For fixed λ the documents are independent, so the local step optimizes each γ_d
# alone, by the fixed-point iteration $\gamma_d = \alpha + \sum_n c_{dn} \varphi_{dn}(\gamma_d)$
# (`lda.local_step`, vmapped over documents in `lda.e_step`). At its fixed point, another
# iteration changes nothing, and ELBO_d is stationary in γ_d: its gradient there vanishes.

# %%
corpus = lda.as_corpus(synthetic_train)
some_params = lda.Params(jnp.asarray(0.5 + true_topics * 50, jnp.float32), jnp.asarray(ALPHA), jnp.asarray(1 / K))
some_gammas = lda.initial_gammas(jax.random.key(0), SYNTHETIC_DOCS, K, jnp.float32)
terms = lda.elbo_terms(some_params, corpus, some_gammas)
per_document = jax.vmap(lda.document_elbo, in_axes=(None, 0, 0, 0))
documents_sum = float(jnp.sum(per_document(some_params, corpus.word_ids, corpus.counts, some_gammas)))
total = float(lda.elbo(some_params, corpus, some_gammas))
print(
    f"Σ_d ELBO_d = {documents_sum:.2f}, global terms {float(terms.log_p_beta + terms.entropy_beta):.2f}, "
    f"sum {documents_sum + float(terms.log_p_beta + terms.entropy_beta):.2f}; lda.elbo = {total:.2f}"
)
np.testing.assert_allclose(documents_sum + float(terms.log_p_beta + terms.entropy_beta), total, rtol=1e-6)

fixed = lda.document_gammas(some_params, corpus, max_doc_update_iter=1_000, mean_change_tol=1e-5)
once_more, _ = lda.e_step(some_params, corpus, fixed, max_doc_update_iter=1, mean_change_tol=0.0)
gradient = jax.vmap(jax.grad(lda.document_elbo, argnums=3), in_axes=(None, 0, 0, 0))
at_fixed = np.abs(np.asarray(gradient(some_params, corpus.word_ids, corpus.counts, fixed))).max()
at_start = np.abs(np.asarray(gradient(some_params, corpus.word_ids, corpus.counts, some_gammas))).max()
moved = np.abs(np.asarray(once_more - fixed)).max()
print(f"one more local iteration moves γ by at most {moved:.1e} (γ up to {float(fixed.max()):.1f})")
print(f"max |∂ELBO_d / ∂γ_d|: {at_start:.2e} at the starting γ, {at_fixed:.2e} at the fixed point")
np.testing.assert_allclose(once_more, fixed, rtol=1e-4, atol=1e-4)
assert at_fixed < 1e-3 * at_start

# %% [markdown]
# ## 2. Coordinate ascent
#
# CAVI alternates the local step of every document and the global update, each the exact maximizer of
# the ELBO in its block of parameters:
#
# $$\text{local: } \gamma_d = \alpha + \sum_n c_{dn} \varphi_{dn}, \qquad
# \text{global: } \lambda_{kv} = \eta + \sum_d \sum_n c_{dn} \varphi_{dnk} [w_{dn} = v].$$
#
# So the ELBO never decreases (`lda.fit(..., method="cavi")`, whose `EMInfo.objective` is the ELBO per
# word at each iterate; in float32, a sum of some 10⁴ terms, it may wobble by rounding). The topics
# come out in an arbitrary order; the Hungarian algorithm (`scipy.optimize.linear_sum_assignment`)
# matches each true topic to one fitted topic by their cosine similarity.

# %%
cavi_params, cavi_info = lda.fit(jax.random.key(1), synthetic_train, K, method="cavi", max_iter=200)
cavi_trace = np.asarray(cavi_info.objective[: int(cavi_info.num_iterations)], np.float64)


def matched_cosines(estimated, truth):
    """The cosine of each true topic with the fitted topic the Hungarian assignment gives it, and that topic."""
    estimated = estimated / np.linalg.norm(estimated, axis=1, keepdims=True)
    truth = truth / np.linalg.norm(truth, axis=1, keepdims=True)
    cosines = truth @ estimated.T
    rows, columns = linear_sum_assignment(-cosines)
    return cosines[rows, columns], columns


cavi_topics = np.asarray(lda.topic_word(cavi_params))
cavi_cosines, cavi_match = matched_cosines(cavi_topics, true_topics)
print(
    f"CAVI: {len(cavi_trace)} iterations (converged: {bool(cavi_info.converged)}), ELBO per word "
    f"{cavi_trace[0]:.4f} → {cavi_trace[-1]:.4f}; largest decrease {max(0.0, -np.diff(cavi_trace).min()):.1e}"
)
print("cosine of each true topic with its matched fitted topic:", np.round(cavi_cosines, 4))
assert np.all(np.diff(cavi_trace) >= -300 * np.finfo(np.float32).eps * np.abs(cavi_trace[1:]))
assert np.all(cavi_cosines >= 0.95)

figure, axes = plt.subplots(1, 2, figsize=(10, 2.4), layout="constrained", sharey=True)
for axis, matrix, name in ((axes[0], true_topics, "the true β"), (axes[1], cavi_topics[cavi_match], "E_q[β] by CAVI")):
    image = axis.imshow(matrix, aspect="auto", cmap="viridis", vmin=0, vmax=true_topics.max())
    axis.set_title(name)
    axis.set_xlabel("word v")
axes[0].set_ylabel("topic k")
figure.colorbar(image, ax=axes, label="p(w = v | topic k)")
plt.show()

# %% [markdown]
# ## 3. Stochastic variational inference
#
# The global update needs every document's φ before λ can move: one pass over the corpus per step.
# Hoffman et al.'s SVI (2010, 2013) takes the seed texts' schedule instead: for a minibatch B, the
# local step of its documents (the local φ_i), then a step on the global λ along the natural gradient
# of the ELBO. For a conditionally conjugate model the natural gradient is simply
# $\hat\lambda - \lambda$, with $\hat\lambda = \eta + (D / |B|) \sum_{d \in B} \sum_n c_{dn} \varphi_{dn}$
# the global update the whole corpus would give if it looked like B, so a step of size ρ_t is
#
# $$\lambda \leftarrow (1 - \rho_t) \lambda + \rho_t \hat\lambda, \qquad \rho_t = (\tau_0 + t)^{-\kappa}$$
#
# (`lda.svi_step`), with κ ∈ (0.5, 1] for the Robbins–Monro conditions. With B the whole corpus and
# ρ = 1 (τ_0 = 0, κ = 0), one SVI step is the CAVI update; with ρ = 1/2 (τ_0 = 1, κ = 1, t = 1) it is
# halfway from λ to it.

# %%
start = lda.Params(jax.random.gamma(jax.random.key(2), 2.0, (K, V)), jnp.asarray(1 / K), jnp.asarray(1 / K))
start_gammas = lda.initial_gammas(jax.random.key(3), SYNTHETIC_DOCS, K, jnp.float32)
svi_step = jax.jit(lda.svi_step)
by_cavi, cavi_gammas, _ = cavi_step(start, corpus, start_gammas)
full_step, svi_gammas = svi_step(
    start, corpus, start_gammas, 1, SYNTHETIC_DOCS, learning_offset=0.0, learning_decay=0.0
)
half_step, _ = svi_step(start, corpus, start_gammas, 1, SYNTHETIC_DOCS, learning_offset=1.0, learning_decay=1.0)
difference = np.abs(np.asarray(full_step.topic_word - by_cavi.topic_word)).max()
print(f"largest |λ_SVI − λ_CAVI| after one full-batch step with ρ = 1: {difference:.1e}")
np.testing.assert_allclose(full_step.topic_word, by_cavi.topic_word, rtol=1e-6)
np.testing.assert_allclose(svi_gammas, cavi_gammas, rtol=1e-6)
np.testing.assert_allclose(half_step.topic_word, (start.topic_word + by_cavi.topic_word) / 2, rtol=1e-6)

# %% [markdown]
# On minibatches of 50 documents, with scikit-learn's defaults τ_0 = 10 and κ = 0.7, SVI makes
# D / 50 steps on λ per pass where CAVI makes one. How good are the two fits? The perplexity
# $\exp(-\text{ELBO} / N)$ of the held-out documents (`lda.perplexity`, γ from a local step with λ fixed)
# is an upper bound on the perplexity $\exp(-\log p(w) / N)$, the number of equally likely words the
# model hesitates between; V = 24 is the perplexity of a uniform guess.

# %%
svi_params, svi_info = lda.fit(
    jax.random.key(4), synthetic_train, K, method="svi", max_iter=SVI_PASSES, batch_size=50, tol=0.0
)
svi_trace = np.asarray(svi_info.objective[: int(svi_info.num_iterations)], np.float64)
svi_cosines, _ = matched_cosines(np.asarray(lda.topic_word(svi_params)), true_topics)
held_out = {
    name: float(lda.perplexity(params, synthetic_test)) for name, params in (("CAVI", cavi_params), ("SVI", svi_params))
}
print(
    f"SVI: {len(svi_trace)} passes of {-(-SYNTHETIC_DOCS // 50)} steps, "
    f"ELBO per word {svi_trace[0]:.4f} → {svi_trace[-1]:.4f}"
)
print("SVI's matched cosines:", np.round(svi_cosines, 4))
print(f"held-out perplexity: CAVI {held_out['CAVI']:.3f}, SVI {held_out['SVI']:.3f} (uniform: {V})")
assert np.all(svi_cosines >= 0.95)
assert abs(held_out["SVI"] / held_out["CAVI"] - 1) < 0.03 and held_out["CAVI"] < V

plots.curves(
    {
        "CAVI (one step per pass)": cavi_trace[:SVI_PASSES],
        f"SVI ({-(-SYNTHETIC_DOCS // 50)} steps per pass)": svi_trace,
    },
    "pass over the corpus",
    "ELBO per word",
    title="the synthetic corpus: CAVI against SVI",
)

# %% [markdown]
# ## 4. The topics of SciPy's docstrings
#
# `text.load_corpus("scipy-docs")` ships the prose of SciPy's public docstrings, one document per
# documented object (`scipy.fft.dct`, …), labelled by the subpackage it documents (stats, signal,
# linalg, …), as bags of words (stop words dropped, the vocabulary the words of at least 5 and at most
# half of the training documents). We fit LDA with K = 12 topics by CAVI, α = η = 1/K.

# %%
docs = text.load_corpus("scipy-docs")
vocabulary_size = len(docs.vocabulary)
print(
    f"{docs.train.shape[0]} training and {docs.test.shape[0]} test documents, V = {vocabulary_size} words, "
    f"{int(docs.train.sum())} training words; {len(docs.label_names)} subpackages:"
)
print(
    ", ".join(f"{name} ({count})" for name, count in zip(docs.label_names, np.bincount(docs.train_labels), strict=True))
)

scipy_params, scipy_info = lda.fit(jax.random.key(5), docs.train, NUM_TOPICS, max_iter=CAVI_ITERATIONS)
scipy_trace = np.asarray(scipy_info.objective[: int(scipy_info.num_iterations)], np.float64)
print(f"CAVI: {len(scipy_trace)} iterations, ELBO per word {scipy_trace[0]:.4f} → {scipy_trace[-1]:.4f}")
assert np.all(np.diff(scipy_trace) >= -300 * np.finfo(np.float32).eps * np.abs(scipy_trace[1:]))

# %% [markdown]
# ### Top words and coherence
#
# A topic is read by its most probable words. Whether they belong together is measured by their
# coherence: the mean normalized pointwise mutual information of the pairs of top words, over the
# documents that contain them (`topics.npmi_coherence`; 1 for words that always occur together, 0 for
# independent ones, −1 for words that never meet). It is computed here on the training documents.

# %%
lda_topics = np.asarray(lda.topic_word(scipy_params))
lda_top = topics.top_words(lda_topics, docs.vocabulary, NUM_TOP_WORDS)
lda_npmi = topics.npmi_coherence(lda_topics, docs.train, NUM_TOP_WORDS)
for topic, (words, score) in enumerate(zip(lda_top, lda_npmi, strict=True)):
    print(f"topic {topic + 1:2d} (NPMI {score:+.3f}): {' '.join(words)}")
print(f"mean NPMI {lda_npmi.mean():.3f}")
assert np.all((lda_npmi >= -1) & (lda_npmi <= 1)) and lda_npmi.mean() > 0

plots.topic_words(
    lda_top,
    np.take_along_axis(lda_topics, np.argsort(-lda_topics, axis=1)[:, :NUM_TOP_WORDS], axis=1),
    captions=[f"NPMI {score:+.2f}" for score in lda_npmi],
    title="LDA on scipy-docs: the top words of each topic",
)

# %% [markdown]
# ### The topics of each subpackage
#
# No label entered the fit. Averaging E_q[θ_d] (`lda.document_topics`) over the training documents of
# each subpackage shows where each puts its mass: if the topics are thematic, documents of different
# subpackages, such as stats, signal and linalg, should lean on different topics, each on one whose
# top words name its subject, with far more than the 1/K of an even spread.

# %%
proportions = np.asarray(lda.document_topics(scipy_params, docs.train))
by_label = np.stack([proportions[docs.train_labels == label].mean(axis=0) for label in range(len(docs.label_names))])
favourite = by_label.argmax(axis=1)
for name in ("stats", "signal", "linalg"):
    label = docs.label_names.index(name)
    print(
        f"{name}: mean E[θ] {by_label[label, favourite[label]]:.2f} on topic {favourite[label] + 1} "
        f"({' '.join(lda_top[favourite[label]][:5])})"
    )
stats, signal, linalg = (docs.label_names.index(name) for name in ("stats", "signal", "linalg"))
np.testing.assert_allclose(proportions.sum(axis=1), 1, rtol=1e-5)
assert len({favourite[stats], favourite[signal], favourite[linalg]}) == 3  # three subpackages, three topics
assert np.all(by_label[[stats, signal, linalg], favourite[[stats, signal, linalg]]] > 3 / NUM_TOPICS)
assert "distribution" in lda_top[favourite[stats]] and "filter" in lda_top[favourite[signal]]
assert "matrix" in lda_top[favourite[linalg]]

figure, axis = plt.subplots(figsize=(8, 5), layout="constrained")
image = axis.imshow(by_label, cmap="viridis", aspect="auto")
axis.set_xticks(np.arange(NUM_TOPICS), labels=[f"{k + 1}\n{lda_top[k][0]}" for k in range(NUM_TOPICS)], fontsize=7)
axis.set_yticks(np.arange(len(docs.label_names)), labels=docs.label_names)
axis.set_xlabel("topic (and its top word)")
figure.colorbar(image, label="mean E_q[θ_dk] over the subpackage's documents")
axis.set_title("LDA on scipy-docs: topic proportions by subpackage")
plt.show()

# %% [markdown]
# ### Held-out perplexity, two ways
#
# The **bound perplexity** of the test documents, $\exp(-\text{ELBO} / N)$ (`lda.perplexity`), charges
# the test set with the whole ELBO, including the global terms of q(β) (as scikit-learn does); without
# them, $\exp(-\sum_d \text{ELBO}_d / N)$ bounds from above the perplexity of the test words under q(β).
# **Document completion** (Wallach et al. 2009; `topics.completion_split`) needs no bound: each test
# document's words are split at random into an observed half and a held-out half, θ_d is inferred from
# the observed half alone, and the held-out words are scored by the predictive
# $p(w \mid \text{observed}_d) \approx \sum_k \mathbb{E}[\theta_{dk}]\, \mathbb{E}[\beta_{kw}]$
# (`lda.word_probabilities`, `topics.completion_perplexity`). Two baselines: a uniform guess, whose
# perplexity is V, and one topic, K = 1, the unigram distribution of the training words, the same for
# every document. And an early stop, LDA after 2 CAVI iterations: the fitted model must do no worse.

# %%
observed, held_out_words = topics.completion_split(docs.test, seed=0)


def lda_summary(params):
    """The bound perplexities (with and without the global terms) and the completion perplexity of the test set."""
    corpus = lda.as_corpus(docs.test)
    gammas = lda.document_gammas(params, corpus)
    terms = lda.elbo_terms(params, corpus, gammas)
    num_words = float(docs.test.sum())
    documents_only = float(sum(terms) - terms.log_p_beta - terms.entropy_beta)
    return {
        "bound": float(lda.perplexity(params, docs.test)),
        "bound, documents only": float(np.exp(-documents_only / num_words)),
        "completion": topics.completion_perplexity(lda.word_probabilities(params, observed), held_out_words),
    }


# With one topic every word is in it (φ = 1), and CAVI's global update needs no local step: λ = η + Σ_d n_d.
unigram_params = lda.Params(
    jnp.asarray(1.0 + docs.train.sum(axis=0), jnp.float32), jnp.asarray(1.0), jnp.asarray(1.0)
)  # K = 1, so α = η = 1/K = 1
# The same fit as above, stopped at its second iterate by a tolerance no change can meet (and so the
# same compiled program, which takes tol as an argument).
early_params, early_info = lda.fit(jax.random.key(5), docs.train, NUM_TOPICS, max_iter=CAVI_ITERATIONS, tol=1e9)
assert int(early_info.num_iterations) == 2
summaries = {
    "one topic (unigram)": lda_summary(unigram_params),
    "LDA, 2 iterations": lda_summary(early_params),
    f"LDA, K = {NUM_TOPICS}": lda_summary(scipy_params),
}
print(f"{int(held_out_words.sum())} held-out words in {int((held_out_words.sum(axis=1) > 0).sum())} test documents")
print(f"{'':24s} {'bound':>8s} {'bound, Σ_d ELBO_d':>18s} {'completion':>11s}")
for name, summary in summaries.items():
    print(f"{name:24s} {summary['bound']:8.1f} {summary['bound, documents only']:18.1f} {summary['completion']:11.1f}")
print(f"{'uniform':24s} {'':8s} {'':18s} {vocabulary_size:11d}")
fitted = summaries[f"LDA, K = {NUM_TOPICS}"]
assert fitted["completion"] < summaries["one topic (unigram)"]["completion"] < vocabulary_size
assert fitted["completion"] <= summaries["LDA, 2 iterations"]["completion"]
assert fitted["bound, documents only"] < fitted["bound"] < vocabulary_size

# %% [markdown]
# ### Against scikit-learn
#
# scikit-learn's `LatentDirichletAllocation` is the established implementation of the same
# variational family (lvmjax follows its parametrization: `components_` is λ). Written into a
# scikit-learn model, the same λ gives the same test perplexity: its `perplexity` is the same ELBO,
# with γ from the same local step started at ones. Both are computed here in float64; lvmjax's
# float32 figure above differs by the rounding of its local steps, which can stop an iteration earlier
# or later. (A model fitted for one iteration supplies the other fitted attributes; its `components_`
# and `exp_dirichlet_component_` are then replaced.) scikit-learn is in lvmjax's `test` extra, not a
# dependency of the library; without it this cell says so and moves on.

# %%
try:
    from sklearn.decomposition import LatentDirichletAllocation
except ImportError:
    LatentDirichletAllocation = None
    print("scikit-learn is not installed (pip install scikit-learn): the comparison is skipped.")

if LatentDirichletAllocation is not None:
    peer = LatentDirichletAllocation(
        NUM_TOPICS, doc_topic_prior=1 / NUM_TOPICS, topic_word_prior=1 / NUM_TOPICS, max_iter=1, random_state=0
    ).fit(docs.train.astype(np.float64))  # float64: scikit-learn's reference computation in double
    peer.components_ = np.asarray(scipy_params.topic_word, np.float64)
    peer.exp_dirichlet_component_ = np.exp(
        scipy.special.digamma(peer.components_) - scipy.special.digamma(peer.components_.sum(axis=1, keepdims=True))
    )
    theirs = peer.perplexity(docs.test.astype(np.float64))
    with jax.enable_x64(True):  # ours in float64 too: the local steps then stop after the same iterations
        params64 = lda.Params(jnp.asarray(peer.components_), jnp.asarray(1 / NUM_TOPICS), jnp.asarray(1 / NUM_TOPICS))
        ours = float(lda.perplexity(params64, docs.test.astype(np.float64)))
    print(
        f"test perplexity of the same λ: lvmjax {ours:.4f} in float64 ({fitted['bound']:.4f} in float32), "
        f"scikit-learn {theirs:.4f}; relative difference {abs(ours / theirs - 1):.1e}"
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-4)
    np.testing.assert_allclose(fitted["bound"], theirs, rtol=1e-3)

# %% [markdown]
# ## 5. ProdLDA: the topic model as a variational autoencoder
#
# ProdLDA (Srivastava & Sutton 2017; `lvmjax.prodlda`) keeps the generative story but changes two
# things. Each document's proportions are θ_d = softmax(z_d) with a Gaussian z_d (the Laplace
# approximation of Dir(α) in the softmax basis), and its words are drawn from
# softmax(βᵀ θ_d), a product of experts (a weighted geometric mean of the topics) instead of LDA's
# mixture Σ_k θ_dk β_k. And inference is amortized: no γ_d per document, but an encoder network that
# maps a document's counts to q(z_d | n_d), trained together with β on the reparameterized ELBO by
# Adam, as the VAE of notebook 5. A new document's θ costs one pass through the encoder instead of a
# fixed-point iteration. Its ELBO is a Monte Carlo estimate, and training raises it.

# %%
prodlda_params, prodlda_info = prodlda.fit(jax.random.key(7), docs.train, NUM_TOPICS, num_epochs=PRODLDA_EPOCHS)
prodlda_trace = np.asarray(prodlda_info.elbo_per_word)
print(f"ProdLDA: {PRODLDA_EPOCHS} epochs, training ELBO per word {prodlda_trace[0]:.4f} → {prodlda_trace[-1]:.4f}")
assert np.all(np.isfinite(prodlda_trace)) and int(prodlda_info.skipped.sum()) == 0
assert prodlda_trace[-3:].mean() > prodlda_trace[:3].mean()

prodlda_topics = np.asarray(prodlda.topic_word(prodlda_params))
prodlda_top = topics.top_words(prodlda_topics, docs.vocabulary, NUM_TOP_WORDS)
prodlda_npmi = topics.npmi_coherence(prodlda_topics, docs.train, NUM_TOP_WORDS)
for topic, (words, score) in enumerate(zip(prodlda_top, prodlda_npmi, strict=True)):
    print(f"topic {topic + 1:2d} (NPMI {score:+.3f}): {' '.join(words)}")

plots.curves({"ProdLDA": prodlda_trace}, "epoch", "training ELBO per word", title="ProdLDA on scipy-docs")

# %% [markdown]
# Its document completion: θ_d = softmax(μ_φ(observed_d)) from the encoder (`prodlda.document_topics`),
# the held-out words scored by softmax(βᵀ θ_d) (`prodlda.word_probabilities`). Its bound perplexity,
# $\exp(-\sum_d \text{ELBO}_d / N)$ with 16 draws per document (`prodlda.perplexity`), has no global
# terms (β is a point estimate), so it sits beside LDA's bound without them.

# %%
prodlda_theta = prodlda.document_topics(prodlda_params, observed)
prodlda_words = jax.vmap(prodlda.word_probabilities, in_axes=(None, 0))(prodlda_params, prodlda_theta)
prodlda_summary = {
    "bound, documents only": float(prodlda.perplexity(jax.random.key(8), prodlda_params, docs.test)),
    "completion": topics.completion_perplexity(prodlda_words, held_out_words),
}
print(f"{'':14s} {'mean NPMI':>9s} {'bound, Σ_d ELBO_d':>18s} {'completion':>11s}")
for name, npmi, summary in (("LDA", lda_npmi, fitted), ("ProdLDA", prodlda_npmi, prodlda_summary)):
    print(f"{name:14s} {npmi.mean():9.3f} {summary['bound, documents only']:18.1f} {summary['completion']:11.1f}")
better_completion = "LDA" if fitted["completion"] < prodlda_summary["completion"] else "ProdLDA"
more_coherent = "LDA" if lda_npmi.mean() > prodlda_npmi.mean() else "ProdLDA"
print(f"at this budget ({PRODLDA_EPOCHS} epochs of ProdLDA, {len(scipy_trace)} CAVI iterations of LDA):")
print(f"  {better_completion} predicts the held-out halves better; {more_coherent} has the more coherent topics")
np.testing.assert_allclose(np.asarray(prodlda_words).sum(axis=1), 1, rtol=1e-5)
assert prodlda_summary["completion"] < vocabulary_size and fitted["completion"] < vocabulary_size
assert np.all((prodlda_npmi >= -1) & (prodlda_npmi <= 1))

# %% [markdown]
# ## What to take away
#
# LDA's latent variables are the topics, each document's proportions and every word's topic; the
# mean-field ELBO over them is exact, a sum of closed-form Dirichlet and categorical expectations that
# splits into one term per document and the global terms of the topics, and lies below log p(w).
# Coordinate ascent maximizes it block by block and never lowers it, and it recovers the topics of a
# synthetic corpus. SVI's natural-gradient step is the CAVI update taken part of the way on a rescaled
# minibatch (exactly the CAVI update with the whole corpus and ρ = 1), and reaches the same held-out
# perplexity with many cheap steps per pass. On SciPy's docstrings the topics, fitted from counts
# alone, line up with the subpackages; they predict held-out halves of test documents far better than
# a uniform guess or a single unigram distribution, with the same perplexity as scikit-learn from the
# same topics. ProdLDA, the amortized alternative, trades the per-document fixed point for an encoder;
# the table above says how its topics and predictions compare on this corpus, at this budget. Neither
# measure decides alone: a model can predict words well with topics that read poorly, and the reverse;
# and at the small size ProdLDA has had few epochs, so its numbers there say little about the model.
