"""Text for the topic models (`lvmjax.models.lda`, `lvmjax.prodlda`): documents as bags of words.

A text dataset is a `lvmjax.data.Dataset` whose splits are documents × vocabulary word
counts, `scipy.sparse` CSR matrices of float32 (rows are documents, columns the words of
`Dataset.vocabulary`). One corpus is known by name:

- ``"scipy-docs"``: the prose of SciPy's public docstrings, 1296 documents labelled by
  the subpackage they document (stats, signal, linalg, ...), shipped with lvmjax
  (``lvmjax/datasets/scipy_docs.tsv.gz``; BSD 3-Clause, see its README).

A user's file is one of:

- ``.txt``: one document per line, UTF-8.
- ``.npz``: a documents × vocabulary count matrix saved by ``scipy.sparse.save_npz``.
- ``.npy``: the same matrix, dense.

Beside a count matrix ``corpus.npz`` (or ``.npy``), a file ``corpus.vocabulary.txt`` with one
word per line, if there is one, names its columns; otherwise they are ``word0``, ``word1``, ...

Text becomes counts as scikit-learn's `CountVectorizer` and gensim's `Dictionary` make
them: lowercased, split into runs of the letters a–z (`tokenize`; digits, punctuation and
underscores separate words), the English `STOP_WORDS` and one-letter words dropped, and
the vocabulary (`build_vocabulary`) the words of the TRAINING documents that occur in at
least `min_df` of them and in at most the share `max_df` of them (gensim's
``filter_extremes(no_below=5, no_above=0.5)`` are the defaults), in alphabetical order.
The test documents are counted over the same vocabulary; words outside it are not
counted. A document left with no word of the vocabulary is dropped (a count matrix's
empty rows are an error instead: they were made that way).

The split: round(D · test_fraction) documents, chosen by a permutation from `seed`, are
the test split. Loading never writes anything.
"""

from __future__ import annotations

import collections
import gzip
import importlib.resources
import os
import pathlib
import re
from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse

from lvmjax import data as data_lib
from lvmjax.errors import DataError
from lvmjax.models import lda

__all__ = [
    "CORPORA",
    "MAX_DF",
    "MIN_DF",
    "STOP_WORDS",
    "TEXT_SUFFIXES",
    "build_vocabulary",
    "count_matrix",
    "load_corpus",
    "tokenize",
]

CORPORA = ("scipy-docs",)
TEXT_SUFFIXES = (".txt", ".npz", ".npy")
MIN_DF = 5  # a word of the vocabulary occurs in at least this many training documents
MAX_DF = 0.5  # and in at most this share of them
_WORD = re.compile(r"[a-z]+")

# Common English function words (articles, pronouns, auxiliaries, prepositions, conjunctions and
# frequent adverbs), written for lvmjax; they carry no topic.
STOP_WORDS = frozenset(
    """
    a about above after again against all almost also although always am among an and another any anyone
    anything are around as at be became because become becomes been before being below between both but by
    can cannot could did do does doing done down during each either else etc even ever every few for from
    further had has have having he her here hers herself him himself his how however i if in into is it its
    itself just less let like made make makes many may me might more most much must my myself neither never
    no nor not now of off often on once one only onto or other others otherwise our ours ourselves out over
    own per perhaps rather same shall she should since so some such than that the their theirs them
    themselves then there therefore these they this those though through thus to together too toward towards
    under until up upon us used uses using very via was we well were what whatever when where whereas
    whether which while who whom whose why will with within without would yet you your yours yourself
    yourselves
    """.split()
)


def tokenize(text: str) -> list[str]:
    """The words of `text`: lowercased runs of a–z of two or more letters, stop words dropped."""
    return [word for word in _WORD.findall(text.lower()) if len(word) > 1 and word not in STOP_WORDS]


