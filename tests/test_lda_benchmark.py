"""`python -m benchmarks.lda --quick`: the LDA benchmark runs, and its rows say what was measured.

Timings are never asserted (they are measured in benchmarks/, see RESULTS.md); this proves that every
part works at tiny sizes, with or without the optional peers installed, and that the one perplexity
formula the rows use is scikit-learn's own.
"""

import math
import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # benchmarks/ is a package of the repository, not of the installed lvmjax

from benchmarks import lda as lda_benchmark  # noqa: E402
from benchmarks import run  # noqa: E402


def perplexity_of(quality: str) -> float:
    return float(quality.split("test perplexity ")[1].split()[0])


def test_the_synthetic_corpus_is_reproducible_counts_with_no_empty_document():
    counts = lda_benchmark.synthetic_corpus(200, 50, 4, words_per_doc=20, seed=3)
    again = lda_benchmark.synthetic_corpus(200, 50, 4, words_per_doc=20, seed=3)
    assert counts.shape == (200, 50) and counts.dtype == np.float32
    assert (counts != again).nnz == 0
    lengths = np.asarray(counts.sum(axis=1)).ravel()
    assert lengths.min() >= 1 and lengths.mean() == pytest.approx(20, rel=0.2)  # N_d ~ 1 + Poisson(19)
    assert np.all(counts.data == np.round(counts.data)) and counts.data.min() >= 1


def test_the_quick_rows_are_well_formed_and_each_peer_is_scored_by_the_same_formula(capsys):
    rows = lda_benchmark.main(["--quick"])
    table = capsys.readouterr().out
    assert {row.benchmark for row in rows} == {"lda_cavi", "lda_svi"}
    peers = [row.peer.split()[0] for row in rows]
    assert peers.count("scikit-learn") == 2  # batch and online (scikit-learn is a test dependency)
    for row in rows:
        assert row.benchmark in table and row.lvmjax_seconds > 0 and row.compile_seconds >= 0
        assert math.isfinite(perplexity_of(row.lvmjax_quality))
        if row.peer_seconds is None:  # gensim is optional: skipped, and says so
            assert row.note.startswith("skipped") and row.ratio is None
            continue
        assert row.ratio == pytest.approx(row.peer_seconds / row.lvmjax_seconds)
        # Same K, priors, iterations: the peers' topics are about as good (+0.03% and -1.6% here); a λ read
        # wrongly (transposed, normalized, without η) is off by far more.
        ours, theirs = perplexity_of(row.lvmjax_quality), perplexity_of(row.peer_quality)
        assert theirs == pytest.approx(ours, rel=0.1)
        difference = float(row.peer_quality.split("(")[1].split("%)")[0]) / 100  # the relative difference shown
        assert difference == pytest.approx(theirs / ours - 1, abs=5e-4)  # of the two perplexities, rounded


def test_the_harness_registers_the_benchmark():
    assert "lda" in run.BENCHMARKS


def test_lvmjax_perplexity_of_scikit_learn_topics_is_scikit_learns_perplexity():
    from sklearn.decomposition import LatentDirichletAllocation

    counts = lda_benchmark.synthetic_corpus(120, 60, 3, words_per_doc=30)
    estimator = LatentDirichletAllocation(n_components=3, max_iter=3, random_state=0).fit(counts[:100])
    ours = lda_benchmark.test_perplexity(estimator.components_, counts[100:], 3)
    # float32 against scikit-learn's float64, both with γ from a local step from ones
    assert ours == pytest.approx(estimator.perplexity(counts[100:]), rel=1e-4)


def test_the_scaling_figure_is_drawn(tmp_path):
    records = [
        dict(side=side, grown=grown, num_docs=size if grown == "docs" else 100, num_topics=5,
             vocabulary_size=size if grown == "words" else 100, seconds=0.01 * size, peak_mib=300.0 + size)
        for side in ("lvmjax", "scikit-learn") for grown in ("docs", "words") for size in (100, 200, 400)
    ]  # fmt: skip
    path = tmp_path / "scaling.png"
    lda_benchmark.plot_scaling(records, path)
    assert path.stat().st_size > 0


def test_the_child_reports_its_seconds_and_peak_memory():
    record = lda_benchmark.child("scikit-learn", 50, 40, 3, 1)
    assert record["seconds"] > 0 and record["peak_mib"] >= record["baseline_mib"] > 0
    assert record["nonzeros"] > 0
