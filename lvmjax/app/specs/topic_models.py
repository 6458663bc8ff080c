"""The specs of the topic models: `lda` (latent Dirichlet allocation by mean-field VI, `lvmjax.models.lda`)
and `prodlda` (ProdLDA by amortized VI, `lvmjax.prodlda`).

Their data are word counts (`lvmjax.text`): a "datapoint" is a document, and the
saved vocabulary (RUN_DIR/vocabulary.txt) names the columns. Neither has an exact
log p(w): the test metrics are the variational bound as a perplexity per word
(`test_perplexity`: for lda scikit-learn's, whose bound also holds the global terms
E[log p(β)] − E[log q(β)] of the topics; `test_document_perplexity`: exp(−Σ_d ELBO_d / N)
from the documents' own terms, the same figure for both models), the document-completion
perplexity of each test document's held-out half given the other half
(`test_completion_perplexity`, which no bound enters), the NPMI coherence of each
topic's top words over the test documents, and the top words themselves. Where the
documents have labels (scipy-docs: the subpackage), the adjusted Rand index of
each test document's most probable topic against them.
"""

from __future__ import annotations

import math
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lvmjax import applications, plots, prodlda
from lvmjax.app.spec import DataKind, EvaluationSettings, FitResult, ModelSpec, Run
from lvmjax.errors import RunError
from lvmjax.models import lda, topics

__all__ = ["LDA", "PRODLDA", "SPECS", "TOP_WORDS"]

TOP_WORDS = 10  # of each topic: shown, and scored by the coherence
FIGURE_DOCUMENTS = 12  # test documents in the document-topic figure


def _check(config, num_data: int, data_dim: int) -> None:
    if config.topics > data_dim:
        raise RunError(
            f"{config.model} with {{topics}} {config.topics} has more topics than the {data_dim} words of the "
            "vocabulary; use at most that many (or lower {min_df} for a larger vocabulary)."
        )


def _history(trace) -> list[dict]:
    if not all(math.isfinite(value) for value in trace):
        raise RunError("the topic model's ELBO became non-finite.")
    return [{"iteration": index, "train_objective": value} for index, value in enumerate(trace)]


# --- lda -----------------------------------------------------------------------------------


def _fit_lda(config, dataset, *, progress=None, checkpoints=None, mesh=None) -> FitResult:
    del checkpoints, mesh  # one compiled program on one device
    start = time.perf_counter()
    params, info = lda.fit(
        jax.random.key(config.seed),
        dataset.train,
        config.topics,
        method=config.method,
        max_iter=config.max_iter,
        batch_size=config.batch_size,
        learning_offset=config.learning_offset,
        learning_decay=config.learning_decay,
        doc_topic_prior=config.doc_topic_prior,
        topic_word_prior=config.topic_word_prior,
        tol=config.tol,
    )
    params = jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    trace = [float(value) for value in jax.device_get(info.objective)[: int(info.num_iterations)]]
    history = _history(trace)
    if progress is not None:
        for step, entry in enumerate(history, start=1):
            progress(step, entry)
    saved = {name: np.asarray(value) for name, value in params._asdict().items()}
    return FitResult(saved, history, seconds, dataset.train.shape[1], None, dataset.train.shape[0])


def _template_lda(config, data_dim: int, image_shape, num_train: int) -> dict:
    dtype = jnp.float32
    return {
        "topic_word": jax.ShapeDtypeStruct((config.topics, data_dim), dtype),
        "doc_topic_prior": jax.ShapeDtypeStruct((), dtype),
        "topic_word_prior": jax.ShapeDtypeStruct((), dtype),
    }


def _evaluate_lda(config, saved, dataset, settings: EvaluationSettings) -> dict:
    params = lda.Params(**{name: jnp.asarray(value) for name, value in saved.items()})
    corpus = lda.as_corpus(dataset.test)
    gammas = lda.document_gammas(params, corpus)
    per_document = jax.vmap(lda.document_elbo, in_axes=(None, 0, 0, 0))(params, corpus.word_ids, corpus.counts, gammas)
    observed, held_out = topics.completion_split(dataset.test, settings.seed)
    completion = topics.completion_perplexity(lda.word_probabilities(params, observed), held_out)
    proportions = np.asarray(gammas / jnp.sum(gammas, axis=1, keepdims=True))
    return _report(
        dataset,
        np.asarray(lda.topic_word(params)),
        np.asarray(per_document),
        float(jnp.exp(-lda.elbo(params, corpus, gammas) / jnp.sum(corpus.counts))),  # `lda.perplexity`, at these γ
        completion,
        proportions,
        settings,
    )


