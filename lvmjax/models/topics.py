"""What every topic model is judged by: its top words, their coherence, and document completion.

Shared by LDA (`lvmjax.models.lda`) and ProdLDA (`lvmjax.prodlda`); each takes a (K, V)
row-stochastic topic-word matrix or the model's own predictive word distributions.

- `top_words`: the most probable words of each topic.
- `npmi_coherence`: the mean normalized pointwise mutual information of the top words'
  pairs, over the documents of a reference corpus (Bouma 2009; Lau, Newman & Baldwin 2014;
  Srivastava & Sutton 2017 report it for ProdLDA):

      NPMI(w_i, w_j) = log(P(w_i, w_j) / (P(w_i) P(w_j))) / (-log P(w_i, w_j))

  with P(w) the share of documents that contain w and P(w_i, w_j) the share that contain
  both; a pair that never co-occurs scores -1 (the limit). It lies in [-1, 1]; 1 for words
  that only ever occur together.
- `completion_split` and `completion_perplexity`: document completion (Wallach et al. 2009,
  Hoffman et al. 2013): each test document's words are split at random into an observed
  half and a held-out half; θ_d is inferred from the observed half and the held-out words
  are scored by the predictive p(w | θ_d), so the figure is a held-out likelihood that no
  bound enters:

      perplexity = exp(-Σ_d Σ_{w ∈ held out_d} log p(w | observed_d) / N_held out)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lvmjax.errors import ArgumentError

__all__ = ["completion_perplexity", "completion_split", "npmi_coherence", "top_words"]


def _dense_rows(counts: Any) -> np.ndarray:
    return np.asarray(counts.toarray() if hasattr(counts, "toarray") else counts)


def top_words(topic_word: Any, vocabulary: Any = None, num_words: int = 10) -> list[list]:
    """The `num_words` most probable words of each topic, most probable first.

    Args:
      topic_word: (K, V) the topics, p(w | topic k) in each row.
      vocabulary: V words; None gives the word ids.
      num_words: how many, at most V.

    Returns:
      K lists of words (or ids).
    """
    topic_word = np.asarray(topic_word)
    if topic_word.ndim != 2:
        raise ArgumentError(f"topic_word must be (K, V), got shape {topic_word.shape}.")
    if vocabulary is not None and len(vocabulary) != topic_word.shape[1]:
        raise ArgumentError(f"vocabulary has {len(vocabulary)} words, but the topics are over {topic_word.shape[1]}.")
    if not 1 <= num_words <= topic_word.shape[1]:
        raise ArgumentError(f"num_words must be between 1 and V = {topic_word.shape[1]}, got {num_words}.")
    order = np.argsort(-topic_word, axis=1, kind="stable")[:, :num_words]
    if vocabulary is None:
        return [[int(word) for word in row] for row in order]
    return [[vocabulary[word] for word in row] for row in order]


def npmi_coherence(topic_word: Any, reference_counts: Any, num_words: int = 10) -> np.ndarray:
    """The NPMI coherence of each topic's `num_words` top words (see the module), (K,).

    Args:
      topic_word: (K, V) the topics.
      reference_counts: (D, V) the documents whose co-occurrences are counted, dense or
        `scipy.sparse` (only whether a word occurs in a document matters).
      num_words: N, the top words of each topic; its N (N - 1) / 2 pairs are averaged.
    """
    topic_word = np.asarray(topic_word)
    if np.shape(reference_counts)[1] != topic_word.shape[1]:
        raise ArgumentError(
            f"reference_counts has {np.shape(reference_counts)[1]} words, but the topics are over "
            f"{topic_word.shape[1]}."
        )
    if num_words < 2:
        raise ArgumentError(f"num_words must be at least 2 (coherence scores pairs), got {num_words}.")
    tops = np.asarray(top_words(topic_word, None, num_words))  # (K, N)
    words = np.unique(tops)
    present = _dense_rows(reference_counts[:, words]) > 0  # (D, W)
    num_docs = present.shape[0]
    column = {word: index for index, word in enumerate(words)}
    occurs = present.sum(axis=0) / num_docs  # P(w)
    together = (present.T.astype(np.float64) @ present) / num_docs  # P(w_i, w_j)
    upper = np.triu_indices(num_words, k=1)
    scores = np.empty(len(tops))
    for topic, row in enumerate(tops):
        index = np.array([column[word] for word in row])
        joint = together[np.ix_(index, index)][upper]
        marginals = occurs[index][upper[0]] * occurs[index][upper[1]]
        with np.errstate(divide="ignore", invalid="ignore"):
            npmi = np.log(joint / marginals) / -np.log(joint)
        npmi = np.where(joint == 0, -1.0, npmi)
        npmi = np.where(joint == 1, 1.0, npmi)  # words in every document: independent and always together
        scores[topic] = npmi.mean()
    return scores


def completion_split(counts: Any, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Each document's words split at random into an observed half and a held-out half.

    Every occurrence of a word is one token; a document of N_d tokens keeps ⌈N_d / 2⌉ of
    them, chosen by a permutation from `seed`, as observed, and the others are held out.
    A document of one token has no held-out words.

    Args:
      counts: (D, V) whole-number counts, dense or `scipy.sparse`.

    Returns:
      (observed, held_out), two (D, V) float32 arrays summing to `counts`.
    """
    dense = _dense_rows(counts).astype(np.int64)
    if dense.ndim != 2 or np.any(dense < 0):
        raise ArgumentError("counts must be a (D, V) matrix of whole numbers >= 0.")
    rng = np.random.default_rng(seed)
    observed = np.zeros_like(dense)
    for document, row in enumerate(dense):
        tokens = np.repeat(np.arange(row.size), row)
        kept = rng.permutation(tokens)[: -(-tokens.size // 2)]
        observed[document] = np.bincount(kept, minlength=row.size)
    return observed.astype(np.float32), (dense - observed).astype(np.float32)


def completion_perplexity(word_probabilities: Any, held_out: Any) -> float:
    """exp(-Σ_dv n_dv log p_d(v) / Σ_dv n_dv): the perplexity of held-out counts under per-document
    predictive word distributions.

    Args:
      word_probabilities: (D, V) p(w = v | the observed half of document d), rows summing to 1
        (for LDA, E[θ_d]ᵀ E[β]; for ProdLDA, softmax(βᵀ θ_d)).
      held_out: (D, V) the held-out counts (`completion_split`).
    """
    probabilities = np.asarray(word_probabilities, np.float64)
    held_out = _dense_rows(held_out).astype(np.float64)
    if probabilities.shape != held_out.shape:
        raise ArgumentError(f"word_probabilities has shape {probabilities.shape}, but held_out has {held_out.shape}.")
    total = held_out.sum()
    if total == 0:
        raise ArgumentError("held_out has no words to score.")
    with np.errstate(divide="ignore"):
        log_probabilities = np.where(held_out > 0, np.log(probabilities), 0.0)
    return float(np.exp(-np.sum(held_out * log_probabilities) / total))