def build_vocabulary(documents: Sequence[Sequence[str]], min_df: int = MIN_DF, max_df: float = MAX_DF) -> tuple:
    """The words that occur in at least `min_df` and at most the share `max_df` of `documents`, sorted.

    Args:
      documents: tokenized documents (`tokenize`).
      min_df: the fewest documents a kept word occurs in, >= 1.
      max_df: the largest share of the documents a kept word occurs in, in (0, 1].

    Raises:
      DataError: where no word is left.
    """
    if isinstance(min_df, bool) or not isinstance(min_df, (int, np.integer)) or min_df < 1:
        raise DataError(f"min_df must be a whole number of documents >= 1, got {min_df!r}")
    if not 0 < max_df <= 1:
        raise DataError(f"max_df must be a share of the documents in (0, 1], got {max_df!r}")
    frequencies = collections.Counter(word for document in documents for word in set(document))
    most = max_df * len(documents)
    vocabulary = tuple(sorted(word for word, count in frequencies.items() if min_df <= count <= most))
    if not vocabulary:
        raise DataError(
            f"no word occurs in at least {min_df} and at most {max_df:g} of the {len(documents)} training "
            "documents; lower min_df or raise max_df"
        )
    return vocabulary


def count_matrix(documents: Iterable[Sequence[str]], vocabulary: Sequence[str]) -> scipy.sparse.csr_matrix:
    """The (D, V) float32 CSR matrix of how often each word of `vocabulary` occurs in each document;
    other words are not counted."""
    index = {word: column for column, word in enumerate(vocabulary)}
    indptr, indices, values = [0], [], []  # type: list[int], list[int], list[int]
    for document in documents:
        counts = collections.Counter(index[word] for word in document if word in index)
        columns = sorted(counts)
        indices.extend(columns)
        values.extend(counts[column] for column in columns)
        indptr.append(len(indices))
    return scipy.sparse.csr_matrix(
        (np.asarray(values, np.float32), np.asarray(indices, np.int32), np.asarray(indptr, np.int64)),
        shape=(len(indptr) - 1, len(vocabulary)),
    )


def load_corpus(
    name: str | os.PathLike,
    test_fraction: float = 0.2,
    seed: int = 0,
    min_df: int = MIN_DF,
    max_df: float = MAX_DF,
) -> data_lib.Dataset:
    """The documents of a named corpus (`CORPORA`) or of a user's file, counted and split.

    Args:
      name: ``"scipy-docs"``, or the path of a ``.txt``, ``.npz`` or ``.npy`` file (see the module).
      test_fraction: the share of the documents held out for testing, in (0, 1).
      seed: of the split's permutation.
      min_df, max_df: the vocabulary's bounds on document frequency (text only; `build_vocabulary`).

    Returns:
      A `Dataset` of CSR count matrices with `vocabulary`, and for scipy-docs each document's
      subpackage as its label (`label_names`).

    Raises:
      DataError: for an unknown name, a missing or unreadable file, counts that are negative,
        fractional or not finite, an empty document of a count matrix, or a split that leaves a
        side empty.
    """
    if not 0 < test_fraction < 1:
        raise DataError(f"test-fraction must be strictly between 0 and 1, got {test_fraction}")
    if str(name) == "scipy-docs":
        resource = importlib.resources.files("lvmjax") / "datasets" / "scipy_docs.tsv.gz"
        with importlib.resources.as_file(resource) as path, gzip.open(path, "rt", encoding="utf-8") as file:
            rows = [line.rstrip("\n").split("\t") for line in file]
        subpackages = sorted({row[0] for row in rows})
        labels = np.array([subpackages.index(row[0]) for row in rows], np.int32)
        texts = [row[2] for row in rows]
        return _from_texts("scipy-docs", texts, labels, tuple(subpackages), test_fraction, seed, min_df, max_df)
    path = pathlib.Path(name)
    suffix = path.suffix.lower()
    if suffix not in TEXT_SUFFIXES:
        known = ", ".join(repr(corpus) for corpus in CORPORA)
        raise DataError(
            f"unknown corpus {str(name)!r}; the known ones are {known}, or the path of a .txt file (one document "
            "per line), a .npz count matrix (scipy.sparse.save_npz) or a dense .npy one"
        )
    if not path.is_file():
        raise DataError(
            f"the data file {path} does not exist" if not path.exists() else f"the data file {path} is not a file"
        )
    if suffix == ".txt":
        try:
            texts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as error:
            raise DataError(f"could not read {path} as UTF-8 text ({data_lib._one_line(error)})") from error
        return _from_texts(path.name, texts, None, None, test_fraction, seed, min_df, max_df)
    counts = _read_counts(path, suffix)
    vocabulary = _read_vocabulary(path, counts.shape[1])
    return _split(path.name, counts, None, None, vocabulary, test_fraction, seed)


