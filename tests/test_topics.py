"""Tests of lvmjax.models.topics: NPMI coherence against counting by hand, document completion's split and
perplexity, and the top words."""

import itertools
import math

import numpy as np
import pytest
import scipy.sparse

from lvmjax.errors import ArgumentError
from lvmjax.models import topics


def test_top_words_are_the_most_probable_first():
    topic_word = np.array([[0.1, 0.5, 0.4], [0.7, 0.1, 0.2]])
    assert topics.top_words(topic_word, ["a", "b", "c"], 2) == [["b", "c"], ["a", "c"]]
    assert topics.top_words(topic_word, None, 3) == [[1, 2, 0], [0, 2, 1]]
    with pytest.raises(ArgumentError, match="vocabulary has 2 words"):
        topics.top_words(topic_word, ["a", "b"])
    with pytest.raises(ArgumentError, match="num_words"):
        topics.top_words(topic_word, None, 4)


def npmi_by_hand(documents, words):
    """The mean NPMI of the pairs of `words`, by counting the documents (sets of word ids) one by one."""
    num_docs = len(documents)
    scores = []
    for first, second in itertools.combinations(words, 2):
        p_first = sum(first in document for document in documents) / num_docs
        p_second = sum(second in document for document in documents) / num_docs
        p_both = sum(first in document and second in document for document in documents) / num_docs
        if p_both == 0:
            scores.append(-1.0)
        elif p_both == 1:
            scores.append(1.0)
        else:
            scores.append(math.log(p_both / (p_first * p_second)) / -math.log(p_both))
    return np.mean(scores)


def test_npmi_coherence_counts_document_co_occurrences():
    rng = np.random.default_rng(0)
    counts = rng.poisson(0.4, (60, 12)) * rng.integers(1, 4, (60, 12))
    topic_word = rng.dirichlet(np.ones(12), 4)
    documents = [set(np.flatnonzero(row)) for row in counts]
    expected = [npmi_by_hand(documents, np.argsort(-row)[:5]) for row in topic_word]
    np.testing.assert_allclose(topics.npmi_coherence(topic_word, counts, 5), expected, rtol=1e-12)
    np.testing.assert_allclose(
        topics.npmi_coherence(topic_word, scipy.sparse.csr_matrix(counts), 5), expected, rtol=1e-12
    )


def test_npmi_is_one_for_words_always_together_and_minus_one_for_words_never_together():
    counts = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [2, 3, 0, 0], [0, 0, 0, 1]])
    together = np.array([[0.5, 0.5, 0, 0], [0.5, 0, 0.5, 0]])  # words 0, 1 always together; 0, 2 never
    np.testing.assert_allclose(topics.npmi_coherence(together, counts, 2), [1.0, -1.0])
    with pytest.raises(ArgumentError, match="at least 2"):
        topics.npmi_coherence(together, counts, 1)
    with pytest.raises(ArgumentError, match="3 words"):
        topics.npmi_coherence(together, counts[:, :3], 2)


def test_completion_split_halves_each_document_at_random():
    rng = np.random.default_rng(1)
    counts = rng.poisson(2.0, (40, 25))
    counts[:, 0] += 1  # no empty document
    observed, held_out = topics.completion_split(scipy.sparse.csr_matrix(counts), seed=3)
    np.testing.assert_array_equal(observed + held_out, counts)
    sizes = counts.sum(axis=1)
    np.testing.assert_array_equal(observed.sum(axis=1), -(-sizes // 2))
    assert np.all(observed >= 0) and np.all(held_out >= 0)
    again, _ = topics.completion_split(counts, seed=3)
    np.testing.assert_array_equal(again, observed)
    other, _ = topics.completion_split(counts, seed=4)
    assert not np.array_equal(other, observed)


def test_completion_perplexity_of_the_uniform_distribution_is_the_vocabulary_size():
    held_out = np.array([[1.0, 0, 3], [0, 2, 0]])
    assert topics.completion_perplexity(np.full((2, 3), 1 / 3), held_out) == pytest.approx(3.0, rel=1e-12)
    probabilities = np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]])
    expected = math.exp(-(math.log(0.5) + 3 * math.log(0.25) + 2 * math.log(0.8)) / 6)
    assert topics.completion_perplexity(probabilities, held_out) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ArgumentError, match="shape"):
        topics.completion_perplexity(probabilities[:1], held_out)
    with pytest.raises(ArgumentError, match="no words"):
        topics.completion_perplexity(probabilities, np.zeros((2, 3)))