# --- prodlda -------------------------------------------------------------------------------


def _fit_prodlda(config, dataset, *, progress=None, checkpoints=None, mesh=None) -> FitResult:
    del checkpoints, mesh
    history: list[dict] = []

    def report(epoch: int, elbo_per_word: float) -> None:
        history.append({"epoch": epoch - 1, "train_objective": elbo_per_word})
        if progress is not None:
            progress(epoch, history[-1])

    start = time.perf_counter()
    params, _ = prodlda.fit(
        jax.random.key(config.seed),
        dataset.train,
        config.topics,
        num_epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.lr,
        hidden=config.hidden,
        doc_topic_prior=config.doc_topic_prior,
        progress=report,
    )
    params = jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    _history([entry["train_objective"] for entry in history])
    return FitResult(
        jax.device_get(params._asdict()), history, seconds, dataset.train.shape[1], None, dataset.train.shape[0]
    )


def _template_prodlda(config, data_dim: int, image_shape, num_train: int) -> dict:
    def initial(key):
        return prodlda.init(key, data_dim, config.topics, config.hidden, config.doc_topic_prior)._asdict()

    return jax.eval_shape(initial, jax.random.key(0))


def _evaluate_prodlda(config, saved, dataset, settings: EvaluationSettings) -> dict:
    params = prodlda.Params(**saved)
    key = jax.random.key(settings.seed)
    per_document = np.asarray(prodlda.elbo(key, params, dataset.test, num_samples=16))
    observed, held_out = topics.completion_split(dataset.test, settings.seed)
    predictive = prodlda.word_probabilities(params, prodlda.document_topics(params, observed))
    return _report(
        dataset,
        np.asarray(prodlda.topic_word(params)),
        per_document,
        None,  # its bound has the documents' terms only
        topics.completion_perplexity(predictive, held_out),
        np.asarray(prodlda.document_topics(params, dataset.test)),
        settings,
    )


# --- shared --------------------------------------------------------------------------------


def _report(dataset, topic_word, per_document, perplexity, completion, proportions, settings) -> dict:
    """The common metrics; `perplexity` None is the documents' bound, `test_document_perplexity`."""
    document_perplexity = float(np.exp(-np.sum(per_document) / float(dataset.test.sum())))
    num_words = min(TOP_WORDS, topic_word.shape[1])
    coherence = topics.npmi_coherence(topic_word, dataset.test, num_words) if num_words > 1 else None
    tops = topics.top_words(topic_word, dataset.vocabulary, num_words)
    report: dict[str, Any] = {
        "num_samples": None,
        "num_topics": int(topic_word.shape[0]),
        "vocabulary_size": int(topic_word.shape[1]),
        "num_test_words": int(dataset.test.sum()),
        "test_elbo": float(np.mean(per_document)),
        "test_elbo_stderr": float(np.std(per_document) / math.sqrt(len(per_document))),
        "test_nll": None,
        "test_perplexity": document_perplexity if perplexity is None else perplexity,
        "test_document_perplexity": document_perplexity,
        "test_completion_perplexity": completion,
        "coherence_npmi": None if coherence is None else float(np.mean(coherence)),
        "coherence_npmi_per_topic": None if coherence is None else [float(value) for value in coherence],
        "top_words": [" ".join(words) for words in tops],
    }
    if dataset.test_labels is not None:
        report["adjusted_rand_index"] = applications.adjusted_rand_index(
            dataset.test_labels, np.argmax(proportions, axis=1)
        )
    if settings.per_datapoint:
        report["test_elbos"] = [float(value) for value in per_document]
    return report


def _figures(topic_word_of, proportions_of):
    """The figures of a topic model whose `topic_word_of(params)` is its (K, V) topics and
    `proportions_of(params, counts)` its documents' topic proportions."""

    def figures(run: Run, dataset) -> dict:
        return _topic_figures(run, dataset, np.asarray(topic_word_of(run.params)), proportions_of)

    return figures