def _from_texts(name, texts, labels, label_names, test_fraction, seed, min_df, max_df) -> data_lib.Dataset:
    documents = [tokenize(text) for text in texts]
    train_rows, test_rows = _split_rows(name, len(documents), test_fraction, seed)
    vocabulary = build_vocabulary([documents[row] for row in train_rows], min_df, max_df)
    counts = count_matrix(documents, vocabulary)
    kept = np.flatnonzero(np.diff(counts.indptr) > 0)  # documents with a word of the vocabulary
    train_rows, test_rows = np.intersect1d(train_rows, kept), np.intersect1d(test_rows, kept)
    if not len(test_rows) or not len(train_rows):
        raise DataError(f"{name}: no {'test' if len(train_rows) else 'training'} document has a word of the vocabulary")
    return _dataset(name, counts, labels, label_names, vocabulary, train_rows, test_rows)


def _split_rows(name: str, num_docs: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    num_test = round(num_docs * test_fraction)
    if not 1 <= num_test <= num_docs - 1:
        raise DataError(
            f"{name} has {num_docs} documents, too few to hold out test-fraction {test_fraction} of them and keep "
            "both splits non-empty"
        )
    order = np.random.default_rng(seed).permutation(num_docs)
    return np.sort(order[num_test:]), np.sort(order[:num_test])


def _split(name, counts, labels, label_names, vocabulary, test_fraction, seed) -> data_lib.Dataset:
    train_rows, test_rows = _split_rows(name, counts.shape[0], test_fraction, seed)
    return _dataset(name, counts, labels, label_names, vocabulary, train_rows, test_rows)


def _dataset(name, counts, labels, label_names, vocabulary, train_rows, test_rows) -> data_lib.Dataset:
    return data_lib.Dataset(
        name=name,
        train=counts[train_rows],
        test=counts[test_rows],
        valid=None,
        train_labels=None if labels is None else labels[train_rows],
        test_labels=None if labels is None else labels[test_rows],
        image_shape=None,
        binary=False,
        vocabulary=tuple(vocabulary),
        label_names=label_names,
    )


def _read_counts(path: pathlib.Path, suffix: str) -> scipy.sparse.csr_matrix:
    """A count matrix file as checked float32 CSR: whole numbers >= 0, every document with a word."""
    try:
        if suffix == ".npz":
            matrix = scipy.sparse.load_npz(path)
        else:
            with open(path, "rb") as file:
                matrix = np.load(file, allow_pickle=False)
    except Exception as error:  # truncated, corrupted, a dense npz: numpy and scipy raise many types
        how = "scipy.sparse.save_npz(path, counts)" if suffix == ".npz" else "np.save(path, counts)"
        raise DataError(
            f"could not read {path} as a count matrix ({data_lib._one_line(error)}); save it with {how}"
        ) from error
    if isinstance(matrix, np.ndarray):
        if matrix.ndim != 2:
            raise DataError(f"{path} holds an array of shape {matrix.shape}; a count matrix is (documents, words)")
        if not (np.issubdtype(matrix.dtype, np.integer) or np.issubdtype(matrix.dtype, np.floating)):
            raise DataError(f"{path} holds {matrix.dtype} values; word counts are numbers")
        matrix = scipy.sparse.csr_matrix(matrix)
    matrix = matrix.tocsr()
    if 0 in matrix.shape:
        raise DataError(f"{path} holds an empty count matrix (shape {matrix.shape})")
    try:
        lda._check_count_values(np.asarray(matrix.data))
    except DataError as error:
        raise DataError(f"{path}: {error}") from None
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    empty = np.flatnonzero(np.diff(matrix.indptr) == 0)
    if empty.size:
        raise DataError(
            f"{path}: {empty.size} documents have no words (all-zero rows), for example row {int(empty[0])}; "
            "drop them first"
        )
    return matrix.astype(np.float32)


def _read_vocabulary(path: pathlib.Path, num_words: int) -> tuple[str, ...]:
    """The words of the sidecar PATH.vocabulary.txt, or word0, word1, ... where there is none."""
    sidecar = path.with_suffix(".vocabulary.txt")
    if not sidecar.is_file():
        return tuple(f"word{column}" for column in range(num_words))
    try:
        words = tuple(line.strip() for line in sidecar.read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"could not read {sidecar} ({data_lib._one_line(error)})") from error
    if len(words) != num_words:
        raise DataError(
            f"{sidecar} names {len(words)} words, but {path} has {num_words} columns; give one word per column"
        )
    return words
