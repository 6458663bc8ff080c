"""Tests of lvmjax.text: the tokenizer, the vocabulary, the count matrices, the shipped corpus and the files."""

import gzip
import hashlib
import importlib.resources

import numpy as np
import pytest
import scipy.sparse

from lvmjax import text
from lvmjax.errors import DataError

SCIPY_DOCS_TEXT_SHA256 = "b3805b529fc2348c7acc13791a8cf2e1ffa17bd173625d0e37108ac4f3c5d0ea"  # datasets/README.md


def test_tokenize_lowercases_splits_on_non_letters_and_drops_stop_words():
    assert text.tokenize("The FFT of x_2, computed by scipy.fft: a 2-D array_like!") == [
        "fft",
        "computed",
        "scipy",
        "fft",
        "array",
    ]


def test_the_vocabulary_keeps_words_by_document_frequency():
    documents = [["a1", "b1"], ["a1", "c1"], ["a1", "b1", "b1"], ["a1", "d1"]]
    # a1 is in 4 of 4 documents, b1 in 2, c1 and d1 in 1.
    assert text.build_vocabulary(documents, min_df=1, max_df=1.0) == ("a1", "b1", "c1", "d1")
    assert text.build_vocabulary(documents, min_df=2, max_df=1.0) == ("a1", "b1")
    assert text.build_vocabulary(documents, min_df=1, max_df=0.5) == ("b1", "c1", "d1")
    with pytest.raises(DataError, match="no word occurs"):
        text.build_vocabulary(documents, min_df=5)
    with pytest.raises(DataError, match="min_df"):
        text.build_vocabulary(documents, min_df=0)


def test_count_matrix_counts_the_vocabulary_words_only():
    counts = text.count_matrix([["b", "a", "b", "zz"], [], ["c"]], ("a", "b", "c"))
    assert isinstance(counts, scipy.sparse.csr_matrix) and counts.dtype == np.float32
    np.testing.assert_array_equal(counts.toarray(), [[1, 2, 0], [0, 0, 0], [0, 0, 1]])


@pytest.fixture(scope="module")
def scipy_docs():
    return text.load_corpus("scipy-docs")


def test_the_shipped_corpus_is_the_documented_file(scipy_docs):
    resource = importlib.resources.files("lvmjax") / "datasets" / "scipy_docs.tsv.gz"
    payload = gzip.decompress(resource.read_bytes())
    assert hashlib.sha256(payload).hexdigest() == SCIPY_DOCS_TEXT_SHA256
    num_docs = payload.count(b"\n")
    assert scipy_docs.train.shape[0] + scipy_docs.test.shape[0] == num_docs == 1296  # no document is empty
    assert scipy_docs.test.shape[0] == round(0.2 * num_docs)
    assert scipy_docs.train.shape[1] == len(scipy_docs.vocabulary) == scipy_docs.test.shape[1]
    assert list(scipy_docs.vocabulary) == sorted(scipy_docs.vocabulary)
    assert "stats" in scipy_docs.label_names and len(scipy_docs.label_names) == 14
    assert scipy_docs.test_labels.shape == (scipy_docs.test.shape[0],)


def test_the_vocabulary_comes_from_the_training_documents(scipy_docs):
    present = np.asarray((scipy_docs.train > 0).sum(axis=0)).ravel()
    assert present.min() >= text.MIN_DF
    assert present.max() <= text.MAX_DF * scipy_docs.train.shape[0]


def test_a_text_file_is_tokenized_and_split(tmp_path):
    lines = [f"topic{'ab'[index % 2]} words here number{index % 3} shared" for index in range(20)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n\n")  # a blank line is no document
    dataset = text.load_corpus(path, test_fraction=0.25, seed=1, min_df=2, max_df=0.9)
    assert dataset.train.shape[0] + dataset.test.shape[0] == 20 and dataset.test.shape[0] == 5
    assert set(dataset.vocabulary) == {"topica", "topicb"}  # the other words are in every document: > max_df
    assert dataset.name == "corpus.txt" and dataset.train_labels is None


def test_count_matrix_files_with_and_without_a_vocabulary(tmp_path):
    rng = np.random.default_rng(0)
    counts = rng.poisson(1.0, (30, 8)) + np.eye(30, 8, dtype=int)
    counts[:, 0] += 1
    scipy.sparse.save_npz(tmp_path / "counts.npz", scipy.sparse.csr_matrix(counts))
    np.save(tmp_path / "dense.npy", counts)
    (tmp_path / "counts.vocabulary.txt").write_text("\n".join(f"w{index}" for index in range(8)) + "\n")
    sparse = text.load_corpus(tmp_path / "counts.npz", seed=2)
    dense = text.load_corpus(tmp_path / "dense.npy", seed=2)
    assert sparse.vocabulary == tuple(f"w{index}" for index in range(8))
    assert dense.vocabulary == tuple(f"word{index}" for index in range(8))
    np.testing.assert_array_equal(sparse.train.toarray(), dense.train.toarray())
    np.testing.assert_array_equal(
        np.concatenate([sparse.train.toarray(), sparse.test.toarray()]).sum(axis=0), counts.sum(axis=0)
    )


def _write(path, counts):
    if path.suffix == ".npz":
        scipy.sparse.save_npz(path, scipy.sparse.csr_matrix(counts))
    else:
        np.save(path, counts)


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda counts: counts * -1.0, "negative"),
        (lambda counts: counts + 0.5, "whole numbers"),
        (lambda counts: np.where(np.arange(counts.size).reshape(counts.shape) == 5, np.nan, counts), "NaN or infinite"),
        (lambda counts: np.vstack([counts, np.zeros((1, counts.shape[1]))]), "no words"),
    ],
)
def test_bad_counts_are_refused_by_name(tmp_path, suffix, change, message):
    counts = np.ones((10, 4))
    path = tmp_path / f"bad{suffix}"
    _write(path, change(counts))
    with pytest.raises(DataError, match=message):
        text.load_corpus(path)


def test_bad_files_are_refused_by_name(tmp_path):
    with pytest.raises(DataError, match="unknown corpus 'news'"):
        text.load_corpus("news")
    with pytest.raises(DataError, match="does not exist"):
        text.load_corpus(tmp_path / "missing.txt")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="save_npz"):
        text.load_corpus(tmp_path / "junk.npz")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ol\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8"):
        text.load_corpus(tmp_path / "latin1.txt")
    np.save(tmp_path / "counts.npy", np.ones((10, 3)))
    (tmp_path / "counts.vocabulary.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"names 2 words, but .* has 3 columns"):
        text.load_corpus(tmp_path / "counts.npy")
    (tmp_path / "short.txt").write_text("one line only\n")
    with pytest.raises(DataError, match="too few"):
        text.load_corpus(tmp_path / "short.txt")