def _topic_figures(run: Run, dataset, topic_word: np.ndarray, proportions_of) -> dict:
    """topics: the top words of each topic and their probabilities, captioned by their NPMI coherence over the
    test documents; document_topics: the topic proportions of one test document of each label (the first
    `FIGURE_DOCUMENTS` test documents without labels)."""
    num_words = min(TOP_WORDS, topic_word.shape[1])
    order = np.argsort(-topic_word, axis=1)[:, :num_words]
    words = [[dataset.vocabulary[index] for index in row] for row in order]
    probabilities = [topic_word[topic, row].tolist() for topic, row in enumerate(order)]
    coherence = topics.npmi_coherence(topic_word, dataset.test, num_words) if num_words > 1 else None
    name, size = run.spec.name, topic_word.shape[0]
    figures = {
        "topics": plots.topic_words(
            words,
            probabilities,
            None if coherence is None else [f"NPMI {value:.2f}" for value in coherence],
            title=f"{name} ({size} topics) on {dataset.name}: the top words of each topic",
        )
    }
    if dataset.test_labels is not None:
        chosen = np.array([np.flatnonzero(dataset.test_labels == label)[0] for label in np.unique(dataset.test_labels)])
        names = [f"{dataset.label_names[dataset.test_labels[index]]} (#{index})" for index in chosen]
    else:
        chosen = np.arange(min(FIGURE_DOCUMENTS, dataset.test.shape[0]))
        names = [f"test document {index}" for index in chosen]
    proportions = np.asarray(proportions_of(run.params, dataset.test[chosen]))
    figures["document_topics"] = plots.document_topics(
        proportions, names, title=f"{name}: topic proportions of test documents"
    )
    return figures


_REASONS = {
    "generative": "{model} has no sampler on the command line (what it draws is bags of words, not images); "
    "'lvmjax plot' draws its topics instead.",
    "impute": "{model} completes documents rather than columns: 'lvmjax evaluate' reports the perplexity of "
    "each test document's held-out half (test_completion_perplexity).",
    "latent_codes": "{model}'s codes are topic proportions; 'lvmjax plot' draws them as document_topics.",
    "devices": "{model} fits on one device.",
    "select": "compare {{topics}} by the test_completion_perplexity and coherence_npmi of 'lvmjax evaluate --json'.",
    "resume": "{model} is fitted in one go; fit again into a new run directory.",
}


def _reasons(name: str) -> dict[str, str]:
    return {capability: reason.format(model=name) for capability, reason in _REASONS.items()}


LDA = ModelSpec(
    name="lda",
    summary="latent Dirichlet allocation for word counts (batch coordinate ascent or stochastic VI)",
    data_kind=DataKind.COUNTS,
    options=frozenset(
        {
            "topics",
            "method",
            "max_iter",
            "tol",
            "batch_size",
            "learning_offset",
            "learning_decay",
            "doc_topic_prior",
            "topic_word_prior",
            "min_df",
            "max_df",
        }
    ),
    fit=_fit_lda,
    evaluate=_evaluate_lda,
    template=_template_lda,
    size=lambda config: f"{config.topics} topics",
    check=_check,
    nll_method=None,
    history_unit="EM iteration",  # variational EM: the local steps, then λ
    objective=lambda config: "ELBO per word",
    params_type=lda.Params,
    figures=_figures(
        lambda saved: lda.topic_word(lda.Params(**saved)),
        lambda saved, counts: lda.document_topics(lda.Params(**saved), counts),
    ),
    reasons=_reasons("lda"),
)

PRODLDA = ModelSpec(
    name="prodlda",
    summary="ProdLDA: a topic model with a product-of-experts decoder, by amortized VI (an encoder network)",
    data_kind=DataKind.COUNTS,
    options=frozenset({"topics", "epochs", "batch_size", "lr", "hidden", "doc_topic_prior", "min_df", "max_df"}),
    fit=_fit_prodlda,
    evaluate=_evaluate_prodlda,
    template=_template_prodlda,
    size=lambda config: f"{config.topics} topics and hidden layers {list(config.hidden)}",
    check=_check,
    nll_method=None,
    history_unit="epoch",
    objective=lambda config: "ELBO per word",
    params_type=prodlda.Params,
    figures=_figures(
        lambda saved: prodlda.topic_word(prodlda.Params(**saved)),
        lambda saved, counts: prodlda.document_topics(prodlda.Params(**saved), counts),
    ),
    reasons=_reasons("prodlda"),
)

SPECS = (LDA, PRODLDA)
